"""The case follows the loan, on the time-skipping server: instalments that fall due while a case
is open, payments that move DPD, accrual by component, value-dated payments that keep a promise,
bounds on every amount, money sent with signal-with-start to an ended case, pauses ending with
their case, and the legal track's money (each a defect of the case engine before the ledger)."""

from datetime import time, timedelta

import pytest
from sqlmodel import select
from temporalio.client import WorkflowFailureError

from collections_domain.case.contract import CaseInput, CaseStatus
from collections_domain.client import start_case
from collections_domain.rules import calendar
from collections_domain.store.db import session
from collections_domain.store.models import CasePause, RejectedSignalRecord, UnmatchedPayment
from tests.helpers import advance_to, open_case, payment, promise, server_now, status

TZ = "Asia/Shanghai"


async def due_days_ago(env, days: int):
    return calendar.local_date(await server_now(env), TZ) - timedelta(days=days)


def at_local(due, dpd: int, wall: time = time(12)):
    return calendar.local_instant(due + timedelta(days=dpd), wall, TZ)


def instalment(instalment_id: str, due_date, principal: int) -> dict:
    return {"instalment_id": instalment_id, "due_date": str(due_date), "principal_minor": principal}


async def test_a_new_instalment_falls_due_on_an_open_case_and_paying_the_oldest_moves_dpd(time_env, harness_factory):
    h = harness_factory(time_env)
    async with h.worker:
        due = await due_days_ago(time_env, 1)
        case, handle = await open_case(h, due=due, amount_minor=250_000)
        await advance_to(time_env, at_local(due, 10))
        await handle.signal("instalment_due", instalment("2", due + timedelta(days=6), 350_000))
        await advance_to(time_env, at_local(due, 10, time(13)))
        both = await status(handle)
        await handle.signal("payment_received", payment(250_000, at_local(due, 10, time(13))))
        await advance_to(time_env, at_local(due, 10, time(14)))
        moved = await status(handle)
    assert both.outstanding_minor == 600_000 and both.days_past_due == 10
    assert [line.instalment_id for line in both.ledger.lines] == [f"due-{due}", "2"]
    assert moved.outstanding_minor == 350_000 and moved.days_past_due == 4
    assert moved.oldest_due_date == due + timedelta(days=6) and moved.outcome is None
    assert moved.stage == "initial"  # the stage followed DPD back down from deep


async def test_paying_all_but_one_fen_keeps_the_ladder_going_once_more_falls_due(time_env, harness_factory):
    h = harness_factory(time_env)
    async with h.worker:
        due = await due_days_ago(time_env, 1)
        case, handle = await open_case(h, due=due, amount_minor=300_000)
        await advance_to(time_env, at_local(due, 2))
        await handle.signal("payment_received", payment(299_999, at_local(due, 2)))
        await advance_to(time_env, at_local(due, 9))
        await handle.signal("instalment_due", instalment("2", due + timedelta(days=9), 250_000))
        await advance_to(time_env, at_local(due, 10))
        st = await status(handle)
    assert st.outstanding_minor == 250_001
    assert [s.step for s in st.steps_done] == ["initial", "deep"]  # under the minimum, then over it again


async def test_penalty_interest_accrues_on_overdue_principal_and_the_components_are_apart(time_env, harness_factory):
    h = harness_factory(time_env)
    async with h.worker:
        due = await due_days_ago(time_env, 1)
        case, handle = await open_case(h, due=due, amount_minor=1_000_000, interest_due_minor=50_000, fees_due_minor=10_000,
                                       portfolio=None)  # CN: 12 % a year on overdue principal
        await advance_to(time_env, at_local(due, 11))
        st = await status(handle)
    components = st.outstanding_components
    assert (components.principal, components.interest, components.fees) == (1_000_000, 50_000, 10_000)
    # As of the case's last event (the status's as_of): each whole day after the due date accrued.
    days = (calendar.local_date(st.as_of, TZ) - due).days - 1
    assert days >= 5 and components.penalty == 1_000_000 * 1200 * days // (10_000 * 365)
    assert st.outstanding_minor == components.principal + components.interest + components.fees + components.penalty


async def test_a_payment_made_before_the_promise_deadline_and_reported_after_it_keeps_the_promise(time_env, harness_factory):
    h = harness_factory(time_env)
    async with h.worker:
        due = await due_days_ago(time_env, 1)
        case, handle = await open_case(h, due=due, amount_minor=300_000)
        await advance_to(time_env, at_local(due, 4))
        await handle.signal("promise_to_pay", promise(300_000, due + timedelta(days=6), promise_id="late-report"))
        last_day = due + timedelta(days=6 + 2)  # promised date plus the policy's two grace days
        deadline = calendar.local_instant(last_day + timedelta(days=1), time(0), TZ)
        await advance_to(time_env, deadline + timedelta(minutes=10))  # 00:10: the webhook arrives now
        await handle.signal("payment_received", payment(300_000, deadline - timedelta(minutes=10)))  # paid at 23:50
        final = await handle.result()
    assert final.promises_kept == 1 and final.promises_broken == 0 and final.outcome == "cured"


async def test_a_case_cured_during_a_hardship_pause_ends_the_pause(time_env, harness_factory):
    h = harness_factory(time_env)
    async with h.worker:
        due = await due_days_ago(time_env, 1)
        case, handle = await open_case(h, due=due, amount_minor=300_000)
        await handle.signal("hardship", {"hardship_id": "H-1"})
        await advance_to(time_env, at_local(due, 5))
        await handle.signal("payment_received", payment(300_000, at_local(due, 5)))
        final = await handle.result()
    assert final.outcome == "cured" and final.pauses == []
    assert final.pauses_ended[0].kind == "hardship" and final.pauses_ended[0].resolution == "case cured"
    with session(h.engine) as db:
        row = db.exec(select(CasePause).where(CasePause.loan_id == case.loan_id)).one()
    assert row.ended_at is not None and row.resolution == "case cured"


async def test_an_amount_beyond_2_53_is_rejected_and_recorded_and_the_case_goes_on(time_env, harness_factory):
    h = harness_factory(time_env)
    async with h.worker:
        due = await due_days_ago(time_env, 1)
        case, handle = await open_case(h, due=due, amount_minor=300_000)
        await handle.signal("payment_received", {"payment_id": "huge", "amount_minor": 99999999999999999999999,
                                                 "currency": "CNY", "paid_at": (await server_now(time_env)).isoformat()})
        await advance_to(time_env, at_local(due, 4))
        st = await status(handle)
        history = await handle.fetch_history()
    assert st.outstanding_minor == 300_000 and st.outcome is None and st.bookkeeping_errors == []
    assert st.rejected_signals[0].reason.startswith("amount_minor: Input should be less than or equal to 9007199254740991")
    failed = [e for e in history.events if e.HasField("activity_task_failed_event_attributes")]
    assert not failed and len(history.events) < 40  # no write retried forever
    with session(h.engine) as db:
        assert db.exec(select(RejectedSignalRecord).where(RejectedSignalRecord.loan_id == case.loan_id)).one().signal_id == "huge"


async def test_a_payment_sent_with_signal_with_start_to_an_ended_case_is_held(time_env, harness_factory):
    h = harness_factory(time_env)
    async with h.worker:
        due = await due_days_ago(time_env, 1)
        case, handle = await open_case(h, due=due, amount_minor=300_000)
        await handle.signal("payment_received", payment(300_000, await server_now(time_env)))
        assert (await handle.result()).outcome == "cured"
        # The contract's webhook path: signal-with-start with the loan's input, after the case ended.
        late = payment(12_345, await server_now(time_env), payment_id="webhook-late")
        again = await start_case(h.client, case, task_queue=h.task_queue, first_payment=late)
        with pytest.raises(WorkflowFailureError) as failure:
            await again.result()
    assert "held for reconciliation" in str(failure.value.cause)
    with session(h.engine) as db:
        held = db.exec(select(UnmatchedPayment).where(UnmatchedPayment.loan_id == case.loan_id)).one()
    assert (held.payment_id, held.amount_minor, held.reason) == ("webhook-late", 12_345, "case_refused")


async def test_a_judgment_and_its_costs_enter_the_ledger_and_a_settlement_ends_the_case(time_env, harness_factory):
    h = harness_factory(time_env)
    async with h.worker:
        due = await due_days_ago(time_env, 1)
        case, handle = await open_case(h, due=due, amount_minor=2_000_000)
        await advance_to(time_env, at_local(due, 31))
        legal = (await status(handle)).hand_offs[0].workflow_id
        h.child_ids.append(legal)
        child = h.client.get_workflow_handle(legal)
        await child.signal("legal_status", {"event_id": "J-1", "status": "judgment", "awarded_minor": 1_800_000,
                                            "court_costs_minor": 50_000})
        await advance_to(time_env, at_local(due, 32))
        judged = await status(handle)
        await child.signal("legal_status", {"event_id": "S-1", "status": "settled"})
        final = await handle.result()
    assert judged.outstanding_minor == 1_850_000  # written down to the award, the costs added
    assert [line.kind for line in judged.ledger.lines] == ["instalment", "legal_costs"]
    assert judged.hand_offs[0].legal_status == "judgment"
    assert final.outcome == "settled" and final.waived_minor == 1_850_000 and final.outstanding_minor == 0


async def test_the_contracts_original_input_opens_a_loan_with_one_instalment_and_no_marker(time_env, harness_factory):
    h = harness_factory(time_env)
    async with h.worker:
        due = await due_days_ago(time_env, 3)
        case = CaseInput(loan_id="ORIG-" + str(due).replace("-", ""), borrower_id="B-orig", principal_due_minor=100_000,
                         oldest_due_date=due, portfolio="no-accrual")
        handle = await h.client.start_workflow("LoanCollectionWorkflow", case, id=case.workflow_id, task_queue=h.task_queue,
                                               result_type=CaseStatus)  # sent as is: no instalments
        h.handles.append(handle)
        await advance_to(time_env, at_local(due, 3, time(13)))
        st = await status(handle)
        ours = await start_case(h.client, case.model_copy(update={"loan_id": case.loan_id + "b"}), task_queue=h.task_queue)
        h.handles.append(ours)
        await advance_to(time_env, at_local(due, 3, time(14)))
        markers = [e for e in (await handle.fetch_history()).events if e.HasField("marker_recorded_event_attributes")
                   and e.marker_recorded_event_attributes.marker_name == "core_patch"]
        our_markers = [e for e in (await ours.fetch_history()).events if e.HasField("marker_recorded_event_attributes")
                       and e.marker_recorded_event_attributes.marker_name == "core_patch"]
    assert st.outstanding_minor == 100_000 and [line.instalment_id for line in st.ledger.lines] == [f"due-{due}"]
    assert len(markers) == 1 and our_markers == []  # this project's clients send instalments: no patch marker


async def test_a_signal_named_after_an_engine_method_or_unknown_is_recorded_as_rejected(time_env, harness_factory):
    """Every signal comes through one dynamic handler: a name that is not a signal of the case
    (``run``, ``_reject``, ``status``, a 10,000-character name) changes nothing and is on the record."""
    h = harness_factory(time_env)
    async with h.worker:
        due = await due_days_ago(time_env, 1)
        case, handle = await open_case(h, due=due, amount_minor=250_000)
        for name in ("run", "_reject", "status", "x" * 10_000):
            await handle.signal(name, {"payment_id": "p-1", "amount_minor": 1})
        await handle.signal("payment_received", payment(250_000, await server_now(time_env)))
        await advance_to(time_env, at_local(due, 2))
        ended = await status(handle)
    assert [r.kind for r in ended.rejected_signals] == ["run", "_reject", "status", "x" * 64]
    assert all("is not a signal of this case" in r.reason for r in ended.rejected_signals)
    assert ended.outcome == "cured"
    with session(h.engine) as db:
        kinds = {row.kind for row in db.exec(select(RejectedSignalRecord).where(
            RejectedSignalRecord.workflow_id == handle.id))}
    assert kinds == {"run", "_reject", "status", "x" * 64}
