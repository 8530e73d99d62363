"""Pure ladder rules: when each step is due, which step is due now, and signal validation.

No Temporal, no I/O: every function takes the policy, the case facts and an instant, and
returns a decision. The workflow calls these; unit tests call them directly.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta

from collections_domain.case.contract import OpenPromise, PaymentReceived, PromiseToPay
from collections_domain.rules import calendar
from collections_domain.rules.policy import CollectionPolicy, LadderStep


@dataclass(frozen=True)
class Rung:
    """All steps at one ``days_past_due``; at most one of them applies to a given amount."""

    days_past_due: int
    steps: tuple[LadderStep, ...]

    def step_for(self, outstanding_minor: int, policy: CollectionPolicy, currency: str) -> LadderStep | None:
        """The step of this rung that applies to ``outstanding_minor``, or ``None``."""
        thresholds = policy.thresholds(currency)
        for step in self.steps:
            if step.applies_to(outstanding_minor, thresholds):
                return step
        return None

    @property
    def label(self) -> str:
        """``"legal/agency"`` for a rung of two steps."""
        return "/".join(s.name for s in self.steps)


def rungs(policy: CollectionPolicy) -> list[Rung]:
    """The policy's ladder grouped by ``days_past_due``, ascending."""
    grouped: dict[int, list[LadderStep]] = {}
    for step in policy.steps:
        grouped.setdefault(step.days_past_due, []).append(step)
    return [Rung(days, tuple(steps)) for days, steps in sorted(grouped.items())]


def stage_order(policy: CollectionPolicy) -> list[str]:
    """The stages in the order a case reaches them: ``identified``, the policy's own ladder, and
    the steps only a treatment's ladder has (``[treatments]``), each after the step before it in
    that ladder (``self_cure``'s ``reminder`` after ``initial``)."""
    order = ["identified"] + [step.name for rung in rungs(policy) for step in rung.steps]
    for treatment in policy.treatments.values():
        previous = "identified"
        for step in treatment.steps:
            if step.name not in order:
                order.insert(order.index(previous) + 1, step.name)
            previous = step.name
    return order


def rung_instant(days: int, oldest_due_date: date, tz_name: str, policy: CollectionPolicy) -> datetime:
    """UTC instant of the rung at DPD ``days``: the contact window's opening on the local day
    ``oldest_due_date + days`` (DESIGN.md "Durable timers")."""
    return calendar.local_instant(
        oldest_due_date + timedelta(days=days), policy.contact_window.opens_at, tz_name
    )


def next_contact_instant(now: datetime, tz_name: str, policy: CollectionPolicy) -> datetime:
    """``now`` if the borrower's local clock is inside the contact window, else its next opening."""
    window = policy.contact_window
    wall = calendar.local_wall_time(now, tz_name)
    today = calendar.local_date(now, tz_name)
    if window.opens_at <= wall < window.closes_at:
        return now
    day = today if wall < window.opens_at else today + timedelta(days=1)
    return calendar.local_instant(day, window.opens_at, tz_name)


@dataclass(frozen=True)
class LadderPosition:
    """Where the case stands on the ladder at an instant.

    ``due``: the rung to take now (its instant has passed), with its applicable ``step``;
    ``stale``: earlier rungs, also passed and never taken, that the case will not take;
    ``upcoming``: the next rung in the future that could apply, with its instant.
    """

    due: Rung | None
    step: LadderStep | None
    stale: tuple[Rung, ...]
    upcoming: Rung | None
    upcoming_at: datetime | None


def position(
    policy: CollectionPolicy,
    *,
    currency: str,
    oldest_due_date: date,
    tz_name: str,
    last_rung_days: int,
    outstanding_minor: int,
    now: datetime,
) -> LadderPosition:
    """The ladder position of a case whose rungs up to ``last_rung_days`` are handled.

    Only the latest passed rung that applies to ``outstanding_minor`` is due; earlier passed
    rungs are stale (a case started late, or paused past them, does not send old steps). A
    rung that does not apply to the amount (say, under the policy minimum) is neither due nor
    upcoming. Amounts only fall while a case is open, so a rung that does not apply now never
    will.
    """
    passed: list[Rung] = []
    upcoming: Rung | None = None
    upcoming_at: datetime | None = None
    for rung in rungs(policy):
        if rung.days_past_due <= last_rung_days:
            continue
        if rung.step_for(outstanding_minor, policy, currency) is None:
            continue
        at = rung_instant(rung.days_past_due, oldest_due_date, tz_name, policy)
        if at <= now:
            passed.append(rung)
        else:
            upcoming, upcoming_at = rung, at
            break
    if not passed:
        return LadderPosition(None, None, (), upcoming, upcoming_at)
    due = passed[-1]
    return LadderPosition(
        due, due.step_for(outstanding_minor, policy, currency), tuple(passed[:-1]), upcoming, upcoming_at
    )


def write_off_instant(
    policy: CollectionPolicy,
    *,
    oldest_due_date: date,
    tz_name: str,
    last_activity_at: datetime,
) -> datetime:
    """UTC instant a case is written off if nothing changes (policy ``write_off.*``).

    The start (local midnight) of the later of: the local day ``oldest_due_date +
    write_off.days_past_due``, and the day after ``write_off.no_payment_days`` full local days
    since ``last_activity_at`` (the last payment, or the case's opening when none came: the
    product never writes off a case it has not worked for that long).
    """
    rules = policy.write_off
    day = max(
        oldest_due_date + timedelta(days=rules.days_past_due),
        calendar.local_date(last_activity_at, tz_name) + timedelta(days=rules.no_payment_days + 1),
    )
    return calendar.local_instant(day, time(0, 0), tz_name)


def paused_days(started_at: datetime, ended_at: datetime, tz_name: str) -> int:
    """Local calendar days a pause lasted (0 when it started and ended on the same local day):
    the ladder's later steps move by this many days."""
    return max(0, (calendar.local_date(ended_at, tz_name) - calendar.local_date(started_at, tz_name)).days)


def promise_deadline(promised_date: date, tz_name: str, policy: CollectionPolicy) -> datetime:
    """UTC instant a promise is judged: the end (local midnight) of ``promised_date + grace_days``."""
    last_day = promised_date + timedelta(days=policy.promises.grace_days)
    return calendar.local_instant(last_day + timedelta(days=1), time(0, 0), tz_name)


def payment_problem(payment: PaymentReceived, *, currency: str, now: datetime) -> str | None:
    """Why ``payment`` must be rejected (``"field: rule"``), or ``None`` when it may be applied.

    Rules (CONTRACT.md): a positive amount in the case's currency; ``paid_at`` not later than
    one day after the workflow's clock (a payment cannot arrive from the future).
    """
    if payment.amount_minor <= 0:
        return f"amount_minor: must be a positive integer in minor units, got {payment.amount_minor}"
    if payment.currency != currency:
        return f"currency: must be the case currency {currency}, got {payment.currency!r}"
    if payment.paid_at > now + timedelta(days=1):
        return f"paid_at: must not be in the future, got {payment.paid_at.isoformat()}"
    return None


def promise_problem(
    promise: PromiseToPay,
    *,
    policy: CollectionPolicy,
    tz_name: str,
    outstanding_minor: int,
    open_promise: OpenPromise | None,
    promises_broken: int,
    now: datetime,
) -> str | None:
    """Why ``promise`` must be rejected (``"field: rule"``), or ``None`` when it may open.

    Rules (CONTRACT.md; ``promises.*`` keys of the policy): positive amount not above the
    outstanding amount; ``promised_date`` from today (borrower's calendar) to today +
    ``promises.horizon_days``; no other promise open; fewer than ``promises.max_broken`` broken.
    """
    today = calendar.local_date(now, tz_name)
    horizon = today + timedelta(days=policy.promises.horizon_days)
    if promise.amount_minor <= 0:
        return f"amount_minor: must be a positive integer in minor units, got {promise.amount_minor}"
    if promise.amount_minor > outstanding_minor:
        return (
            f"amount_minor: must not exceed the outstanding amount {outstanding_minor}, "
            f"got {promise.amount_minor}"
        )
    if promise.promised_date < today:
        return f"promised_date: must not be before today ({today.isoformat()}, borrower's calendar)"
    if promise.promised_date > horizon:
        return (
            f"promised_date: must be at most {policy.promises.horizon_days} days ahead "
            f"(policy promises.horizon_days), latest {horizon.isoformat()}"
        )
    if open_promise is not None:
        return f"promise_id: another promise ({open_promise.promise_id}) is open"
    if promises_broken >= policy.promises.max_broken:
        return (
            f"promise_id: {promises_broken} promises broken, the cap is "
            f"{policy.promises.max_broken} (policy promises.max_broken)"
        )
    return None
