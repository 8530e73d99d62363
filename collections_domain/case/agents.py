"""Agent tasks and what they achieved, and the compliance gate's decisions on the record (pure).

A ladder step's agent call or field visit opens a task that an agent must report on by
``contact_outcomes.call_report_hours`` / ``visit_report_hours``. A report (update
``record_contact_outcome``) closes it, and ``promise_made`` opens the promise it carries,
``dispute_raised`` a dispute. A task nobody reported by its deadline is recorded ``missed`` when
the case next wakes (no timer of its own: the status shows it as missed from the deadline on).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from pydantic import ValidationError

from collections_domain.case import pauses, promises
from collections_domain.case.base import next_key
from collections_domain.case.contract import AgentTask, ContactOutcome, ContactOutcomeReport, describe_errors
from collections_domain.case.state import CaseCore, Step
from collections_domain.rules.compliance import ContactDecision
from collections_domain.rules.policy import ACTIONS
from collections_domain.store.records import ContactDecisionRecorded, ContactOutcomeRecorded

NOTE_RULE = (
    "note: free text never goes to the workflow (its history is stored in plaintext); "
    "give it to `starter.py record-outcome --note` or the API, which store it in the database"
)


def open_task(case: CaseCore, step: Step, action: str, task_key: str) -> None:
    """Open an agent task for ``action`` (a call or a visit) keyed ``task_key``."""
    rules = step.policy.contact_outcomes
    hours = rules.visit_report_hours if ACTIONS[action].task_kind == "visit" else rules.call_report_hours
    if any(task.task_key == task_key for task in case.open_tasks):
        return
    case.open_tasks.append(AgentTask(task_key=task_key, action=action, created_at=step.now,
                                     report_by=step.now + timedelta(hours=hours)))


def add_outcome(case: CaseCore, step: Step, task: AgentTask, outcome: str,
                report: ContactOutcomeReport | None) -> ContactOutcome:
    """Record ``outcome`` for ``task`` (``missed``, ``cancelled`` or an agent's report); a missed
    task is recorded as of its deadline, whenever the case notices it."""
    at = task.report_by if outcome == "missed" else step.now
    recorded = ContactOutcome(
        task_key=task.task_key,
        action=task.action,
        outcome=outcome,
        recorded_at=at,
        agent_id=report.agent_id if report else None,
        promise_id=report.promise.promise_id if report and report.promise else None,
        dispute_id=report.dispute_id if report else None,
    )
    case.contact_outcomes.append(recorded)
    step.record(ContactOutcomeRecorded(key=next_key(case), at=at, task_key=task.task_key, action=task.action,
                                       outcome=outcome, agent_id=recorded.agent_id, promise_id=recorded.promise_id,
                                       dispute_id=recorded.dispute_id))
    return recorded


def sweep_missed(case: CaseCore, step: Step) -> bool:
    """Record ``missed`` for every open task past its report deadline; True when any was."""
    late = [task for task in case.open_tasks if task.report_by <= step.now]
    for task in late:
        case.open_tasks.remove(task)
        add_outcome(case, step, task, "missed", None)
        step.log("contact_outcome.missed", task_key=task.task_key)
    return bool(late)


def cancel_tasks(case: CaseCore, step: Step) -> None:
    """Close every open task ``cancelled`` (the case ended)."""
    for task in list(case.open_tasks):
        case.open_tasks.remove(task)
        add_outcome(case, step, task, "cancelled", None)


def retried_outcome(case: CaseCore | None, payload: Any) -> ContactOutcome | None:
    """The recorded outcome when ``payload`` reports the same task, outcome and agent again."""
    if case is None or not isinstance(payload, dict) or "note" in payload:
        return None
    for recorded in case.contact_outcomes:
        if (recorded.task_key, recorded.outcome, recorded.agent_id) == (
            payload.get("task_key"), payload.get("outcome"), payload.get("agent_id")
        ):
            return recorded
    return None


def outcome_check(case: CaseCore | None, step: Step | None, payload: Any) -> tuple[ContactOutcomeReport | None, str | None]:
    """The report, or the rule it breaks (``"field: rule"``). ``case``/``step`` ``None``: the case
    is still opening (only the payload's shape is checked)."""
    if isinstance(payload, dict) and "note" in payload:
        return None, NOTE_RULE
    try:
        report = ContactOutcomeReport.model_validate(payload)
    except ValidationError as err:
        return None, "; ".join(describe_errors(err))
    if case is None or step is None:
        return report, None
    if case.outcome is not None:
        return None, f"task_key: the case is closed ({case.outcome})"
    task = next((t for t in case.open_tasks if t.task_key == report.task_key), None)
    if task is None or task.report_by <= step.now:
        done = next((o for o in case.contact_outcomes if o.task_key == report.task_key), None)
        if done is not None:
            return None, f"task_key: this task's outcome was already recorded ({done.outcome} at {done.recorded_at.isoformat()})"
        if task is not None:
            return None, f"task_key: the report was due by {task.report_by.isoformat()}; the task is missed"
        open_keys = [t.task_key for t in case.open_tasks]
        return None, f"task_key: no open agent task with this key; open tasks: {open_keys or 'none'}"
    if report.outcome == "promise_made":
        if report.promise is None:
            return None, "promise: required when the outcome is promise_made"
        problem = promises.promise_problem(case, step, report.promise)
        if problem:
            return None, "promise." + problem
    elif report.promise is not None:
        return None, "promise: only with the outcome promise_made"
    if report.outcome == "dispute_raised":
        if report.dispute_id is None:
            return None, "dispute_id: required when the outcome is dispute_raised"
        if report.dispute_id in case.seen_ids("pause:dispute"):
            return None, "dispute_id: duplicate, this dispute was already opened"
    elif report.dispute_id is not None:
        return None, "dispute_id: only with the outcome dispute_raised"
    return report, None


def apply_outcome(case: CaseCore, step: Step, report: ContactOutcomeReport) -> ContactOutcome:
    """Close the report's task with its outcome (after ``outcome_check`` passed)."""
    task = next(t for t in case.open_tasks if t.task_key == report.task_key)
    case.open_tasks.remove(task)
    if report.outcome == "promise_made" and report.promise is not None:
        promises.open_promise(case, step, report.promise)
    if report.outcome == "dispute_raised" and report.dispute_id is not None:
        pauses.start_pause(case, step, "dispute", report.dispute_id, None)
    recorded = add_outcome(case, step, task, report.outcome, report)
    step.log("contact_outcome.recorded", task_key=task.task_key, outcome=report.outcome)
    return recorded


def record_decision(case: CaseCore, step: Step, decision: ContactDecision, run_key: str | None) -> None:
    """Keep a compliance gate decision in the status and the ``contact_decisions`` table."""
    case.contact_decisions.append(decision)
    step.record(ContactDecisionRecorded(key=next_key(case), at=decision.decided_at, jurisdiction=case.jurisdiction,
                                        decision=decision, run_key=run_key))
