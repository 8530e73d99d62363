"""Benchmark section "simulate": the replay of the Home Credit file by the product, against a naive
replay of the same events on the same kind of server.

The product: ``collections_domain.portfolio.simulation.simulate`` (the loan book, the delinquency
scan, the gateway's payments, the real ``LoanCollectionWorkflow`` and its activities on SQLite).
The naive baseline: the same loans, the same instants (``simulation.events``) and the same
``skip_to`` sequence on a fresh Java time-skipping server with the same payload codec, where at
each scan instant a naive 3/7/30 ladder (``bench/naive.py``) is started for each overdue loan
that has none running, and each payment is a ``payment_received`` signal to it; what is due and
paid is kept in memory. No database, no product code: what any Temporal replay of these events
costs at the least.

    simulate.wall_s   the product's wall time (``SimulationResult.wall_seconds``: server, loan
                      book, replay, results) against the naive replay's (server, worker, replay);
                      goal ``ratio <= 1.5``
    simulate.replay_s the instants alone (skips, scans or starts, payments) on both sides, no goal

``quick``: the first 300 loans of the file (by loan id); full: all 2,445.
``python -m bench.simulate_ratio [--full]`` prints the figures.
"""

from __future__ import annotations

import asyncio
import sys
import time as wallclock
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta

from temporalio.client import Client
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.service import RPCError, RPCStatusCode
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from bench import naive
from bench.figures import Figure
from collections_domain.ops import codec
from collections_domain.ops.binaries import find_binary
from collections_domain.portfolio import simulation
from collections_domain.portfolio.home_credit import HomeCreditLoan, read_loans
from collections_domain.rules import calendar
from collections_domain.rules.policy import DEFAULT_POLICY_PATH, CollectionPolicy, load_policy

SECTION = "simulate"
QUICK_LOANS = 300
GOAL = "ratio <= 1.5"
TASK_QUEUE = "bench-simulate-naive"
#: Deliveries in flight at once, as in the product's replay.
CONCURRENT = simulation.CONCURRENT_DELIVERIES


@dataclass
class NaiveLoan:
    """What the naive replay knows of a loan: its instalments (due date, amount), what was paid."""

    loan: HomeCreditLoan
    anchor: date
    due: list[tuple[date, int]]
    paid: int = 0
    cases: int = 0


@dataclass
class NaiveRun:
    """The naive replay's wall time and counts."""

    wall_seconds: float
    instants: int
    started: int = 0
    signals: int = 0
    closed_signals: int = 0
    phases: dict[str, float] = field(default_factory=dict)


def _naive_case(state: NaiveLoan, at: datetime) -> naive.NaiveCase | None:
    """The naive ladder's input if the loan is overdue at ``at`` (something due before its local
    today unpaid: the oldest such due date, the amount), else ``None``."""
    zone = state.loan.market.timezone
    today = calendar.local_date(at, zone)
    owed, left, oldest = 0, state.paid, None
    for due_date, amount in state.due:
        if due_date >= today:
            break
        covered = min(left, amount)
        left -= covered
        if amount > covered:
            owed += amount - covered
            oldest = oldest or due_date
    if not owed or oldest is None:
        return None
    offset = at.astimezone(calendar.zone(zone)).utcoffset() or timedelta(0)
    return naive.NaiveCase(loan_id=state.loan.loan_id, due_date=oldest.isoformat(), amount_due_minor=owed,
                           utc_offset_minutes=int(offset.total_seconds() // 60))


def _workflow_id(loan_id: str) -> str:
    return f"naive-{loan_id}"


async def naive_replay(loans: Sequence[HomeCreditLoan], policy: CollectionPolicy) -> NaiveRun:
    """The naive replay of ``loans`` (module docstring) on a fresh time-skipping server."""
    started = wallclock.perf_counter()
    env = await WorkflowEnvironment.start_time_skipping(
        test_server_existing_path=find_binary("temporal-test-server"), data_converter=codec.data_converter(simulation.RING),
        runtime=simulation._quiet_runtime())
    try:
        worker = Worker(env.client, task_queue=TASK_QUEUE, workflows=[naive.NaiveLadderWorkflow],
                        activities=naive.ACTIVITIES, activity_executor=ThreadPoolExecutor(simulation.ACTIVITY_THREADS),
                        max_concurrent_activities=simulation.ACTIVITY_THREADS,
                        max_cached_workflows=2 * len(loans) + 100)
        async with worker:
            run = await _naive_events(env, env.client, loans, policy)
    finally:
        await env.shutdown()
    run.wall_seconds = wallclock.perf_counter() - started
    return run


async def _naive_events(env: WorkflowEnvironment, client: Client, loans: Sequence[HomeCreditLoan],
                        policy: CollectionPolicy) -> NaiveRun:
    now = (await env.get_current_time()).astimezone(UTC)
    anchors = simulation.borrower_anchors(loans, now.date() + timedelta(days=2))
    found = simulation.events(loans, anchors, policy)
    instants = sorted(set(found.scans) | set(found.payments))
    book = {loan.loan_id: NaiveLoan(loan, anchors[loan.borrower_id],
                                    sorted((anchors[loan.borrower_id] + timedelta(days=i.due_day), i.amount_minor)
                                           for i in loan.instalments))
            for loan in loans}
    run = NaiveRun(wall_seconds=0.0, instants=len(instants))
    gate = asyncio.Semaphore(CONCURRENT)

    async def open_case(loan_id: str, at: datetime) -> None:
        case = _naive_case(book[loan_id], at)
        if case is None:
            return
        async with gate:
            # One start a scan entry, as the product's scan: the running ladder if there is one.
            await client.start_workflow(naive.NaiveLadderWorkflow.run, case, id=_workflow_id(loan_id), task_queue=TASK_QUEUE,
                                        id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
                                        id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE)
        run.started += 1

    async def pay(loan: HomeCreditLoan, payment) -> None:
        book[loan.loan_id].paid += payment.amount_minor
        async with gate:
            try:
                await client.get_workflow_handle(_workflow_id(loan.loan_id)).signal(
                    naive.NaiveLadderWorkflow.payment_received, naive.NaivePayment(payment.amount_minor))
                run.signals += 1
            except RPCError as err:
                if err.status != RPCStatusCode.NOT_FOUND:
                    raise
                run.closed_signals += 1  # no ladder running (never opened, cured, written off)

    clock = wallclock.perf_counter()
    for at in instants:
        await simulation.skip_to(env, at)
        if at in found.scans:
            await asyncio.gather(*(open_case(loan_id, at) for loan_id in found.scans[at]))
        if at in found.payments:
            await asyncio.gather(*(pay(loan, payment) for loan, payment in found.payments[at]))
    await simulation.skip_to(env, found.horizon)  # type: ignore[arg-type]
    run.phases["replay"] = wallclock.perf_counter() - clock
    return run


async def measure(quick: bool) -> list[Figure]:
    """The section's figures (module docstring): the product's replay, then the naive one."""
    loans = read_loans()
    if quick:
        loans = loans[:QUICK_LOANS]
    policy = load_policy(DEFAULT_POLICY_PATH)
    product = await simulation.simulate(loans)
    baseline = await naive_replay(loans, policy)
    instants = int(product.phases.get("instants", baseline.instants))
    cases = sum(loan.cases for loan in product.loans)
    phases = {k: round(v, 1) for k, v in product.phases.items() if k != "instants"}
    detail = (f"{len(loans)} loans, {instants} instants ({'first ' + str(QUICK_LOANS) if quick else 'the whole file'}); "
              f"product: {cases} cases, phases (s) {phases}; naive: {baseline.started} start calls for overdue loans "
              f"(the running ladder kept), {baseline.signals} payment signals (+{baseline.closed_signals} to no ladder)")
    return [
        Figure(SECTION, "simulate.wall_s", round(product.wall_seconds, 2), "s", round(baseline.wall_seconds, 2),
               "naive ladder replay", goal=GOAL, detail=detail,
               extra={"loans": len(loans), "instants": instants, "product_phases": phases,
                      "naive_phases": {k: round(v, 1) for k, v in baseline.phases.items()},
                      "naive_starts": baseline.started, "naive_signals": baseline.signals}),
        Figure(SECTION, "simulate.replay_s", round(sum(product.phases.get(k, 0.0) for k in ("skip", "scan", "payments")), 2),
               "s", round(baseline.phases.get("replay", 0.0), 2), "naive replay loop",
               detail="the instants alone (skips, scans or starts, payments), without the servers' start, the loan "
                      "book's load and the results"),
    ]


def main(argv: Sequence[str]) -> None:
    """Print the figures (``--full``: the whole file)."""
    for figure in asyncio.run(measure(quick="--full" not in argv)):
        ratio = f"ratio {figure.ratio:.2f}" if figure.ratio is not None else ""
        print(f"{figure.name}: {figure.value} {figure.unit} vs {figure.baseline} ({figure.baseline_name}) {ratio} "
              f"goal {figure.goal or '-'}: {figure.detail}")


if __name__ == "__main__":
    main(sys.argv[1:])
