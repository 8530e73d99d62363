"""Benchmark section "herd": the 09:00 herd, N cases whose DPD-3 step falls due at one instant.

How N steps fall due at one instant: on Temporal's time-skipping test server (Java,
``WorkflowEnvironment.start_time_skipping``), N cases overdue since yesterday (DPD 1, Shanghai)
are opened and left asleep on their DPD-3 timer (09:00 local, two days away); then one
``skip_to`` moves the server's clock to that instant and the server fires every timer at once.
Once the skip has landed the clock is locked again and runs at wall-clock pace, so the
histories' event times after the instant are real seconds.

The workers are separate processes (``bench.worker_process``, the product's own ``build_worker``
with its default sticky cache of 1,000 workflows), W of them on one task queue: W =
``os.cpu_count()`` and W = 1; they share one database: a fresh PostgreSQL database when the
server of ``BENCH_POSTGRES_URL`` answers (default the local one at ``/tmp/pg-dev``), else one
SQLite file in WAL mode (the detail says which). The baseline is the naive ladder
(``bench.naive``) on one worker process, same server, same N.

What is measured, from the histories (the same method for product and baseline; the product's
``contact_attempts.created_at`` is wall-clock time while the server's clock is virtual, so the
history's times are the ones that line up with the due instant): per case, the step's activity
(the product's ``run_step_contacts``, the naive ladder's ``bench_naive_send_reminder``) -
``lag`` = its ``ACTIVITY_TASK_STARTED`` time - the due instant, ``done`` = its
``ACTIVITY_TASK_COMPLETED`` time - the due instant; and the timer's ``TIMER_FIRED`` time - the
instant (the server's share). Figures (section ``herd``):

- ``herd.finish_s``: the largest ``done`` (seconds; W = cpu count; baseline naive, goal
  ``ratio <= 4``), and ``herd.finish_s.one_worker`` (W = 1);
- ``herd.step_lag_p50_s``, ``herd.step_lag_p99_s``: lag percentiles (seconds; baseline naive);
- ``herd.lag_p99_over_p50``: their ratio (goal ``value <= 2``).

Each figure's ``extra`` holds what bounds the herd: per worker process its CPU seconds during the
herd (and by thread: the SDK core's Rust threads vs Python), workflow tasks, sticky-cache misses
(replays), activities, the test server's CPU, and the busiest functions of a sampling profile.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from datetime import time as wall_time
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool
from temporalio.api.enums.v1 import EventType
from temporalio.testing import WorkflowEnvironment

from bench import naive
from bench.figures import Figure
from bench.memory import (
    RING,
    TZ,
    gather_limited,
    naive_case,
    prepare_database,
    product_case,
)
from bench.worker_process import WorkerProcess, metric_sum, proc_cpu_seconds, ring_env
from collections_domain.client import start_case
from collections_domain.ops import codec
from collections_domain.ops.binaries import find_binary
from collections_domain.portfolio.simulation import register_search_attributes, skip_to
from collections_domain.rules import calendar

SECTION = "herd"
#: Cases in the herd: quick and full.
SIZES = {True: 500, False: 5_000}
#: The PostgreSQL server (a role that may CREATE DATABASE); SQLite when it does not answer.
POSTGRES_URL = os.environ.get("BENCH_POSTGRES_URL", "postgresql+psycopg://collections@/postgres?host=/tmp/pg-dev&port=55432")
#: The step's activity type, by worker kind.
STEP_ACTIVITY = {"product": "run_step_contacts", "naive": "bench_naive_send_reminder"}
#: Seconds without a single step finishing after which a herd is given up.
STALL_SECONDS = 300.0


# -- the shared database ---------------------------------------------------------------------------


class SharedDatabase:
    """A fresh database the worker processes share: PostgreSQL (a new database on the server of
    ``POSTGRES_URL``, migrated by ``make_engine``) when it answers, else one SQLite file (WAL)
    in ``folder``. ``url``, ``kind`` (``postgresql``/``sqlite``) and ``note`` (for details)."""

    def __init__(self, folder: Path):
        self._admin_url = None
        self.name: str | None = None
        try:
            admin = create_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT", poolclass=NullPool)
            with admin.connect() as connection:
                self.name = f"bench_herd_{uuid.uuid4().hex[:12]}"
                connection.execute(text(f'CREATE DATABASE "{self.name}"'))
            admin.dispose()
            self._admin_url = POSTGRES_URL
            self.url = make_url(POSTGRES_URL).set(database=self.name).render_as_string(hide_password=False)
            self.kind, self.note = "postgresql", "PostgreSQL (a fresh database)"
        except Exception as err:  # noqa: BLE001 - no server: the documented fallback
            self.url = f"sqlite:///{folder / 'herd.db'}"
            self.kind = "sqlite"
            self.note = f"SQLite file in WAL mode (PostgreSQL did not answer: {type(err).__name__})"
        prepare_database(self.url)

    def drop(self) -> None:
        """Drop the PostgreSQL database (nothing for SQLite: its folder goes)."""
        if self._admin_url is None:
            return
        admin = create_engine(self._admin_url, isolation_level="AUTOCOMMIT", poolclass=NullPool)
        try:
            with admin.connect() as connection:
                connection.execute(text(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)'))
        finally:
            admin.dispose()


# -- one herd --------------------------------------------------------------------------------------


def _child_pids(name: str) -> list[int]:
    """Processes started by this one whose command line mentions ``name``."""
    found = []
    me = str(os.getpid())
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            ppid = stat[stat.rindex(")") + 2:].split()[1]
            if ppid == me and name in (entry / "cmdline").read_bytes().decode(errors="replace"):
                found.append(int(entry.name))
        except (OSError, ValueError):
            continue
    return found


def _cpu_of(pids: list[int]) -> float:
    total = 0.0
    for pid in pids:
        try:
            total += proc_cpu_seconds(pid)
        except OSError:
            pass
    return total


def _default_cache_size() -> int:
    """``build_worker``'s default ``max_cached_workflows`` (what ``worker.py`` runs)."""
    import inspect

    from collections_domain.ops import wiring

    return inspect.signature(wiring.build_worker).parameters["max_cached_workflows"].default


def _database_cpu(name: str | None) -> float:
    """CPU seconds of the PostgreSQL backends serving database ``name`` (their process title
    names it); 0 for SQLite (``None``), whose work is inside the workers."""
    if not name:
        return 0.0
    total = 0.0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if name in (entry / "cmdline").read_bytes().decode(errors="replace"):
                total += proc_cpu_seconds(int(entry.name))
        except (OSError, ValueError):
            continue
    return total


_PG_COUNTERS = ("sessions", "xact_commit", "xact_rollback", "tup_returned", "tup_fetched", "tup_inserted",
                "tup_updated", "tup_deleted")


def _database_counters(url: str | None) -> dict[str, float]:
    """PostgreSQL's own counters of the database at ``url`` (``pg_stat_database``: sessions
    opened, transactions, rows); ``{}`` for SQLite (``None``)."""
    if not url:
        return {}
    engine = create_engine(url, poolclass=NullPool)
    try:
        with engine.connect() as connection:
            row = connection.execute(text(f"SELECT {', '.join(_PG_COUNTERS)} FROM pg_stat_database "
                                          "WHERE datname = current_database()")).one()
        return {name: float(value or 0) for name, value in zip(_PG_COUNTERS, row)}
    finally:
        engine.dispose()


def _machine_busy() -> tuple[float, float]:
    """``(busy, total)`` CPU seconds of the whole machine so far (``/proc/stat``, every core)."""
    fields = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = fields[3] + fields[4]
    return (sum(fields) - idle) / os.sysconf("SC_CLK_TCK"), sum(fields) / os.sysconf("SC_CLK_TCK")


def _counts(metrics: dict[str, float], step_activity: str) -> dict[str, float]:
    """The task counts of one worker's metrics that tell what it spent the herd on."""
    return {
        "workflow_tasks": metric_sum(metrics, "temporal_workflow_task_execution_latency_count"),
        "sticky_cache_miss": metric_sum(metrics, "temporal_sticky_cache_miss"),
        "sticky_cache_hit": metric_sum(metrics, "temporal_sticky_cache_hit"),
        "cache_forced_evictions": metric_sum(metrics, "temporal_sticky_cache_total_forced_eviction"),
        "activities": metric_sum(metrics, "temporal_activity_execution_latency_count"),
        "step_activities": metric_sum(metrics, "temporal_activity_execution_latency_count", activity_type=step_activity),
        "local_activities": metric_sum(metrics, "temporal_local_activity_execution_latency_count"),
        "workflow_task_execution_ms": metric_sum(metrics, "temporal_workflow_task_execution_latency_sum"),
    }


async def _steps_done(workers: list[WorkerProcess], step_activity: str) -> float:
    return sum(metric_sum(w.metrics(), "temporal_activity_execution_latency_count", activity_type=step_activity)
               for w in workers)


async def _wait_opened(workers: list[WorkerProcess], count: int, timeout: float) -> None:
    """Until the workers ran ``count`` workflow tasks (every case's first), then are idle."""
    deadline = time.monotonic() + timeout
    while sum(metric_sum(w.metrics(), "temporal_workflow_task_execution_latency_count") for w in workers) < count:
        if time.monotonic() > deadline:
            raise TimeoutError(f"{count} cases not opened within {timeout:.0f} s")
        await asyncio.sleep(0.5)
    for worker in workers:
        await worker.quiet(window=1.0, settle=2)


async def _wait_steps(workers: list[WorkerProcess], count: int, step_activity: str) -> None:
    """Until ``count`` step activities completed, giving up after ``STALL_SECONDS`` without one."""
    done, progress_at = 0.0, time.monotonic()
    while done < count:
        await asyncio.sleep(0.5)
        now_done = await _steps_done(workers, step_activity)
        if now_done > done:
            done, progress_at = now_done, time.monotonic()
        elif time.monotonic() - progress_at > STALL_SECONDS:
            raise TimeoutError(f"herd stalled: {done:.0f} of {count} steps done, none in {STALL_SECONDS:.0f} s")


def _event_time(event: Any) -> datetime:
    return event.event_time.ToDatetime().replace(tzinfo=UTC)


def step_times(events: list[Any], step_activity: str, instant: datetime) -> dict[str, float] | None:
    """``{"fired", "lag", "done"}`` (seconds after ``instant``) of a case's first timer fired
    at or after ``instant`` and the first ``step_activity`` scheduled after it; ``None`` when
    the history lacks them."""
    fired = scheduled = started = None
    for event in events:
        kind = event.event_type
        if fired is None:
            if kind == EventType.EVENT_TYPE_TIMER_FIRED and _event_time(event) >= instant - timedelta(seconds=1):
                fired = _event_time(event)
        elif scheduled is None:
            if (kind == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED
                    and event.activity_task_scheduled_event_attributes.activity_type.name == step_activity):
                scheduled = event.event_id
        elif kind == EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED:
            if event.activity_task_started_event_attributes.scheduled_event_id == scheduled:
                started = _event_time(event)
        elif (kind == EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED and started
              and event.activity_task_completed_event_attributes.scheduled_event_id == scheduled):
            return {"fired": (fired - instant).total_seconds(), "lag": (started - instant).total_seconds(),
                    "done": (_event_time(event) - instant).total_seconds()}
    return None


def percentile(values: list[float], share: float) -> float:
    """The ``share`` (0-1) percentile of ``values`` (nearest rank)."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(share * len(ordered) + 0.5) - 1))]


async def run_herd(kind: str, cases: int, worker_count: int, *, env_extra: dict[str, str] | None = None,
                   profile: bool = True) -> dict[str, Any]:
    """One herd of ``cases`` on a fresh time-skipping server with ``worker_count`` worker
    processes of ``kind`` (module docstring). Returns the per-case times (seconds after the
    instant: ``fired``, ``lag``, ``done`` lists), ``skip_s`` (the skip RPC's wall time),
    ``wall_s`` (wall seconds from the skip to the last step done), ``open_s``, the database
    note, per worker ``cpu_s``/``threads``/``counts`` during the herd, ``server_cpu_s`` and the
    merged sampling ``profile``."""
    step_activity = STEP_ACTIVITY[kind]
    env = await WorkflowEnvironment.start_time_skipping(
        test_server_existing_path=find_binary("temporal-test-server"), data_converter=codec.data_converter(RING))
    workers: list[WorkerProcess] = []
    database: SharedDatabase | None = None
    result: dict[str, Any] = {"kind": kind, "cases": cases, "workers": worker_count}
    with tempfile.TemporaryDirectory(prefix="bench-herd-") as name:
        folder = Path(name)
        try:
            await register_search_attributes(env.client)
            if kind == "product":
                database = SharedDatabase(folder)
                result["database"] = database.note
            task_queue = f"bench-herd-{kind}-{uuid.uuid4().hex[:6]}"
            address = env.client.service_client.config.target_host
            workers = [WorkerProcess(kind=kind, task_queue=task_queue, address=address,
                                     database_url=database.url if database else None,
                                     env={**ring_env(RING), **(env_extra or {})}, profile=profile,
                                     log_file=folder / f"worker-{i}.log")
                       for i in range(worker_count)]
            await asyncio.gather(*(w.start() for w in workers))
            result["cache_size"] = _default_cache_size() if kind == "product" else 1000  # the SDK's default
            server_pids = _child_pids("temporal-test-server")
            now = (await env.get_current_time()).astimezone(UTC)
            due = calendar.local_date(now, TZ) - timedelta(days=1)
            instant = calendar.local_instant(due + timedelta(days=3), wall_time(9), TZ)
            began = time.monotonic()
            if kind == "naive":
                naive_cases = [naive_case(i, due) for i in range(cases)]
                ids = [f"bench-{c.loan_id}" for c in naive_cases]
                await gather_limited(env.client.start_workflow(naive.NaiveLadderWorkflow.run, c, id=i, task_queue=task_queue)
                                     for c, i in zip(naive_cases, ids))
            else:
                product = [product_case(i, due, prefix="herd") for i in range(cases)]
                ids = [c.workflow_id for c in product]
                await gather_limited(start_case(env.client, c, task_queue=task_queue) for c in product)
            await _wait_opened(workers, cases, timeout=max(600.0, cases * 0.5))
            result["open_s"] = time.monotonic() - began
            before = [(w.cpu_seconds(), w.thread_cpu(), _counts(w.metrics(), step_activity)) for w in workers]
            server_before = _cpu_of(server_pids)
            database_name = database.name if database and database.kind == "postgresql" else None
            database_before = _database_cpu(database_name)
            machine_before = _machine_busy()
            counters_before = _database_counters(database.url if database_name else None)
            for worker in workers:
                worker.reset_profile()  # the profile covers the herd, not the opening
            skip_began = time.monotonic()
            await skip_to(env, instant)
            result["skip_s"] = time.monotonic() - skip_began
            await _wait_steps(workers, cases, step_activity)
            result["wall_s"] = time.monotonic() - skip_began
            machine_after = _machine_busy()
            for worker in workers:
                await worker.quiet(window=0.5, settle=2, longest=60)
            result["server_cpu_s"] = _cpu_of(server_pids) - server_before
            result["database_cpu_s"] = _database_cpu(database_name) - database_before
            await asyncio.sleep(0.6)  # the statistics collector's 500 ms flush
            counters = _database_counters(database.url if database_name else None)
            result["database_counters"] = {k: counters[k] - counters_before.get(k, 0.0) for k in counters}
            result["machine_busy"] = ((machine_after[0] - machine_before[0])
                                      / max(1e-9, machine_after[1] - machine_before[1]))
            per_worker = []
            for worker, (cpu, threads, counts) in zip(workers, before):
                now_threads = worker.thread_cpu()
                now_counts = _counts(worker.metrics(), step_activity)
                per_worker.append({
                    "cpu_s": round(worker.cpu_seconds() - cpu, 2),
                    "threads": {k: round(v - threads.get(k, 0.0), 2) for k, v in now_threads.items()
                                if v - threads.get(k, 0.0) >= 0.05},
                    "counts": {k: now_counts[k] - counts[k] for k in now_counts},
                })
            result["per_worker"] = per_worker
            profiles = [w.stop() for w in workers]
            result["profile"] = _merge_profiles([p for p in profiles if p])
            histories = await gather_limited((env.client.get_workflow_handle(i).fetch_history() for i in ids), limit=20)
            times = [step_times(list(h.events), step_activity, instant) for h in histories]
            missing = sum(1 for t in times if t is None)
            found = [t for t in times if t is not None]
            result["missing"] = missing
            for key in ("fired", "lag", "done"):
                result[key] = [t[key] for t in found]
        finally:
            for worker in workers:
                worker.stop()
            await env.shutdown()
            if database is not None:
                database.drop()
    return result


def _merge_profiles(profiles: list[dict[str, Any]], top: int = 12) -> dict[str, Any]:
    merged: dict[str, Any] = {"samples": 0, "cpu_by_thread": {}, "busy_by_thread": {}, "self": {}, "inclusive": {},
                              "project": {}}
    for profile in profiles:
        merged["samples"] += profile["samples"]
        for key in ("busy_by_thread", "cpu_by_thread"):
            for name, count in profile[key].items():
                merged[key][name] = merged[key].get(name, 0) + count
        for key in ("self", "inclusive", "project"):
            for name, count in profile.get(key, []):
                merged[key][name] = merged[key].get(name, 0) + count
    # Thread bootstraps and pool loops are in every activity's stack: leave the stdlib out.
    merged["inclusive"] = {k: v for k, v in merged["inclusive"].items() if not k.startswith(".")}
    for key in ("self", "inclusive", "project"):
        merged[key] = sorted(merged[key].items(), key=lambda item: -item[1])[:top]
    return merged


def _per_step(run: dict[str, Any]) -> str:
    counters, cases = run["database_counters"], max(run["cases"], 1)
    return (f"per step: {counters.get('xact_commit', 0) / cases:.1f} transactions, "
            f"{counters.get('sessions', 0) / cases:.2f} new connections, "
            f"{counters.get('tup_inserted', 0) / cases:.1f} rows inserted, {counters.get('tup_updated', 0) / cases:.1f} updated, "
            f"{counters.get('tup_fetched', 0) / cases:.0f} fetched")


#: What each Python thread kind of a worker does (``Sampler.cpu_by_thread``).
_THREAD_ROLES = {"MainThread": "event loop", "ThreadPoolExecutor": "activities", "temporal_workflow_": "workflow tasks",
                 "other": "SDK core (Rust)", "bench-sampler": "profiler"}


def bound_text(run: dict[str, Any]) -> str:
    """One line on what bounded ``run``: worker CPU against wall time, replays, server CPU."""
    wall = run["wall_s"]
    cpu = sum(w["cpu_s"] for w in run["per_worker"])
    tasks = sum(w["counts"]["workflow_tasks"] for w in run["per_worker"])
    misses = sum(w["counts"]["sticky_cache_miss"] for w in run["per_worker"])
    by_thread = run["profile"].get("cpu_by_thread", {})
    split = ", ".join(f"{_THREAD_ROLES.get(kind, kind)} {seconds:.1f}" for kind, seconds in
                      sorted(by_thread.items(), key=lambda item: -item[1]) if seconds >= 0.05)
    return (f"{run['workers']} worker process(es) used {cpu:.1f} CPU s in {wall:.1f} s wall "
            f"({cpu / wall / run['workers']:.0%} of a core each; CPU s by thread: {split}); "
            f"{tasks:.0f} workflow tasks ({tasks / max(run['cases'], 1):.1f} a step, "
            f"{cpu * 1000 / max(tasks, 1):.1f} ms CPU each), {misses:.0f} sticky-cache misses (replays); "
            f"test server CPU {run['server_cpu_s']:.1f} s, PostgreSQL backends {run['database_cpu_s']:.1f} s"
            + (f" ({_per_step(run)})" if run.get("database_counters") else "") + "; "
            f"the machine's cores were {run['machine_busy']:.0%} busy (others' work included); the timers fired within "
            f"{max(run['fired']) if run['fired'] else float('nan'):.1f} s")


async def measure(quick: bool) -> list[Figure]:
    """Section "herd" (module docstring): three herds of ``SIZES[quick]`` cases (product with
    ``os.cpu_count()`` worker processes, product with one, naive with one). Quick (500) took
    75-90 s on 2 shared cores; full (5,000) about 15-20 minutes (estimated: 1,500 cases on one
    worker took 56 s, with 65 % of the steps replayed after cache evictions)."""
    cases = SIZES[quick]
    many = max(1, os.cpu_count() or 1)
    baseline = await run_herd("naive", cases, 1)
    main = await run_herd("product", cases, many)
    one = main if many == 1 else await run_herd("product", cases, 1)
    base_p50, base_p99 = percentile(baseline["lag"], 0.5), percentile(baseline["lag"], 0.99)

    def detail(run: dict[str, Any]) -> str:
        return (f"N={run['cases']}, W={run['workers']} worker process(es) on one task queue, cache size "
                f"{run['cache_size']} a worker, {run.get('database', 'no database')}; time-skipping server, one skip "
                f"to the DPD-3 instant (skip RPC {run['skip_s']:.1f} s); times from the histories "
                f"(ACTIVITY_TASK_STARTED/COMPLETED of {STEP_ACTIVITY[run['kind']]} - the due instant); "
                f"{run['missing']} histories without the step; opening took {run['open_s']:.0f} s. Bound: {bound_text(run)}")

    def extra(run: dict[str, Any]) -> dict[str, Any]:
        return {"per_worker": run["per_worker"], "server_cpu_s": round(run["server_cpu_s"], 1),
                "database_cpu_s": round(run["database_cpu_s"], 1), "database_counters": run.get("database_counters", {}), "machine_busy": round(run["machine_busy"], 3),
                "wall_s": round(run["wall_s"], 1), "fired_p99_s": round(percentile(run["fired"], 0.99), 2),
                "profile": run["profile"], "open_s": round(run["open_s"], 1)}

    naive_detail = f"naive ladder, N={cases}, W=1: finish {max(baseline['done']):.1f} s; {bound_text(baseline)}"
    p50, p99 = percentile(main["lag"], 0.5), percentile(main["lag"], 0.99)
    figures = [
        Figure(SECTION, "herd.finish_s", round(max(main["done"]), 2), "s", baseline=round(max(baseline["done"]), 2),
               baseline_name="naive ladder, 1 worker process", goal="ratio <= 4", detail=detail(main),
               extra={**extra(main), "baseline": naive_detail}),
        Figure(SECTION, "herd.finish_s.one_worker", round(max(one["done"]), 2), "s",
               baseline=round(max(baseline["done"]), 2), baseline_name="naive ladder, 1 worker process",
               detail=detail(one), extra=extra(one)),
        Figure(SECTION, "herd.step_lag_p50_s", round(p50, 2), "s", baseline=round(base_p50, 2),
               baseline_name="naive ladder", detail=detail(main)),
        Figure(SECTION, "herd.step_lag_p99_s", round(p99, 2), "s", baseline=round(base_p99, 2),
               baseline_name="naive ladder", detail=detail(main)),
        Figure(SECTION, "herd.lag_p99_over_p50", round(p99 / p50, 2) if p50 > 0 else float("inf"), "x",
               baseline=round(base_p99 / base_p50, 2) if base_p50 > 0 else None, baseline_name="naive ladder",
               goal="value <= 2", detail=f"p99 {p99:.2f} s over p50 {p50:.2f} s of the step lag; W={main['workers']}"),
    ]
    def cpu_ms_per_step(run: dict[str, Any]) -> float:
        return round(sum(w["cpu_s"] for w in run["per_worker"]) * 1000 / max(run["cases"], 1), 1)

    figures.append(Figure(SECTION, "herd.cpu_ms_per_step", cpu_ms_per_step(main), "ms",
                          baseline=cpu_ms_per_step(baseline), baseline_name="naive ladder",
                          detail="worker processes' CPU during the herd, over the steps (docs/SIZING.md: steps a second per core)"))
    if one is not main:
        figures.append(Figure(SECTION, "herd.step_lag_p99_s.one_worker", round(percentile(one["lag"], 0.99), 2), "s",
                              baseline=round(base_p99, 2), baseline_name="naive ladder", detail=detail(one)))
    return figures


if __name__ == "__main__":
    import sys

    for figure in asyncio.run(measure("--full" not in sys.argv)):
        print(figure.as_dict())
