"""Run a collections worker: ``python worker.py`` (reads TEMPORAL_* and DATABASE_URL).

Over TLS/mTLS with ``TEMPORAL_TLS=true`` and the ``TEMPORAL_TLS_*`` files, or with a Temporal
Cloud ``TEMPORAL_API_KEY`` (``collections_domain/ops/connection.py``). When Temporal cannot be
reached or refuses the worker, or a TLS or payload-key setting is wrong, it prints one line that
names what is wrong (a JSON log line with ``LOG_JSON=true``) and exits with status 1; a
supervisor (Compose's ``restart``, systemd, Kubernetes) starts it again. A policy file that breaks
a rule (``COLLECTIONS_POLICY``) is one line naming the key, and status 2.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys

from pydantic import ValidationError

from collections_domain.client import connect
from collections_domain.ops.codec import KeyRingError
from collections_domain.ops.connection import TemporalConnectionError, TlsSettingsError
from collections_domain.ops.logs import configure_logging, get_logger
from collections_domain.ops.observability import configure_runtime, metrics_url
from collections_domain.ops.settings import get_settings
from collections_domain.ops.wiring import build_activities, build_worker, load_policies
from collections_domain.rules.policy import PolicyError

#: The exit status when the worker cannot connect (a setting to fix, or a server to start).
CANNOT_CONNECT = 1
#: The exit status when a setting is invalid (a policy file that breaks a rule).
BAD_SETTING = 2


async def main() -> int:
    """Connect, then poll the task queue until interrupted; the exit status."""
    try:
        settings = get_settings()
    except ValidationError as err:
        problems = "; ".join(f"{'.'.join(str(part) for part in e['loc']).upper()}: {e['msg']}" for e in err.errors())
        print(f"worker: cannot start: {problems}", file=sys.stderr, flush=True)
        return CANNOT_CONNECT
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
    try:
        policies = load_policies(settings)  # a bad policy file is named before anything connects
    except PolicyError as err:
        print(f"worker: cannot start: COLLECTIONS_POLICY: {err}", file=sys.stderr, flush=True)
        return BAD_SETTING
    try:
        client = await connect(settings, runtime=runtime)
    except (TemporalConnectionError, TlsSettingsError, KeyRingError) as err:
        if settings.log_json:
            log.error("worker.cannot_connect", temporal_address=settings.temporal_address, error=str(err))
        else:
            print(f"worker: cannot start: {err}", file=sys.stderr, flush=True)
        return CANNOT_CONNECT
    worker = build_worker(client, settings, build_activities(settings, policies))
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
    # SIGTERM (what `docker compose stop`, systemd and Kubernetes send) and SIGINT stop it
    # gracefully: polling ends, running tasks finish, and the server is told this worker's sticky
    # queue is gone, so its cases move to another worker at once instead of after a timeout.
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    async with worker:
        await stop.wait()
        log.info("worker.stopping", task_queue=settings.temporal_task_queue)
    return 0


if __name__ == "__main__":
    exit_code = 0
    try:
        exit_code = asyncio.run(main())
    except KeyboardInterrupt:
        pass
    # See starter.exit_without_finalizing: skip finalization so the client's threads cannot abort it.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(exit_code)
