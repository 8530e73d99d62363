"""The ladder on the time-skipping server: cures at DPD 2/5/20, never paid, partial and over-payments,
late starts, other time zones, signal-with-start and starting twice."""

from datetime import time, timedelta

import pytest
from sqlmodel import select

from collections_domain.rules import calendar
from collections_domain.case import search_attributes as sa
from collections_domain.client import start_case
from collections_domain.store.db import session
from collections_domain.store.models import (
    CollectionCase,
    ContactOutcomeRecord,
    HandOffEventRecord,
    LegalReferral,
    Payment,
    Placement,
    WriteOff,
)
from tests.helpers import advance_to, advance_to_local, contact_rows, open_case, payment, server_now, status

TZ = "Asia/Shanghai"


async def due_days_ago(env, days: int, tz: str = TZ):
    return calendar.local_date(await server_now(env), tz) - timedelta(days=days)


def at_local(due, dpd: int, wall: time = time(12), tz: str = TZ):
    return calendar.local_instant(due + timedelta(days=dpd), wall, tz)


def close_to(actual, expected, tolerance=timedelta(seconds=2)) -> bool:
    """Timers fire a few milliseconds after their instant."""
    return abs(actual - expected) <= tolerance


def case_row(engine, workflow_id: str) -> CollectionCase:
    with session(engine) as db:
        return db.exec(select(CollectionCase).where(CollectionCase.workflow_id == workflow_id)).one()


@pytest.mark.parametrize(
    ("paid_on_dpd", "steps", "actions"),
    [
        (2, [], []),
        (5, ["initial"], ["sms_reminder", "email_overdue_notice"]),
        (20, ["initial", "deep"], ["sms_reminder", "email_overdue_notice", "agent_call", "demand_letter"]),
    ],
)
async def test_paid_in_full_cures_the_case(time_env, harness_factory, paid_on_dpd, steps, actions):
    h = harness_factory(time_env)
    async with h.worker:
        due = await due_days_ago(time_env, 1)
        case, handle = await open_case(h, due=due, amount_minor=300_000)
        paid_at = at_local(due, paid_on_dpd)
        await advance_to(time_env, paid_at)
        await handle.signal("payment_received", payment(300_000, paid_at))
        result = await handle.result()
    assert result.outcome == "cured"
    assert result.cured_days_past_due == paid_on_dpd
    assert result.outstanding_minor == 0 and result.paid_minor == 300_000 and result.overpaid_minor == 0
    assert [s.step for s in result.steps_done] == steps
    assert result.stage == (steps[-1] if steps else "identified")
    for record in result.steps_done:
        # Each step fired at 09:00 local on due + N.
        assert close_to(record.at, at_local(due, record.days_past_due, time(9)))
    assert sorted(row.action for row in contact_rows(h.engine, case.loan_id)) == sorted(actions)
    row = case_row(h.engine, case.workflow_id)
    assert row.outcome == "cured" and row.outstanding_minor == 0 and row.closed_at is not None
    described = await handle.describe()
    assert described.typed_search_attributes.get(sa.COLLECTION_OUTCOME) == "cured"
    assert described.typed_search_attributes.get(sa.OUTSTANDING_MINOR) == 0


@pytest.mark.parametrize(("amount", "last_step", "table"), [(2_000_000, "legal", LegalReferral), (300_000, "agency", Placement)])
async def test_never_paid_climbs_the_whole_ladder_then_is_written_off(time_env, harness_factory, amount, last_step, table):
    h = harness_factory(time_env)
    async with h.worker:
        due = await due_days_ago(time_env, 1)
        case, handle = await open_case(h, due=due, amount_minor=amount)
        await advance_to(time_env, at_local(due, 6))
        mid = await status(handle)
        assert mid.stage == "initial" and mid.next_step.step == "deep"
        assert mid.next_step.at == at_local(due, 7, time(9))
        await advance_to(time_env, at_local(due, 31))
        final = await status(handle)
        described = await handle.describe()
        child_id = final.hand_offs[0].workflow_id
        child = await h.client.get_workflow_handle(child_id).describe()
        # DPD 180, local midnight: nothing was ever paid, so the case is written off.
        await advance_to(time_env, at_local(due, 180, time(0, 1)))
        ended = await handle.result()
    assert [(s.step, s.days_past_due) for s in final.steps_done] == [("initial", 3), ("deep", 7), (last_step, 30)]
    assert final.outcome is None and final.outstanding_minor == amount
    assert final.next_step.step == "write_off" and final.next_step.at == at_local(due, 180, time(0))
    assert [r.status for s in final.steps_done for r in s.results] == ["recorded"] * 4 + ["started"]
    # The DPD 7 call was a task nobody reported within 48 hours: recorded as missed.
    assert [(o.action, o.outcome) for o in final.contact_outcomes] == [("agent_call", "missed")]
    assert close_to(final.contact_outcomes[0].recorded_at, at_local(due, 7, time(9)) + timedelta(hours=48))
    # The DPD 30 hand-off runs as its own child workflow.
    kind = "placement" if last_step == "agency" else "legal_referral"
    assert [(o.kind, o.status) for o in final.hand_offs] == [(kind, "active")]
    assert child_id == f"{case.workflow_id}-{'placement' if kind == 'placement' else 'legal'}-{due}"
    assert child.workflow_type in ("AgencyPlacementWorkflow", "LegalReferralWorkflow")
    rows = contact_rows(h.engine, case.loan_id)
    assert len(rows) == 5 and all(r.status == "recorded" and r.rendered for r in rows)
    with session(h.engine) as db:
        handed = db.exec(select(table).where(table.loan_id == case.loan_id)).all()
        outcomes = db.exec(select(ContactOutcomeRecord).where(ContactOutcomeRecord.loan_id == case.loan_id)).all()
        write_offs = db.exec(select(WriteOff).where(WriteOff.loan_id == case.loan_id)).all()
        hand_off_events = db.exec(
            select(HandOffEventRecord).where(HandOffEventRecord.loan_id == case.loan_id).order_by(HandOffEventRecord.id)
        ).all()
    assert len(handed) == 1 and handed[0].amount_minor == amount and handed[0].days_past_due == 30
    assert [(o.outcome, o.action) for o in outcomes] == [("missed", "agent_call")]
    attrs = described.typed_search_attributes
    assert attrs.get(sa.COLLECTION_STAGE) == last_step
    assert attrs.get(sa.LOAN_ID) == case.loan_id
    assert attrs.get(sa.OVERDUE_SINCE) == calendar.overdue_since(due, TZ)
    assert attrs.get(sa.COLLECTION_OUTCOME) is None
    # Written off at DPD 180 with the whole amount; the placement (recalled at the end of its
    # 90-day term) or the referral (withdrawn by the write-off) is closed.
    assert ended.outcome == "written_off" and ended.written_off_minor == amount and ended.outstanding_minor == amount
    assert close_to(ended.closed_at, at_local(due, 180, time(0)))
    assert [(w.amount_minor, w.days_past_due) for w in write_offs] == [(amount, 180)]
    assert case_row(h.engine, case.workflow_id).outcome == "written_off"
    if kind == "placement":
        assert [(e.status, e.reason) for e in hand_off_events] == [("placed", None), ("recalled", "placement term of 90 days ended")]
    else:
        assert [(e.status, e.reason) for e in hand_off_events] == [("filed", None), ("withdrawn", "case written_off")]


async def test_partial_payment_lowers_the_amount_and_the_dpd_30_choice(time_env, harness_factory):
    h = harness_factory(time_env)
    async with h.worker:
        due = await due_days_ago(time_env, 1)
        case, handle = await open_case(h, due=due, amount_minor=1_200_000)
        paid_at = at_local(due, 10)
        await advance_to(time_env, paid_at)
        await handle.signal("payment_received", payment(300_001, paid_at, payment_id="part-1"))
        await advance_to(time_env, at_local(due, 31))
        final = await status(handle)
    assert final.outstanding_minor == 899_999 and final.paid_minor == 300_001
    assert [s.step for s in final.steps_done] == ["initial", "deep", "agency"]  # 899,999 < 1,000,000
    with session(h.engine) as db:
        row = db.exec(select(Payment).where(Payment.payment_id == "part-1")).one()
    assert row.applied_minor == 300_001 and row.overpaid_minor == 0 and row.loan_id == case.loan_id


async def test_overpayment_is_recorded_as_such(time_env, harness_factory):
    h = harness_factory(time_env)
    async with h.worker:
        due = await due_days_ago(time_env, 1)
        case, handle = await open_case(h, due=due, amount_minor=100_000)
        paid_at = at_local(due, 2)
        await advance_to(time_env, paid_at)
        await handle.signal("payment_received", payment(150_000, paid_at, payment_id="over-1"))
        result = await handle.result()
    assert result.outcome == "cured" and result.outstanding_minor == 0
    assert result.paid_minor == 100_000 and result.overpaid_minor == 50_000
    with session(h.engine) as db:
        row = db.exec(select(Payment).where(Payment.payment_id == "over-1")).one()
    assert (row.amount_minor, row.applied_minor, row.overpaid_minor) == (150_000, 100_000, 50_000)


async def _open_in_window(h, env, *, dpd: int, wall: time, tz: str = TZ, **kwargs):
    """Open a case at local ``wall`` on a day when it is already at ``dpd``."""
    now = await server_now(env)
    today = calendar.local_date(now, tz)
    day = today if calendar.local_instant(today, wall, tz) > now else today + timedelta(days=1)
    await advance_to_local(env, day, wall, tz)
    return await open_case(h, due=day - timedelta(days=dpd), tz=tz, **kwargs)


async def test_late_started_case_takes_only_the_step_now_due(time_env, harness_factory):
    h = harness_factory(time_env)
    async with h.worker:
        case, handle = await _open_in_window(h, time_env, dpd=10, wall=time(10), amount_minor=300_000)
        opened_at = await server_now(time_env)
        await advance_to(time_env, opened_at + timedelta(hours=1))
        st = await status(handle)
    assert [(s.step, s.days_past_due) for s in st.steps_done] == [("deep", 10)]
    assert st.steps_done[0].at - opened_at < timedelta(minutes=1)
    assert [(s.step, s.days_past_due) for s in st.steps_skipped] == [("initial", 3)]
    assert "superseded" in st.steps_skipped[0].reason
    assert sorted(r.action for r in contact_rows(h.engine, case.loan_id)) == ["agent_call", "demand_letter"]
    assert st.next_step.step == "agency" and st.next_step.at == at_local(case.oldest_due_date, 30, time(9))


async def test_late_start_outside_the_permitted_hours_waits_for_them(time_env, harness_factory):
    h = harness_factory(time_env)
    async with h.worker:
        case, handle = await _open_in_window(h, time_env, dpd=10, wall=time(23, 30), amount_minor=300_000)
        await advance_to(time_env, (await server_now(time_env)) + timedelta(hours=2))
        waiting = await status(handle)
        assert waiting.steps_done == [] and waiting.next_step.step == "deep"
        # CN permits contact from 08:00 (policy compliance.CN.contact_hours); the deferral is recorded.
        morning = at_local(case.oldest_due_date, 11, time(8))
        assert waiting.next_step.at == morning
        assert waiting.deferred_step.rule_id == "CN.contact_hours"
        assert {d.decision for d in waiting.contact_decisions} == {"deferred"}
        await advance_to(time_env, morning + timedelta(minutes=5))
        st = await status(handle)
    assert [(s.step, s.days_past_due) for s in st.steps_done] == [("deep", 11)]
    assert close_to(st.steps_done[0].at, morning)


@pytest.mark.parametrize("tz", ["America/New_York", "Pacific/Kiritimati", "Etc/GMT+12", "Europe/London"])
async def test_steps_fire_at_nine_local_in_the_borrowers_zone(time_env, harness_factory, tz):
    h = harness_factory(time_env)
    async with h.worker:
        due = await due_days_ago(time_env, 1, tz)
        case, handle = await open_case(h, due=due, tz=tz, locale="en", amount_minor=300_000)
        await advance_to(time_env, at_local(due, 8, tz=tz))
        st = await status(handle)
    assert [(s.step, s.days_past_due) for s in st.steps_done] == [("initial", 3), ("deep", 7)]
    for record in st.steps_done:
        assert close_to(record.at, calendar.local_instant(calendar.local_date(record.at, tz), time(9), tz))
        assert calendar.local_date(record.at, tz) == due + timedelta(days=record.days_past_due)
    assert all(row.locale == "en" for row in contact_rows(h.engine, case.loan_id))


async def test_signal_with_start_payment_is_applied_before_any_step(time_env, harness_factory):
    h = harness_factory(time_env)
    async with h.worker:
        now = await server_now(time_env)
        due = await due_days_ago(time_env, 40)
        case, handle = await open_case(h, due=due, amount_minor=500_000, first_payment=payment(500_000, now))
        result = await handle.result()
    assert result.outcome == "cured" and result.steps_done == []
    assert contact_rows(h.engine, case.loan_id) == []


async def test_starting_a_running_case_again_returns_it(time_env, harness_factory):
    h = harness_factory(time_env)
    async with h.worker:
        due = await due_days_ago(time_env, 1)
        case, first = await open_case(h, due=due)
        again = await start_case(h.client, case, task_queue=h.task_queue)
        assert again.result_run_id == first.result_run_id
        await first.signal("payment_received", payment(case.overdue_minor, await server_now(time_env)))
        await first.result()
