"""Benchmark section "ratelimit": the providers' rate limits under the herd.

A stub provider (stdlib ``http.server`` in a thread) takes the product's deliveries
(``DELIVERY_BACKEND=http``, ``DELIVERY_HTTP_URL`` = the stub: ``activities.delivery.HttpDelivery``
POSTs ``<url>/<channel>``) and records each request's arrival time by channel path. The herd: N
cases whose DPD-3 step falls due at one real instant, on the real dev server
(``WorkflowEnvironment.start_local``), because the limit is the server's
(``max_task_queue_activities_per_second`` on each channel's contacts queue, dispatched by the
matching service; the Java time-skipping server does not enforce it). The instant is made with a
bench policy: the packaged default policy under a new version whose ``contact_window.opens`` is
the next whole minute after the cases can all be open, in a fixed-offset zone
(``Etc/GMT-<h>``) where that minute is 14:xx local (inside every jurisdiction's contact hours);
each case is overdue since three local days before (DPD 3 already), so it opens, finds its
window not yet open and sleeps on one timer until the instant.

Two herds, each with ``os.cpu_count()`` worker processes (``bench.worker_process``, the
product's ``build_worker``): unlimited (no ``CONTACT_RATE_LIMITS``), then limited
(``CONTACT_RATE_LIMITS`` = ``LIMITS``, or ``BENCH_CONTACT_RATE_LIMITS``) when the settings know
it. Figures (section ``ratelimit``), per channel the stub saw:

- ``ratelimit.<channel>.max_per_s``: the most requests in any sliding 1-second window of the
  limited herd (baseline the configured limit, goal ``ratio <= 1.1``); without the setting, the
  unlimited herd's, no baseline, and the detail says the setting is missing;
- ``ratelimit.<channel>.mean_per_s``: requests over the seconds from the first to the last;
- ``ratelimit.<channel>.unlimited_max_per_s``: the unlimited herd's most in a second (what the
  limit holds back).
"""

from __future__ import annotations

import asyncio
import collections
import json
import os
import re
import tempfile
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from temporalio.api.enums.v1 import EventType
from temporalio.testing import WorkflowEnvironment

from bench.figures import Figure
from bench.herd import SharedDatabase
from bench.memory import RING, gather_limited, product_case
from bench.worker_process import WorkerProcess, ring_env
from collections_domain.case import search_attributes as sa
from collections_domain.client import start_case
from collections_domain.ops import codec
from collections_domain.ops.binaries import find_binary
from collections_domain.ops.settings import Settings
from collections_domain.rules import calendar
from collections_domain.rules.policy import DEFAULT_POLICY_PATH, PolicyRegistry

SECTION = "ratelimit"
#: Cases in the herd: quick and full.
SIZES = {True: 500, False: 5_000}
#: The limits the limited herd runs with (contacts per second), below what the unlimited herd
#: reaches on 2 cores so that they bind; ``BENCH_CONTACT_RATE_LIMITS`` overrides.
LIMITS = os.environ.get("BENCH_CONTACT_RATE_LIMITS", "sms=10,email=20")
#: Seconds without a request (after the instant) that end a herd.
QUIET_SECONDS = 10.0
#: Opening seconds allowed per case (and a fixed margin) when the instant is chosen.
OPEN_SECONDS_PER_CASE, OPEN_MARGIN_SECONDS = 0.06, 20.0


def rate_limits_supported() -> bool:
    """Whether this product's settings read ``CONTACT_RATE_LIMITS``."""
    return "contact_rate_limits" in Settings.model_fields


# -- the stub provider -----------------------------------------------------------------------------


class StubProvider:
    """An HTTP provider that answers every POST ``/<channel>`` with 200 and ``{"id": ...}`` and
    records its arrival (``time.time()``, seconds) by channel; ``url`` once ``start`` ran."""

    def __init__(self) -> None:
        self.arrivals: dict[str, list[float]] = collections.defaultdict(list)
        self._lock = threading.Lock()
        provider = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                arrived = time.time()
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                channel = self.path.strip("/").split("/")[0] or "?"
                with provider._lock:
                    provider.arrivals[channel].append(arrived)
                    number = sum(len(v) for v in provider.arrivals.values())
                body = json.dumps({"id": f"stub-{number}"}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                return None

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="bench-stub-provider", daemon=True)

    @property
    def url(self) -> str:
        """The base URL the product posts to."""
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> StubProvider:
        """Serve in a daemon thread."""
        self._thread.start()
        return self

    def total(self) -> int:
        """Requests received so far, every channel."""
        with self._lock:
            return sum(len(v) for v in self.arrivals.values())

    def snapshot(self) -> dict[str, list[float]]:
        """A copy of the arrival times by channel, each sorted."""
        with self._lock:
            return {channel: sorted(times) for channel, times in self.arrivals.items()}

    def stop(self) -> None:
        """Stop serving and close the socket."""
        self._server.shutdown()
        self._server.server_close()


def max_in_window(times: list[float], window: float = 1.0) -> int:
    """The most of the sorted ``times`` (seconds) inside any half-open window of ``window``
    seconds (windows starting at each arrival: the maximum over all windows)."""
    best, end = 0, 0
    for start, began in enumerate(times):
        while end < len(times) and times[end] - began < window:
            end += 1
        best = max(best, end - start)
    return best


def per_second(times: list[float]) -> list[int]:
    """Requests in each whole second from the first of the sorted ``times`` (a timeline)."""
    if not times:
        return []
    counts = [0] * (int(times[-1] - times[0]) + 1)
    for t in times:
        counts[int(t - times[0])] += 1
    return counts


def mean_rate(times: list[float]) -> float:
    """Requests per second from the first to the last of the sorted ``times`` (0 for fewer than 2)."""
    if len(times) < 2 or times[-1] <= times[0]:
        return 0.0
    return (len(times) - 1) / (times[-1] - times[0])


# -- the bench policy: a herd at a real instant --------------------------------------------------------


def zone_for(instant: datetime) -> str:
    """A fixed-offset IANA zone in which ``instant`` is 14:xx local (``Etc/GMT-<h>`` is UTC+h)."""
    offset = 14 - instant.astimezone(UTC).hour
    if offset < -12:
        offset += 24
    if offset > 14:
        offset -= 24
    return "Etc/GMT" if offset == 0 else f"Etc/GMT{'-' if offset > 0 else '+'}{abs(offset)}"


def write_bench_policy(folder: Path, opens_local: str) -> Path:
    """The packaged default policy under a new version whose contact window opens at
    ``opens_local`` (``HH:MM``), written to ``folder``; returns its path."""
    text = DEFAULT_POLICY_PATH.read_text(encoding="utf-8")
    text = re.sub(r'^version = ".*"$', f'version = "bench-ratelimit-{uuid.uuid4().hex[:10]}"', text, count=1,
                  flags=re.MULTILINE)
    text, replaced = re.subn(r'(\[contact_window\][^\[]*?)opens = "\d\d:\d\d"', rf'\g<1>opens = "{opens_local}"', text, count=1)
    if not replaced:
        raise RuntimeError("the default policy has no contact_window.opens to move")
    path = folder / "bench-policy.toml"
    path.write_text(text, encoding="utf-8")
    return path


def dispatch_times(histories: list[Any], task_queue: str, instant: datetime) -> dict[str, list[float]]:
    """Per rate-limited channel, when the server dispatched its contact activities to a worker
    (``ACTIVITY_TASK_STARTED`` times of activities scheduled on ``<task_queue>-contacts-<channel>``,
    seconds after ``instant``, sorted): the server's side of the limit, before the worker's."""
    prefix = f"{task_queue}-contacts-"
    found: dict[str, list[float]] = collections.defaultdict(list)
    for history in histories:
        queues: dict[int, str] = {}
        for event in history.events:
            if event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
                queue = event.activity_task_scheduled_event_attributes.task_queue.name
                if queue.startswith(prefix):
                    queues[event.event_id] = queue.removeprefix(prefix)
            elif event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED:
                channel = queues.get(event.activity_task_started_event_attributes.scheduled_event_id)
                if channel:
                    started = event.event_time.ToDatetime().replace(tzinfo=UTC)
                    found[channel].append((started - instant).total_seconds())
    return {channel: sorted(times) for channel, times in found.items()}


async def run_herd(cases: int, worker_count: int, limits: str | None) -> dict[str, Any]:
    """One herd of ``cases`` at a real instant on a fresh dev server (module docstring), with
    ``CONTACT_RATE_LIMITS=limits`` (``None``: unset). Returns ``arrivals`` (times by channel,
    seconds after the instant), ``early`` (requests before it), ``opened_s``, ``instant_wait_s``,
    ``herd_s`` (instant to the last request) and the database note."""
    now = datetime.now(UTC)
    lead = OPEN_MARGIN_SECONDS + cases * OPEN_SECONDS_PER_CASE / max(1, worker_count)
    instant = (now + timedelta(seconds=lead + 60)).replace(second=0, microsecond=0)
    tz = zone_for(instant)
    due = calendar.local_date(instant, tz) - timedelta(days=3)
    stub = StubProvider().start()
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=find_binary("temporal"), data_converter=codec.data_converter(RING),
        search_attributes=list(sa.ALL_KEYS), dev_server_log_level="error",
    )
    workers: list[WorkerProcess] = []
    database: SharedDatabase | None = None
    result: dict[str, Any] = {"cases": cases, "workers": worker_count, "limits": limits, "zone": tz,
                              "instant": instant.isoformat()}
    with tempfile.TemporaryDirectory(prefix="bench-ratelimit-") as name:
        folder = Path(name)
        try:
            policy_path = write_bench_policy(folder, instant.astimezone(calendar.zone(tz)).strftime("%H:%M"))
            policies = PolicyRegistry.from_settings(str(policy_path))
            database = SharedDatabase(folder)
            result["database"] = database.note
            task_queue = f"bench-ratelimit-{uuid.uuid4().hex[:6]}"
            env_extra = {**ring_env(RING), "DELIVERY_BACKEND": "http", "DELIVERY_HTTP_URL": stub.url,
                         "COLLECTIONS_POLICY": str(policy_path)}
            if limits:
                env_extra["CONTACT_RATE_LIMITS"] = limits
            address = env.client.service_client.config.target_host
            workers = [WorkerProcess(kind="product", task_queue=task_queue, address=address, database_url=database.url,
                                     env=env_extra, log_file=folder / f"worker-{i}.log") for i in range(worker_count)]
            await asyncio.gather(*(w.start() for w in workers))
            began = time.monotonic()
            opened = [product_case(i, due, tz=tz, prefix="rl") for i in range(cases)]
            await gather_limited(start_case(env.client, case, task_queue=task_queue, policies=policies) for case in opened)
            for worker in workers:
                await worker.quiet(window=1.0, settle=2)
            result["opened_s"] = time.monotonic() - began
            result["instant_wait_s"] = max(0.0, instant.timestamp() - time.time())
            result["opened_before_instant"] = result["instant_wait_s"] > 0
            while time.time() < instant.timestamp():
                await asyncio.sleep(0.2)
            last_total, last_change = stub.total(), time.monotonic()
            while True:
                await asyncio.sleep(0.5)
                total = stub.total()
                if total != last_total:
                    last_total, last_change = total, time.monotonic()
                elif total and time.monotonic() - last_change > QUIET_SECONDS:
                    break
                elif not total and time.monotonic() - last_change > 120:
                    raise TimeoutError("no delivery reached the stub provider in 120 s after the instant")
            if limits:
                histories = await gather_limited((env.client.get_workflow_handle(c.workflow_id).fetch_history()
                                                  for c in opened), limit=20)
                result["dispatched"] = dispatch_times(histories, task_queue, instant)
        finally:
            logs = [w.log_file.read_text(errors="replace")[-1500:] for w in workers if w.log_file and w.log_file.exists()]
            for worker in workers:
                worker.stop()
            await env.shutdown()
            stub.stop()
            if database is not None:
                database.drop()
    arrivals = stub.snapshot()
    at = instant.timestamp()
    result["early"] = sum(1 for times in arrivals.values() for t in times if t < at)
    result["arrivals"] = {channel: [t - at for t in times] for channel, times in arrivals.items()}
    result["herd_s"] = max((times[-1] for times in result["arrivals"].values() if times), default=0.0)
    result["worker_log_tail"] = [log for log in logs if "Traceback" in log or "ERROR" in log][:1]
    return result


async def measure(quick: bool) -> list[Figure]:
    """Section "ratelimit" (module docstring): herds of ``SIZES[quick]`` cases, unlimited and
    (when supported) limited by ``LIMITS``. Quick (500) took 160-260 s on 2 shared cores, much
    of it waiting for the instant's minute; full (5,000) about 15-20 minutes (estimated: the
    limited herd alone is 500 s at sms=10)."""
    cases = SIZES[quick]
    workers = max(1, os.cpu_count() or 1)
    supported = rate_limits_supported()
    unlimited = await run_herd(cases, workers, None)
    limited = await run_herd(cases, workers, LIMITS) if supported else None
    configured = {k.strip(): float(v) for k, v in (e.split("=") for e in LIMITS.split(",") if e.strip())}

    def about(run: dict[str, Any]) -> str:
        counts = ", ".join(f"{c} {len(t)}" for c, t in sorted(run["arrivals"].items()))
        return (f"N={run['cases']} cases due at one real instant ({run['zone']}, bench policy), W={run['workers']} worker "
                f"processes, dev server, {run['database']}; CONTACT_RATE_LIMITS={run['limits'] or '(unset)'}; "
                f"requests {counts}; {run['early']} before the instant; last request {run['herd_s']:.1f} s after it; "
                f"opening took {run['opened_s']:.0f} s"
                + ("" if run["opened_before_instant"] else " (NOT all open before the instant: the herd is spread)"))

    figures: list[Figure] = []
    for channel in sorted(set(unlimited["arrivals"]) | set((limited or {}).get("arrivals", {}))):
        free = unlimited["arrivals"].get(channel, [])
        free_max = max_in_window(free)
        if limited is not None:
            times = limited["arrivals"].get(channel, [])
            dispatched = limited.get("dispatched", {})
            limit = configured.get(channel)
            figures.append(Figure(SECTION, f"ratelimit.{channel}.max_per_s", float(max_in_window(times)), "requests/s",
                                  baseline=limit, baseline_name="CONTACT_RATE_LIMITS" if limit else None,
                                  goal="ratio <= 1.1" if limit else None,
                                  detail=(f"most requests in any sliding 1 s window; the server dispatched at most "
                                          f"{max_in_window(dispatched.get(channel, []))} of them in a second "
                                          f"(ACTIVITY_TASK_STARTED on the channel's contacts queue); {about(limited)}"
                                          + ("" if limit else f"; {channel} has no limit configured")),
                                  extra={"unlimited_max_per_s": free_max, "worker_errors": limited["worker_log_tail"],
                                         "server_dispatch_max_per_s": max_in_window(dispatched.get(channel, [])),
                                         "server_dispatch_mean_per_s": round(mean_rate(dispatched.get(channel, [])), 2),
                                         "per_second": per_second(times)}))
            figures.append(Figure(SECTION, f"ratelimit.{channel}.mean_per_s", round(mean_rate(times), 2), "requests/s",
                                  baseline=limit, baseline_name="CONTACT_RATE_LIMITS" if limit else None,
                                  detail=f"{len(times)} requests from the first to the last; limited herd"))
        else:
            figures.append(Figure(SECTION, f"ratelimit.{channel}.max_per_s", float(free_max), "requests/s",
                                  detail=("CONTACT_RATE_LIMITS is not supported by this product's settings "
                                          "(no contact_rate_limits in collections_domain/ops/settings.py): "
                                          f"the unlimited rates; {about(unlimited)}")))
            figures.append(Figure(SECTION, f"ratelimit.{channel}.mean_per_s", round(mean_rate(free), 2), "requests/s",
                                  detail="unlimited herd (the setting is missing)"))
        figures.append(Figure(SECTION, f"ratelimit.{channel}.unlimited_max_per_s", float(free_max), "requests/s",
                              detail=f"without CONTACT_RATE_LIMITS; mean {mean_rate(free):.1f}/s; {about(unlimited)}",
                              extra={"worker_errors": unlimited["worker_log_tail"]}))
    return figures


if __name__ == "__main__":
    import sys

    for figure in asyncio.run(measure("--full" not in sys.argv)):
        print(figure.as_dict())
