"""The case core: every rule and state transition of a collections case, as plain functions.

``LoanCollectionWorkflow`` (the shell) only sequences these: it opens the case (``open_case``),
hands each message to ``apply_signal`` (or the update functions), asks ``housekeeping`` and
``next_move`` what is due, runs a due step through the compliance gate (``gate``) and the
activities and children it needs (``contact_request``, ``hand_off_request``), reports back
(``step_taken``, ``defer``, ``hand_off_started``), and performs the effects each call appends to
its ``Step``. Nothing here does I/O or reads a clock, so the whole of it is tested without
Temporal (``tests/case``) and imported through the sandbox once per worker.

Where each rule lives: money (``case.money``), promises (``case.promises``), pauses and stops
(``case.pauses``), the plan (``case.plan``), agent tasks and decisions (``case.agents``), the
ladder and what is due (``case.progress``), endings (``case.endings``), what the case shows
(``case.status``), the ledger arithmetic (``case.ledger``).
"""

from __future__ import annotations

from datetime import date
from typing import Any, Callable

from collections_domain.case import agents, endings, money, pauses, plan, progress, promises
from collections_domain.case.base import next_key, reject, record_progress
from collections_domain.case.children import (
    LEGAL_WORKFLOW_TYPE,
    PLACEMENT_WORKFLOW_TYPE,
    legal_workflow_id,
    placement_workflow_id,
)
from collections_domain.case.contract import SIGNAL_ID_FIELD, ActionResult, CaseInput, HandOff, OpeningReason, PendingSignal
from collections_domain.case.ledger import Ledger, LedgerPayment
from collections_domain.case.progress import Due, Sleep
from collections_domain.case.state import CaseCore, Step
from collections_domain.ops import metrics
from collections_domain.rules import compliance
from collections_domain.rules.policy import ACTIONS
from collections_domain.rules.strategy import CaseStrategy
from collections_domain.store.records import CaseOpened, CaseRecords, ContactRequest, HandOffRequest, ReopenedFacts

__all__ = ["HISTORY_REVISION", "Due", "Sleep", "case_records", "contact_groups", "opening_input", "apply_signal", "begin_step", "contact_request", "defer", "gate", "hand_off_request",
           "hand_off_started", "housekeeping", "next_move", "open_case", "step_taken", "defer_when_window_closes"]

#: Hand-off actions run as child workflows, by the kind of hand-off.
HAND_OFF_KINDS = {"agency_placement": "placement", "legal_referral": "legal_referral"}

_APPLIERS: dict[str, Callable[[CaseCore, Step, PendingSignal], None]] = {
    "payment_received": money.apply_payment,
    "payment_reversed": money.apply_reversal,
    "instalment_due": money.apply_instalment,
    "schedule_adjusted": money.apply_adjustment,
    "legal_status_changed": money.apply_legal,
    "promise_to_pay": promises.apply_promise,
    "dispute_opened": pauses.apply_dispute_opened,
    "dispute_resolved": pauses.apply_dispute_resolved,
    "cease_contact": pauses.apply_cease_contact,
    "hardship": pauses.apply_hardship,
    "breathing_space": pauses.apply_breathing_space,
    "bankruptcy": pauses.apply_stop,
    "deceased": pauses.apply_stop,
    "plan_instalment_missed": plan.apply_instalment_missed,
}
#: Signals a case still applies after it closed (money is never turned away; it is recorded).
_AFTER_CLOSE = ("payment_received", "payment_reversed")

housekeeping = progress.housekeeping
next_move = progress.next_move
begin_step = progress.begin_step
step_taken = progress.step_taken
defer = progress.defer
defer_when_window_closes = progress.defer_when_window_closes


#: The shape of history a new case writes (``CaseCore.history_revision``). 2 (issue 14): the
#: opening activity writes the opening records, and records asked for before a ladder step ride
#: with that step's first activity. Cases opened at 1 keep 1 (their histories replay as written).
HISTORY_REVISION = 2


def opening_input(case_input: CaseInput, reopen: ReopenedFacts | None) -> CaseInput:
    """The input a case opens with: ``case_input``, or, when a reversal re-opens the ended case it
    came from (``reopen``, from the opening activity), that case's instalments and payments."""
    if reopen is None:
        return case_input
    return case_input.model_copy(update={
        "instalments": reopen.instalments, "payments": reopen.payments, "reopened_from": reopen.reopened_from,
        "oldest_due_date": min(i.due_date for i in reopen.instalments),
        "principal_due_minor": 0, "interest_due_minor": 0, "fees_due_minor": 0,
        "opening_reason": OpeningReason(source="reversal", rule=reopen.rule),
    })


def contact_groups(requests: list[ContactRequest], task_queues: dict[str, str]) -> list[tuple[str | None, list[int]]]:
    """The step's contacts grouped by task queue: ``[(queue, [indexes into requests])]``, first
    the contacts on no rate-limited channel (queue None: the case's own), then one group per
    limited channel in the order the step names them. ``task_queues``: ``{channel: queue}``
    (``ContactProfile.task_queues``, from ``CONTACT_RATE_LIMITS``)."""
    groups: dict[str | None, list[int]] = {}
    for index, request in enumerate(requests):
        groups.setdefault(task_queues.get(ACTIONS[request.action].channel.value), []).append(index)
    ordered = sorted(groups.items(), key=lambda item: item[0] is not None)  # stable: the step's order
    return ordered


def case_records(case: CaseCore, events: list) -> CaseRecords:
    """``events`` (the ``Record`` effects' events) as one batch for the records activity."""
    return CaseRecords(workflow_id=case.workflow_id, loan_id=case.loan_id, oldest_due_date=case.opening_due_date,
                       events=events, episode_id=case.episode_id)


def open_case(case_input: CaseInput, step: Step, *, workflow_id: str, episode_id: str, currency_exponent: int,
              strategy: CaseStrategy | None = None, history_revision: int = 1) -> CaseCore:
    """A new case for ``case_input`` (checked already) under ``step.policy`` (already the ladder of
    ``strategy``'s treatment), opened at ``step.now``; ``episode_id`` is the workflow's first run id.
    A pure function of its arguments: the opening activity and the workflow compute the same case."""
    lines = [money.line_of(instalment, step.now) for instalment in case_input.loan_instalments()]
    oldest = min(line.due_date for line in lines)
    reason = case_input.opening_reason
    case = CaseCore(
        loan_id=case_input.loan_id,
        borrower_id=case_input.borrower_id,
        workflow_id=workflow_id,
        episode_id=episode_id,
        currency=case_input.currency,
        currency_exponent=currency_exponent,
        timezone=case_input.timezone,
        jurisdiction=case_input.jurisdiction,
        region=case_input.region,
        portfolio=case_input.portfolio,
        policy_version=step.policy.version,
        policy_digest=step.policy.digest,
        opened_at=step.now,
        opening_due_date=oldest,
        anchor_due_date=oldest,
        opening_reason=reason,
        reopened_from=case_input.reopened_from,
        strategy=strategy,
        history_revision=history_revision,
        ledger=Ledger(lines=lines, payments=[
            LedgerPayment(payment_id=p.payment_id, amount_minor=p.amount_minor, paid_at=p.paid_at, value_at=p.paid_at,
                          received_at=min(p.paid_at, step.now))
            for p in case_input.payments
        ]),
    )
    view = case.view(step.policy, step.now)
    step.record(CaseOpened(key=next_key(case), at=step.now, loan_id=case.loan_id, borrower_id=case.borrower_id,
                           currency=case.currency, opening_overdue_minor=view.outstanding.total, oldest_due_date=oldest,
                           timezone=case.timezone, jurisdiction=case.jurisdiction, policy_version=case.policy_version,
                           episode_id=episode_id, opening_source=reason.source if reason else "manual",
                           opening_rule=reason.rule if reason else None, reopened_from=case.reopened_from,
                           portfolio=case.portfolio, region=case.region,
                           score_band=strategy.score_band if strategy else None,
                           model_version=strategy.model_version if strategy else None,
                           treatment=strategy.treatment if strategy else None,
                           experiment_id=strategy.experiment_id if strategy else None,
                           strategy_arm=strategy.arm if strategy else None))
    for line in lines:
        money.line_entry(case, step, line)
    record_progress(case, step, view)
    step.count(metrics.CASES_OPENED, jurisdiction=case.jurisdiction, currency=case.currency)
    step.log("case.opened", instalments=len(lines), outstanding_minor=view.outstanding.total,
             days_past_due=view.days_past_due, source=reason.source if reason else "manual")
    return case


def apply_signal(case: CaseCore, step: Step, signal: PendingSignal) -> None:
    """Apply one signal (in arrival order), or record why it changed nothing."""
    applier = _APPLIERS.get(signal.kind)
    if applier is None:
        reject(case, step, signal, f"signal: {signal.kind!r} is not a signal of this case")
        return
    if case.outcome is not None and signal.kind not in _AFTER_CLOSE:
        reject(case, step, signal, f"{_id_field(signal)}: the case is closed ({case.outcome})")
        return
    applier(case, step, signal)


def _id_field(signal: PendingSignal) -> str:
    return SIGNAL_ID_FIELD.get(signal.kind, "id")


def gate(case: CaseCore, step: Step, due: Due, profile: compliance.ContactProfile) -> compliance.StepDecision:
    """The compliance gate's answer for ``due``'s step (``rules.compliance.decide_step``) with the
    borrower's contact ``profile`` (loaded by an activity)."""
    chosen = due.position.step
    assert chosen is not None
    return compliance.decide_step(
        step=chosen.name,
        actions=chosen.actions,
        rules=step.policy.compliance_rules(case.jurisdiction),
        facts=progress.case_facts(case, step),
        profile=profile,
        now=step.now,
        days_past_due=due.days_past_due,
    )


def contact_key(case: CaseCore, anchor: date, step_name: str, action: str) -> str:
    """The idempotency key of a step's action: ``<workflow id>:<episode>:<anchor due date>:<step>:<action>``
    (unique in ``contact_attempts``; the ``Idempotency-Key`` sent to providers)."""
    return f"{case.workflow_id}:{case.episode_id[:8]}:{anchor.isoformat()}:{step_name}:{action}"


def contact_request(case: CaseCore, step: Step, due: Due, action: str,
                    decision: compliance.ContactDecision | None = None) -> ContactRequest:
    """What the activity that runs ``action`` of ``due``'s step needs (ids and amounts only)."""
    chosen = due.position.step
    assert chosen is not None
    view = case.view(step.policy, step.now)
    return ContactRequest(
        idempotency_key=contact_key(case, due.anchor_due_date, chosen.name, action),
        workflow_id=case.workflow_id,
        loan_id=case.loan_id,
        borrower_id=case.borrower_id,
        step=chosen.name,
        action=action,
        days_past_due=due.days_past_due,
        outstanding_minor=view.outstanding.total,
        paid_minor=view.paid_minor,
        currency=case.currency,
        oldest_due_date=due.anchor_due_date,
        jurisdiction=case.jurisdiction,
        policy_version=case.policy_version,
        requirements=list(decision.requirements) if decision else [],
        send_by=decision.send_by if decision else None,
    )


def not_run(decision: compliance.ContactDecision) -> ActionResult:
    """The result of a decision that ran nothing (skipped, deferred)."""
    return ActionResult(action=decision.action, status=decision.decision, idempotency_key="",
                        detail=f"{decision.rule_id}: {decision.reason}")


def hand_off_request(case: CaseCore, step: Step, due: Due, request: ContactRequest) -> tuple[str, str, HandOffRequest]:
    """``(workflow type, workflow id, input)`` of the child that runs a hand-off action."""
    kind = HAND_OFF_KINDS[request.action]
    if kind == "placement":
        child_id, child_type = placement_workflow_id(case.workflow_id, due.anchor_due_date), PLACEMENT_WORKFLOW_TYPE
    else:
        child_id, child_type = legal_workflow_id(case.workflow_id, due.anchor_due_date), LEGAL_WORKFLOW_TYPE
    return child_type, child_id, HandOffRequest(
        request=request,
        parent_workflow_id=case.workflow_id,
        timezone=case.timezone,
        term_days=step.policy.placement.term_days if kind == "placement" else None,
    )


def hand_off_started(case: CaseCore, step: Step, action: str, child_id: str) -> ActionResult:
    """Child ``child_id`` runs the hand-off ``action`` now."""
    kind = HAND_OFF_KINDS[action]
    case.hand_offs.append(HandOff(kind=kind, workflow_id=child_id, started_at=step.now))  # type: ignore[arg-type]
    return ActionResult(action=action, status="started", idempotency_key="", detail=f"child workflow {child_id}")


def record_decisions(case: CaseCore, step: Step, due: Due, decisions: list[compliance.ContactDecision]) -> None:
    """Keep the gate's decisions for a step about to run, each with the key of what it runs, and
    begin the step (``progress.begin_step``)."""
    chosen = due.position.step
    assert chosen is not None
    for decision in decisions:
        run_key = contact_key(case, due.anchor_due_date, chosen.name, decision.run_action) if decision.run_action else None
        agents.record_decision(case, step, decision, run_key)
    progress.begin_step(case, step, due, decisions)


def bookkeeping_failed(case: CaseCore, step: Step, reason: str) -> None:
    """A database write was refused for good (a record broke a rule): keep the reason in the
    status (``bookkeeping_errors``) so operators see it; the case goes on."""
    case.bookkeeping_errors.append(reason[:300])
    step.log("records.refused", level="warning", reason=reason[:300])


def child_closed(case: CaseCore, step: Step, closed: Any) -> None:
    """Signal ``child_closed`` from a child: its hand-off ended."""
    endings.child_closed(case, step, closed)
