"""Run a collections worker: ``python worker.py`` (reads TEMPORAL_* and DATABASE_URL).

Over TLS/mTLS with ``TEMPORAL_TLS=true`` and the ``TEMPORAL_TLS_*`` files, or with a Temporal
Cloud ``TEMPORAL_API_KEY`` (``collections_domain/ops/connection.py``). When Temporal cannot be
reached or refuses the worker, or a TLS or payload-key setting is wrong, it prints one line that
names what is wrong (a JSON log line with ``LOG_JSON=true``) and exits with status 1; a
supervisor (Compose's ``restart``, systemd, Kubernetes) starts it again. A policy file that breaks
a rule (``COLLECTIONS_POLICY``) is one line naming the key, and status 2. SIGTERM (what Compose,
systemd and Kubernetes send) or SIGINT stops it gracefully, status 0. ``WORKER_PROCESSES``
(``auto``: one per core) runs that many worker processes under this one; ``WORKER_CACHED_CASES``
(``auto``: from the memory available) sizes each one's workflow cache (``ops/sizing.py``).
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
from collections_domain.ops import sizing
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
        print(f"worker: cannot start: {setting_problems(err)}", file=sys.stderr, flush=True)
        return BAD_SETTING
    configure_logging(settings.log_level, settings.log_json)
    log = get_logger("worker")
    processes = sizing.worker_processes(settings.worker_processes)
    if processes > 1:
        return await supervise(settings, processes)
    _end_with_the_supervisor()
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
    cached = sizing.cached_cases(settings.worker_cached_cases, int(os.environ.get(PROCESS_COUNT_VARIABLE, "1")))
    worker = build_worker(client, settings, build_activities(settings, policies), max_cached_workflows=cached)
    if not settings.log_json:  # with LOG_JSON every line is JSON: worker.started carries it
        print(f"worker: metrics at {metrics_address or 'off'}", file=sys.stderr, flush=True)
    log.info(
        "worker.started",
        temporal_address=settings.temporal_address,
        namespace=settings.temporal_namespace,
        task_queue=settings.temporal_task_queue,
        contact_rate_limits=settings.contact_rate_limits or None,
        delivery_backend=settings.delivery_backend,
        metrics_address=metrics_address,
        max_cached_cases=cached,
        process_index=os.environ.get(PROCESS_INDEX_VARIABLE, "0"),
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


#: Set for the processes ``supervise`` starts: how many run together (their cache's share), and
#: which one each is (in its log lines and metrics port).
PROCESS_COUNT_VARIABLE = "WORKER_PROCESS_COUNT"
PROCESS_INDEX_VARIABLE = "WORKER_PROCESS_INDEX"


def setting_problems(err: ValidationError) -> str:
    """Each invalid setting as ``NAME: rule`` (pydantic's "Value error, " and a repeated name cut)."""
    problems = []
    for error in err.errors():
        name = ".".join(str(part) for part in error["loc"]).upper()
        message = error["msg"].removeprefix("Value error, ").removeprefix(f"{name}: ")
        problems.append(f"{name}: {message}")
    return "; ".join(problems)


def _end_with_the_supervisor() -> None:
    """A process ``supervise`` started gets SIGTERM (a graceful stop) when its parent dies, even
    by SIGKILL, instead of polling on as an orphan (Linux ``prctl(PR_SET_PDEATHSIG)``)."""
    if PROCESS_INDEX_VARIABLE not in os.environ or not sys.platform.startswith("linux"):
        return
    import ctypes

    PR_SET_PDEATHSIG = 1
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() == 1:  # the parent died before the call: stop now
        os.kill(os.getpid(), signal.SIGTERM)


async def supervise(settings, processes: int) -> int:
    """Run ``processes`` worker processes (``WORKER_PROCESSES``): one Python process uses one core.

    Each child is this script with ``WORKER_PROCESSES=1``; with a metrics endpoint, child ``i``
    serves it on the configured port + ``i``. SIGTERM or SIGINT is passed to every child, which
    stops gracefully. When one child exits on its own, the others are stopped and its status is
    returned, so that the supervisor above (Compose, systemd, Kubernetes) restarts the whole set.
    """
    children = []
    for index in range(processes):
        env = {**os.environ, "WORKER_PROCESSES": "1", PROCESS_COUNT_VARIABLE: str(processes),
               PROCESS_INDEX_VARIABLE: str(index)}
        host, _, port = settings.metrics_bind_address.strip().rpartition(":")
        if port.isdigit():
            env["METRICS_BIND_ADDRESS"] = f"{host}:{int(port) + index}"
        children.append(await asyncio.create_subprocess_exec(sys.executable, os.path.abspath(__file__), env=env))
    print(f"worker: {processes} processes ({', '.join(str(c.pid) for c in children)})", file=sys.stderr, flush=True)
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stopping.set)
    waits = [asyncio.ensure_future(child.wait()) for child in children]
    stop = asyncio.ensure_future(stopping.wait())
    done, _ = await asyncio.wait([stop, *waits], return_when=asyncio.FIRST_COMPLETED)
    for child in children:
        if child.returncode is None:
            child.send_signal(signal.SIGTERM)
    statuses = await asyncio.gather(*waits)
    stop.cancel()
    if stopping.is_set():
        return 0 if all(status == 0 for status in statuses) else 1
    return next((status for wait, status in zip(waits, statuses) if wait in done and status), 1)


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
