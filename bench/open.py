"""Benchmark section "open": how fast the product opens cases, against bare workflows.

On the real dev server (``WorkflowEnvironment.start_local``, in memory), one worker in this
process, rounds alternate a batch of bare single-activity workflows (``bench/bare.py``, each
started and awaited) with a batch of collections cases (``client.start_case``; a case is open
once its ``collection_cases`` row is written, the end of its first workflow task), the order
swapped every round so that neither always runs on the fuller server. Figures:

- ``case_open_ratio``: cases/s over bare workflows/s (issue 14: ``ratio >= 0.95``);
- ``case_open_cpu_ms``: this process's CPU (``time.process_time``: worker, client and SQLite
  together) per case opened, next to the same per bare workflow.

The helpers here (``bench_activities``, ``bench_case``, ``RING``) are the other sections' setup too.
"""

from __future__ import annotations

import asyncio
import tempfile
import time as wallclock
import uuid
from collections.abc import Awaitable, Iterable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlmodel import Session, func, select
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from bench.bare import BareWorkflow, noop
from bench.figures import Figure
from collections_domain.case import search_attributes as sa
from collections_domain.case.contract import CaseInput
from collections_domain.client import start_case
from collections_domain.ops import codec
from collections_domain.ops.binaries import find_binary
from collections_domain.ops.settings import Settings
from collections_domain.ops.wiring import build_activities, build_worker
from collections_domain.rules import calendar
from collections_domain.store.models import Borrower, CollectionCase

SECTION = "open"
#: An in-memory server lives only for this run: a payload key of its own, kept nowhere.
RING = codec.KeyRing.generate()
#: The bench's borrower zone (the cases' and the naive ladder's).
TZ = "Asia/Shanghai"
BORROWER_ID = "bench-borrower"
#: (cases per batch, rounds): quick and full.
SIZES = {True: (150, 2), False: (500, 3)}
#: Uncounted workflows of each kind before the first round.
WARM_UP = 5


def bench_activities(folder: Path, task_queue: str):
    """``(settings, activities)`` on a fresh SQLite file in ``folder`` for a worker on
    ``task_queue``, with the bench borrower (ids and placeholder contact details only)."""
    settings = Settings(temporal_task_queue=task_queue, database_url=f"sqlite:///{folder / 'bench.db'}")
    activities = build_activities(settings)
    with Session(activities.engine) as db:
        db.merge(Borrower(id=BORROWER_ID, full_name="Bench", phone="+0", email="b@example.invalid", postal_address="x"))
        db.commit()
    return settings, activities


def bench_case(index: int, due: date, amount_minor: int = 300_000) -> CaseInput:
    """A case for a new loan id: ``amount_minor`` (CNY minor units, plus ``index``) overdue since
    local ``due`` in Shanghai, in the portfolio that accrues nothing (amounts stay round)."""
    return CaseInput(
        portfolio="no-accrual",
        loan_id=f"bench-{uuid.uuid4().hex[:8]}-{index}",
        borrower_id=BORROWER_ID,
        principal_due_minor=amount_minor + index,
        oldest_due_date=due,
        timezone=TZ,
    )


async def gather_limited(coroutines: Iterable[Awaitable[Any]], limit: int = 50) -> list[Any]:
    """``asyncio.gather`` with at most ``limit`` of ``coroutines`` running at once."""
    gate = asyncio.Semaphore(limit)

    async def run(coroutine):
        async with gate:
            return await coroutine

    return await asyncio.gather(*(run(c) for c in coroutines))


async def cases_opened(engine, count: int, timeout: float = 300.0) -> None:
    """Wait until ``count`` case rows exist in ``engine``'s database (polled every 50 ms)."""
    deadline = wallclock.monotonic() + timeout
    while True:
        with Session(engine) as db:
            if db.exec(select(func.count()).select_from(CollectionCase)).one() >= count:
                return
        if wallclock.monotonic() > deadline:
            raise TimeoutError(f"{count} cases not opened within {timeout:.0f} s")
        await asyncio.sleep(0.05)


async def _quiet(window: float = 0.1, busy: float = 0.05, longest: float = 5.0) -> None:
    """Wait until this process used under ``busy`` of a core over ``window`` seconds (the work a
    batch started is done), at most ``longest`` seconds."""
    deadline = wallclock.monotonic() + longest
    while wallclock.monotonic() < deadline:
        cpu = wallclock.process_time()
        await asyncio.sleep(window)
        if wallclock.process_time() - cpu < busy * window:
            return


async def _batch(work: Awaitable[None]) -> tuple[float, float]:
    """Run ``work``; ``(wall seconds until it returned, CPU seconds until the process is quiet)``."""
    await _quiet()
    cpu, began = wallclock.process_time(), wallclock.perf_counter()
    await work
    wall = wallclock.perf_counter() - began
    await _quiet()
    return wall, wallclock.process_time() - cpu


async def open_rates(cases: int, rounds: int) -> dict[str, dict[str, float]]:
    """Per kind (``bare``, ``case``): ``{"count", "seconds", "cpu_seconds"}`` over ``rounds``
    alternating batches of ``cases`` each, on a fresh in-memory dev server."""
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=find_binary("temporal"),
        data_converter=codec.data_converter(RING),
        search_attributes=list(sa.ALL_KEYS),
        dev_server_log_level="error",
    )
    totals = {kind: {"count": 0.0, "seconds": 0.0, "cpu_seconds": 0.0} for kind in ("bare", "case")}
    try:
        with tempfile.TemporaryDirectory() as folder:
            settings, activities = bench_activities(Path(folder), "bench-cases")
            bare_worker = Worker(
                env.client, task_queue="bench-bare", workflows=[BareWorkflow], activities=[noop],
                activity_executor=ThreadPoolExecutor(32), max_concurrent_activities=32,
            )
            opened = 0

            async def bare(count: int) -> None:
                handles = await gather_limited(
                    env.client.start_workflow(BareWorkflow.run, i, id=f"bare-{uuid.uuid4().hex}", task_queue="bench-bare")
                    for i in range(count)
                )
                await gather_limited(h.result() for h in handles)

            async def case(count: int) -> None:
                nonlocal opened
                await gather_limited(start_case(env.client, bench_case(i, due), task_queue="bench-cases")
                                     for i in range(count))
                opened += count
                await cases_opened(activities.engine, opened)

            async with build_worker(env.client, settings, activities), bare_worker:
                due = calendar.local_date(datetime.now(UTC), TZ) - timedelta(days=1)
                # A few of each first, uncounted: the first case loads and caches what later ones reuse.
                await bare(WARM_UP)
                await case(WARM_UP)
                for round_ in range(rounds):
                    for kind in ("bare", "case") if round_ % 2 == 0 else ("case", "bare"):
                        wall, cpu = await _batch(bare(cases) if kind == "bare" else case(cases))
                        totals[kind]["count"] += cases
                        totals[kind]["seconds"] += wall
                        totals[kind]["cpu_seconds"] += cpu
    finally:
        await env.shutdown()
    return totals


def open_figures(totals: dict[str, dict[str, float]], detail: str = "") -> list[Figure]:
    """The section's figures from ``open_rates``' totals."""
    bare, case = totals["bare"], totals["case"]
    return [
        Figure(SECTION, "case_open_ratio", round(case["count"] / case["seconds"], 2), "cases/s",
               round(bare["count"] / bare["seconds"], 2), "bare single-activity workflows/s", goal="ratio >= 0.95",
               detail=detail, extra={"bare": bare, "case": case}),
        Figure(SECTION, "case_open_cpu_ms", round(1000 * case["cpu_seconds"] / case["count"], 2), "ms",
               round(1000 * bare["cpu_seconds"] / bare["count"], 2), "bare workflow",
               detail="this process's CPU (worker, client, SQLite) per case opened, counted until the process is quiet"),
    ]


async def measure(quick: bool) -> list[Figure]:
    """The section's figures (module docstring): quick 150 cases x 2 rounds, full 500 x 3."""
    cases, rounds = SIZES[quick]
    totals = await open_rates(cases, rounds)
    return open_figures(totals, f"{cases} x {rounds} rounds, alternating, one worker in this process, dev server in memory")
