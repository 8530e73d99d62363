"""What a case shows (pure): the ``status`` query (CONTRACT.md), the Markdown current details the
Temporal UI shows operators, and the search-attribute values (ids, stages, amounts and dates only:
search attributes are stored in plaintext)."""

from __future__ import annotations

from datetime import datetime

from temporalio.common import SearchAttributePair

from collections_domain.case import search_attributes as sa
from collections_domain.case.base import local, money
from collections_domain.case.contract import CaseInput, CaseStatus, NextStep
from collections_domain.case.ledger import LedgerView
from collections_domain.case.state import CaseCore
from collections_domain.rules import calendar
from collections_domain.rules.policy import ACTIONS, CollectionPolicy


def opening_status(case_input: CaseInput, now: datetime) -> CaseStatus:
    """The status of a case not opened yet (or whose input was refused): what its input says, so
    a client reading it at once sees the amount and DPD it opens with."""
    days_past_due, outstanding = 0, 0
    if not case_input.input_problems:
        outstanding = case_input.overdue_minor
        try:
            days_past_due = calendar.days_past_due(case_input.oldest_due_date, now, case_input.timezone)
        except calendar.UnknownTimeZoneError:
            pass
    return CaseStatus(
        loan_id=getattr(case_input, "loan_id", ""), stage="identified", days_past_due=days_past_due,
        currency=getattr(case_input, "currency", ""), outstanding_minor=outstanding, paid_minor=0, overpaid_minor=0,
        open_promise=None, promises_kept=0, promises_broken=0, steps_done=[], next_step=None, rejected_signals=[],
        outcome=None, as_of=now, oldest_due_date=getattr(case_input, "oldest_due_date", now.date()),
        timezone=getattr(case_input, "timezone", ""), jurisdiction=getattr(case_input, "jurisdiction", ""),
        policy_version="",
    )


def status(case: CaseCore, policy: CollectionPolicy, now: datetime, next_step: NextStep | None) -> CaseStatus:
    """The ``status`` query: CONTRACT.md's fields, then the additions (the ledger with every
    instalment and payment, outstanding by component, DPD from the oldest instalment owing)."""
    view = case.view(policy, now)
    return CaseStatus(
        loan_id=case.loan_id,
        stage=case.stage,
        days_past_due=view.days_past_due,
        currency=case.currency,
        outstanding_minor=view.outstanding.total,
        paid_minor=view.paid_minor,
        overpaid_minor=view.credit_minor,
        open_promise=case.open_promise,
        promises_kept=case.promises_kept,
        promises_broken=case.promises_broken,
        steps_done=case.steps_done,
        next_step=next_step if case.outcome is None else None,
        rejected_signals=case.rejected_signals,
        outcome=case.outcome,
        as_of=now,
        oldest_due_date=view.oldest_unpaid_due_date or case.anchor_due_date,
        timezone=case.timezone,
        jurisdiction=case.jurisdiction,
        policy_version=case.policy_version,
        steps_skipped=case.steps_skipped,
        cured_at=case.cured_at,
        cured_days_past_due=case.cured_days_past_due,
        plan=case.plan,
        plans_ended=case.plans_ended,
        pauses=case.pauses,
        pauses_ended=case.pauses_ended,
        cease_contact=case.cease_contact,
        ladder_shift_days=case.ladder_shift_days,
        open_tasks=case.open_tasks,
        contact_outcomes=case.contact_outcomes,
        hand_offs=case.hand_offs,
        waived_minor=case.waived_minor,
        closed_at=case.closed_at,
        written_off_minor=case.written_off_minor,
        contact_decisions=case.contact_decisions,
        deferred_step=case.deferred_step if case.outcome is None else None,
        ledger=view,
        outstanding_components=view.outstanding,
        max_days_past_due=view.max_days_past_due,
        episode_id=case.episode_id,
        portfolio=case.portfolio,
        opening_reason=case.opening_reason,
        reopened_from=case.reopened_from,
        bookkeeping_errors=case.bookkeeping_errors,
        strategy=case.strategy,
    )


def search_attribute_pairs(case: CaseCore, view: LedgerView) -> list[SearchAttributePair]:
    """The case's search-attribute values now (``CollectionOutcome`` once it has one)."""
    anchor = view.oldest_unpaid_due_date or case.anchor_due_date
    return sa.case_pairs(
        loan_id=case.loan_id,
        stage=case.stage,
        overdue_since=calendar.overdue_since(anchor, case.timezone),
        outstanding_minor=view.outstanding.total,
        jurisdiction=case.jurisdiction,
        outcome=case.outcome,
        strategy_arm=case.strategy.strategy_arm if case.strategy else None,
    )


def details(case: CaseCore, policy: CollectionPolicy, now: datetime, next_step: NextStep | None) -> str:
    """The Markdown the Temporal UI shows as the case's current details (no personal data)."""
    view = case.view(policy, now)
    owed = view.outstanding
    anchor = view.oldest_unpaid_due_date or case.anchor_due_date
    lines = [
        f"**Loan** {case.loan_id} · **Stage** {case.stage} · **DPD** {view.days_past_due} "
        f"(oldest unpaid due {anchor}, {case.timezone}; highest {view.max_days_past_due})",
        f"**Outstanding** {money(case, owed.total)}: principal {money(case, owed.principal)}, interest "
        f"{money(case, owed.interest)}, fees {money(case, owed.fees)}, penalty {money(case, owed.penalty)}"
        + (f" · **Not yet due** {money(case, view.not_yet_due_minor)}" if view.not_yet_due_minor else ""),
        f"**Paid** {money(case, view.paid_minor)}" + (f" · **Credit** {money(case, view.credit_minor)}" if view.credit_minor else ""),
        "**Instalments** " + ", ".join(
            f"{line.instalment_id} due {line.due_date} {line.status}"
            + (f" {money(case, line.outstanding.total)}" if line.status == "open" else "")
            for line in view.lines[-6:]
        ) + (f" (and {len(view.lines) - 6} earlier)" if len(view.lines) > 6 else ""),
    ]
    if case.strategy is not None:
        st = case.strategy
        band = f"score band {st.score_band} ({st.model_version}) · " if st.score_band else ""
        lines.append(f"**Strategy** {band}treatment {st.treatment} · arm {st.strategy_arm}")
    if next_step is not None and case.outcome is None:
        lines.append(f"**Next** {next_step.step} at {local(case, next_step.at)}")
    if case.last_payment_at is not None:
        lines.append(f"**Last payment** {local(case, case.last_payment_at)}")
    if case.steps_done:
        last = case.steps_done[-1]
        actions = ", ".join(ACTIONS[a].label if a in ACTIONS else a for a in last.actions)
        lines.append(f"**Last step** DPD {last.days_past_due} {last.step} at {local(case, last.at)}: {actions}")
    if case.open_promise is not None:
        p = case.open_promise
        lines.append(f"**Promise** {p.promise_id}: {money(case, p.amount_minor)} by {p.promised_date}, "
                     f"paid toward {money(case, p.paid_toward_minor)}")
    if case.plan is not None:
        plan = case.plan
        paid = sum(1 for i in plan.instalments if i.status == "paid")
        lines.append(f"**Plan** {plan.plan_id} ({plan.kind}): {paid}/{len(plan.instalments)} instalments paid, "
                     f"{money(case, plan.paid_toward_minor)} of {money(case, plan.total_minor)}"
                     + (f", {money(case, plan.waived_minor)} waived when paid" if plan.waived_minor else ""))
    for pause in case.pauses:
        until = f" until {local(case, pause.until)}" if pause.until else ""
        lines.append(f"**Paused** {pause.kind} {pause.id}{until}")
    for hand_off in case.hand_offs:
        state = f" ({hand_off.legal_status})" if hand_off.legal_status else ""
        lines.append(f"**{hand_off.kind.replace('_', ' ').capitalize()}** {hand_off.workflow_id}: {hand_off.status}{state}")
    for task in case.open_tasks:
        missed = " (missed)" if task.report_by <= now else ""
        lines.append(f"**Open task** {ACTIONS[task.action].label}: outcome due by {local(case, task.report_by)}{missed}")
    if case.deferred_step is not None and case.outcome is None:
        d = case.deferred_step
        lines.append(f"**Deferred** {d.step} until {local(case, d.until)} ({d.rule_id})")
    if case.contact_decisions:
        last_decision = case.contact_decisions[-1]
        lines.append(f"**Last compliance decision** {last_decision.step}/{last_decision.action}: "
                     f"{last_decision.decision} ({last_decision.rule_id})")
    if case.opening_reason is not None:
        lines.append(f"**Opened by** {case.opening_reason.source}" + (f": {case.opening_reason.rule}" if case.opening_reason.rule else ""))
    if case.reopened_from:
        lines.append(f"**Re-opens** run {case.reopened_from}")
    if case.outcome is not None:
        lines.append(f"**Outcome** {case.outcome}")
    lines.append(f"Policy {case.policy_version} · promises kept {case.promises_kept}, broken {case.promises_broken}")
    return "\n\n".join(lines)
