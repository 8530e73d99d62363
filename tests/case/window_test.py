"""A provider down past the permitted hours (issue 12, item 4): where the policy says
``delivery.when_window_closes = "next_window"``, the step is taken again at the next lawful
window instead of a manual review, at most ``delivery.max_windows`` windows."""

from __future__ import annotations

from datetime import timedelta

from collections_domain.case import core
from collections_domain.case.contract import ActionResult
from collections_domain.case.progress import Due, Sleep
from collections_domain.rules.compliance import ContactPreferences, ContactProfile
from collections_domain.rules.policy import DeliveryRules
from tests.case import core_test
from tests.case.core_test import Case, day, local

NEXT_WINDOW = core_test.POLICY.model_copy(update={"delivery": DeliveryRules(when_window_closes="next_window", max_windows=2)})


def run_step(case: Case, now, status_of) -> tuple[Due, list[ActionResult], bool]:
    """Take the step due at ``now`` with each contact ending as ``status_of(action)``; returns the
    step, its results and whether the batch would ask for ``window_closed`` results."""
    move = case.move(now)
    assert isinstance(move, Due), move
    step = case.step(now)
    answer = core.gate(case.core, step, move, ContactProfile(borrower_id="B-1", as_of=now, preferences=ContactPreferences()))
    assert answer.deferred_until is None, answer
    core.record_decisions(case.core, step, move, answer.decisions)
    defer = core.defer_when_window_closes(case.core, step, move.position.step.name)
    results = []
    for decision in answer.decisions:
        request = core.contact_request(case.core, step, move, decision.run_action, decision)
        status = status_of(decision.run_action)
        if status == "window_closed" and not defer:
            status = "failed"  # what the activity reports when it queued the fallback
        results.append(ActionResult(action=decision.run_action, status=status, idempotency_key=request.idempotency_key))
    core.step_taken(case.core, step, move, answer.decisions, results)
    case.effects += step.effects
    return move, results, defer


def test_a_contact_held_past_the_window_is_taken_again_at_the_next_window(monkeypatch):
    monkeypatch.setattr(core_test, "POLICY", NEXT_WINDOW)
    case = Case(local(day(1), 0, 5))
    first, results, defer = run_step(case, local(day(3), 9), lambda action: "window_closed")
    assert defer and {r.status for r in results} == {"window_closed"}
    # After the window closed (CN: 22:00 local), the step is due again; the gate defers it to the
    # next day's opening.
    late = local(day(3), 22, 30)
    again = case.move(late)
    assert isinstance(again, Due) and again.position.step.name == first.position.step.name
    answer = core.gate(case.core, case.step(late), again,
                       ContactProfile(borrower_id="B-1", as_of=late, preferences=ContactPreferences()))
    opening = answer.deferred_until
    assert opening is not None and late < opening <= local(day(4), 9)
    step = case.step(late)
    core.defer(case.core, step, again, answer.decisions, opening)
    sleep = case.move(late)
    assert isinstance(sleep, Sleep) and sleep.until == opening and "deferred" in sleep.summary
    # The next window: the same step, under the same idempotency key (a sent contact is not resent).
    second, results, defer = run_step(case, opening, lambda action: "sent")
    assert second.position.step.name == first.position.step.name
    assert results[0].idempotency_key == case.core.steps_done[0].results[0].idempotency_key
    assert not isinstance(case.move(local(day(4), 10)), Due)  # handled now: on to the next rung


def test_the_last_window_gets_the_fallback(monkeypatch):
    monkeypatch.setattr(core_test, "POLICY", NEXT_WINDOW)
    case = Case(local(day(1), 0, 5))
    _, _, defer = run_step(case, local(day(3), 9), lambda action: "window_closed")
    assert defer
    _, results, defer = run_step(case, local(day(4), 9), lambda action: "window_closed")
    assert not defer and {r.status for r in results} == {"failed"}  # max_windows = 2
    assert not isinstance(case.move(local(day(4), 22)), Due)


def test_the_default_policy_falls_back_at_once():
    case = Case(local(day(1), 0, 5))
    _, results, defer = run_step(case, local(day(3), 9), lambda action: "window_closed")
    assert not defer and results[0].status == "failed"
    assert not isinstance(case.move(local(day(3), 22) + timedelta(minutes=1)), Due)
