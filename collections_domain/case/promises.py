"""Promises to pay (PTP): checking, opening, counting payments toward them, judging (pure).

A promise counts the payments the case received after it was made whose value date is on or
before its deadline (the end of ``promised_date + promises.grace_days``, borrower's calendar),
so money paid in time keeps it however late it is reported. It is judged
``promises.late_report_minutes`` after the deadline; until then the ladder holds.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from collections_domain.case import progress
from collections_domain.case.base import next_key, parse, reject
from collections_domain.case.contract import OpenPromise, PendingSignal, PromiseToPay
from collections_domain.case.state import CaseCore, Step
from collections_domain.ops import metrics
from collections_domain.rules import ladder
from collections_domain.rules.policy import CollectionPolicy
from collections_domain.store.records import PromiseOpened, PromiseResolved


def promise_problem(case: CaseCore, step: Step, promise: PromiseToPay) -> str | None:
    """Why ``promise`` cannot open (``"field: rule"``), or ``None`` (``rules.ladder.promise_problem``
    and the case's own state: closed, a plan active, a duplicate id)."""
    if case.outcome is not None:
        return f"promise_id: the case is closed ({case.outcome})"
    if promise.promise_id in case.seen_ids("promise"):
        return "promise_id: duplicate, this promise was already accepted"
    if case.plan is not None:
        return f"promise_id: plan {case.plan.plan_id} is active; payments count toward its instalments"
    view = case.view(step.policy, step.now)
    return ladder.promise_problem(
        promise,
        policy=step.policy,
        tz_name=case.timezone,
        outstanding_minor=view.outstanding.total,
        open_promise=case.open_promise,
        promises_broken=case.promises_broken,
        now=step.now,
    )


def apply_promise(case: CaseCore, step: Step, signal: PendingSignal) -> None:
    """Signal ``promise_to_pay``: open it, or record why not."""
    promise = parse(case, step, signal, PromiseToPay, seen="promise", verb="accepted")
    if promise is None:
        return
    problem = promise_problem(case, step, promise)
    if problem:
        reject(case, step, signal, problem)
        return
    open_promise(case, step, promise)


def open_promise(case: CaseCore, step: Step, promise: PromiseToPay) -> None:
    """Open ``promise`` (checked already); payments the case receives from now on count toward it."""
    case.mark_seen("promise", promise.promise_id)
    case.open_promise = OpenPromise(
        promise_id=promise.promise_id,
        amount_minor=promise.amount_minor,
        promised_date=promise.promised_date,
        made_at=step.now,
        deadline=ladder.promise_deadline(promise.promised_date, case.timezone, step.policy),
        payments_before=len(case.ledger.payments),
    )
    step.record(PromiseOpened(key=next_key(case), at=step.now, promise_id=promise.promise_id,
                              amount_minor=promise.amount_minor, promised_date=promise.promised_date))
    step.log("promise.opened", promise_id=promise.promise_id)


def judge_at(case: CaseCore, policy: CollectionPolicy) -> datetime | None:
    """When the open promise is judged: its deadline plus ``promises.late_report_minutes``."""
    promise = case.open_promise
    if promise is None or promise.deadline is None:
        return None
    return promise.deadline + timedelta(minutes=policy.promises.late_report_minutes)


def count_payments(case: CaseCore, step: Step) -> bool:
    """Recount what was paid toward the open promise; keep it once that reaches its amount.
    True when it was kept now."""
    promise = case.open_promise
    if promise is None or promise.made_at is None:
        return False
    if promise.payments_before is not None:  # by arrival order
        since = case.ledger.payments[promise.payments_before:]
    else:
        since = [p for p in case.ledger.payments if p.received_at >= promise.made_at]
    paid = sum(
        p.amount_minor
        for p in since
        if p.reversed_at is None and (promise.deadline is None or p.value_at < promise.deadline)
    )
    promise.paid_toward_minor = paid
    if paid >= promise.amount_minor:
        resolve(case, step, "kept")
        return True
    return False


def judge(case: CaseCore, step: Step) -> bool:
    """Break the open promise once its judgement time has passed unpaid; True when it did."""
    at = judge_at(case, step.policy)
    if at is None or step.now < at:
        return False
    resolve(case, step, "broken")
    return True


def resolve(case: CaseCore, step: Step, outcome: str) -> None:
    """Close the open promise ``kept`` or ``broken``. Steps whose time came while the borrower
    kept their word are not sent late."""
    promise = case.open_promise
    assert promise is not None
    case.open_promise = None
    if outcome == "kept":
        case.promises_kept += 1
        view = case.view(step.policy, step.now)
        pos = progress.position(case, step, view)
        for rung in (*pos.stale, *((pos.due,) if pos.due else ())):
            progress.skip(case, step, rung, view, f"promise {promise.promise_id} kept")
    else:
        case.promises_broken += 1
    step.record(PromiseResolved(key=next_key(case), at=step.now, promise_id=promise.promise_id,
                                status="kept" if outcome == "kept" else "broken",
                                paid_toward_minor=promise.paid_toward_minor))
    step.count(metrics.PROMISES_KEPT if outcome == "kept" else metrics.PROMISES_BROKEN, jurisdiction=case.jurisdiction)
    step.log(f"promise.{outcome}", promise_id=promise.promise_id)
