"""Benchmark section "memory": a worker's resident memory, empty and per cached sleeping case.

On the real dev server (``WorkflowEnvironment.start_local``, in memory, the project's search
attributes and payload codec), each worker runs in a child process (``bench.worker_process``) so
that this process's own memory does not count; its RSS is ``VmRSS`` of ``/proc/<pid>/status``.
Per worker, cases are opened in batches up to each count of ``COUNTS`` (cumulative: 0, then
1,000, then 10,000; quick 0, 200, 1,000). Every case is overdue since yesterday (DPD 1), so after
its first workflow task it sleeps on its DPD-3 timer, days away, and stays in the worker's sticky
cache (``max_cached_workflows`` above the largest count). The RSS at a count is read once the
worker's ``temporal_sticky_cache_size`` reached the count and the worker was idle for
``IDLE_SECONDS`` (under 3 % of a core): it includes whatever garbage the collector has not yet
freed, as a production worker would, and does not depend on forcing a collection.

Workers: the product's (``wiring.build_worker``, as in production: its per-loan workflows are
``sandboxed=False``), the naive ladder's (``bench.naive``, the baseline, in the sandbox like any
default workflow) and the naive ladder's with ``UnsandboxedWorkflowRunner`` (what the sandbox
costs it). Figures (``Figure``, section ``memory``):

- ``rss.empty_worker``: MB before any case (goal ``value <= 120``; baseline the naive worker's);
- ``rss.per_cached_case``: KB per cached case, the least-squares slope over the counts (goal
  ``value <= 100``; baseline the naive ladder's slope);
- ``rss.per_cached_case.naive_unsandboxed``: the naive ladder's slope without the sandbox, no
  goal (baseline the naive ladder's in the sandbox);
- ``rss.at_<count>``: MB at each count (baseline the naive worker's at the same count).
"""

from __future__ import annotations

import asyncio
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlmodel import Session
from temporalio.testing import WorkflowEnvironment

from bench import naive
from bench.figures import Figure
from bench.worker_process import WorkerProcess, metric_sum, ring_env
from collections_domain.case import search_attributes as sa
from collections_domain.case.contract import CaseInput
from collections_domain.client import start_case
from collections_domain.ops import codec
from collections_domain.ops.binaries import find_binary
from collections_domain.rules import calendar
from collections_domain.store.db import make_engine
from collections_domain.store.models import Borrower

SECTION = "memory"
#: Cumulative case counts at which the RSS is read: quick and full.
COUNTS = {True: (0, 200, 1_000), False: (0, 1_000, 10_000)}
#: Seconds a worker must stay idle before its RSS is read.
IDLE_SECONDS = 3
TZ = "Asia/Shanghai"
BORROWER_ID = "bench-borrower"
#: An in-memory server lives only for this run: a payload key of its own, kept nowhere.
RING = codec.KeyRing.generate()


def prepare_database(url: str) -> None:
    """Create the product's tables at ``url`` and the bench borrower (placeholder details only)."""
    engine = make_engine(url)
    try:
        with Session(engine) as db:
            db.merge(Borrower(id=BORROWER_ID, full_name="Bench", phone="+8613800000000",
                              email="bench@example.invalid", postal_address="x"))
            db.commit()
    finally:
        engine.dispose()


def product_case(index: int, due, tz: str = TZ, prefix: str = "mem") -> CaseInput:
    """A product case for a new loan id: 3,000.00 CNY (plus ``index`` minor units) overdue since
    local ``due`` in ``tz``, in the portfolio that accrues nothing."""
    return CaseInput(portfolio="no-accrual", loan_id=f"{prefix}-{uuid.uuid4().hex[:8]}-{index}", borrower_id=BORROWER_ID,
                     principal_due_minor=300_000 + index, oldest_due_date=due, timezone=tz)


def naive_case(index: int, due) -> naive.NaiveCase:
    """A naive-ladder case of the same amount overdue since ``due`` (Shanghai's UTC+8)."""
    return naive.NaiveCase(loan_id=f"naive-{uuid.uuid4().hex[:8]}-{index}", due_date=due.isoformat(),
                           amount_due_minor=300_000 + index)


async def gather_limited(coroutines, limit: int = 50) -> list[Any]:
    """``asyncio.gather`` with at most ``limit`` of ``coroutines`` running at once."""
    gate = asyncio.Semaphore(limit)

    async def run(coroutine):
        async with gate:
            return await coroutine

    return await asyncio.gather(*(run(c) for c in coroutines))


async def start_cases(client, kind: str, task_queue: str, first: int, count: int, due) -> None:
    """Start ``count`` cases of ``kind`` (``product``/``naive``), numbered from ``first``, on
    ``task_queue``, 50 starts in flight."""
    if kind == "naive":
        coroutines = (client.start_workflow(naive.NaiveLadderWorkflow.run, case, id=f"bench-{case.loan_id}",
                                            task_queue=task_queue)
                      for case in (naive_case(i, due) for i in range(first, first + count)))
    else:
        coroutines = (start_case(client, product_case(i, due), task_queue=task_queue)
                      for i in range(first, first + count))
    await gather_limited(coroutines)


async def wait_cached(worker: WorkerProcess, count: int, timeout: float = 1800.0) -> None:
    """Wait until ``worker``'s sticky cache holds ``count`` workflows, then until it is idle.

    Raises:
        TimeoutError: not within ``timeout`` seconds.
    """
    deadline = time.monotonic() + timeout
    while metric_sum(worker.metrics(), "temporal_sticky_cache_size") < count:
        if time.monotonic() > deadline:
            raise TimeoutError(f"{worker.kind}: {count} cases not cached within {timeout:.0f} s")
        await asyncio.sleep(0.5)
    await worker.quiet(window=1.0, settle=IDLE_SECONDS)


async def rss_curve(env: WorkflowEnvironment, kind: str, counts: tuple[int, ...], database_url: str, folder: Path,
                    *, unsandboxed: bool = False) -> dict[str, Any]:
    """One worker of ``kind`` in a child process: ``{"points": [(cases, rss_kb)], "seconds",
    "cpu_seconds"}`` with the RSS read at each cumulative count (module docstring)."""
    label = f"{kind}{'-unsandboxed' if unsandboxed else ''}"
    task_queue = f"bench-memory-{label}-{uuid.uuid4().hex[:6]}"
    worker = WorkerProcess(kind=kind, task_queue=task_queue, address=env.client.service_client.config.target_host,
                           database_url=database_url, env=ring_env(RING), max_cached_workflows=max(counts) + 100,
                           unsandboxed=unsandboxed, log_file=folder / f"{label}.log")
    began = time.monotonic()
    await worker.start()
    points: list[tuple[int, int]] = []
    try:
        due = calendar.local_date(datetime.now(UTC), TZ) - timedelta(days=1)
        opened = 0
        for count in counts:
            if count > opened:
                await start_cases(env.client, kind, task_queue, opened, count - opened, due)
                opened = count
            await wait_cached(worker, count)
            points.append((count, worker.rss_kb()))
        cpu = worker.cpu_seconds()
    finally:
        worker.stop()
    return {"points": points, "seconds": time.monotonic() - began, "cpu_seconds": cpu}


def slope_kb(points: list[tuple[int, int]]) -> float:
    """Least-squares slope of RSS (KB) over cases: KB per case."""
    xs = [float(x) for x, _ in points]
    ys = [float(y) for _, y in points]
    mean_x, mean_y = sum(xs) / len(xs), sum(ys) / len(ys)
    spread = sum((x - mean_x) ** 2 for x in xs)
    return sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys)) / spread if spread else 0.0


def _points_text(points: list[tuple[int, int]]) -> str:
    return ", ".join(f"{count}: {kb / 1024:.1f} MB" for count, kb in points)


async def measure(quick: bool) -> list[Figure]:
    """Section "memory" (module docstring); quick: counts 0, 200 and 1,000 (100-130 s measured on
    2 shared cores), full: 0, 1,000 and 10,000 (about 20-25 minutes, estimated)."""
    counts = COUNTS[quick]
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=find_binary("temporal"),
        data_converter=codec.data_converter(RING),
        search_attributes=list(sa.ALL_KEYS),
        dev_server_log_level="error",
    )
    try:
        with tempfile.TemporaryDirectory(prefix="bench-memory-") as name:
            folder = Path(name)
            database_url = f"sqlite:///{folder / 'bench.db'}"
            prepare_database(database_url)
            product = await rss_curve(env, "product", counts, database_url, folder)
            baseline = await rss_curve(env, "naive", counts, database_url, folder)
            # The product's per-loan workflows are sandboxed=False (issue 14); the naive ladder runs
            # in the sandbox like any default workflow, and once without it for comparison.
            unsandboxed = await rss_curve(env, "naive", counts, database_url, folder, unsandboxed=True)
    finally:
        await env.shutdown()
    slopes = {"product": slope_kb(product["points"]), "naive": slope_kb(baseline["points"]),
              "unsandboxed": slope_kb(unsandboxed["points"])}
    sizes = (f"counts {', '.join(map(str, counts))} (cumulative), max_cached_workflows {max(counts) + 100}, "
             f"dev server in memory, SQLite, each worker in its own process, RSS after {IDLE_SECONDS} s idle")
    naive_empty = baseline["points"][0][1] / 1024
    figures = [
        Figure(SECTION, "rss.empty_worker", round(product["points"][0][1] / 1024, 1), "MB",
               baseline=round(naive_empty, 1), baseline_name="naive ladder worker", goal="value <= 120",
               detail=f"the product's worker (build_worker) before any case; {sizes}"),
        Figure(SECTION, "rss.per_cached_case", round(slopes["product"], 1), "KB",
               baseline=round(slopes["naive"], 1), baseline_name="naive ladder", goal="value <= 100",
               detail=(f"least-squares slope of RSS over cached sleeping cases; product {_points_text(product['points'])}; "
                       f"naive {_points_text(baseline['points'])}; {sizes}"),
               extra={"product_points_kb": product["points"], "naive_points_kb": baseline["points"],
                      "seconds": {"product": round(product["seconds"], 1), "naive": round(baseline["seconds"], 1),
                                  "unsandboxed": round(unsandboxed["seconds"], 1)},
                      "worker_cpu_seconds": {"product": product["cpu_seconds"], "naive": baseline["cpu_seconds"],
                                             "unsandboxed": unsandboxed["cpu_seconds"]}}),
        Figure(SECTION, "rss.per_cached_case.naive_unsandboxed", round(slopes["unsandboxed"], 1), "KB",
               baseline=round(slopes["naive"], 1), baseline_name="naive ladder in the sandbox",
               detail=(f"the naive ladder with UnsandboxedWorkflowRunner: {_points_text(unsandboxed['points'])}; "
                       f"the sandbox costs it {slopes['naive'] - slopes['unsandboxed']:.1f} KB a case; "
                       f"empty worker {unsandboxed['points'][0][1] / 1024:.1f} MB"),
               extra={"points_kb": unsandboxed["points"], "product_slope_kb": round(slopes["product"], 1)}),
    ]
    for (count, kb), (_, naive_kb) in zip(product["points"], baseline["points"]):
        figures.append(Figure(SECTION, f"rss.at_{count}", round(kb / 1024, 1), "MB", baseline=round(naive_kb / 1024, 1),
                              baseline_name="naive ladder worker",
                              detail=f"{count} cached sleeping cases"))
    return figures


if __name__ == "__main__":
    import sys

    for figure in asyncio.run(measure("--full" not in sys.argv)):
        print(figure.as_dict())
