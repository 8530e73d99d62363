"""The case core without Temporal: opening, money, re-anchoring, promises, pauses, plans, endings
(``collections_domain.case.core``). Each test drives the core with messages and instants and
checks the state and the effects it asks for."""

from __future__ import annotations

import copy
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest

from collections_domain.case import core
from collections_domain.case.contract import CaseInput, PendingSignal
from collections_domain.case.progress import Due, Sleep
from collections_domain.case.state import CaseCore, Count, Record, SignalWorkflow, Step
from collections_domain.case.status import status
from collections_domain.rules.compliance import ContactPreferences, ContactProfile
from collections_domain.rules.policy import PolicyRegistry

TZ = "Asia/Shanghai"
POLICY = PolicyRegistry.from_settings(None).current
D0 = date(2026, 6, 1)
#: A portfolio the default policy accrues nothing for, so the amounts below are the instalments'.
NO_ACCRUAL = "no-accrual"


def local(day: date, hour: int = 12, minute: int = 0) -> datetime:
    return datetime.combine(day, time(hour, minute), ZoneInfo(TZ)).astimezone(UTC)


def day(n: int) -> date:
    return D0 + timedelta(days=n)


class Case:
    """A case under test: its core state, and every effect asked for so far."""

    def __init__(self, now: datetime, **fields):
        self.effects: list = []
        base = dict(loan_id="L-1", borrower_id="B-1", principal_due_minor=300_000, oldest_due_date=D0, timezone=TZ,
                    portfolio=NO_ACCRUAL)
        base.update(fields)
        if "instalments" in fields:
            base.pop("principal_due_minor")
        step = Step(POLICY, now)
        self.core: CaseCore = core.open_case(CaseInput.checked(**base), step, workflow_id="collection-L-1",
                                             episode_id="run-0001-aaaa", currency_exponent=2)
        self.effects += step.effects

    def step(self, now: datetime) -> Step:
        return Step(POLICY, now)

    def signal(self, kind: str, payload: dict, now: datetime) -> Step:
        step = self.step(now)
        core.apply_signal(self.core, step, PendingSignal(kind=kind, payload=payload, received_at=now))
        self.effects += step.effects
        return step

    def pay(self, amount: int, now: datetime, payment_id: str = "P-1", paid_at: datetime | None = None) -> Step:
        return self.signal("payment_received", {"payment_id": payment_id, "amount_minor": amount, "currency": "CNY",
                                                "paid_at": (paid_at or now).isoformat()}, now)

    def move(self, now: datetime):
        step = self.step(now)
        core.housekeeping(self.core, step)
        move = core.next_move(self.core, step)
        self.effects += step.effects
        return move

    def take(self, now: datetime, profile: ContactProfile | None = None) -> Due:
        """Take the step due at ``now`` as the workflow would, every action allowed and sent."""
        move = self.move(now)
        assert isinstance(move, Due), move
        step = self.step(now)
        answer = core.gate(self.core, step, move, profile or ContactProfile(borrower_id="B-1", as_of=now,
                                                                            preferences=ContactPreferences()))
        assert answer.deferred_until is None, answer
        core.record_decisions(self.core, step, move, answer.decisions)
        results = []
        for decision in answer.decisions:
            if decision.run_action in core.HAND_OFF_KINDS:
                request = core.contact_request(self.core, step, move, decision.run_action, decision)
                _, child_id, _ = core.hand_off_request(self.core, step, move, request)
                results.append(core.hand_off_started(self.core, step, decision.run_action, child_id))
            elif decision.run_action:
                from collections_domain.case.contract import ActionResult

                request = core.contact_request(self.core, step, move, decision.run_action, decision)
                results.append(ActionResult(action=decision.run_action, status="recorded", idempotency_key=request.idempotency_key))
            else:
                results.append(core.not_run(decision))
        core.step_taken(self.core, step, move, answer.decisions, results)
        self.effects += step.effects
        return move

    def status(self, now: datetime):
        return status(self.core, POLICY, now, None)

    def records(self, kind: str) -> list:
        return [e.event for e in self.effects if isinstance(e, Record) and e.event.kind == kind]


def test_a_case_opens_with_one_instalment_from_the_contracts_original_input():
    case = Case(local(day(1), 0, 5))
    st = case.status(local(day(1), 1))
    assert st.days_past_due == 1 and st.outstanding_minor == 300_000
    assert [line.instalment_id for line in st.ledger.lines] == [f"due-{D0}"]
    assert case.records("case_opened")[0].episode_id == "run-0001-aaaa"
    assert any(isinstance(e, Count) and e.metric == "collections_cases_opened" for e in case.effects)


def test_a_new_instalment_falls_due_and_a_payment_of_the_first_moves_dpd_to_it():
    case = Case(local(day(1), 0, 5))
    case.take(local(day(3), 9))  # initial
    case.signal("instalment_due", {"instalment_id": "2", "due_date": str(day(5)), "principal_minor": 250_000}, local(day(5), 1))
    st = case.status(local(day(8), 8))
    assert st.outstanding_minor == 550_000 and st.days_past_due == 8
    case.pay(300_000, local(day(8), 10))
    st = case.status(local(day(8), 10, 1))
    assert st.days_past_due == 3 and st.oldest_due_date == day(5) and st.outstanding_minor == 250_000
    assert st.outcome is None
    # The stage follows DPD down; DPD 3 of the new anchor was reached: the initial step is not sent late.
    move = case.move(local(day(8), 10, 2))
    assert case.core.stage == "initial" and isinstance(move, Sleep)
    assert move.next_step.step == "deep" and move.next_step.at == local(day(5 + 7), 9)
    due = case.take(local(day(12), 9))
    assert due.anchor_due_date == day(5) and case.core.steps_done[-1].anchor_due_date == day(5)


def test_the_same_instalment_twice_is_applied_once_and_other_values_are_refused():
    case = Case(local(day(1), 0, 5))
    payload = {"instalment_id": "2", "due_date": str(day(5)), "principal_minor": 250_000}
    case.signal("instalment_due", payload, local(day(5), 1))
    case.signal("instalment_due", payload, local(day(5), 2))
    case.signal("instalment_due", {**payload, "principal_minor": 1}, local(day(5), 3))
    reasons = [r.reason for r in case.core.rejected_signals]
    assert reasons[0].startswith("instalment_id: duplicate")
    assert "schedule_adjusted" in reasons[1]
    assert case.status(local(day(6))).outstanding_minor == 550_000


def test_paying_all_but_one_fen_keeps_collecting_once_the_next_instalment_falls_due():
    case = Case(local(day(1), 0, 5))
    case.pay(299_999, local(day(2)))
    case.take(local(day(3), 9))  # the initial step applies below the minimum
    assert isinstance(case.move(local(day(7), 9, 30)), Sleep)  # 1 fen: under the minimum, no deep step
    case.signal("instalment_due", {"instalment_id": "2", "due_date": str(day(8)), "principal_minor": 250_000}, local(day(8), 1))
    due = case.take(local(day(8), 9, 30))
    assert due.position.step.name == "deep"  # DPD 8 from instalment 1, 250,001 owing: the ladder goes on


def test_a_reversal_undoes_the_payment_and_brings_dpd_back():
    case = Case(local(day(1), 0, 5), instalments=[
        {"instalment_id": "1", "due_date": str(D0), "principal_minor": 300_000},
        {"instalment_id": "2", "due_date": str(day(5)), "principal_minor": 250_000},
    ])
    case.pay(300_000, local(day(8)))
    assert case.status(local(day(8), 13)).days_past_due == 3
    case.signal("payment_reversed", {"reversal_id": "R-1", "payment_id": "P-1", "reason": "bounced"}, local(day(9)))
    st = case.status(local(day(9), 13))
    assert st.days_past_due == 9 and st.outstanding_minor == 550_000
    assert st.ledger.payments[0].status == "reversed"
    assert case.records("payment_reversed")[0].reason == "bounced"
    case.signal("payment_reversed", {"reversal_id": "R-2", "payment_id": "nope"}, local(day(9), 14))
    assert "no payment 'nope'" in case.core.rejected_signals[-1].reason


def test_a_payment_paid_before_the_promise_deadline_keeps_it_however_late_it_is_reported():
    case = Case(local(day(1), 0, 5))
    case.signal("promise_to_pay", {"promise_id": "K", "amount_minor": 300_000, "promised_date": str(day(3))}, local(day(1), 10))
    deadline = case.core.open_promise.deadline
    assert deadline == local(day(3 + POLICY.promises.grace_days + 1), 0)
    # Paid at 23:50 on the last day of the promise, reported at 00:10 the next day.
    case.pay(300_000, deadline + timedelta(minutes=10), paid_at=deadline - timedelta(minutes=10))
    assert case.core.promises_kept == 1 and case.core.promises_broken == 0
    assert case.core.outcome == "cured"


def test_a_payment_received_just_before_the_promise_in_the_same_instant_does_not_count_toward_it():
    """Signals handled in one workflow task share one instant: a payment that arrived before the
    promise must not count toward it (found on PostgreSQL, where the two landed in one task)."""
    case = Case(local(day(1), 0, 5))
    at = local(day(1), 10)
    case.pay(1_000, at, payment_id="before")
    case.signal("promise_to_pay", {"promise_id": "K", "amount_minor": 50_000, "promised_date": str(day(3))}, at)
    case.pay(2_000, at, payment_id="after")
    assert case.core.open_promise.paid_toward_minor == 2_000


def test_an_instalment_due_out_of_range_is_rejected_on_the_record():
    """From the second trial: an instalment due in year 1 took the case to DPD 739949."""
    case = Case(local(day(1), 10))
    case.signal("instalment_due", {"instalment_id": "old", "due_date": "0001-01-02", "principal_minor": 100}, local(day(1), 11))
    case.signal("schedule_adjusted", {"adjustment_id": "A", "reason_code": "other",
                                      "add": [{"instalment_id": "far", "due_date": "9999-12-31", "principal_minor": 1}]},
                local(day(1), 12))
    reasons = [r.reason for r in case.core.rejected_signals]
    assert reasons == ["due_date: must be within the last 3650 days (10 years), got 0001-01-02",
                       "add.0.due_date: must be at most 18262 days (50 years) ahead, got 9999-12-31"]
    assert case.status(local(day(1), 13)).days_past_due == 1


def test_a_promise_unpaid_is_broken_after_its_late_report_window():
    case = Case(local(day(1), 0, 5))
    case.signal("promise_to_pay", {"promise_id": "B", "amount_minor": 100_000, "promised_date": str(day(3))}, local(day(1), 10))
    deadline = case.core.open_promise.deadline
    assert isinstance(case.move(deadline + timedelta(minutes=1)), Sleep) and case.core.open_promise is not None
    case.move(deadline + timedelta(minutes=POLICY.promises.late_report_minutes))
    assert case.core.open_promise is None and case.core.promises_broken == 1


def test_a_case_cured_during_a_hardship_pause_ends_the_pause():
    case = Case(local(day(1), 0, 5))
    case.signal("hardship", {"hardship_id": "H-1"}, local(day(2)))
    assert [p.kind for p in case.core.pauses] == ["hardship"]
    case.pay(300_000, local(day(4)))
    assert case.core.outcome == "cured" and case.core.pauses == []
    assert case.core.pauses_ended[-1].resolution == "case cured"
    assert [r.ended_at for r in case.records("pause_recorded")][-1] == local(day(4))


def test_a_payment_beyond_every_bound_is_rejected_and_recorded():
    case = Case(local(day(1), 0, 5))
    case.pay(99_999_999_999_999_999_999_999, local(day(2)))
    assert case.core.rejected_signals[-1].reason.startswith("amount_minor: Input should be less than or equal to")
    assert case.records("signal_rejected")
    assert case.status(local(day(2), 13)).outstanding_minor == 300_000


def test_money_reaching_a_closed_case_is_applied_as_credit_and_recorded():
    case = Case(local(day(1), 0, 5))
    case.pay(300_000, local(day(2)))
    case.pay(5_000, local(day(2), 13), payment_id="P-2")
    st = case.status(local(day(2), 14))
    assert st.outcome == "cured" and st.overpaid_minor == 5_000
    assert [r.payment_id for r in case.records("payment_applied")] == ["P-1", "P-2"]


def test_the_ladder_climbs_to_the_hand_off_and_writes_off_at_its_day():
    case = Case(local(day(1), 0, 5), principal_due_minor=2_000_000)
    for n in (3, 7, 30):
        case.take(local(day(n), 9))
    assert [s.step for s in case.core.steps_done] == ["initial", "deep", "legal"]
    assert case.core.hand_offs[0].workflow_id == f"collection-L-1-legal-{D0}"
    move = case.move(local(day(31)))
    assert move.next_step.step == "write_off"
    case.move(move.until)
    assert case.core.outcome == "written_off" and case.core.written_off_minor == 2_000_000
    signals = [e for e in case.effects if isinstance(e, SignalWorkflow)]
    assert signals[-1].signal == "withdraw" and signals[-1].ends_child


def test_core_is_deterministic_for_the_same_messages():
    first, second = Case(local(day(1), 0, 5)), Case(local(day(1), 0, 5))
    for case in (first, second):
        case.pay(100_000, local(day(2)))
        case.take(local(day(3), 9))
    assert first.core == second.core
    assert copy.deepcopy(first.core).model_dump() == second.core.model_dump()


@pytest.mark.parametrize("kind,payload,rule", [
    ("instalment_due", {"instalment_id": "x", "due_date": str(D0)}, "the sum must be > 0"),
    ("schedule_adjusted", {"adjustment_id": "A", "reason_code": "restructure"}, "at least one instalment"),
    ("schedule_adjusted", {"adjustment_id": "A", "reason_code": "restructure", "cancel": ["nope"]}, "no instalment 'nope'"),
])
def test_bad_ledger_messages_name_the_field_and_the_rule(kind, payload, rule):
    case = Case(local(day(1), 0, 5))
    case.signal(kind, payload, local(day(2)))
    assert rule in case.core.rejected_signals[-1].reason


def test_a_restructure_cancels_and_replaces_instalments():
    case = Case(local(day(1), 0, 5), instalments=[
        {"instalment_id": "1", "due_date": str(D0), "principal_minor": 300_000},
    ])
    case.pay(100_000, local(day(2)))
    case.signal("schedule_adjusted", {
        "adjustment_id": "RS-1", "reason_code": "restructure", "cancel": ["1"],
        "add": [{"instalment_id": "1a", "due_date": str(day(20)), "principal_minor": 150_000},
                {"instalment_id": "1b", "due_date": str(day(50)), "principal_minor": 150_000}],
    }, local(day(3)))
    st = case.status(local(day(3), 13))
    assert st.outstanding_minor == 0 and st.overpaid_minor == 100_000 and st.outcome == "closed_adjusted"


def test_penalty_interest_accrues_by_component_under_the_jurisdictions_rules():
    case = Case(local(day(1), 0, 5), portfolio=None)  # CN: 12 % a year on overdue principal
    st = case.status(local(day(11)))
    assert st.outstanding_components.principal == 300_000
    assert st.outstanding_components.penalty == 300_000 * 1200 * 10 // (10_000 * 365)  # days 1..10
    case.pay(st.outstanding_minor, local(day(11), 13))
    assert case.core.outcome == "cured"
    paid = {a.component: a.amount_minor for a in case.status(local(day(12))).ledger.payments[0].allocations}
    assert paid == {"penalty": st.outstanding_components.penalty, "principal": 300_000}
