"""The case's children on the time-skipping server: a cure recalls the placement, a missed
deferral breaks the plan, a plan's child continues as new, a call raises a dispute."""

from datetime import time, timedelta

from sqlmodel import select
from temporalio.api.enums.v1 import EventType

from collections_domain.rules import calendar
from collections_domain.case.contract import Instalment
from collections_domain.case.children import PlanPaymentForwarded, PlanRun
from collections_domain.client import propose_plan, record_contact_outcome
from collections_domain.store.db import session
from collections_domain.store.models import HandOffEventRecord, PlanInstalmentRecord, RepaymentPlan
from tests.helpers import advance_to, contact_rows, open_case, payment, server_now, status
from tests.workflows.ladder_test import TZ, at_local, close_to, due_days_ago


async def test_payment_in_full_recalls_the_placement(time_env, harness_factory):
    h = harness_factory(time_env)
    async with h.worker:
        due = await due_days_ago(time_env, 1)
        case, handle = await open_case(h, due=due, amount_minor=300_000)
        await advance_to(time_env, at_local(due, 35))
        await handle.signal("payment_received", payment(300_000, at_local(due, 35), payment_id="all"))
        final = await handle.result()
    assert final.outcome == "cured" and final.cured_days_past_due == 35
    assert [(x.kind, x.status, x.reason) for x in final.hand_offs] == [("placement", "recalled", "case cured")]
    with session(h.engine) as db:
        events = db.exec(select(HandOffEventRecord).where(HandOffEventRecord.loan_id == case.loan_id).order_by(HandOffEventRecord.id)).all()
    assert [(e.status, e.reason) for e in events] == [("placed", None), ("recalled", "case cured")]


async def test_missed_deferral_breaks_the_plan_and_resumes_at_the_step_now_due(time_env, harness_factory):
    h = harness_factory(time_env)
    async with h.worker:
        due = await due_days_ago(time_env, 1)
        case, handle = await open_case(h, due=due, amount_minor=300_000)
        await advance_to(time_env, at_local(due, 4))
        accepted = await propose_plan(h.client, case.loan_id, {"plan_id": "DF-1", "kind": "deferral", "new_due_date": str(due + timedelta(days=20))})
        h.child_ids.append(accepted.plan_workflow_id)
        await advance_to(time_env, at_local(due, 12))
        during = await status(handle)
        # Grace 3 days: missed at the end of DPD 23; the ladder takes `deep` at 08:00 on DPD 24
        # (the CN permitted hours open at 08:00, policy compliance.CN.contact_hours).
        await advance_to(time_env, at_local(due, 24, time(10)))
        after = await status(handle)
    assert [(i.due_date, i.amount_minor) for i in accepted.instalments] == [(due + timedelta(days=20), 300_000)]
    assert during.plan.plan_id == "DF-1" and [s.step for s in during.steps_done] == ["initial"]
    assert during.next_step is None  # the ladder waits while the plan runs
    assert [(p.status, p.reason) for p in after.plans_ended] == [("broken", "instalment 1 missed")]
    assert [(s.step, s.days_past_due) for s in after.steps_done] == [("initial", 3), ("deep", 24)]
    assert close_to(after.steps_done[-1].at, calendar.local_instant(due + timedelta(days=24), time(8), TZ))
    assert sorted(r.action for r in contact_rows(h.engine, case.loan_id)) == [
        "agent_call", "demand_letter", "email_overdue_notice", "sms_reminder"
    ]


async def test_a_call_that_raises_a_dispute_pauses_the_ladder(time_env, harness_factory):
    h = harness_factory(time_env)
    async with h.worker:
        due = await due_days_ago(time_env, 1)
        case, handle = await open_case(h, due=due, amount_minor=300_000)
        await advance_to(time_env, at_local(due, 8))
        task = (await status(handle)).open_tasks[0]
        recorded = await record_contact_outcome(h.client, case.loan_id, {
            "task_key": task.task_key, "outcome": "dispute_raised", "agent_id": "A-2", "dispute_id": "DSP-CALL"})
        await advance_to(time_env, at_local(due, 40))
        st = await status(handle)
    assert recorded.dispute_id == "DSP-CALL"
    assert [(p.kind, p.id) for p in st.pauses] == [("dispute", "DSP-CALL")]
    # No DPD 30 step while the dispute is open, and nothing but DPD 3 and 7 was sent.
    assert [s.step for s in st.steps_done] == ["initial", "deep"] and st.next_step is None
    assert len(contact_rows(h.engine, case.loan_id)) == 4


async def test_a_long_plan_continues_as_new_and_completes(time_env, harness_factory):
    """The plan's child alone, with 5 instalments and a new run every 2."""
    h = harness_factory(time_env)
    async with h.worker:
        now = await server_now(time_env)
        today = calendar.local_date(now, TZ)
        instalments = [Instalment(seq=i + 1, due_date=today + timedelta(days=10 * (i + 1)), amount_minor=1_000) for i in range(5)]
        with session(h.engine) as db:
            db.add(RepaymentPlan(plan_id="LONG", workflow_id="collection-L-long", plan_workflow_id="collection-L-long-plan-LONG",
                                 loan_id="L-long", kind="instalments", total_minor=5_000, currency="CNY", accepted_at=now))
            for i in instalments:
                db.add(PlanInstalmentRecord(plan_id="LONG", loan_id="L-long", seq=i.seq, due_date=i.due_date,
                                            amount_minor=i.amount_minor, updated_at=now))
            db.commit()
        run = PlanRun(
            plan_id="LONG", parent_workflow_id="collection-L-long", loan_id="L-long", currency="CNY", timezone=TZ,
            instalments=instalments,
            deadlines=[calendar.local_instant(i.due_date + timedelta(days=4), time(0), TZ) for i in instalments],
            instalments_per_run=2,
        )
        handle = await h.client.start_workflow("RepaymentPlanWorkflow", run, id="collection-L-long-plan-LONG", task_queue=h.task_queue)
        h.child_ids.append(handle.id)
        first_run = handle.result_run_id
        for i in instalments:
            await advance_to(time_env, calendar.local_instant(i.due_date, time(12), TZ))
            await h.client.get_workflow_handle(handle.id).signal("payment_applied", PlanPaymentForwarded(payment_id=f"p{i.seq}", amount_minor=1_000))
        result = await h.client.get_workflow_handle(handle.id).result()
        first_history = await h.client.get_workflow_handle(handle.id, run_id=first_run).fetch_history()
    assert result["status"] == "completed" and result["paid_toward_minor"] == 5_000
    assert first_history.events[-1].event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CONTINUED_AS_NEW
    with session(h.engine) as db:
        rows = db.exec(select(PlanInstalmentRecord).where(PlanInstalmentRecord.loan_id == "L-long").order_by(PlanInstalmentRecord.seq)).all()
    assert [r.status for r in rows] == ["paid"] * 5
