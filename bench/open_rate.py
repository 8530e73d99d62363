"""Benchmark: collections cases opened per second on the real dev server, as a ratio to bare
single-activity workflows started by the same script in the same run, for the case core (the
workflow today) and for the engine before it moved out of the sandbox (``bench.case_before_core``);
and history events per case for the no-payment ladder (time-skipping server).

    python -m bench.open_rate --cases 500 --rounds 2

Prints figures only: these machines are noisy, so there is no pass/fail on time. The ratio is
the number to watch: it compares against a baseline measured seconds apart on the same server.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time as wallclock
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, time, timedelta
from pathlib import Path

from sqlmodel import Session, func, select
from collections_domain.ops import codec
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from bench.bare import BareWorkflow, noop
from bench.case_before_core import CaseBeforeTheCore
from temporalio.common import WorkflowIDConflictPolicy
from collections_domain.rules import calendar
from collections_domain.case import search_attributes as sa
from collections_domain.ops.binaries import find_binary
from collections_domain.case.contract import CaseInput
from collections_domain.client import start_case
from collections_domain.store.models import Borrower, CollectionCase
from collections_domain.ops.settings import Settings
from collections_domain.portfolio.simulation import register_search_attributes as _register_search_attributes
from collections_domain.portfolio.simulation import skip_to
from collections_domain.ops.wiring import activity_list, build_activities, build_worker

#: An in-memory server lives only for this run: a key of its own, kept nowhere.
RING = codec.KeyRing.generate()


def _bench_activities(folder: Path, task_queue: str):
    """Settings and activities on a fresh SQLite file in ``folder``, with the bench borrower."""
    settings = Settings(temporal_task_queue=task_queue, database_url=f"sqlite:///{folder / 'bench.db'}")
    activities = build_activities(settings)
    with Session(activities.engine) as db:
        db.merge(Borrower(id="bench-borrower", full_name="Bench", phone="+0", email="b@example.invalid", postal_address="x"))
        db.commit()
    return settings, activities


def _case(index: int, due) -> CaseInput:
    return CaseInput(
        portfolio="no-accrual",
        loan_id=f"bench-{uuid.uuid4().hex[:8]}-{index}",
        borrower_id="bench-borrower",
        principal_due_minor=300_000 + index,
        oldest_due_date=due,
        timezone="Asia/Shanghai",
    )


async def _gather_limited(coroutines, limit: int = 50):
    gate = asyncio.Semaphore(limit)

    async def run(coroutine):
        async with gate:
            return await coroutine

    return await asyncio.gather(*(run(c) for c in coroutines))


async def _opened(activities, count: int) -> None:
    """Wait until ``count`` case rows were written (a case is open once its row is)."""
    while True:
        with Session(activities.engine) as db:
            if db.exec(select(func.count()).select_from(CollectionCase)).one() >= count:
                return
        await asyncio.sleep(0.05)


async def _start_before(client, case: CaseInput, task_queue: str):
    return await client.start_workflow(CaseBeforeTheCore.run, case, id=case.workflow_id, task_queue=task_queue,
                                       id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING)


async def _timed(coroutine) -> float:
    began = wallclock.perf_counter()
    await coroutine
    return wallclock.perf_counter() - began


async def open_rate(cases: int, rounds: int = 2) -> None:
    """Per round: bare workflows, then cases on the engine before the core and on the core, the
    two in alternating order (a later batch runs on a fuller database); rates over all rounds."""
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=find_binary("temporal"),
        data_converter=codec.data_converter(RING),
        search_attributes=list(sa.ALL_KEYS),
        dev_server_log_level="error",
    )
    seconds = {"bare": 0.0, "before": 0.0, "core": 0.0}
    try:
        with tempfile.TemporaryDirectory() as folder:
            settings, activities = _bench_activities(Path(folder), "bench-cases")
            bare_worker = Worker(
                env.client, task_queue="bench-bare", workflows=[BareWorkflow], activities=[noop],
                activity_executor=ThreadPoolExecutor(32), max_concurrent_activities=32,
            )
            before_worker = Worker(
                env.client, task_queue="bench-before", workflows=[CaseBeforeTheCore], activities=activity_list(activities),
                activity_executor=ThreadPoolExecutor(32), max_concurrent_activities=32, max_concurrent_local_activities=32,
            )
            opened = 0

            async def bare() -> None:
                handles = await _gather_limited(
                    env.client.start_workflow(BareWorkflow.run, i, id=f"bare-{uuid.uuid4().hex}", task_queue="bench-bare")
                    for i in range(cases)
                )
                await _gather_limited(h.result() for h in handles)

            async def before() -> None:
                await _gather_limited(_start_before(env.client, _case(i, due), "bench-before") for i in range(cases))
                await _opened(activities, opened + cases)

            async def core() -> None:
                await _gather_limited(start_case(env.client, _case(i, due), task_queue="bench-cases") for i in range(cases))
                await _opened(activities, opened + cases)

            async with build_worker(env.client, settings, activities), bare_worker, before_worker:
                due = calendar.local_date(datetime.now(UTC), "Asia/Shanghai") - timedelta(days=1)
                for round_ in range(rounds):
                    seconds["bare"] += await _timed(bare())
                    for kind in ("before", "core") if round_ % 2 == 0 else ("core", "before"):
                        seconds[kind] += await _timed(before() if kind == "before" else core())
                        opened += cases
    finally:
        await env.shutdown()
    total = cases * rounds
    rate = {kind: total / spent for kind, spent in seconds.items()}
    print(f"bare single-activity workflows:          {total} in {seconds['bare']:.2f} s = {rate['bare']:.1f}/s")
    print(f"cases, engine before the core (sandbox):  {total} in {seconds['before']:.2f} s = {rate['before']:.1f}/s"
          f"  ratio to bare {rate['before'] / rate['bare']:.2f}")
    print(f"cases, case core (passed through):        {total} in {seconds['core']:.2f} s = {rate['core']:.1f}/s"
          f"  ratio to bare {rate['core'] / rate['bare']:.2f}")


async def ladder_events() -> None:
    env = await WorkflowEnvironment.start_time_skipping(
        test_server_existing_path=find_binary("temporal-test-server"), data_converter=codec.data_converter(RING)
    )
    try:
        await _register_search_attributes(env.client)
        with tempfile.TemporaryDirectory() as folder:
            settings, activities = _bench_activities(Path(folder), "bench-ladder")
            async with build_worker(env.client, settings, activities):
                counts = {}
                for label, amount in (("legal", 2_000_000), ("agency", 300_000)):
                    now = (await env.get_current_time()).astimezone(UTC)
                    due = calendar.local_date(now, "Asia/Shanghai") - timedelta(days=1)
                    handle = await start_case(env.client, _case(0, due).model_copy(update={"principal_due_minor": amount}), task_queue="bench-ladder")
                    await skip_to(env, calendar.local_instant(due + timedelta(days=31), time(12), "Asia/Shanghai"))
                    counts[label] = len((await handle.fetch_history()).events)
                    await handle.terminate()
    finally:
        await env.shutdown()
    for label, events in counts.items():
        print(f"history events, no-payment ladder to DPD 30 ({label}): {events}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=500, help="cases per batch")
    parser.add_argument("--rounds", type=int, default=2, help="batches of each kind, in alternating order")
    args = parser.parse_args()
    asyncio.run(open_rate(args.cases, args.rounds))
    asyncio.run(ladder_events())


if __name__ == "__main__":
    main()
