"""How a case ends (pure): cured, settled, written off, stopped; and what ending does to its
children (a placement recalled, a legal referral withdrawn, a plan closed), its tasks and pauses."""

from __future__ import annotations

from collections_domain.case import agents, pauses, plan
from collections_domain.case.base import next_key, record_progress
from collections_domain.case.contract import Outcome
from collections_domain.case.ledger import LedgerView
from collections_domain.case.state import CaseCore, Step
from collections_domain.case.children import ChildClosed
from collections_domain.ops import metrics
from collections_domain.store.records import CaseWrittenOff


def end_case(case: CaseCore, step: Step, outcome: Outcome, view: LedgerView) -> None:
    """Close the case with ``outcome`` as of ``step.now``: open agent tasks are cancelled, pauses
    and accrual freezes end, and the children are told to close (the workflow then waits for them)."""
    agents.cancel_tasks(case, step)
    pauses.end_all(case, step, f"case {outcome}")
    for freeze in case.ledger.freezes:
        if freeze.end is None:
            freeze.end = step.now
    case.outcome = outcome
    case.closed_at = step.now
    close_children(case, step, f"case {outcome}")
    step.count(metrics.CASES_CLOSED, outcome=outcome, jurisdiction=case.jurisdiction)
    record_progress(case, step, view)


def cure(case: CaseCore, step: Step, days_past_due: int) -> None:
    """Nothing due is owing any more: the case ends ``cured`` at DPD ``days_past_due`` (the DPD
    just before the payment that cured it)."""
    case.cured_at = step.now
    case.cured_days_past_due = days_past_due
    end_case(case, step, "cured", case.view(step.policy, step.now))
    step.log("case.cured", days_past_due=days_past_due)


def write_off(case: CaseCore, step: Step, view: LedgerView) -> None:
    """The policy's write-off rule fired: end ``written_off`` with what is outstanding recorded in
    ``write_offs``. Payments after it are recoveries against that amount (``portfolio.loan_book``)."""
    case.written_off_minor = view.outstanding.total
    step.record(CaseWrittenOff(key=next_key(case), at=step.now, amount_minor=view.outstanding.total, currency=case.currency,
                               days_past_due=view.days_past_due, last_payment_at=view.last_payment_value_at,
                               policy_version=case.policy_version))
    end_case(case, step, "written_off", view)
    step.log("case.written_off", days_past_due=view.days_past_due, amount_minor=view.outstanding.total)


def close_children(case: CaseCore, step: Step, reason: str, *, plans_too: bool = True, legal_too: bool = True) -> None:
    """Ask the case's children to end: ``recall`` to an active placement, ``withdraw`` to an active
    legal referral, and (``plans_too``) close the active plan."""
    for hand_off in case.hand_offs:
        if hand_off.status != "active" or (hand_off.kind == "legal_referral" and not legal_too):
            continue
        if hand_off.kind == "placement":
            step.signal(hand_off.workflow_id, "recall", reason, ends_child=True)
            hand_off.status = "recalled"
        else:
            step.signal(hand_off.workflow_id, "withdraw", reason, ends_child=True)
            hand_off.status = "withdrawn"
        hand_off.ended_at = step.now
        hand_off.reason = reason
    if plans_too and case.plan is not None:
        plan.end_plan(case, step, "closed", reason)


def child_closed(case: CaseCore, step: Step, closed: ChildClosed) -> None:
    """A child (placement, legal referral) says it is about to complete: mark its hand-off ended."""
    for hand_off in case.hand_offs:
        if hand_off.workflow_id == closed.workflow_id and hand_off.status == "active":
            hand_off.status = "recalled" if hand_off.kind == "placement" else "withdrawn"
            hand_off.ended_at = step.now
            hand_off.reason = closed.reason
