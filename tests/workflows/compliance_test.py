"""The compliance gate inside the workflow, on the time-skipping server: the hour defers a step
durably, a cap or an opt-out reroutes it, an attorney receives what the borrower would have, a
breathing space pauses a UK case; every decision lands in the status and in ``contact_decisions``."""

from datetime import UTC, time, timedelta

import pytest
from sqlmodel import select

from collections_domain.rules import calendar
from collections_domain.store.db import session
from collections_domain.store.models import ContactDecisionRecord
from collections_domain.store.preferences import record_call_attempt, set_contact_preferences
from tests.helpers import advance_to, advance_to_local, contact_rows, open_case, server_now, status


def at_local(due, dpd: int, wall: time, tz: str):
    return calendar.local_instant(due + timedelta(days=dpd), wall, tz)


def decisions(engine, loan_id: str) -> list[ContactDecisionRecord]:
    with session(engine) as db:
        return list(db.exec(select(ContactDecisionRecord).where(ContactDecisionRecord.loan_id == loan_id).order_by(ContactDecisionRecord.id)))


async def test_cn_dpd_3_step_falling_at_2330_is_sent_at_0800_next_morning(time_env, harness_factory):
    tz = "Asia/Shanghai"
    h = harness_factory(time_env)
    async with h.worker:
        day = calendar.local_date(await server_now(time_env), tz) + timedelta(days=2)
        await advance_to_local(time_env, day, time(23, 30), tz)
        # Opened at 23:30 local on DPD 3: the initial step is due now, but not lawful until 08:00.
        case, handle = await open_case(h, due=day - timedelta(days=3), tz=tz)
        await advance_to(time_env, calendar.local_instant(day, time(23, 45), tz))
        waiting = await status(handle)
        morning = calendar.local_instant(day + timedelta(days=1), time(8), tz)
        assert waiting.steps_done == [] and contact_rows(h.engine, case.loan_id) == []
        assert waiting.next_step.step == "initial" and waiting.next_step.at == morning
        assert waiting.deferred_step.until == morning and waiting.deferred_step.rule_id == "CN.contact_hours"
        await advance_to(time_env, morning + timedelta(minutes=10))
        st = await status(handle)
    [initial] = st.steps_done
    assert initial.step == "initial" and abs(initial.at - morning) < timedelta(seconds=2)
    assert calendar.local_wall_time(initial.at, tz).strftime("%H:%M") == "08:00"
    assert sorted(r.action for r in contact_rows(h.engine, case.loan_id)) == ["email_overdue_notice", "sms_reminder"]
    rows = decisions(h.engine, case.loan_id)
    assert [(r.action, r.decision, r.rule_id) for r in rows] == [
        ("sms_reminder", "deferred", "CN.contact_hours"),
        ("email_overdue_notice", "deferred", "CN.contact_hours"),
        ("sms_reminder", "allowed", "CN.permitted"),
        ("email_overdue_notice", "allowed", "CN.permitted"),
    ]
    assert all(abs(r.decided_at.replace(tzinfo=UTC) - morning) < timedelta(seconds=2) for r in rows[2:])
    assert [d.decision for d in st.contact_decisions] == ["deferred", "deferred", "allowed", "allowed"]
    assert st.deferred_step is None


@pytest.mark.parametrize(("earlier_calls", "deep_ran"), [(7, "email_overdue_notice"), (6, "agent_call")])
async def test_us_eighth_call_in_seven_days_moves_to_email(time_env, harness_factory, earlier_calls, deep_ran):
    tz = "America/New_York"
    h = harness_factory(time_env)
    async with h.worker:
        due = calendar.local_date(await server_now(time_env), tz) - timedelta(days=1)
        case, handle = await open_case(h, due=due, tz=tz, currency="USD", jurisdiction="US", locale="en")
        # The dialer logged calls about this debt on DPD 1-6 (all inside the 7 days before DPD 7).
        for i in range(earlier_calls):
            record_call_attempt(h.engine, attempt_id=f"dial-{i}", loan_id=case.loan_id,
                                attempted_at=at_local(due, 1 + i % 6, time(10 + i // 6), tz), connected=False,
                                phone_number_id="mobile-1", borrower_id=case.borrower_id)
        await advance_to(time_env, at_local(due, 7, time(10), tz))
        st = await status(handle)
    deep = st.steps_done[-1]
    assert deep.step == "deep"
    call = next(d for d in st.contact_decisions if d.step == "deep" and d.action == "agent_call")
    if deep_ran == "agent_call":
        assert (call.decision, call.rule_id) == ("allowed", "US.permitted")
        assert [t.action for t in st.open_tasks] == ["agent_call"]
    else:
        assert (call.decision, call.rule_id, call.run_action) == ("rerouted", "US.call_attempts_7_days", "email_overdue_notice")
        assert "7 call attempts about this debt in the last 7 days" in call.reason
        assert st.open_tasks == []
    deep_rows = [r.action for r in contact_rows(h.engine, case.loan_id) if r.step == "deep"]
    assert sorted(deep_rows) == sorted([deep_ran, "demand_letter"])
    # The initial step: no SMS without consent (its alternative, email, is in the step already),
    # and the validation notice with the first communication.
    initial = [(d.action, d.decision, d.rule_id) for d in st.contact_decisions if d.step == "initial"]
    assert initial == [
        ("sms_reminder", "skipped", "US.sms_consent"),
        ("email_overdue_notice", "allowed", "US.permitted"),
        ("validation_notice", "allowed", "US.validation_notice"),
    ]


async def test_attorney_receives_what_the_borrower_would_have(time_env, harness_factory):
    tz = "Asia/Shanghai"
    h = harness_factory(time_env)
    async with h.worker:
        due = calendar.local_date(await server_now(time_env), tz) - timedelta(days=1)
        case, handle = await open_case(h, due=due, tz=tz, locale="en")
        set_contact_preferences(h.engine, case.borrower_id, attorney_id="ATT-9", attorney_name="Jane Counsel",
                                attorney_address="9 Law Street")
        await advance_to(time_env, at_local(due, 3, time(10), tz))
        st = await status(handle)
    assert [(d.action, d.decision, d.run_action) for d in st.contact_decisions] == [
        ("sms_reminder", "rerouted", "attorney_notice"), ("email_overdue_notice", "skipped", None)
    ]
    [letter] = contact_rows(h.engine, case.loan_id)
    assert letter.action == "attorney_notice" and "Jane Counsel" in letter.rendered
    assert "测试 借款人" not in letter.rendered


async def test_an_opt_out_given_between_steps_reroutes_the_next_one(time_env, harness_factory):
    tz = "Asia/Shanghai"
    h = harness_factory(time_env)
    async with h.worker:
        due = calendar.local_date(await server_now(time_env), tz) - timedelta(days=1)
        case, handle = await open_case(h, due=due, tz=tz)
        await advance_to(time_env, at_local(due, 5, time(12), tz))
        set_contact_preferences(h.engine, case.borrower_id, opt_out=["call"])
        await advance_to(time_env, at_local(due, 7, time(12), tz))
        st = await status(handle)
    deep = [(d.action, d.decision, d.rule_id, d.run_action) for d in st.contact_decisions if d.step == "deep"]
    assert deep == [
        ("agent_call", "rerouted", "CN.opt_out", "sms_reminder"),
        ("demand_letter", "allowed", "CN.permitted", "demand_letter"),
    ]
    keys = [r.idempotency_key for r in contact_rows(h.engine, case.loan_id) if r.step == "deep"]
    assert sorted(k.rsplit(":", 1)[1] for k in keys) == ["demand_letter", "sms_reminder"]


async def test_uk_breathing_space_pauses_sixty_days_and_is_refused_elsewhere(time_env, harness_factory):
    h = harness_factory(time_env)
    async with h.worker:
        tz = "Europe/London"
        due = calendar.local_date(await server_now(time_env), tz) - timedelta(days=1)
        uk, uk_handle = await open_case(h, due=due, tz=tz, currency="GBP", jurisdiction="UK", locale="en")
        cn, cn_handle = await open_case(h, due=due)
        await advance_to(time_env, at_local(due, 5, time(12), tz))
        await uk_handle.signal("breathing_space", {"breathing_space_id": "BS-1"})
        await cn_handle.signal("breathing_space", {"breathing_space_id": "BS-1"})
        await advance_to(time_env, at_local(due, 40, time(12), tz))
        during = await status(uk_handle)
        refused = await status(cn_handle)
    assert [(p.kind, p.id) for p in during.pauses] == [("breathing_space", "BS-1")]
    assert during.pauses[0].until - during.pauses[0].started_at == timedelta(days=60)
    assert [s.step for s in during.steps_done] == ["initial"]
    assert refused.rejected_signals[-1].reason == (
        "breathing_space_id: no breathing space scheme in jurisdiction CN "
        "(policy compliance.CN.breathing_space_days is not set)"
    )


async def test_audit_report_lists_every_decision_with_its_rule_as_csv_and_table(time_env, harness_factory, monkeypatch):
    import csv
    import io

    from typer.testing import CliRunner

    import starter
    from collections_domain.store.audit import audit_rows, summary, write_csv

    tz = "America/New_York"
    h = harness_factory(time_env)
    async with h.worker:
        day = calendar.local_date(await server_now(time_env), tz) + timedelta(days=2)
        await advance_to_local(time_env, day, time(6, 0), tz)
        # Opened at 06:00 local on DPD 8: deep is due but waits for 08:00; the borrower opted out of calls.
        case, handle = await open_case(h, due=day - timedelta(days=8), tz=tz, currency="USD", jurisdiction="US", locale="en")
        set_contact_preferences(h.engine, case.borrower_id, opt_out=["call"])
        await advance_to(time_env, calendar.local_instant(day, time(9), tz))
        await status(handle)
    rows = audit_rows(h.engine, case.loan_id)
    assert [(r.action, r.decision, r.rule_id, r.ran, r.contact_status) for r in rows] == [
        ("agent_call", "deferred", "US.contact_hours", "", "not run"),
        ("agent_call", "rerouted", "US.opt_out", "email_overdue_notice", "recorded"),
        ("demand_letter", "allowed", "US.permitted", "demand_letter", "recorded"),
        ("validation_notice", "allowed", "US.validation_notice", "validation_notice", "recorded"),
    ]
    assert rows[0].deferred_until_utc == calendar.local_instant(day, time(8), tz).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert rows[1].decided_at_local == f"{day} 08:00 {tz}"
    assert rows[1].send_by_utc == calendar.local_instant(day, time(21), tz).strftime("%Y-%m-%dT%H:%M:%SZ")
    stream = io.StringIO()
    write_csv(rows, stream)
    parsed = list(csv.DictReader(io.StringIO(stream.getvalue())))
    assert [p["rule_id"] for p in parsed] == [r.rule_id for r in rows] and parsed[1]["ran"] == "email_overdue_notice"
    assert ("US", "allowed", "US.permitted", 1) in summary(rows)
    # The command line prints the same, as CSV and as a table.
    monkeypatch.setenv("DATABASE_URL", h.settings.resolved_database_url)
    from collections_domain.ops.settings import get_settings
    get_settings.cache_clear() if hasattr(get_settings, "cache_clear") else None
    runner = CliRunner()
    printed = runner.invoke(starter.app, ["audit", case.loan_id, "--csv", "-"])
    assert printed.exit_code == 0, printed.output
    assert list(csv.DictReader(io.StringIO(printed.output)))[1]["rule_id"] == "US.opt_out"
    table = runner.invoke(starter.app, ["audit"], env={"COLUMNS": "200"})
    assert table.exit_code == 0 and "US.opt_out" in table.output and "Decisions by rule" in table.output


async def test_uk_legal_step_sends_the_default_notice_first_and_files_fourteen_days_later(time_env, harness_factory):
    tz = "Europe/London"
    h = harness_factory(time_env)
    async with h.worker:
        day = calendar.local_date(await server_now(time_env), tz) + timedelta(days=1)
        await advance_to_local(time_env, day, time(12), tz)
        # Opened on DPD 31 with no default notice sent (the deep step's letter is stale).
        due = day - timedelta(days=31)
        case, handle = await open_case(h, due=due, tz=tz, amount_minor=2_000_000, currency="GBP", jurisdiction="UK", locale="en")
        await advance_to(time_env, at_local(due, 40, time(12), tz))
        waiting = await status(handle)
        ready = at_local(due, 46, time(0), tz)
        assert waiting.deferred_step.rule_id == "UK.default_notice" and waiting.deferred_step.until == ready
        await advance_to(time_env, at_local(due, 47, time(12), tz))
        st = await status(handle)
    assert [(s.step, s.days_past_due) for s in st.steps_done] == [("legal", 31), ("legal", 46)]
    first, second = st.steps_done
    assert [(r.action, r.status) for r in first.results] == [("demand_letter", "recorded")]
    assert [(r.action, r.status) for r in second.results] == [("legal_referral", "started")]
    assert abs(second.at - ready) < timedelta(seconds=2)
    gate = [(d.days_past_due, d.action, d.decision, d.rule_id, d.run_action) for d in st.contact_decisions]
    assert gate == [
        (31, "legal_referral", "rerouted", "UK.default_notice", "demand_letter"),
        (31, "legal_referral", "deferred", "UK.default_notice", None),
        (46, "legal_referral", "allowed", "UK.not_a_contact", "legal_referral"),
    ]
    assert [(s.step, s.days_past_due) for s in st.steps_skipped] == [("initial", 3), ("deep", 7)]
