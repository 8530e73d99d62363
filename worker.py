"""Run a collections worker: ``python worker.py`` (reads TEMPORAL_* and DATABASE_URL)."""

from __future__ import annotations

import asyncio
import os
import sys

from collections_domain.client import connect
from collections_domain.ops.logs import configure_logging, get_logger
from collections_domain.ops.observability import configure_runtime, metrics_url
from collections_domain.ops.settings import get_settings
from collections_domain.ops.wiring import build_worker


async def main() -> None:
    """Connect, then poll the task queue until interrupted."""
    settings = get_settings()
    configure_logging(settings.log_level, settings.log_json)
    log = get_logger("worker")
    metrics_address = metrics_url(settings.metrics_bind_address) if settings.metrics_bind_address.strip() else None
    try:
        runtime = configure_runtime(settings)  # Prometheus on METRICS_BIND_ADDRESS (empty: off)
    except ValueError as err:
        # A busy port or a bad address must not stop collections: run without the endpoint.
        log.error("metrics.unavailable", metrics_bind_address=settings.metrics_bind_address, error=str(err))
        metrics_address = None
        runtime = configure_runtime(settings, bind_address="")
    client = await connect(settings, runtime=runtime)
    worker = build_worker(client, settings)
    if not settings.log_json:  # with LOG_JSON every line is JSON: worker.started carries it
        print(f"worker: metrics at {metrics_address or 'off'}", file=sys.stderr, flush=True)
    log.info(
        "worker.started",
        temporal_address=settings.temporal_address,
        namespace=settings.temporal_namespace,
        task_queue=settings.temporal_task_queue,
        delivery_backend=settings.delivery_backend,
        metrics_address=metrics_address,
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
