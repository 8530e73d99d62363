"""The compliance property, end to end: random cases run through the real workflow on the
time-skipping server, and an independent checker (``tests/compliance_checker.py``) walks what the
database recorded.

Each example draws a jurisdiction, a time zone (DST both ways, UTC+14, UTC-12, half hours), the
day and hour the case opens, the amount, the borrower's preferences and their changes over time,
a call log from the dialer and agencies, payments and a cease request; the case runs to DPD 36.
The checks: no contact in ``contact_attempts`` breaks a rule of its jurisdiction at the instant
the gate let it go; every contact has a gate decision; every skip or reroute was forced by a rule;
every deferral was for the hour and ends when the hours open; every step taken decided each of
its actions; and the money adds up (paid + outstanding = opening + overpaid, and matches the
payments table).
"""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from sqlmodel import select
from temporalio.service import RPCError

from collections_domain.rules import calendar
from collections_domain.case.contract import CaseStatus
from collections_domain.store.db import session
from collections_domain.store.models import ContactAttempt, ContactDecisionRecord, Payment
from collections_domain.store.preferences import record_call_attempt, set_contact_preferences
from tests import compliance_checker as checker
from tests.helpers import advance_to, open_case, payment, promise, server_now, status

#: Cases run through the workflow per CI run (each covers about five weeks of a case).
EXAMPLES = 100
RAW = checker.load_raw_policy()
ZONES = [
    "Asia/Shanghai", "America/New_York", "America/Los_Angeles", "Europe/London", "Australia/Lord_Howe",
    "Pacific/Kiritimati", "Etc/GMT+12", "Asia/Kathmandu", "America/St_Johns",
]
CURRENCY = {"CN": "CNY", "US": "USD", "UK": "GBP"}
MEDIA = ["sms", "email", "call", "visit", "letter"]
END_DPD = 36


def hours_range():
    """``("HH:MM", "HH:MM")`` with the opening before the closing (half hours from 05:00 to 23:00)."""
    half_hours = st.lists(st.integers(10, 46), min_size=2, max_size=2, unique=True).map(sorted)
    return half_hours.map(lambda hh: tuple(f"{h // 2:02d}:{30 * (h % 2):02d}" for h in hh))


@st.composite
def preference_sets(draw) -> dict:
    preferred = draw(st.none() | hours_range())
    agreed = draw(st.none() | hours_range())
    return dict(
        preferred=preferred,
        agreed=agreed,
        opted_out=sorted(draw(st.sets(st.sampled_from(MEDIA), max_size=2))),
        preferred_media=sorted(draw(st.sets(st.sampled_from(MEDIA[:4]), max_size=2))),
        sms_consent=draw(st.booleans()),
        attorney=draw(st.booleans()) and draw(st.booleans()),
        extra_zones=sorted(draw(st.sets(st.sampled_from(ZONES), max_size=1))),
        ombudsman=draw(st.booleans()) and draw(st.booleans()),
    )


@st.composite
def scenarios(draw) -> dict:
    jurisdiction = draw(st.sampled_from(["CN", "US", "UK"]))
    # Local moments are (DPD, minute of the day); the odd seconds keep them off the timers' minutes.
    moment = st.tuples(st.integers(1, END_DPD - 1), st.integers(0, 24 * 60 - 1))
    return dict(
        jurisdiction=jurisdiction,
        tz=draw(st.sampled_from(ZONES)),
        start=(draw(st.integers(1, 12)), draw(st.integers(0, 24 * 60 - 1))),
        amount=draw(st.sampled_from([3_000, 300_000, 2_500_000])),
        days_ahead=draw(st.integers(0, 400)),
        preferences=draw(preference_sets()),
        changes=draw(st.lists(st.tuples(moment, preference_sets()), max_size=2)),
        # The dialer's log: spread over the case, or 6-8 unanswered calls bunched in the days
        # before the DPD 7 call (around the US cap of 7 in 7 days).
        calls=draw(st.one_of(
            st.lists(st.tuples(st.one_of(st.integers(-8, END_DPD), st.integers(4, 7)), st.integers(0, 24 * 60 - 1),
                               st.booleans(), st.sampled_from(["m1", "m2"])), max_size=16),
            st.lists(st.tuples(st.integers(1, 6), st.integers(8 * 60, 20 * 60), st.just(False), st.just("m1")),
                     min_size=6, max_size=8),
        )),
        payments=draw(st.lists(st.tuples(moment, st.integers(1, 100)), max_size=3)),
        cease=draw(st.none() | moment),
        # A promise: when it is made, its share of the amount (percent), its date (days ahead).
        promise=draw(st.none() | st.tuples(moment, st.integers(1, 100), st.integers(0, 10))),
    )


def checker_prefs(p: dict) -> checker.Preferences:
    return checker.Preferences(
        preferred_hours=p["preferred"], agreed_hours=p["agreed"], opted_out=set(p["opted_out"]),
        preferred_media=set(p["preferred_media"]), sms_consent=p["sms_consent"], attorney=p["attorney"],
        extra_zones=tuple(p["extra_zones"]), ombudsman=p["ombudsman"],
    )


def store_prefs(engine, borrower_id: str, p: dict) -> None:
    set_contact_preferences(
        engine, borrower_id,
        preferred_hours="-".join(p["preferred"]) if p["preferred"] else "",
        agreed_hours="-".join(p["agreed"]) if p["agreed"] else "",
        opt_in=MEDIA, opt_out=p["opted_out"] or None,
        preferred_media=p["preferred_media"], sms_consent=p["sms_consent"],
        attorney_id="ATT-P" if p["attorney"] else "", attorney_name="A. Counsel", attorney_address="1 Court Road",
        extra_time_zones=p["extra_zones"], ombudsman_complaint_open=p["ombudsman"],
    )


def utc(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)


@settings(max_examples=EXAMPLES, deadline=None, derandomize=False,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large])
@given(scenario=scenarios())
async def test_no_recorded_contact_breaks_a_rule_and_no_step_is_lost(time_env, harness_factory, scenario):
    s = scenario
    tz, jurisdiction = s["tz"], s["jurisdiction"]
    h = harness_factory(time_env)
    today = calendar.local_date(await server_now(time_env), tz)
    start_dpd, start_minute = s["start"]
    # The case opens at a local moment on DPD start_dpd, some days from the server's today.
    open_day = today + timedelta(days=1 + s["days_ahead"])
    due = open_day - timedelta(days=start_dpd)

    def local(dpd: int, minute: int, second: int = 17) -> datetime:
        return calendar.local_instant(due + timedelta(days=dpd), time(minute // 60, minute % 60, second), tz)

    async with h.worker:
        await advance_to(time_env, local(start_dpd, start_minute))
        borrower_id = None
        case, handle = await open_case(h, due=due, tz=tz, amount_minor=s["amount"], currency=CURRENCY[jurisdiction],
                                       jurisdiction=jurisdiction, locale="en")
        borrower_id = case.borrower_id
        opened_at = await server_now(time_env)
        timeline: list[tuple[datetime, checker.Preferences]] = [(datetime(2000, 1, 1, tzinfo=UTC), checker_prefs(s["preferences"]))]
        store_prefs(h.engine, borrower_id, s["preferences"])
        calls = []
        for i, (dpd, minute, connected, number) in enumerate(s["calls"]):
            at = local(dpd, minute, 41)
            record_call_attempt(h.engine, attempt_id=f"{case.loan_id}-c{i}", loan_id=case.loan_id, attempted_at=at, connected=connected,
                                phone_number_id=number, borrower_id=borrower_id)
            calls.append(checker.Call(at=at, loan_id=case.loan_id, connected=connected, number=number))
        events: list[tuple[datetime, str, object]] = []
        for (dpd, minute), prefs in s["changes"]:
            events.append((local(dpd, minute), "prefs", prefs))
        for (dpd, minute), percent in s["payments"]:
            events.append((local(dpd, minute), "payment", percent))
        if s["cease"] is not None:
            events.append((local(*s["cease"]), "cease", None))
        if s["promise"] is not None:
            (dpd, minute), percent, ahead = s["promise"]
            events.append((local(dpd, minute), "promise", (percent, due + timedelta(days=dpd + ahead))))
        cease_at = None
        sent_minor = 0
        for at, kind, value in sorted((e for e in events if e[0] > opened_at), key=lambda e: e[0]):
            await advance_to(time_env, at)
            if kind == "prefs":
                store_prefs(h.engine, borrower_id, value)  # type: ignore[arg-type]
                timeline.append((at, checker_prefs(value)))  # type: ignore[arg-type]
            elif kind == "payment":
                amount = max(1, s["amount"] * value // 100)  # type: ignore[operator]
                try:
                    await handle.signal("payment_received", payment(amount, at, currency=CURRENCY[jurisdiction]))
                    sent_minor += amount
                except RPCError:
                    pass  # the case already ended (cured): the signal is refused, nothing counted
            elif kind == "promise":
                percent, promised_date = value  # type: ignore[misc]
                try:
                    await handle.signal("promise_to_pay", promise(max(1, s["amount"] * percent // 100), promised_date,
                                                                  promise_id="PTP-P"))
                except RPCError:
                    pass
            else:
                try:
                    await handle.signal("cease_contact", {"request_id": "CC-P"})
                    cease_at = at
                except RPCError:
                    pass
        await advance_to(time_env, local(END_DPD, 12 * 60))
        final: CaseStatus = await status(handle)
        await h.terminate_open_cases()
        h.handles.clear()
        h.child_ids.clear()

    with session(h.engine) as db:
        decisions = list(db.exec(select(ContactDecisionRecord).where(ContactDecisionRecord.loan_id == case.loan_id)
                                 .order_by(ContactDecisionRecord.id)))
        attempts = list(db.exec(select(ContactAttempt).where(ContactAttempt.loan_id == case.loan_id)))
        payments = list(db.exec(select(Payment).where(Payment.loan_id == case.loan_id)))
    world = checker.World(jurisdiction=jurisdiction, tz=tz, loan_id=case.loan_id, oldest_due_date=due, raw_policy=RAW,
                          preferences=timeline, calls=calls, cease_at=cease_at)
    # Agent call tasks the gate let through are calls in the caps (planned when created).
    for d in decisions:
        if d.run_action == "agent_call":
            world.calls.append(checker.Call(at=utc(d.decided_at), loan_id=case.loan_id, connected=False, planned=True))
    notices = sorted(utc(d.decided_at) for d in decisions if d.run_action == "demand_letter")

    def notice_before(at: datetime) -> datetime | None:
        earlier = [n for n in notices if n < at]
        return earlier[-1] if earlier else None

    for d in decisions:
        event(f"{d.decision} {d.rule_id}")
    event(f"outcome {final.outcome or 'open'}")
    problems: list[str] = []
    by_key = {d.run_key: d for d in decisions if d.run_key}
    for attempt in attempts:
        if attempt.action == "manual_review":
            continue
        if attempt.channel in ("sms", "email") and not any(m in (attempt.rendered or "") for m in checker.OPT_OUT_WORDS):
            problems.append(f"{attempt.action} {attempt.idempotency_key} carries no opt-out instruction")
        if attempt.idempotency_key not in by_key:
            problems.append(f"contact {attempt.idempotency_key} has no gate decision")
    for d in decisions:
        at = utc(d.decided_at)
        if d.run_action is not None:
            broken = checker.violations(world, d.run_action, at, d.requirements.split(",") if d.requirements else [],
                                        default_notice_at=notice_before(at), replaces=d.action)
            if broken:
                problems.append(f"{d.step}/{d.action} ran {d.run_action} at {at}: {broken}")
        if d.decision in ("skipped", "rerouted"):
            if not checker.violations(world, d.action, at, default_notice_at=notice_before(at)):
                problems.append(f"{d.step}/{d.action} {d.decision} at {at} ({d.rule_id}) although it broke no rule")
        if d.decision == "deferred":
            until = utc(d.deferred_until)
            if d.action == "legal_referral":
                continue
            if checker.hours_open(world, at):
                problems.append(f"{d.step}/{d.action} deferred at {at} inside the permitted hours")
            elif until != checker.next_lawful_opening(world, at) and world.prefs_at(at) == world.prefs_at(until):
                problems.append(f"{d.step}/{d.action} deferred to {until}, not to the hours' next opening")
    # No step is lost: every step taken decided each of its actions, at the instant it was taken.
    for step in final.steps_done:
        decided = [d.action for d in decisions if d.step == step.step and d.decision != "deferred"
                   and abs(utc(d.decided_at) - step.at) < timedelta(seconds=1)]
        missing = [a for a in step.actions if a not in decided]
        if missing:
            problems.append(f"step {step.step} at {step.at} has no decision for {missing}")
    # Money adds up.
    applied = sum(p.applied_minor for p in payments)
    overpaid = sum(p.overpaid_minor for p in payments)
    if (final.paid_minor, final.overpaid_minor) != (applied, overpaid) or final.outstanding_minor + final.paid_minor != s["amount"]:
        problems.append(f"money: paid {final.paid_minor} (table {applied}), overpaid {final.overpaid_minor} (table {overpaid}), "
                        f"outstanding {final.outstanding_minor}, opening {s['amount']}")
    if final.paid_minor + final.overpaid_minor != sent_minor:
        problems.append(f"money: {final.paid_minor + final.overpaid_minor} counted but {sent_minor} sent")
    assert problems == [], problems
