"""The NAIVE LADDER: the benchmark's baseline, not the product.

A deliberately simple 3/7/30 collections ladder, what one would write with Temporal on day one,
so that ``bench/paths.py`` can put the product's history (events, billable actions, bytes) next
to the least a ladder costs on the same path. It starts from a due date and sleeps to DPD 3 (one
activity: a reminder), DPD 7 (an agent call), DPD 30 (the hand-off) and DPD 180 (the write-off,
then it ends). Signal ``payment_received`` cures it once the payments cover the amount due;
signal ``promise_to_pay`` pauses the ladder until the end of the promised day (kept if the
promised amount was paid by then); update ``propose_plan`` splits what is owed into N
instalments and waits for a payment per instalment (cured when all are paid). Activities are
no-op stubs; no ledger, no compliance, no records, no search attributes.

Its own module importing nothing but Temporal, so the sandbox loads nothing else. Money is
integer minor units; a step fires at ``step_hour`` local time in a fixed UTC offset.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta, timezone

from temporalio import activity, workflow


@dataclass
class NaiveCase:
    """The input: a loan id, the missed due date (ISO), the amount due (minor units), the zone."""

    loan_id: str
    due_date: str
    amount_due_minor: int
    utc_offset_minutes: int = 480  # Asia/Shanghai
    step_hour: int = 9


@dataclass
class NaivePayment:
    """Signal ``payment_received``: an amount in minor units."""

    amount_minor: int


@dataclass
class NaivePromise:
    """Signal ``promise_to_pay``: ``amount_minor`` by the end of local day ``promised_date`` (ISO)."""

    amount_minor: int
    promised_date: str


@dataclass
class NaivePlan:
    """Update ``propose_plan``: split what is still owed into ``instalments`` payments."""

    instalments: int


@activity.defn(name="bench_naive_send_reminder")
def send_reminder(loan_id: str) -> None:
    """DPD 3 (stub)."""


@activity.defn(name="bench_naive_agent_call")
def agent_call(loan_id: str) -> None:
    """DPD 7 (stub)."""


@activity.defn(name="bench_naive_hand_off")
def hand_off(loan_id: str) -> None:
    """DPD 30 (stub)."""


@activity.defn(name="bench_naive_write_off")
def write_off(loan_id: str) -> None:
    """DPD 180 (stub)."""


ACTIVITIES = [send_reminder, agent_call, hand_off, write_off]
LADDER = ((3, send_reminder), (7, agent_call), (30, hand_off), (180, write_off))


@workflow.defn(name="BenchNaiveLadder")
class NaiveLadderWorkflow:
    """The baseline ladder (module docstring); returns ``"cured"`` or ``"written_off"``."""

    @workflow.init
    def __init__(self, case: NaiveCase) -> None:
        self._case = case
        self._paid = 0
        self._promise: NaivePromise | None = None
        self._plan: list[int] | None = None

    @workflow.signal
    def payment_received(self, payment: NaivePayment) -> None:
        self._paid += payment.amount_minor

    @workflow.signal
    def promise_to_pay(self, promise: NaivePromise) -> None:
        if self._plan is None:
            self._promise = promise

    @workflow.update
    def propose_plan(self, plan: NaivePlan) -> list[int]:
        """Accept the plan; returns the instalments' amounts (remainder on the last)."""
        owed = self._case.amount_due_minor - self._paid
        share = owed // plan.instalments
        self._plan = [share] * (plan.instalments - 1) + [owed - share * (plan.instalments - 1)]
        self._promise = None
        return self._plan

    @propose_plan.validator
    def _check_plan(self, plan: NaivePlan) -> None:
        if self._plan is not None or not 1 <= plan.instalments <= 12:
            raise ValueError("one plan of 1 to 12 instalments")

    def _cured(self) -> bool:
        return self._paid >= self._case.amount_due_minor

    def _local(self, day: date, hour: int) -> datetime:
        zone = timezone(timedelta(minutes=self._case.utc_offset_minutes))
        return datetime.combine(day, time(hour), zone).astimezone(UTC)

    async def _wait_for(self, condition, until: datetime) -> bool:
        """Wait for ``condition`` or ``until`` (one timer); True if the condition came first."""
        left = until - workflow.now()
        if left <= timedelta(0):
            return condition()
        try:
            await workflow.wait_condition(condition, timeout=left)
            return True
        except TimeoutError:
            return False

    async def _sleep_until(self, until: datetime) -> bool:
        """Sleep to ``until`` through promises and plans; True if the case was cured meanwhile."""
        while not self._cured():
            if self._plan is not None:
                target = self._paid
                for amount in self._plan:  # one payment signal per instalment
                    target += amount
                    await workflow.wait_condition(lambda target=target: self._paid >= target)
                return True
            if self._promise is not None:
                promise, kept = self._promise, self._paid + self._promise.amount_minor
                deadline = self._local(date.fromisoformat(promise.promised_date) + timedelta(days=1), 0)
                await self._wait_for(lambda kept=kept: self._cured() or self._paid >= kept or self._plan is not None,
                                     deadline)
                self._promise = None  # kept or broken, the ladder resumes (or the plan takes over)
                continue
            if not await self._wait_for(lambda: self._cured() or self._promise is not None
                                        or self._plan is not None, until):
                return False
        return True

    @workflow.run
    async def run(self, case: NaiveCase) -> str:
        """Run the ladder until cured or written off."""
        due = date.fromisoformat(case.due_date)
        for dpd, step in LADDER:
            if await self._sleep_until(self._local(due + timedelta(days=dpd), case.step_hour)):
                return "cured"
            await workflow.execute_activity(step, case.loan_id, start_to_close_timeout=timedelta(seconds=30))
        return "written_off"
