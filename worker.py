"""Run a collections worker: ``python worker.py`` (reads TEMPORAL_* and DATABASE_URL)."""

from __future__ import annotations

import asyncio
import os
import sys

from collections_domain.client import connect
from collections_domain.logs import configure_logging, get_logger
from collections_domain.settings import get_settings
from collections_domain.wiring import build_worker


async def main() -> None:
    """Connect, then poll the task queue until interrupted."""
    settings = get_settings()
    configure_logging(settings.log_level, settings.log_json)
    client = await connect(settings)
    worker = build_worker(client, settings)
    get_logger("worker").info(
        "worker.started",
        address=settings.temporal_address,
        namespace=settings.temporal_namespace,
        task_queue=settings.temporal_task_queue,
        delivery_backend=settings.delivery_backend,
    )
    await worker.run()


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        pass
    # See starter.exit_without_finalizing: skip finalization so the client's threads cannot abort it.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)
