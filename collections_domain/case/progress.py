"""Where a case stands on its ladder and what is due next (pure).

The ladder counts DPD from the oldest instalment still owing (the *anchor*). When a payment
clears it, the anchor moves to the next one: the ladder re-anchors, the stage follows DPD back
down, and rungs already passed on the new anchor are not sent late. When the anchor moves back
(a reversal re-opens an older instalment), the ladder resumes where it was on that anchor. A
step taken earlier in the case is taken again on a new anchor only if the policy says so
(``steps.<name>.repeat_after_reanchor``).

``next_move`` answers what the workflow should do now: take a due step (``Due``), or sleep until
the earliest instant something is due (``Sleep``). ``housekeeping`` first closes what is due
without a step: pauses that ran out, a promise past its judgement, overdue agent reports, the
write-off.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta

from collections_domain.case import agents, endings, pauses, promises
from collections_domain.case.base import local, record_progress
from collections_domain.case.contract import ActionResult, DeferredStep, NextStep, SkippedStep, StepRecord
from collections_domain.case.ledger import LedgerView
from collections_domain.case.state import CaseCore, Step
from collections_domain.ops import metrics
from collections_domain.rules import calendar, ladder
from collections_domain.rules.compliance import DEFAULT_NOTICE_ACTION, VALIDATION_ACTION, CaseFacts, ContactDecision
from collections_domain.rules.policy import ACTIONS


@dataclass(frozen=True)
class Due:
    """Take ``position.step`` now: DPD ``days_past_due`` counted from ``anchor_due_date``."""

    position: ladder.LadderPosition
    days_past_due: int
    anchor_due_date: date


@dataclass(frozen=True)
class Sleep:
    """Nothing is due: wait for a message, or until ``until`` (``None``: no timer) with
    ``summary`` for the timer; ``next_step`` is what the status shows as coming."""

    until: datetime | None
    summary: str | None
    next_step: NextStep | None


def reanchor(case: CaseCore, step: Step, view: LedgerView) -> None:
    """Move the ladder to the oldest instalment owing now, if that changed (module docstring)."""
    oldest = view.oldest_unpaid_due_date
    if oldest is None or oldest == case.anchor_due_date:
        return
    handled = case.seen.setdefault("rungs_handled", [])
    remembered = {entry.split("=")[0]: int(entry.split("=")[1]) for entry in handled}
    remembered[case.anchor_due_date.isoformat()] = case.last_rung_days
    previous = case.anchor_due_date
    case.anchor_due_date = oldest
    rungs = ladder.rungs(step.policy)
    if oldest.isoformat() in remembered:
        case.last_rung_days = remembered[oldest.isoformat()]
    else:
        today = calendar.local_date(step.now, case.timezone)
        dpd = (today - (oldest + timedelta(days=case.ladder_shift_days))).days
        case.last_rung_days = max((r.days_past_due for r in rungs if r.days_past_due <= dpd), default=0)
    handled[:] = [f"{day}={days}" for day, days in sorted(remembered.items())]
    current = [r for r in rungs if r.days_past_due <= case.last_rung_days]
    names = [r.step_for(view.outstanding.total, step.policy, case.currency) for r in current]
    case.stage = next((s.name for s in reversed(names) if s is not None), "identified")
    case.deferred_step = None
    step.log("ladder.reanchored", from_due_date=previous.isoformat(), to_due_date=oldest.isoformat(),
             stage=case.stage, days_past_due=view.days_past_due)
    record_progress(case, step, view)


def position(case: CaseCore, step: Step, view: LedgerView) -> ladder.LadderPosition:
    """The ladder position now (``rules.ladder.position``) from the anchor, moved by paused days."""
    return ladder.position(
        step.policy,
        currency=case.currency,
        oldest_due_date=case.anchor_due_date + timedelta(days=case.ladder_shift_days),
        tz_name=case.timezone,
        last_rung_days=case.last_rung_days,
        outstanding_minor=view.outstanding.total,
        now=step.now,
    )


def skip(case: CaseCore, step: Step, rung: ladder.Rung, view: LedgerView, reason: str) -> None:
    """Pass ``rung`` without taking it, and say why (``status.steps_skipped``)."""
    chosen = rung.step_for(view.outstanding.total, step.policy, case.currency)
    case.steps_skipped.append(
        SkippedStep(step=chosen.name if chosen else rung.label, days_past_due=rung.days_past_due, at=step.now, reason=reason)
    )
    case.last_rung_days = max(case.last_rung_days, rung.days_past_due)


def write_off_at(case: CaseCore, step: Step, view: LedgerView) -> datetime:
    """When the case is written off if nothing changes (``rules.ladder.write_off_instant``): from
    the oldest instalment owing, and the last payment's value date or the opening."""
    last = max(filter(None, [view.last_payment_value_at, case.opened_at]))
    anchor = view.oldest_unpaid_due_date or case.anchor_due_date
    return ladder.write_off_instant(step.policy, oldest_due_date=anchor, tz_name=case.timezone, last_activity_at=last)


def housekeeping(case: CaseCore, step: Step) -> bool:
    """Close what is due without a step: agent reports past their deadline (``missed``), pauses
    that ran out, a promise past its judgement (``broken``), the write-off, and a case with
    nothing due owing (opened with its instalments paid: ``cured``). True when it changed."""
    changed = agents.sweep_missed(case, step)
    for pause in [p for p in case.pauses if p.until is not None and p.until <= step.now]:
        pauses.end_pause(case, step, pause, "expired")
        changed = True
    if promises.judge(case, step):
        changed = True
    if case.outcome is None and case.plan is None:
        view = case.view(step.policy, step.now)
        if view.outstanding.total == 0:
            endings.cure(case, step, view.days_past_due)  # opened with its instalments already paid
            return True
        if case.open_promise is None and not pauses.ladder_paused(case) and write_off_at(case, step, view) <= step.now:
            endings.write_off(case, step, view)
            changed = True
    return changed


def next_move(case: CaseCore, step: Step) -> Due | Sleep:
    """What the workflow does now (module docstring). Call after ``housekeeping``."""
    view = case.view(step.policy, step.now)
    reanchor(case, step, view)
    wakes: list[tuple[datetime, str]] = []
    for pause in case.pauses:
        if pause.until is not None:
            wakes.append((pause.until, f"{pause.kind} {pause.id} ends at {local(case, pause.until)}"))
    next_step: NextStep | None = None
    if case.plan is not None:
        pass  # the plan's child workflow watches the instalments
    elif case.open_promise is not None:
        at = promises.judge_at(case, step.policy)
        if at is not None:
            wakes.append((at, f"promise {case.open_promise.promise_id}: judged at {local(case, at)}"))
    elif not pauses.ladder_paused(case):
        for _ in range(len(step.policy.steps) + 1):
            pos = position(case, step, view)
            if pos.due is None or pos.step is None or repeatable(case, step, pos.step.name):
                break
            for stale in pos.stale:
                skip(case, step, stale, view, f"superseded: the case went straight to {pos.step.name}")
            skip(case, step, pos.due, view,
                 f"already taken in this case (policy steps.{pos.step.name}.repeat_after_reanchor = false)")
        deferred = case.deferred_step
        if pos.due is not None and pos.step is not None:
            if deferred is None or deferred.step != pos.step.name or deferred.until <= step.now:
                return Due(pos, calendar.days_past_due(case.anchor_due_date, step.now, case.timezone), case.anchor_due_date)
            next_step = NextStep(step=pos.step.name, at=deferred.until)
            wakes.append((deferred.until, f"{pos.step.name}: deferred ({deferred.rule_id}) until {local(case, deferred.until)}"))
        elif pos.upcoming is not None and pos.upcoming_at is not None:
            upcoming = pos.upcoming.step_for(view.outstanding.total, step.policy, case.currency)
            name = upcoming.name if upcoming else pos.upcoming.label
            next_step = NextStep(step=name, at=pos.upcoming_at)
            wakes.append((pos.upcoming_at, f"until DPD {pos.upcoming.days_past_due} {name} at {local(case, pos.upcoming_at)}"))
        if view.outstanding.total > 0:
            at = write_off_at(case, step, view)
            next_step = next_step or NextStep(step="write_off", at=at)
            wakes.append((at, f"write-off at {local(case, at)} unless paid"))
    if not wakes:
        return Sleep(None, None, next_step)
    until, summary = min(wakes, key=lambda wake: wake[0])
    return Sleep(until, summary, next_step)


def windows_missed(case: CaseCore, step_name: str) -> int:
    """How many times ``step_name`` ran on the current anchor with a contact whose permitted hours
    closed before the provider took it."""
    return sum(1 for record in case.steps_done
               if record.step == step_name and record.anchor_due_date == case.anchor_due_date
               and any(result.status == "window_closed" for result in record.results))


def defer_when_window_closes(case: CaseCore, step: Step, step_name: str) -> bool:
    """Whether a contact of ``step_name`` whose hours close before the provider takes it waits for
    the next window (policy ``delivery.when_window_closes``, at most ``delivery.max_windows``
    windows) rather than getting the fallback."""
    rules = step.policy.delivery
    return rules.when_window_closes == "next_window" and windows_missed(case, step_name) + 1 < rules.max_windows


def repeatable(case: CaseCore, step: Step, step_name: str) -> bool:
    """Whether step ``step_name`` may be taken now: never taken on an earlier anchor of this case
    (taking it again on the same anchor is the gate asking for it, ``repeat_step``), or its
    policy step says ``repeat_after_reanchor``."""
    if not any(r.step == step_name and r.anchor_due_date != case.anchor_due_date for r in case.steps_done):
        return True
    policy_step = next((s for s in step.policy.steps if s.name == step_name), None)
    return policy_step is None or policy_step.repeat_after_reanchor


def case_facts(case: CaseCore, step: Step) -> CaseFacts:
    """What the compliance gate needs to know of the case (``rules.compliance.CaseFacts``)."""
    notices = [
        record.at
        for record in case.steps_done
        for result in record.results
        if result.action == DEFAULT_NOTICE_ACTION and result.status in ("sent", "recorded", "already_done")
    ]
    return CaseFacts(
        jurisdiction=case.jurisdiction,
        timezone=case.timezone,
        loan_id=case.loan_id,
        oldest_due_date=case.anchor_due_date,
        cease_contact=case.cease_contact,
        permitted_after_cease=step.policy.pauses.permitted_after_cease(case.jurisdiction),
        default_notice_at=max(notices) if notices else None,
        validation_notice_sent=any(d.run_action == VALIDATION_ACTION for d in case.contact_decisions),
    )


def defer(case: CaseCore, step: Step, due: Due, decisions: list[ContactDecision], until: datetime) -> None:
    """The gate deferred ``due``'s step until ``until``: keep it, and record the decisions when
    the deferral is new (a step asked again for the same reason records nothing more)."""
    name = due.position.step.name  # type: ignore[union-attr]
    again = case.deferred_step
    case.deferred_step = DeferredStep(step=name, until=until, rule_id=decisions[0].rule_id)
    if again is None or again.step != name or again.until != until:
        for decision in decisions:
            agents.record_decision(case, step, decision, None)
        step.log("contact.deferred", step=name, rule_id=decisions[0].rule_id, until=until.isoformat())


def begin_step(case: CaseCore, step: Step, due: Due, decisions: list[ContactDecision]) -> None:
    """``due``'s step runs now with the gate's ``decisions``: the stale rungs before it are
    skipped, its rung is handled (unless a decision asks to take it again later) and the stage
    moves to it, on the record before anything is sent."""
    rung, chosen = due.position.due, due.position.step
    assert rung is not None and chosen is not None
    view = case.view(step.policy, step.now)
    for stale in due.position.stale:
        skip(case, step, stale, view, f"superseded: at DPD {due.days_past_due} the case went straight to {chosen.name}")
    case.deferred_step = None
    if not any(d.repeat_step for d in decisions):
        case.last_rung_days = rung.days_past_due
    case.stage = chosen.name
    record_progress(case, step, view)


def step_taken(case: CaseCore, step: Step, due: Due, decisions: list[ContactDecision],
               results: list[ActionResult]) -> None:
    """Record that ``due``'s step ran with ``results`` (one per decision; after ``begin_step``):
    agent calls and visits open tasks awaiting their outcome."""
    chosen = due.position.step
    assert chosen is not None
    case.steps_done.append(
        StepRecord(step=chosen.name, days_past_due=due.days_past_due, at=step.now, actions=list(chosen.actions),
                   results=list(results), anchor_due_date=due.anchor_due_date)
    )
    for result in results:
        spec = ACTIONS.get(result.action)
        if spec is not None and spec.task_kind in ("call", "visit") and result.status in ("sent", "recorded", "already_done"):
            agents.open_task(case, step, result.action, result.idempotency_key)
    if any(result.status == "window_closed" for result in results):
        # The provider held a contact past the permitted hours: the step is due again, and the gate
        # defers it to the next window (policy delivery.when_window_closes = "next_window").
        rung = due.position.due
        assert rung is not None
        case.last_rung_days = max((r.days_past_due for r in ladder.rungs(step.policy)
                                   if r.days_past_due < rung.days_past_due), default=0)
        step.log("contact.window_closed", step=chosen.name, windows=windows_missed(case, chosen.name))
    for result, decision in zip(results, decisions):
        spec = ACTIONS.get(result.action)
        step.count(metrics.STEPS_TAKEN, step=chosen.name, action=result.action,
                   channel=spec.channel.value if spec else "unknown", decision=decision.decision,
                   status=result.status, jurisdiction=case.jurisdiction)
    step.log("case.step_taken", step=chosen.name, days_past_due=due.days_past_due)
