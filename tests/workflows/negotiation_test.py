"""Repayment plans, contact outcomes, pauses and stops, and the hand-off children, on the
time-skipping server: the money, the dates, the outcome, the database rows and what was sent."""

from datetime import time, timedelta

import pytest
from sqlmodel import select

from collections_domain.rules import calendar
from collections_domain.client import UpdateRejected, contact_history, propose_plan, record_contact_outcome
from collections_domain.store.db import session
from collections_domain.store.models import (
    CasePause,
    ContactNote,
    HandOffEventRecord,
    PlanInstalmentRecord,
    RejectedSignalRecord,
    RejectedUpdate,
    RepaymentPlan,
)
from tests.helpers import advance_to, contact_rows, open_case, payment, server_now, status
from tests.workflows.ladder_test import TZ, at_local, close_to, due_days_ago


def rows(engine, model, loan_id):
    with session(engine) as db:
        return list(db.exec(select(model).where(model.loan_id == loan_id).order_by(model.id)))


async def plan(h, case, proposal):
    accepted = await propose_plan(h.client, case.loan_id, proposal, engine=h.engine)
    h.child_ids.append(accepted.plan_workflow_id)
    return accepted


async def test_instalment_plan_splits_odd_amounts_and_settles_the_case(time_env, harness_factory):
    h = harness_factory(time_env)
    async with h.worker:
        due = await due_days_ago(time_env, 1)
        case, handle = await open_case(h, due=due, amount_minor=100_001)
        await advance_to(time_env, at_local(due, 5))
        dates = [due + timedelta(days=d) for d in (6, 20, 34)]
        accepted = await plan(h, case, {"plan_id": "PL-1", "kind": "instalments", "instalment_dates": [str(d) for d in dates]})
        # 100,001 in 3: the remainder minor units on the last instalment.
        assert [(i.seq, i.due_date, i.amount_minor) for i in accepted.instalments] == [
            (1, dates[0], 33_333),
            (2, dates[1], 33_333),
            (3, dates[2], 33_335),
        ]
        assert accepted.total_minor == 100_001 and accepted.plan_workflow_id == f"{case.workflow_id}-plan-PL-1"
        retried = await propose_plan(h.client, case.loan_id, {"plan_id": "PL-1", "kind": "instalments", "instalment_dates": [str(d) for d in dates]})
        assert retried == accepted
        for day, amount in ((6, 33_333), (19, 33_333), (34, 33_335)):
            at = at_local(due, day)
            await advance_to(time_env, at)
            await handle.signal("payment_received", payment(amount, at))
        final = await handle.result()
    # No ladder step while the plan ran: the DPD 7 and DPD 30 steps never came.
    assert [s.step for s in final.steps_done] == ["initial"]
    assert final.outcome == "settled" and final.outstanding_minor == 0 and final.paid_minor == 100_001
    assert [(p.plan_id, p.status) for p in final.plans_ended] == [("PL-1", "completed")]
    assert sorted(r.action for r in contact_rows(h.engine, case.loan_id)) == ["email_overdue_notice", "sms_reminder"]
    (plan_row,) = rows(h.engine, RepaymentPlan, case.loan_id)
    assert (plan_row.status, plan_row.total_minor, plan_row.waived_minor) == ("completed", 100_001, 0)
    instalments = rows(h.engine, PlanInstalmentRecord, case.loan_id)
    assert [(i.seq, i.amount_minor, i.status) for i in instalments] == [(1, 33_333, "paid"), (2, 33_333, "paid"), (3, 33_335, "paid")]
    child = await h.client.get_workflow_handle(accepted.plan_workflow_id).describe()
    assert child.workflow_type == "RepaymentPlanWorkflow" and child.close_time is not None


async def test_missed_instalment_breaks_the_plan_and_the_ladder_takes_the_step_now_due(time_env, harness_factory):
    h = harness_factory(time_env)
    async with h.worker:
        due = await due_days_ago(time_env, 1)
        case, handle = await open_case(h, due=due, amount_minor=300_000)
        await advance_to(time_env, at_local(due, 5))
        dates = [due + timedelta(days=6), due + timedelta(days=12)]
        await plan(h, case, {"plan_id": "PL-2", "kind": "instalments", "instalment_dates": [str(d) for d in dates],
                             "first_instalment_minor": 200_000})
        await advance_to(time_env, at_local(due, 6))
        await handle.signal("payment_received", payment(200_000, at_local(due, 6)))
        # The second instalment (100,000 on DPD 12) is not paid: missed at the end of DPD 15.
        await advance_to(time_env, at_local(due, 16, time(10)))
        st = await status(handle)
    assert [(p.plan_id, p.status, p.reason) for p in st.plans_ended] == [("PL-2", "broken", "instalment 2 missed")]
    assert st.plan is None and st.outstanding_minor == 100_000
    # DPD 7 was passed during the plan: the ladder takes `deep` when the CN hours open (08:00).
    assert [(s.step, s.days_past_due) for s in st.steps_done] == [("initial", 3), ("deep", 16)]
    assert close_to(st.steps_done[-1].at, calendar.local_instant(due + timedelta(days=16), time(8), TZ))
    instalments = rows(h.engine, PlanInstalmentRecord, case.loan_id)
    assert [(i.seq, i.status) for i in instalments] == [(1, "paid"), (2, "missed")]
    assert rows(h.engine, RepaymentPlan, case.loan_id)[0].status == "broken"


async def test_rejected_proposals_name_the_rule_leave_no_history_and_are_logged(time_env, harness_factory):
    h = harness_factory(time_env)
    async with h.worker:
        due = await due_days_ago(time_env, 1)
        case, handle = await open_case(h, due=due, amount_minor=100_000, interest_due_minor=20_000, fees_due_minor=5_000)
        await advance_to(time_env, at_local(due, 4))
        today = due + timedelta(days=4)
        too_many = {"plan_id": "PL-X", "kind": "instalments", "instalment_dates": [str(today + timedelta(days=d)) for d in range(1, 14)]}
        with pytest.raises(UpdateRejected, match=r"^instalment_dates: at most 12 instalments \(policy plans.max_instalments\)"):
            await propose_plan(h.client, case.loan_id, too_many, engine=h.engine)
        with pytest.raises(UpdateRejected, match=r"^waive_minor: at most 12500, .*principal is never waived"):
            await propose_plan(h.client, case.loan_id, {"plan_id": "W-0", "kind": "waiver", "waive_minor": 12_501}, engine=h.engine)
        with pytest.raises(UpdateRejected, match=r"approver_id: required for a waiver above 5000"):
            await propose_plan(h.client, case.loan_id, {"plan_id": "W-1", "kind": "waiver", "waive_minor": 10_000}, engine=h.engine)
        with pytest.raises(UpdateRejected, match=r"new_due_date: at most 60 days ahead"):
            await propose_plan(h.client, case.loan_id, {"plan_id": "D-1", "kind": "deferral", "new_due_date": str(today + timedelta(days=61))}, engine=h.engine)
        history = await handle.fetch_history()
        # A waiver above the auto-approve share is accepted with an approver; the rest is due in 14 days.
        accepted = await plan(h, case, {"plan_id": "W-2", "kind": "waiver", "waive_minor": 10_000, "approver_id": "MGR-7"})
        with pytest.raises(UpdateRejected, match=r"plan_id: plan W-2 is active"):
            await propose_plan(h.client, case.loan_id, {"plan_id": "D-2", "kind": "deferral", "new_due_date": str(today + timedelta(days=5))}, engine=h.engine)
        assert [(i.due_date, i.amount_minor) for i in accepted.instalments] == [(today + timedelta(days=14), 115_000)]
        assert accepted.waived_minor == 10_000 and accepted.approver_id == "MGR-7"
        paid_at = at_local(due, 10)
        await advance_to(time_env, paid_at)
        await handle.signal("payment_received", payment(115_000, paid_at))
        final = await handle.result()
    assert not [e for e in history.events if e.HasField("workflow_execution_update_accepted_event_attributes")]
    logged = rows(h.engine, RejectedUpdate, case.loan_id)
    assert [(r.update_name, r.update_ref) for r in logged] == [
        ("propose_plan", "PL-X"), ("propose_plan", "W-0"), ("propose_plan", "W-1"), ("propose_plan", "D-1"), ("propose_plan", "D-2")
    ]
    assert logged[0].reason.startswith("instalment_dates: at most 12 instalments")
    assert final.outcome == "settled" and final.waived_minor == 10_000 and final.paid_minor == 115_000
    assert final.outstanding_minor == 0
    (plan_row,) = rows(h.engine, RepaymentPlan, case.loan_id)
    assert (plan_row.kind, plan_row.status, plan_row.waived_minor, plan_row.approver_id) == ("waiver", "completed", 10_000, "MGR-7")


async def test_agent_outcomes_open_promises_and_disputes_and_notes_stay_out_of_history(time_env, harness_factory):
    h = harness_factory(time_env)
    async with h.worker:
        due = await due_days_ago(time_env, 1)
        case, handle = await open_case(h, due=due, amount_minor=300_000)
        await advance_to(time_env, at_local(due, 7, time(10)))
        st = await status(handle)
        (task,) = st.open_tasks
        assert task.action == "agent_call" and close_to(task.report_by, at_local(due, 7, time(9)) + timedelta(hours=48))
        with pytest.raises(UpdateRejected, match=r"note: free text never goes to the workflow"):
            await record_contact_outcome(h.client, case.loan_id, {"task_key": task.task_key, "outcome": "reached", "agent_id": "A-1", "note": "x"})
        with pytest.raises(UpdateRejected, match=r"task_key: no open agent task with this key"):
            await record_contact_outcome(h.client, case.loan_id, {"task_key": "nope", "outcome": "reached", "agent_id": "A-1"}, engine=h.engine)
        with pytest.raises(UpdateRejected, match=r"promise: required when the outcome is promise_made"):
            await record_contact_outcome(h.client, case.loan_id, {"task_key": task.task_key, "outcome": "promise_made", "agent_id": "A-1"})
        promised = due + timedelta(days=10)
        recorded = await record_contact_outcome(
            h.client,
            case.loan_id,
            {"task_key": task.task_key, "outcome": "promise_made", "agent_id": "A-1",
             "promise": {"promise_id": "PTP-CALL", "amount_minor": 300_000, "promised_date": str(promised)}},
            note="Borrower says salary arrives on the 10th; call back at 18:00.",
            engine=h.engine,
        )
        assert recorded.outcome == "promise_made" and recorded.promise_id == "PTP-CALL"
        with pytest.raises(UpdateRejected, match=r"task_key: this task's outcome was already recorded \(promise_made"):
            await record_contact_outcome(h.client, case.loan_id, {"task_key": task.task_key, "outcome": "reached", "agent_id": "A-1"})
        st = await status(handle)
        history = await handle.fetch_history()
    assert st.open_promise.promise_id == "PTP-CALL" and st.open_tasks == []
    assert "salary" not in history.to_json()
    (note,) = rows(h.engine, ContactNote, case.loan_id)
    assert note.note.startswith("Borrower says salary") and note.task_key == task.task_key
    listed = contact_history(h.engine, case.loan_id)
    assert [(r["kind"], r["status"]) for r in listed if r["kind"] == "outcome"] == [("outcome", "promise_made")]
    assert "salary arrives" in [r for r in listed if r["kind"] == "outcome"][0]["detail"]
    assert {r["what"].split(":")[0] for r in listed if r["kind"] == "contact"} == {"initial", "deep"}


async def test_dispute_pauses_the_ladder_and_paused_days_do_not_count(time_env, harness_factory):
    h = harness_factory(time_env)
    async with h.worker:
        due = await due_days_ago(time_env, 1)
        case, handle = await open_case(h, due=due, amount_minor=300_000)
        await advance_to(time_env, at_local(due, 5))
        await handle.signal("dispute_opened", {"dispute_id": "DSP-1", "reason_code": "amount"})
        await advance_to(time_env, at_local(due, 8))
        during = await status(handle)
        await handle.signal("dispute_resolved", {"dispute_id": "DSP-1", "resolution": "rejected", "corrected_outstanding_minor": 5})
        await handle.signal("dispute_resolved", {"dispute_id": "DSP-9", "resolution": "rejected"})
        await advance_to(time_env, at_local(due, 15))
        await handle.signal("dispute_resolved", {"dispute_id": "DSP-1", "resolution": "rejected"})
        await advance_to(time_env, at_local(due, 18))
        after = await status(handle)
    # No contact while the dispute was open (DPD 5-15): deep came 10 paused days late, at DPD 17.
    assert [s.step for s in during.steps_done] == ["initial"] and during.next_step is None
    assert [p.kind for p in during.pauses] == ["dispute"]
    assert after.ladder_shift_days == 10
    assert [(s.step, s.days_past_due) for s in after.steps_done] == [("initial", 3), ("deep", 17)]
    assert close_to(after.steps_done[-1].at, calendar.local_instant(due + timedelta(days=17), time(9), TZ))
    assert [r.reason for r in after.rejected_signals] == [
        "corrected_outstanding_minor: only for a dispute that is upheld",
        "dispute_id: no open dispute 'DSP-9'; open: ['DSP-1']",
    ]
    (pause,) = rows(h.engine, CasePause, case.loan_id)
    assert (pause.kind, pause.pause_id, pause.resolution) == ("dispute", "DSP-1", "rejected") and pause.ended_at is not None
    assert len(rows(h.engine, RejectedSignalRecord, case.loan_id)) == 2


async def test_upheld_dispute_corrects_the_amount_and_the_dpd_30_choice(time_env, harness_factory):
    h = harness_factory(time_env)
    async with h.worker:
        due = await due_days_ago(time_env, 1)
        case, handle = await open_case(h, due=due, amount_minor=2_000_000)
        await advance_to(time_env, at_local(due, 10))
        await handle.signal("dispute_opened", {"dispute_id": "DSP-2"})
        await handle.signal("dispute_resolved", {"dispute_id": "DSP-2", "resolution": "upheld", "corrected_outstanding_minor": 2_500_000})
        await handle.signal("dispute_resolved", {"dispute_id": "DSP-2", "resolution": "upheld", "corrected_outstanding_minor": 800_000})
        await advance_to(time_env, at_local(due, 31))
        st = await status(handle)
    assert st.outstanding_minor == 800_000
    assert st.rejected_signals[0].reason == "corrected_outstanding_minor: must be from 0 to the outstanding amount 2000000, got 2500000"
    # Below the legal threshold now: DPD 30 is the agency, not legal.
    assert [s.step for s in st.steps_done] == ["initial", "deep", "agency"]


@pytest.mark.parametrize(("jurisdiction", "tz", "currency", "initial_sent", "deep_results"), [
    # US: no SMS without consent (its alternative, email, is already in the step), and the
    # validation notice goes with the first communication (policy compliance.US).
    ("US", "America/New_York", "USD", ["email_overdue_notice", "validation_notice"],
     [("agent_call", "skipped"), ("demand_letter", "recorded")]),
    ("CN", "Asia/Shanghai", "CNY", ["sms_reminder", "email_overdue_notice"],
     [("agent_call", "skipped"), ("demand_letter", "skipped")]),
])
async def test_cease_contact_keeps_only_the_notices_the_jurisdiction_permits(
    time_env, harness_factory, jurisdiction, tz, currency, initial_sent, deep_results
):
    h = harness_factory(time_env)
    async with h.worker:
        due = await due_days_ago(time_env, 1, tz)
        case, handle = await open_case(h, due=due, amount_minor=300_000, tz=tz, currency=currency, jurisdiction=jurisdiction, locale="en")
        await advance_to(time_env, at_local(due, 5, tz=tz))
        await handle.signal("cease_contact", {"request_id": "CC-1"})
        await handle.signal("cease_contact", {"request_id": "CC-2"})
        await advance_to(time_env, at_local(due, 8, tz=tz))
        st = await status(handle)
    deep = st.steps_done[-1]
    assert deep.step == "deep" and st.cease_contact
    assert [(r.action, r.status) for r in deep.results] == deep_results
    assert f"pauses.after_cease_contact.{jurisdiction}" in deep.results[0].detail
    assert [d.rule_id for d in st.contact_decisions if d.step == "deep"][0] == "cease_contact"
    assert st.rejected_signals[0].reason == "request_id: contact already ceased by request CC-1"
    sent = [r.action for r in contact_rows(h.engine, case.loan_id)]
    kept = [action for action, result in deep_results if result == "recorded"]
    assert sorted(sent) == sorted([*initial_sent, *kept])


async def test_hardship_pauses_for_the_policy_days_then_resumes_where_it_was(time_env, harness_factory):
    h = harness_factory(time_env)
    async with h.worker:
        due = await due_days_ago(time_env, 1)
        case, handle = await open_case(h, due=due, amount_minor=300_000)
        await advance_to(time_env, at_local(due, 4))
        await handle.signal("hardship", {"hardship_id": "HS-1"})
        await advance_to(time_env, at_local(due, 20))
        during = await status(handle)
        await advance_to(time_env, at_local(due, 38))
        after = await status(handle)
    assert [s.step for s in during.steps_done] == ["initial"] and during.pauses[0].kind == "hardship"
    assert close_to(during.pauses[0].until, at_local(due, 34))
    # 30 paused days: the DPD 7 step comes at DPD 37, 09:00 local.
    assert after.pauses == [] and after.ladder_shift_days == 30
    assert [(s.step, s.days_past_due) for s in after.steps_done] == [("initial", 3), ("deep", 37)]
    assert [(p.kind, p.resolution) for p in after.pauses_ended] == [("hardship", "expired")]


@pytest.mark.parametrize(("stop", "amount", "outcome", "hand_off_status"), [
    ("bankruptcy", 300_000, "closed_bankruptcy", "recalled"),
    ("deceased", 2_000_000, "closed_deceased", "withdrawn"),
])
async def test_stops_end_the_case_and_recall_the_placement_or_withdraw_the_referral(time_env, harness_factory, stop, amount, outcome, hand_off_status):
    h = harness_factory(time_env)
    async with h.worker:
        due = await due_days_ago(time_env, 1)
        case, handle = await open_case(h, due=due, amount_minor=amount)
        await advance_to(time_env, at_local(due, 40))
        await handle.signal(stop, {"notice_id": "N-1"})
        final = await handle.result()
    assert final.outcome == outcome and final.outstanding_minor == amount
    assert [(x.status, x.reason) for x in final.hand_offs] == [(hand_off_status, f"case {outcome}")]
    events = rows(h.engine, HandOffEventRecord, case.loan_id)
    assert [e.status for e in events][-1] == hand_off_status
    (pause,) = rows(h.engine, CasePause, case.loan_id)
    assert (pause.kind, pause.pause_id) == (stop, "N-1")


async def test_legal_track_records_its_states_and_rejects_going_backwards(time_env, harness_factory):
    h = harness_factory(time_env)
    async with h.worker:
        due = await due_days_ago(time_env, 1)
        case, handle = await open_case(h, due=due, amount_minor=2_000_000)
        await advance_to(time_env, at_local(due, 31))
        st = await status(handle)
        legal = h.client.get_workflow_handle(st.hand_offs[0].workflow_id)
        today = calendar.local_date(await server_now(time_env), TZ)
        for event_id, state, on in (("E1", "lawyers_letter_sent", today), ("E2", "suit_filed", None), ("E3", "lawyers_letter_sent", None),
                                    ("E2", "judgment", None), ("E6", "judgment", today + timedelta(days=1)),
                                    ("E7", "judgment", today - timedelta(days=1)), ("E4", "judgment", None), ("E5", "settled", None)):
            await legal.signal("legal_status", {"event_id": event_id, "status": state, **({"occurred_on": str(on)} if on else {})})
        result = await legal.result()
    assert result["states"] == ["filed", "lawyers_letter_sent", "suit_filed", "judgment", "settled"]
    assert result["rejected"] == [
        "E3: status: the legal track is at suit_filed; lawyers_letter_sent cannot follow it",
        "E2: event_id: duplicate, this legal status was already recorded",
        f"E6: occurred_on: must not be after today ({today}, borrower's calendar)",
        f"E7: occurred_on: must not be before the previous state's date ({today})",
    ]
    events = rows(h.engine, HandOffEventRecord, case.loan_id)
    assert [e.status for e in events] == ["filed", "lawyers_letter_sent", "suit_filed", "judgment", "settled"]
