"""Money entering and leaving the case's ledger (pure): payments, reversals, instalments that fall
due, schedule adjustments, and the legal track's judgment, costs and settlement.

Every transition checks its message (the field and the rule on refusal, recorded, never dropped),
adds facts to ``case.ledger`` and then re-reads it (``case.ledger.derive``): a case whose due
instalments are all paid is cured (or settled, on a plan); otherwise its progress is recorded.
Payments are applied as of their ``paid_at``, at most ``payments.max_backdate_days`` back.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from collections_domain.case import endings, plan, promises
from collections_domain.case.base import closed_problem, next_key, parse, record_progress, reject
from collections_domain.case.contract import (
    InstalmentDue,
    LegalStatusChanged,
    LoanInstalment,
    PaymentReceived,
    PaymentReversed,
    PendingSignal,
    ScheduleAdjusted,
)
from collections_domain.case.ledger import LedgerLine, LedgerPayment, LedgerRelief, LedgerView
from collections_domain.case.state import CaseCore, Step
from collections_domain.rules import calendar, ladder
from collections_domain.rules.policy import CollectionPolicy
from collections_domain.rules.validation import due_date_range_problem, total_problem
from collections_domain.store.records import LedgerEntryRecorded, PaymentApplied, PaymentReversedRecorded


def value_instant(paid_at: datetime, received_at: datetime, policy: CollectionPolicy) -> datetime:
    """The instant a payment is applied as of: its ``paid_at``, no later than its arrival and no
    earlier than ``payments.max_backdate_days`` before it."""
    earliest = received_at - timedelta(days=policy.payments.max_backdate_days)
    return min(max(paid_at, earliest), received_at)


def line_of(instalment: LoanInstalment, added_at: datetime, kind: str = "instalment") -> LedgerLine:
    """A ledger line for a loan instalment (case input, ``instalment_due``, adjustments)."""
    return LedgerLine(
        instalment_id=instalment.instalment_id,
        due_date=instalment.due_date,
        principal_minor=instalment.principal_minor,
        interest_minor=instalment.interest_minor,
        fees_minor=instalment.fees_minor,
        penalty_minor=instalment.penalty_minor,
        kind=kind,  # type: ignore[arg-type]
        added_at=added_at,
    )


def line_entry(case: CaseCore, step: Step, line: LedgerLine, entry: str = "instalment", detail: str | None = None) -> None:
    """Record that ``line`` entered the ledger (``ledger_entries``, with its components)."""
    step.record(LedgerEntryRecorded(key=next_key(case), at=step.now, entry=entry, ref_id=line.instalment_id,  # type: ignore[arg-type]
                                    amount_minor=line.total_minor, due_date=line.due_date, detail=detail,
                                    principal_minor=line.principal_minor, interest_minor=line.interest_minor,
                                    fees_minor=line.fees_minor, penalty_minor=line.penalty_minor))


def settle_or_cure(case: CaseCore, step: Step, before: LedgerView) -> None:
    """After money moved: nothing due owing ends the case (``settled`` on a plan, else ``cured``
    at the DPD ``before`` showed); otherwise record the new position."""
    if case.outcome is not None:
        return
    view = case.view(step.policy, step.now)
    if view.outstanding.total == 0:
        if case.plan is not None:
            plan.complete(case, step)
        else:
            endings.cure(case, step, before.days_past_due)
    else:
        record_progress(case, step, view)


def apply_payment(case: CaseCore, step: Step, signal: PendingSignal) -> None:
    """Signal ``payment_received``: apply it as of its value instant, once per ``payment_id``.
    Money reaching a closed case is still applied (as credit) and recorded, never dropped."""
    payment = parse(case, step, signal, PaymentReceived)
    if payment is None:
        return
    if case.ledger.payment(payment.payment_id) is not None:
        reject(case, step, signal, "payment_id: duplicate, this payment was already applied")
        return
    problem = ladder.payment_problem(payment, currency=case.currency, now=step.now) or total_problem(
        [payment.amount_minor] + [p.amount_minor for p in case.ledger.payments if p.reversed_at is None],
        "amount_minor")
    if problem:
        reject(case, step, signal, problem)
        return
    before = case.view(step.policy, step.now)
    value_at = value_instant(payment.paid_at, signal.received_at, step.policy)
    case.ledger.payments.append(
        LedgerPayment(payment_id=payment.payment_id, amount_minor=payment.amount_minor, paid_at=payment.paid_at,
                      value_at=value_at, received_at=signal.received_at)
    )
    case.last_payment_at = signal.received_at
    after = case.view(step.policy, step.now)
    applied = next((p for p in after.payments if p.payment_id == payment.payment_id), None)
    applied_minor = applied.applied_minor if applied else 0
    step.record(PaymentApplied(key=next_key(case), at=step.now, payment_id=payment.payment_id,
                               amount_minor=payment.amount_minor, applied_minor=applied_minor,
                               overpaid_minor=payment.amount_minor - applied_minor, currency=payment.currency,
                               paid_at=payment.paid_at, value_at=value_at))
    step.log("payment.applied", payment_id=payment.payment_id, applied_minor=applied_minor,
             value_date=calendar.local_date(value_at, case.timezone).isoformat())
    if case.outcome is not None:
        return
    promises.count_payments(case, step)
    if plan.count_payment(case, step, payment.payment_id, applied_minor):
        return
    settle_or_cure(case, step, before)


def apply_reversal(case: CaseCore, step: Step, signal: PendingSignal) -> None:
    """Signal ``payment_reversed``: the payment counts as never made from its value date on (its
    allocation is undone and what it paid is owed again); once per ``reversal_id``."""
    reversal = parse(case, step, signal, PaymentReversed, seen="reversal")
    if reversal is None:
        return
    problem = None
    payment = case.ledger.payment(reversal.payment_id)
    if case.outcome is not None:
        problem = (f"payment_id: the case closed ({case.outcome}) before the reversal arrived; post it again "
                   "and it re-opens collection for the loan")
    elif payment is None:
        known = [p.payment_id for p in case.ledger.payments][-5:]
        problem = (f"payment_id: no payment {reversal.payment_id!r} was applied by this case (last applied: "
                   f"{known or 'none'}); a payment made before the case opened is reversed in the loan book")
    elif payment.reversed_at is not None:
        problem = f"payment_id: payment {payment.payment_id} was already reversed ({payment.reversal_id})"
    if problem:
        reject(case, step, signal, problem)
        return
    assert payment is not None
    view = case.view(step.policy, step.now)
    status = next((p for p in view.payments if p.payment_id == payment.payment_id), None)
    reversed_at = min(reversal.reversed_at or signal.received_at, step.now)
    payment.reversed_at = max(reversed_at, payment.value_at)
    payment.reversal_id = reversal.reversal_id
    payment.reversal_reason = reversal.reason
    case.mark_seen("reversal", reversal.reversal_id)
    step.record(PaymentReversedRecorded(key=next_key(case), at=step.now, payment_id=payment.payment_id,
                                        reversal_id=reversal.reversal_id, reason=reversal.reason,
                                        reversed_at=payment.reversed_at))
    step.log("payment.reversed", payment_id=payment.payment_id, reversal_id=reversal.reversal_id, reason=reversal.reason)
    plan.uncount_payment(case, step, payment.payment_id, status.applied_minor if status else 0)
    record_progress(case, step, case.view(step.policy, step.now))


def apply_instalment(case: CaseCore, step: Step, signal: PendingSignal) -> None:
    """Signal ``instalment_due``: another instalment of the loan fell due (or is announced), once
    per ``instalment_id``."""
    due = parse(case, step, signal, InstalmentDue)
    if due is None:
        return
    known = case.ledger.line(due.instalment_id)
    problem = (closed_problem(case, "instalment_id") or due.problem()
               or due_date_range_problem(due.due_date, calendar.local_date(step.now, case.timezone)))
    if not problem and due.currency is not None and due.currency != case.currency:
        problem = f"currency: must be the case currency {case.currency}, got {due.currency!r}"
    if not problem and known is not None:
        same = (known.due_date, known.principal_minor, known.interest_minor, known.fees_minor, known.penalty_minor) == (
            due.due_date, due.principal_minor, due.interest_minor, due.fees_minor, due.penalty_minor)
        problem = ("instalment_id: duplicate, this instalment was already applied" if same else
                   "instalment_id: already in the ledger with another due date or amounts; change it with "
                   "schedule_adjusted (cancel it and add the new one)")
    if not problem:
        problem = total_problem([due.total_minor] + [line.total_minor for line in case.ledger.lines if line.cancelled_at is None],
                                "principal_minor + interest_minor + fees_minor + penalty_minor (with the case's instalments)")
    if problem:
        reject(case, step, signal, problem)
        return
    before = case.view(step.policy, step.now)
    line = line_of(due, step.now)
    case.ledger.lines.append(line)
    line_entry(case, step, line)
    step.log("instalment.added", instalment_id=due.instalment_id, due_date=due.due_date.isoformat(),
             amount_minor=due.total_minor)
    settle_or_cure(case, step, before)


def adjustment_problem(case: CaseCore, adjustment: ScheduleAdjusted, now: datetime) -> str | None:
    """Why ``adjustment`` cannot apply (``"field: rule"``), or ``None`` (an empty one is refused
    by ``ScheduleAdjusted`` itself)."""
    for index, instalment_id in enumerate(adjustment.cancel):
        line = case.ledger.line(instalment_id)
        if line is None:
            return f"cancel.{index}: no instalment {instalment_id!r} in the ledger"
        if line.cancelled_at is not None:
            return f"cancel.{index}: instalment {instalment_id!r} is already cancelled"
    ids = [line.instalment_id for line in adjustment.add]
    for index, new in enumerate(adjustment.add):
        if case.ledger.line(new.instalment_id) is not None or ids.count(new.instalment_id) > 1:
            return f"add.{index}.instalment_id: {new.instalment_id!r} is already in the ledger or repeated; give a new id"
        problem = new.problem(f"add.{index}") or due_date_range_problem(
            new.due_date, calendar.local_date(now, case.timezone), f"add.{index}.due_date")
        if problem:
            return problem
    kept = [line.total_minor for line in case.ledger.lines
            if line.cancelled_at is None and line.instalment_id not in adjustment.cancel]
    return total_problem(kept + [new.total_minor for new in adjustment.add], "add")


def apply_adjustment(case: CaseCore, step: Step, signal: PendingSignal) -> None:
    """Signal ``schedule_adjusted``: cancel and add instalments as of ``effective_at``, once per
    ``adjustment_id``. Nothing owing afterwards ends the case ``closed_adjusted``."""
    adjustment = parse(case, step, signal, ScheduleAdjusted, seen="adjustment")
    if adjustment is None:
        return
    problem = closed_problem(case, "adjustment_id") or adjustment_problem(case, adjustment, step.now)
    if problem:
        reject(case, step, signal, problem)
        return
    effective = min(adjustment.effective_at or step.now, step.now)
    case.mark_seen("adjustment", adjustment.adjustment_id)
    for instalment_id in adjustment.cancel:
        line = case.ledger.line(instalment_id)
        assert line is not None
        line.cancelled_at = effective
        line.cancel_reason = f"{adjustment.reason_code} {adjustment.adjustment_id}"
        step.record(LedgerEntryRecorded(key=next_key(case), at=step.now, entry="instalment_cancelled", ref_id=instalment_id,
                                        amount_minor=line.total_minor, due_date=line.due_date, detail=line.cancel_reason))
    for new in adjustment.add:
        line = line_of(new, step.now)
        case.ledger.lines.append(line)
        line_entry(case, step, line, detail=f"{adjustment.reason_code} {adjustment.adjustment_id}")
    step.record(LedgerEntryRecorded(key=next_key(case), at=step.now, entry="adjustment", ref_id=adjustment.adjustment_id,
                                    detail=f"{adjustment.reason_code}: cancel {adjustment.cancel}, add "
                                           f"{[n.instalment_id for n in adjustment.add]}"
                                           + (f" (ref {adjustment.reference})" if adjustment.reference else "")))
    step.log("schedule.adjusted", adjustment_id=adjustment.adjustment_id, reason_code=adjustment.reason_code)
    view = case.view(step.policy, step.now)
    if view.outstanding.total == 0:
        endings.end_case(case, step, "closed_adjusted", view)
    else:
        record_progress(case, step, view)


def apply_legal(case: CaseCore, step: Step, signal: PendingSignal) -> None:
    """Signal ``legal_status_changed`` from the legal referral: a judgment's award writes the
    debt down (or up) to it and its court costs become a line owed; a settlement ends the case
    ``settled``, forgiving what remains."""
    event = parse(case, step, signal, LegalStatusChanged, seen="legal")
    if event is None:
        return
    problem = closed_problem(case, "event_id")
    if problem:
        reject(case, step, signal, problem)
        return
    case.mark_seen("legal", event.event_id)
    for hand_off in case.hand_offs:
        if hand_off.kind == "legal_referral" and hand_off.status == "active":
            hand_off.legal_status = event.status
    day = event.occurred_on or calendar.local_date(step.now, case.timezone)
    before = case.view(step.policy, step.now)
    if event.status == "judgment":
        _judgment(case, step, event, day, before)
    if event.status == "settled":
        remaining = before.outstanding.total
        if remaining:
            relief = LedgerRelief(relief_id=f"legal-settlement-{event.event_id}", kind="settlement", amount_minor=remaining,
                                  value_at=step.now, reason=f"legal settlement {event.event_id}")
            case.ledger.reliefs.append(relief)
            case.waived_minor += remaining
            step.record(LedgerEntryRecorded(key=next_key(case), at=step.now, entry="settlement", ref_id=relief.relief_id,
                                            amount_minor=remaining, detail=relief.reason))
        endings.end_case(case, step, "settled", case.view(step.policy, step.now))
        step.log("case.settled", legal_event_id=event.event_id, waived_minor=remaining)
        return
    step.log("legal.status", event_id=event.event_id, status=event.status)
    settle_or_cure(case, step, before)


def _judgment(case: CaseCore, step: Step, event: LegalStatusChanged, day, before: LedgerView) -> None:
    debt = before.outstanding.total
    if event.awarded_minor is not None and event.awarded_minor < debt:
        relief = LedgerRelief(relief_id=f"judgment-{event.event_id}", kind="write_down", amount_minor=debt - event.awarded_minor,
                              value_at=step.now, reason=f"judgment {event.event_id} awarded {event.awarded_minor}",
                              components=("penalty", "fees", "interest", "principal"), order="newest_first")
        case.ledger.reliefs.append(relief)
        step.record(LedgerEntryRecorded(key=next_key(case), at=step.now, entry="write_down", ref_id=relief.relief_id,
                                        amount_minor=relief.amount_minor, detail=relief.reason))
    elif event.awarded_minor is not None and event.awarded_minor > debt:
        extra = LoanInstalment(instalment_id=f"judgment-{event.event_id}", due_date=day,
                               interest_minor=event.awarded_minor - debt)
        line = line_of(extra, step.now, "judgment")
        case.ledger.lines.append(line)
        line_entry(case, step, line, "judgment", f"judgment {event.event_id} awarded {event.awarded_minor}")
    if event.court_costs_minor:
        costs = LoanInstalment(instalment_id=f"legal-costs-{event.event_id}", due_date=day, fees_minor=event.court_costs_minor)
        line = line_of(costs, step.now, "legal_costs")
        case.ledger.lines.append(line)
        line_entry(case, step, line, "legal_costs", f"court costs, judgment {event.event_id}")
