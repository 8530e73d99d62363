"""Promises (kept, broken, the cap), duplicate and invalid signals, and invalid inputs."""

from datetime import time, timedelta

import pytest
from sqlmodel import select
from temporalio.client import WorkflowFailureError
from temporalio.exceptions import ApplicationError

from collections_domain.rules import calendar
from collections_domain.case.contract import CaseStatus
from collections_domain.store.db import session
from collections_domain.store.models import CollectionCase, PromiseRecord, RejectedSignalRecord
from tests.helpers import advance_to, contact_rows, new_loan_id, open_case, payment, promise, seed_borrower, server_now, status

TZ = "Asia/Shanghai"


async def due_days_ago(env, days: int):
    return calendar.local_date(await server_now(env), TZ) - timedelta(days=days)


def at_local(due, dpd: int, wall: time = time(12)):
    return calendar.local_instant(due + timedelta(days=dpd), wall, TZ)


def promise_rows(engine, loan_id: str) -> list[PromiseRecord]:
    with session(engine) as db:
        return list(db.exec(select(PromiseRecord).where(PromiseRecord.loan_id == loan_id).order_by(PromiseRecord.id)))


def rejected_rows(engine, loan_id: str) -> list[RejectedSignalRecord]:
    with session(engine) as db:
        return list(db.exec(select(RejectedSignalRecord).where(RejectedSignalRecord.loan_id == loan_id).order_by(RejectedSignalRecord.id)))


async def test_kept_promise_pauses_the_ladder_and_skips_the_steps_it_covered(time_env, harness_factory):
    h = harness_factory(time_env)
    async with h.worker:
        due = await due_days_ago(time_env, 1)
        case, handle = await open_case(h, due=due, amount_minor=300_000)
        await advance_to(time_env, at_local(due, 5))
        await handle.signal("promise_to_pay", promise(100_000, due + timedelta(days=8), promise_id="ptp-kept"))
        await advance_to(time_env, at_local(due, 7, time(10)))
        paused = await status(handle)
        assert [s.step for s in paused.steps_done] == ["initial"]  # deep (DPD 7) waits for the promise
        assert paused.open_promise.promise_id == "ptp-kept" and paused.next_step is None
        paid_at = at_local(due, 8)
        await advance_to(time_env, paid_at)
        await handle.signal("payment_received", payment(100_000, paid_at))
        await advance_to(time_env, at_local(due, 31))
        final = await status(handle)
    assert final.promises_kept == 1 and final.promises_broken == 0 and final.open_promise is None
    assert [s.step for s in final.steps_done] == ["initial", "agency"]
    assert [(s.step, s.days_past_due) for s in final.steps_skipped] == [("deep", 7)]
    assert "ptp-kept kept" in final.steps_skipped[0].reason
    assert final.outstanding_minor == 200_000
    [row] = promise_rows(h.engine, case.loan_id)
    assert (row.status, row.paid_toward_minor, row.amount_minor) == ("kept", 100_000, 100_000)


async def test_broken_promise_resumes_the_ladder_with_the_step_now_due(time_env, harness_factory):
    h = harness_factory(time_env)
    async with h.worker:
        due = await due_days_ago(time_env, 1)
        case, handle = await open_case(h, due=due, amount_minor=300_000)
        await advance_to(time_env, at_local(due, 4))
        await handle.signal("promise_to_pay", promise(50_000, due + timedelta(days=5), promise_id="ptp-broken"))
        await advance_to(time_env, at_local(due, 7, time(20)))
        still_paused = await status(handle)
        assert [s.step for s in still_paused.steps_done] == ["initial"]
        assert still_paused.open_promise.paid_toward_minor == 0
        await advance_to(time_env, at_local(due, 8, time(10)))
        st = await status(handle)
    # Grace ends at the end of DPD 7 (promised DPD 5 + 2 days); the deep step is taken at the
    # next opening of the permitted hours, 08:00 on DPD 8 (policy compliance.CN.contact_hours).
    assert st.promises_broken == 1 and st.open_promise is None
    assert [(s.step, s.days_past_due) for s in st.steps_done] == [("initial", 3), ("deep", 8)]
    assert abs(st.steps_done[1].at - at_local(due, 8, time(8))) < timedelta(seconds=2)
    [row] = promise_rows(h.engine, case.loan_id)
    assert row.status == "broken" and row.resolved_at is not None


async def test_broken_promise_cap_rejects_further_promises(time_env, harness_factory):
    h = harness_factory(time_env)
    async with h.worker:
        due = await due_days_ago(time_env, 1)
        case, handle = await open_case(h, due=due, amount_minor=300_000)
        for dpd, promise_id in ((4, "ptp-1"), (8, "ptp-2")):
            await advance_to(time_env, at_local(due, dpd))
            await handle.signal("promise_to_pay", promise(10_000, due + timedelta(days=dpd), promise_id=promise_id))
        await advance_to(time_env, at_local(due, 12))
        await handle.signal("promise_to_pay", promise(10_000, due + timedelta(days=13), promise_id="ptp-3"))
        await advance_to(time_env, at_local(due, 12, time(13)))
        st = await status(handle)
    assert st.promises_broken == 2 and st.open_promise is None
    [rejection] = st.rejected_signals
    assert rejection.kind == "promise_to_pay" and rejection.id == "ptp-3"
    assert "promises.max_broken" in rejection.reason and "cap is 2" in rejection.reason
    assert [r.status for r in promise_rows(h.engine, case.loan_id)] == ["broken", "broken"]
    assert [r.signal_id for r in rejected_rows(h.engine, case.loan_id)] == ["ptp-3"]


INVALID_PAYMENTS = [
    ({"payment_id": "p-zero", "amount_minor": 0, "currency": "CNY"}, "amount_minor: must be a positive integer"),
    ({"payment_id": "p-neg", "amount_minor": -5, "currency": "CNY"}, "amount_minor: must be a positive integer"),
    ({"payment_id": "p-usd", "amount_minor": 100, "currency": "USD"}, "currency: must be the case currency CNY"),
    ({"payment_id": "p-text", "amount_minor": "abc", "currency": "CNY"}, "amount_minor: Input should be a valid integer"),
    ({"payment_id": "p-float", "amount_minor": 10.5, "currency": "CNY"}, "amount_minor: Input should be a valid integer"),
    ({"payment_id": "p-naive", "amount_minor": 100, "currency": "CNY", "paid_at": "2026-12-01T10:00:00"}, "paid_at: Input should have timezone info"),
    ({"payment_id": "p-nodate", "amount_minor": 100, "currency": "CNY", "paid_at": None}, "paid_at"),
    ({"payment_id": "bad id!", "amount_minor": 100, "currency": "CNY"}, "payment_id: must be 1-64 characters, each a letter, a digit"),
]


async def test_duplicate_and_invalid_signals_are_recorded_and_change_nothing(time_env, harness_factory):
    h = harness_factory(time_env)
    async with h.worker:
        due = await due_days_ago(time_env, 1)
        case, handle = await open_case(h, due=due, amount_minor=300_000)
        now = await server_now(time_env)
        stamp = now.isoformat()
        await handle.signal("payment_received", payment(100, now, payment_id="p-ok"))
        await handle.signal("payment_received", payment(100, now, payment_id="p-ok"))
        for raw, _ in INVALID_PAYMENTS:
            await handle.signal("payment_received", {"paid_at": stamp, **raw})
        await handle.signal("payment_received", "not an object")
        today = calendar.local_date(now, TZ)
        await handle.signal("promise_to_pay", promise(400_000, today + timedelta(days=2), promise_id="ptp-big"))
        await handle.signal("promise_to_pay", promise(1_000, today - timedelta(days=1), promise_id="ptp-past"))
        await handle.signal("promise_to_pay", promise(1_000, today + timedelta(days=31), promise_id="ptp-far"))
        await handle.signal("promise_to_pay", {"promise_id": "ptp-baddate", "amount_minor": 1_000, "promised_date": "2026-02-30"})
        await handle.signal("promise_to_pay", promise(1_000, today + timedelta(days=2), promise_id="ptp-ok"))
        await handle.signal("promise_to_pay", promise(1_000, today + timedelta(days=3), promise_id="ptp-second"))
        await handle.signal("promise_to_pay", promise(1_000, today + timedelta(days=2), promise_id="ptp-ok"))
        await advance_to(time_env, now + timedelta(minutes=5))
        st = await status(handle)
    expected = (
        [("payment_received", "p-ok", "payment_id: duplicate")]
        + [("payment_received", raw["payment_id"][:64], reason) for raw, reason in INVALID_PAYMENTS]
        + [
            ("payment_received", "", "Input should be a valid dictionary"),
            ("promise_to_pay", "ptp-big", "amount_minor: must not exceed the outstanding amount 299900"),
            ("promise_to_pay", "ptp-past", "promised_date: must not be before today"),
            ("promise_to_pay", "ptp-far", "promises.horizon_days"),
            ("promise_to_pay", "ptp-baddate", "promised_date: must be a date YYYY-MM-DD"),
            ("promise_to_pay", "ptp-second", "promise_id: another promise (ptp-ok) is open"),
            ("promise_to_pay", "ptp-ok", "promise_id: duplicate"),
        ]
    )
    got = [(r.kind, r.id, r.reason) for r in st.rejected_signals]
    assert len(got) == len(expected), got
    for (kind, signal_id, reason), (g_kind, g_id, g_reason) in zip(expected, got):
        assert (g_kind, g_id) == (kind, signal_id) and reason in g_reason, (g_kind, g_id, g_reason)
    # Only the first p-ok and ptp-ok changed the case.
    assert st.outstanding_minor == 299_900 and st.paid_minor == 100
    assert st.open_promise.promise_id == "ptp-ok"
    rows = rejected_rows(h.engine, case.loan_id)
    assert [(r.kind, r.signal_id, r.reason) for r in rows] == got


INVALID_INPUTS = [
    ({"loan_id": "has space"}, "loan_id: must be 1-64 characters, each a letter, a digit, '-', '_' or '.'"),
    ({"principal_due_minor": -100}, "principal_due_minor: Input should be greater than or equal to 0"),
    ({"principal_due_minor": 0}, "the sum must be > 0"),
    ({"currency": "XYZ"}, "currency: 'XYZ' is not an ISO 4217 currency code"),
    ({"currency": "JPY"}, "currency: policy 2027.01-strategy has no thresholds for JPY"),
    ({"timezone": "Mars/Olympus"}, "timezone: 'Mars/Olympus' is not an IANA time zone name"),
    ({"jurisdiction": "FR"}, "jurisdiction: must be one of CN, US, UK"),
    ({"policy_version": "1999-old"}, "policy_version: unknown policy '1999-old'"),
    ({"oldest_due_date": "yesterday"}, "oldest_due_date: must be a date YYYY-MM-DD"),
    ({"oldest_due_date": "in 5 days"}, "oldest_due_date: must not be after today in Asia/Shanghai"),
    ({"workflow_id": "wrong-id"}, "workflow id: must be"),
]


@pytest.mark.parametrize(("change", "message"), INVALID_INPUTS)
async def test_invalid_input_fails_at_once_and_sends_nothing(time_env, harness_factory, change, message):
    h = harness_factory(time_env)
    loan_id = new_loan_id()
    seed_borrower(h.engine, "B-1")
    raw = {
        "loan_id": loan_id,
        "borrower_id": "B-1",
        "principal_due_minor": 100_000,
        "oldest_due_date": (await due_days_ago(time_env, 40)).isoformat(),
        **change,
    }
    if raw["oldest_due_date"] == "in 5 days":  # relative: the test server's clock is far ahead
        raw["oldest_due_date"] = (await due_days_ago(time_env, -5)).isoformat()
    workflow_id = raw.pop("workflow_id", f"collection-{raw['loan_id']}")
    async with h.worker:
        handle = await h.client.start_workflow(
            "LoanCollectionWorkflow", raw, id=workflow_id, task_queue=h.task_queue, result_type=CaseStatus
        )
        with pytest.raises(WorkflowFailureError) as failure:
            await handle.result()
    cause = failure.value.cause
    assert isinstance(cause, ApplicationError) and cause.non_retryable and cause.type == "InvalidCaseInput"
    assert message in cause.message, cause.message
    assert contact_rows(h.engine, raw["loan_id"]) == []
    with session(h.engine) as db:
        assert db.exec(select(CollectionCase).where(CollectionCase.workflow_id == workflow_id)).first() is None


async def test_a_case_that_ended_cannot_be_opened_again_for_the_same_due_date(time_env, harness_factory):
    h = harness_factory(time_env)
    async with h.worker:
        due = await due_days_ago(time_env, 1)
        case, handle = await open_case(h, due=due, amount_minor=100_000)
        await handle.signal("payment_received", payment(100_000, await server_now(time_env)))
        assert (await handle.result()).outcome == "cured"
        again = await h.client.start_workflow(
            "LoanCollectionWorkflow", case, id=case.workflow_id, task_queue=h.task_queue, result_type=CaseStatus
        )
        with pytest.raises(WorkflowFailureError) as failure:
            await again.result()
    assert "already ended as cured" in failure.value.cause.message
    assert failure.value.cause.type == "InvalidCaseInput"
