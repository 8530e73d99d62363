"""Replay the Home Credit cases through the real workflow on Temporal's time-skipping server.

Convention: every case is replayed from its own first day past due. All cases share one
virtual due date ``day0`` (a local calendar date in each borrower's own zone); a case opens at
local midnight starting DPD 1 and each late payment arrives as ``payment_received`` at 12:00
local on its DPD (``home_credit.py``). A case still owing is written off at the start of the
local day ``ladder.write_off_instant`` gives (policy ``[write_off]``); a payment that arrives
after its case ended hits a closed workflow: the run counts it (``payments_after_close``)
instead of failing. The run ends a day after every case has passed its last ladder rung, its
write-off day and its last payment. The outcome table counts where each case ended.
"""

from __future__ import annotations

import asyncio
import tempfile
import time as wallclock
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path

from sqlmodel import Session
from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import AddSearchAttributesRequest
from temporalio.api.testservice.v1 import SleepRequest
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.service import RPCError, RPCStatusCode
from temporalio.runtime import LoggingConfig, Runtime, TelemetryConfig, TelemetryFilter
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

from collections_domain.rules import calendar
from collections_domain.rules import ladder
from collections_domain.ops.binaries import find_binary
from collections_domain.case.contract import CaseStatus, PaymentReceived
from collections_domain.client import start_case
from collections_domain.portfolio.home_credit import HomeCreditCase, borrower_row
from collections_domain.store.models import Borrower
from collections_domain.rules.policy import CollectionPolicy
from collections_domain.case.search_attributes import CLI_TYPES
from collections_domain.ops.settings import Settings
from collections_domain.ops.wiring import build_activities, build_worker

PAYMENT_WALL_TIME = time(12, 0)
#: How long past the last event the run goes on, so every case that ends then has closed.
HORIZON_MARGIN = timedelta(days=1)
SKIP_DEADLINE = timedelta(minutes=20)
INDEXED_TYPES = {
    "Keyword": IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD,
    "Int": IndexedValueType.INDEXED_VALUE_TYPE_INT,
    "Datetime": IndexedValueType.INDEXED_VALUE_TYPE_DATETIME,
}


@dataclass
class OutcomeTable:
    """Cases by where they got on the ladder, with how many are still unpaid (an amount still
    outstanding) and how many were written off at the end of the data.

    Rows come from the policy's ladder: "cured before DPD 3", "cured at DPD 3-6", "cured at
    DPD 7-29" (between rungs), then one "reached DPD 30: <step>" row per step of the last rung
    and "reached DPD 30 under the minimum (reminders only)". A written-off case keeps its
    outstanding amount, so it counts as still unpaid too.
    """

    rows: list[str]
    cases: dict[str, int] = field(default_factory=dict)
    still_unpaid: dict[str, int] = field(default_factory=dict)
    written_off: dict[str, int] = field(default_factory=dict)

    @classmethod
    def for_policy(cls, policy: CollectionPolicy) -> OutcomeTable:
        """An empty table with the rows ``policy``'s ladder defines."""
        rungs = ladder.rungs(policy)
        rows = [f"cured before DPD {rungs[0].days_past_due}"]
        for low, high in zip(rungs, rungs[1:]):
            rows.append(f"cured at DPD {low.days_past_due}-{high.days_past_due - 1}")
        last = rungs[-1].days_past_due
        rows += [f"reached DPD {last}: {step.name}" for step in rungs[-1].steps]
        rows.append(f"reached DPD {last} under the minimum (reminders only)")
        return cls(
            rows=rows,
            cases=dict.fromkeys(rows, 0),
            still_unpaid=dict.fromkeys(rows, 0),
            written_off=dict.fromkeys(rows, 0),
        )

    def add(self, row: str, unpaid: bool, written_off: bool = False) -> None:
        """Count one case in ``row``."""
        self.cases[row] += 1
        self.still_unpaid[row] += int(unpaid)
        self.written_off[row] += int(written_off)

    @property
    def total(self) -> int:
        """All cases."""
        return sum(self.cases.values())

    def as_rows(self) -> list[tuple[str, int, int, int]]:
        """``(outcome, cases, still unpaid, written off)`` per row, then the total."""
        body = [(row, self.cases[row], self.still_unpaid[row], self.written_off[row]) for row in self.rows]
        return body + [("total", self.total, sum(self.still_unpaid.values()), sum(self.written_off.values()))]

    def render(self) -> str:
        """A plain-text table."""
        width = max(len(r) for r in self.rows) + 2
        lines = [f"{'outcome':<{width}}{'cases':>8}{'still unpaid':>14}{'written off':>13}"]
        lines += [
            f"{row:<{width}}{count:>8}{unpaid:>14}{written_off:>13}"
            for row, count, unpaid, written_off in self.as_rows()
        ]
        return "\n".join(lines)


def classify(status: CaseStatus, policy: CollectionPolicy) -> str:
    """The outcome-table row of a case's final ``status``."""
    rungs = ladder.rungs(policy)
    last = rungs[-1]
    if status.outcome == "cured" and status.cured_days_past_due is not None:
        dpd = status.cured_days_past_due
        if dpd < rungs[0].days_past_due:
            return f"cured before DPD {rungs[0].days_past_due}"
        for low, high in zip(rungs, rungs[1:]):
            if low.days_past_due <= dpd < high.days_past_due:
                return f"cured at DPD {low.days_past_due}-{high.days_past_due - 1}"
    taken = {record.step for record in status.steps_done}
    for step in last.steps:
        if step.name in taken:
            return f"reached DPD {last.days_past_due}: {step.name}"
    return f"reached DPD {last.days_past_due} under the minimum (reminders only)"


def _quiet_runtime() -> Runtime:
    """A runtime whose SDK core logs errors only: thousands of cases opening at one instant make
    first workflow tasks slow (they wait for local-activity slots), which the core warns about."""
    return Runtime(telemetry=TelemetryConfig(logging=LoggingConfig(filter=TelemetryFilter(core_level="ERROR", other_level="ERROR"))))


@dataclass
class SimulationResult:
    """The table, every case's final status, the run's wall time in seconds, and how many
    payments arrived after their case had ended (signals to a closed workflow, not applied)."""

    table: OutcomeTable
    statuses: dict[str, CaseStatus]
    wall_seconds: float
    day0: str
    payments_after_close: int = 0


async def skip_to(env: WorkflowEnvironment, instant: datetime) -> None:
    """Move the time-skipping server's clock to ``instant``, letting every timer on the way fire.

    Calls the test service directly with a long RPC deadline: with thousands of cases a single
    skip can take longer than ``env.sleep``'s default deadline while the server waits for the
    work the fired timers start.
    """
    delta = instant - (await env.get_current_time()).astimezone(UTC)
    if delta <= timedelta(0):
        return
    request = SleepRequest()
    request.duration.FromTimedelta(delta)
    await env.client.test_service.unlock_time_skipping_with_sleep(request, timeout=SKIP_DEADLINE)


async def _register_search_attributes(client: Client) -> None:
    await client.operator_service.add_search_attributes(
        AddSearchAttributesRequest(
            namespace=client.namespace,
            search_attributes={name: INDEXED_TYPES[kind] for name, kind in CLI_TYPES.items()},
        )
    )


async def simulate(
    cases: Sequence[HomeCreditCase],
    *,
    progress: Callable[[str, int, int], None] | None = None,
    concurrency: int = 200,
    database_url: str | None = None,
) -> SimulationResult:
    """Run ``cases`` through ``LoanCollectionWorkflow`` on a fresh time-skipping server.

    ``progress(phase, done, total)`` is called as cases start, events are replayed and
    statuses are read. Uses ``database_url`` (a database of its own) or else a temporary SQLite
    file, and the ``record`` delivery back-end.
    """
    started = wallclock.perf_counter()
    report = progress or (lambda phase, done, total: None)
    env = await WorkflowEnvironment.start_time_skipping(
        test_server_existing_path=find_binary("temporal-test-server"),
        data_converter=pydantic_data_converter,
        runtime=_quiet_runtime(),
    )
    try:
        await _register_search_attributes(env.client)
        with tempfile.TemporaryDirectory(prefix="collections-sim-") as folder:
            settings = Settings(
                temporal_task_queue="collections-simulation",
                database_url=database_url or f"sqlite:///{Path(folder) / 'simulation.db'}",
                data_dir=Path(folder),
                delivery_backend="record",
            )
            activities = build_activities(settings)
            policy = activities.policies.current
            with Session(activities.engine) as db:
                for case in {c.borrower_id: c for c in cases}.values():
                    db.merge(Borrower(**borrower_row(case)))
                db.commit()
            worker = build_worker(
                env.client, settings, activities, max_activity_threads=64, max_cached_workflows=2 * len(cases) + 100
            )
            async with worker:
                statuses, day0, after_close = await _replay(env, cases, settings, policy, report, concurrency)
            activities.delivery.close()
            activities.engine.dispose()
    finally:
        await env.shutdown()
    table = OutcomeTable.for_policy(policy)
    for case in cases:
        status = statuses[case.loan_id]
        table.add(
            classify(status, policy),
            unpaid=status.outstanding_minor > 0,
            written_off=status.outcome == "written_off",
        )
    return SimulationResult(table, statuses, wallclock.perf_counter() - started, day0, after_close)


def _last_instant(case: HomeCreditCase, day0: date, opened_at: datetime, policy: CollectionPolicy) -> datetime:
    """The latest instant ``case`` can still change: its last payment's arrival, or its write-off
    (``ladder.write_off_instant``, from the last payment that arrives before it), if later.

    Cures are ignored: a cured case ends earlier, so this bounds every case from above.
    """
    tz = case.market.timezone
    write_off_at = ladder.write_off_instant(policy, oldest_due_date=day0, tz_name=tz, last_activity_at=opened_at)
    latest = write_off_at
    for payment in case.late_payments:
        at = calendar.local_instant(day0 + timedelta(days=payment.days_after_due), PAYMENT_WALL_TIME, tz)
        latest = max(latest, at)
        if at < write_off_at:
            write_off_at = ladder.write_off_instant(policy, oldest_due_date=day0, tz_name=tz, last_activity_at=at)
            latest = max(latest, write_off_at)
    return latest


async def _replay(env, cases, settings, policy, report, concurrency):
    client = env.client
    now = (await env.get_current_time()).astimezone(UTC)
    day0 = now.date() + timedelta(days=2)
    last_rung = ladder.rungs(policy)[-1].days_past_due
    events: list[tuple[datetime, int, HomeCreditCase, object]] = []
    horizon = now
    for case in cases:
        tz = case.market.timezone
        opened_at = calendar.local_instant(day0 + timedelta(days=1), time(0, 0), tz)
        events.append((opened_at, 0, case, None))
        for payment in case.late_payments:
            at = calendar.local_instant(day0 + timedelta(days=payment.days_after_due), PAYMENT_WALL_TIME, tz)
            events.append((at, 1, case, payment))
        horizon = max(
            horizon, ladder.rung_instant(last_rung, day0, tz, policy), _last_instant(case, day0, opened_at, policy)
        )
    events.sort(key=lambda e: (e[0], e[1], e[2].loan_id))
    gate = asyncio.Semaphore(concurrency)
    after_close = 0

    async def start(case: HomeCreditCase) -> None:
        async with gate:
            await start_case(client, case.case_input(day0), task_queue=settings.temporal_task_queue)

    async def pay(case: HomeCreditCase, payment, at: datetime) -> None:
        nonlocal after_close
        async with gate:
            signal = PaymentReceived(
                payment_id=payment.payment_id,
                amount_minor=payment.amount_minor,
                currency=case.market.currency,
                paid_at=at,
            )
            try:
                await client.get_workflow_handle(case.case_input(day0).workflow_id).signal("payment_received", signal)
            except RPCError as err:
                # The case already ended (cured or written off): Temporal refuses signals to a
                # closed workflow. Counted, not applied.
                if err.status != RPCStatusCode.NOT_FOUND:
                    raise
                after_close += 1

    done = 0
    index = 0
    while index < len(events):
        at = events[index][0]
        batch = []
        while index < len(events) and events[index][0] == at:
            batch.append(events[index])
            index += 1
        await skip_to(env, at)
        await asyncio.gather(
            *(start(case) if kind == 0 else pay(case, payment, at) for _, kind, case, payment in batch)
        )
        done += len(batch)
        report("replaying events", done, len(events))
    await skip_to(env, horizon + HORIZON_MARGIN)

    statuses: dict[str, CaseStatus] = {}

    readers = asyncio.Semaphore(16)

    async def read(case: HomeCreditCase) -> None:
        async with readers:
            handle = client.get_workflow_handle(case.case_input(day0).workflow_id, result_type=CaseStatus)
            for attempt in range(5):
                try:
                    described = await handle.describe(rpc_timeout=timedelta(seconds=60))
                    if described.status == WorkflowExecutionStatus.COMPLETED:
                        # A closed case's result is its final status: no replay needed to read it.
                        statuses[case.loan_id] = await handle.result(rpc_timeout=timedelta(seconds=60))
                    else:
                        statuses[case.loan_id] = await handle.query(
                            "status", result_type=CaseStatus, rpc_timeout=timedelta(seconds=60)
                        )
                    break
                except RPCError:
                    if attempt == 4:
                        raise
                    await asyncio.sleep(1)
            report("reading statuses", len(statuses), len(cases))

    await asyncio.gather(*(read(case) for case in cases))
    return statuses, day0.isoformat(), after_close
