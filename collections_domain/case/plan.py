"""The case's repayment plan (pure): checking a proposal against the case, accepting it, counting
payments toward it, and how it ends. The arithmetic and the policy's limits are in
``rules.plans``; the plan's child workflow (``RepaymentPlanWorkflow``) watches the instalments.

While a plan is active the ladder holds and nothing accrues. The plan completes when the payments
made since it was accepted reach its total: its waiver (interest and fees only) is then forgiven,
and the case ends ``settled`` if nothing else is owing (an instalment of the loan that fell due
during the plan is still owed, and the ladder resumes for it).
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from collections_domain.case import endings
from collections_domain.case.base import next_key, parse, record_progress, reject
from collections_domain.case.children import PlanPaymentForwarded, PlanRun, plan_workflow_id
from collections_domain.case.contract import (
    ActivePlan,
    EndedPlan,
    PendingSignal,
    PlanAccepted,
    PlanInstalmentMissed,
    PlanProposal,
    describe_errors,
)
from collections_domain.case.ledger import WAIVABLE, AccrualFreeze, LedgerRelief
from collections_domain.case.state import CaseCore, Step
from collections_domain.rules import plans
from collections_domain.store.records import LedgerEntryRecorded, PlanRecorded


def retried_plan(case: CaseCore | None, payload: Any) -> PlanAccepted | None:
    """The active plan when ``payload`` proposes it again (same ``plan_id``): a client retry."""
    plan_id = payload.get("plan_id") if isinstance(payload, dict) else getattr(payload, "plan_id", None)
    if case is None or case.plan is None or plan_id != case.plan.plan_id:
        return None
    return PlanAccepted.model_validate(case.plan.model_dump(include=set(PlanAccepted.model_fields)))


def plan_check(case: CaseCore | None, step: Step | None, payload: Any) -> tuple[PlanProposal | None, str | None]:
    """The proposal, or the rule it breaks (``"field: rule"``). ``case`` ``None``: still opening."""
    try:
        proposal = PlanProposal.model_validate(payload)
    except ValidationError as err:
        return None, "; ".join(describe_errors(err))
    if case is None or step is None:
        return proposal, None
    if case.outcome is not None:
        return None, f"plan_id: the case is closed ({case.outcome})"
    if proposal.plan_id in case.seen_ids("plan"):
        return None, "plan_id: duplicate, a plan with this id was already accepted"
    if case.plan is not None:
        return None, f"plan_id: plan {case.plan.plan_id} is active; it must end first"
    if case.open_promise is not None:
        return None, f"plan_id: promise {case.open_promise.promise_id} is open; a plan can follow once it is kept or broken"
    dispute = next((p for p in case.pauses if p.kind == "dispute"), None)
    if dispute is not None:
        return None, f"plan_id: dispute {dispute.id} is open; no collection while it is"
    view = case.view(step.policy, step.now)
    problem = plans.plan_problem(proposal, policy=step.policy, tz_name=case.timezone, now=step.now,
                                 outstanding_minor=view.outstanding.total,
                                 interest_fees_outstanding_minor=view.waivable_minor)
    return (None, problem) if problem else (proposal, None)


def accept_plan(case: CaseCore, step: Step, proposal: PlanProposal) -> PlanAccepted:
    """Accept ``proposal`` (``plan_check`` passed): its schedule splits what is outstanding now."""
    view = case.view(step.policy, step.now)
    instalments, waived = plans.build_schedule(proposal, policy=step.policy, tz_name=case.timezone, now=step.now,
                                               outstanding_minor=view.outstanding.total)
    active = ActivePlan(
        plan_id=proposal.plan_id,
        kind=proposal.kind,
        instalments=instalments,
        total_minor=sum(i.amount_minor for i in instalments),
        waived_minor=waived,
        currency=case.currency,
        plan_workflow_id=plan_workflow_id(case.workflow_id, proposal.plan_id),
        approver_id=proposal.approver_id,
        accepted_at=step.now,
    )
    case.plan = active
    case.mark_seen("plan", active.plan_id)
    case.ledger.freezes.append(AccrualFreeze(reason=f"plan:{active.plan_id}", start=step.now))
    step.record(PlanRecorded(key=next_key(case), at=step.now, plan_id=active.plan_id, plan_kind=active.kind,
                             status="active", total_minor=active.total_minor, waived_minor=active.waived_minor,
                             currency=active.currency, approver_id=active.approver_id, proposed_by=proposal.proposed_by,
                             plan_workflow_id=active.plan_workflow_id, instalments=active.instalments))
    step.log("plan.accepted", plan_id=active.plan_id, kind=active.kind)
    return PlanAccepted.model_validate(active.model_dump(include=set(PlanAccepted.model_fields)))


def plan_run(case: CaseCore, step: Step) -> PlanRun:
    """The input of the plan's child workflow (deadlines from ``rules.plans.instalment_deadline``)."""
    active = case.plan
    assert active is not None
    return PlanRun(
        plan_id=active.plan_id,
        parent_workflow_id=case.workflow_id,
        loan_id=case.loan_id,
        currency=case.currency,
        timezone=case.timezone,
        instalments=active.instalments,
        deadlines=[plans.instalment_deadline(i.due_date, case.timezone, step.policy) for i in active.instalments],
        instalments_per_run=step.policy.plans.instalments_per_run,
        paid_toward_minor=active.paid_toward_minor,
    )


def count_payment(case: CaseCore, step: Step, payment_id: str, applied_minor: int) -> bool:
    """Count ``applied_minor`` of payment ``payment_id`` toward the active plan (forwarded to its
    child); complete the plan when its total is reached. True when the plan completed."""
    active = case.plan
    if active is None or applied_minor == 0:
        return False
    active.paid_toward_minor += applied_minor
    covered = 0
    for instalment in active.instalments:
        covered += instalment.amount_minor
        if instalment.status == "open" and active.paid_toward_minor >= covered:
            instalment.status = "paid"
    if active.started:
        step.signal(active.plan_workflow_id, "payment_applied",
                    PlanPaymentForwarded(payment_id=payment_id, amount_minor=applied_minor))
    if active.paid_toward_minor >= active.total_minor:
        complete(case, step)
        return True
    return False


def uncount_payment(case: CaseCore, step: Step, payment_id: str, applied_minor: int) -> None:
    """A payment counted toward the active plan was reversed: take it back (and tell the child)."""
    active = case.plan
    if active is None or applied_minor == 0:
        return
    active.paid_toward_minor = max(0, active.paid_toward_minor - applied_minor)
    covered = 0
    for instalment in active.instalments:
        covered += instalment.amount_minor
        if instalment.status == "paid" and active.paid_toward_minor < covered:
            instalment.status = "open"
    if active.started:
        step.signal(active.plan_workflow_id, "payment_reversed",
                    PlanPaymentForwarded(payment_id=payment_id, amount_minor=applied_minor))


def complete(case: CaseCore, step: Step) -> None:
    """All the plan's instalments are paid: forgive its waiver, end it ``completed``, and end the
    case ``settled`` when nothing else is owing. The waiver is forgiven as of the plan's
    acceptance (it was promised then, on condition the plan is kept), so the payments made under
    the plan pay what was not waived."""
    active = case.plan
    assert active is not None
    if active.waived_minor:
        relief = LedgerRelief(relief_id=f"plan-{active.plan_id}", kind="waiver", amount_minor=active.waived_minor,
                              value_at=active.accepted_at, reason=f"plan {active.plan_id} completed", components=WAIVABLE)
        case.ledger.reliefs.append(relief)
        case.waived_minor += active.waived_minor
        step.record(LedgerEntryRecorded(key=next_key(case), at=step.now, entry="waiver", ref_id=relief.relief_id,
                                        amount_minor=relief.amount_minor, detail=relief.reason))
    end_plan(case, step, "completed", f"all {len(active.instalments)} instalment(s) paid", child_done=True)
    view = case.view(step.policy, step.now)
    if view.outstanding.total == 0:
        endings.end_case(case, step, "settled", view)
        step.log("case.settled", plan_id=active.plan_id, waived_minor=active.waived_minor)
    else:
        record_progress(case, step, view)


def end_plan(case: CaseCore, step: Step, status: str, reason: str, *, child_done: bool = False) -> None:
    """End the active plan (``completed``, ``broken``, ``closed``); ``closed`` also tells its child
    workflow to stop watching. Accrual resumes."""
    active = case.plan
    assert active is not None
    case.plan = None
    for freeze in case.ledger.freezes:
        if freeze.reason == f"plan:{active.plan_id}" and freeze.end is None:
            freeze.end = step.now
    if active.started:
        if status == "closed":
            step.signal(active.plan_workflow_id, "close_plan", reason, ends_child=True)
        elif child_done:
            step.child_ending(active.plan_workflow_id)  # it completes on the same payment
    case.plans_ended.append(EndedPlan(plan_id=active.plan_id, kind=active.kind, status=status, ended_at=step.now,  # type: ignore[arg-type]
                                      reason=reason))
    step.record(PlanRecorded(key=next_key(case), at=step.now, plan_id=active.plan_id, plan_kind=active.kind,
                             status=status, total_minor=active.total_minor,  # type: ignore[arg-type]
                             waived_minor=active.waived_minor if status == "completed" else 0, currency=active.currency,
                             approver_id=active.approver_id, plan_workflow_id=active.plan_workflow_id, reason=reason))


def apply_instalment_missed(case: CaseCore, step: Step, signal: PendingSignal) -> None:
    """Signal ``plan_instalment_missed`` from the plan's child: the plan is broken."""
    missed = parse(case, step, signal, PlanInstalmentMissed)
    if missed is None:
        return
    if case.plan is None or case.plan.plan_id != missed.plan_id:
        active = case.plan.plan_id if case.plan else "none"
        reject(case, step, signal, f"plan_id: {missed.plan_id!r} is not the active plan (active: {active})")
        return
    for instalment in case.plan.instalments:
        if instalment.seq == missed.seq:
            instalment.status = "missed"
    end_plan(case, step, "broken", f"instalment {missed.seq} missed")
    step.log("plan.broken", plan_id=missed.plan_id, seq=missed.seq)
