"""The compliance gate (``collections_domain.rules.compliance``): examples for each rule, and a
Hypothesis property checked by the independent checker (``tests/compliance_checker.py``)."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from collections_domain.rules import calendar
from collections_domain.rules.compliance import (
    CallAttempt,
    CaseFacts,
    ContactPreferences,
    ContactProfile,
    decide_step,
)
from collections_domain.rules.policy import DEFAULT_POLICY_PATH, PolicyError, load_policy, parse_policy
from tests import compliance_checker as checker

POLICY = load_policy(DEFAULT_POLICY_PATH)
RAW = checker.load_raw_policy()
#: Zones with DST both ways, the extremes UTC+14 and UTC-12, half- and quarter-hour offsets.
ZONES = [
    "Asia/Shanghai", "America/New_York", "America/Los_Angeles", "Europe/London", "Australia/Sydney",
    "Australia/Lord_Howe", "Pacific/Kiritimati", "Etc/GMT+12", "Asia/Kathmandu", "America/St_Johns",
]
MEDIA = ["sms", "email", "call", "visit", "letter"]
STEP_ACTIONS = [
    ("sms_reminder", "email_overdue_notice"),
    ("agent_call", "demand_letter"),
    ("legal_referral",),
    ("agency_placement",),
    ("field_visit", "sms_reminder"),
    ("agent_call",),
    ("email_overdue_notice",),
]
#: Property examples: the gate's decisions over random worlds (see the closing note of issue 4).
EXAMPLES = 1500


def facts(jurisdiction="CN", tz="Asia/Shanghai", **extra) -> CaseFacts:
    base = dict(jurisdiction=jurisdiction, timezone=tz, loan_id="L1", oldest_due_date=date(2026, 11, 1))
    base.update(extra)
    return CaseFacts(**base)


def decide(actions, *, jurisdiction="CN", tz="Asia/Shanghai", now, prefs=None, calls=(), policy=POLICY, **fact_extra):
    return decide_step(
        step="s",
        actions=tuple(actions),
        rules=policy.compliance_rules(jurisdiction),
        facts=facts(jurisdiction, tz, **fact_extra),
        profile=ContactProfile(borrower_id="B", as_of=now, preferences=prefs or ContactPreferences(), call_attempts=list(calls)),
        now=now,
    )


def local(day: date, wall: time, tz: str) -> datetime:
    return calendar.local_instant(day, wall, tz)


DAY = date(2026, 11, 4)


# -- examples, one per rule ----------------------------------------------------------------------


def test_cn_step_at_2330_local_waits_for_0800_next_morning():
    answer = decide(["sms_reminder", "email_overdue_notice"], now=local(DAY, time(23, 30), "Asia/Shanghai"))
    assert answer.deferred_until == local(DAY + timedelta(days=1), time(8), "Asia/Shanghai")
    assert {(d.action, d.decision, d.rule_id) for d in answer.decisions} == {
        ("sms_reminder", "deferred", "CN.contact_hours"), ("email_overdue_notice", "deferred", "CN.contact_hours")
    }


def test_cn_agreement_widens_the_hours_and_preferred_hours_narrow_them():
    late = local(DAY, time(22, 30), "Asia/Shanghai")
    agreed = ContactPreferences(agreed_opens="07:00", agreed_closes="23:00")
    assert decide(["sms_reminder"], now=late, prefs=agreed).deferred_until is None
    assert decide(["sms_reminder"], now=late, prefs=agreed).decisions[0].decision == "allowed"
    narrow = ContactPreferences(preferred_opens="18:00", preferred_closes="20:00")
    answer = decide(["sms_reminder"], now=local(DAY, time(9), "Asia/Shanghai"), prefs=narrow)
    assert answer.deferred_until == local(DAY, time(18), "Asia/Shanghai")
    assert answer.decisions[0].rule_id == "CN.preferred_hours"


def test_us_eighth_call_in_seven_days_moves_to_email():
    now = local(DAY, time(9), "America/New_York")
    calls = [CallAttempt(at=now - timedelta(hours=20 * i + 1), loan_id="L1") for i in range(7)]
    answer = decide(["agent_call", "demand_letter"], jurisdiction="US", tz="America/New_York", now=now, calls=calls,
                    validation_notice_sent=True)
    call = answer.decisions[0]
    assert (call.decision, call.rule_id, call.run_action) == ("rerouted", "US.call_attempts_7_days", "email_overdue_notice")
    # Six calls, or seven on another debt, leave the call allowed.
    assert decide(["agent_call"], jurisdiction="US", tz="America/New_York", now=now, calls=calls[:6],
                  validation_notice_sent=True).decisions[0].decision == "allowed"
    other = [c.model_copy(update={"loan_id": "L2"}) for c in calls]
    assert decide(["agent_call"], jurisdiction="US", tz="America/New_York", now=now, calls=other,
                  validation_notice_sent=True).decisions[0].decision == "allowed"


def test_us_no_call_for_seven_days_after_a_conversation():
    now = local(DAY, time(10), "America/New_York")
    talk = [CallAttempt(at=now - timedelta(days=6, hours=23), loan_id="L1", connected=True)]
    answer = decide(["agent_call"], jurisdiction="US", tz="America/New_York", now=now, calls=talk, validation_notice_sent=True)
    assert (answer.decisions[0].decision, answer.decisions[0].rule_id) == ("rerouted", "US.call_after_conversation")
    week_ago = [CallAttempt(at=now - timedelta(days=7), loan_id="L1", connected=True)]
    assert decide(["agent_call"], jurisdiction="US", tz="America/New_York", now=now, calls=week_ago,
                  validation_notice_sent=True).decisions[0].decision == "allowed"


def test_us_checks_every_plausible_time_zone():
    # 08:30 in New York is 05:30 in Los Angeles: wait until 08:00 there (11:00 New York).
    now = local(DAY, time(8, 30), "America/New_York")
    prefs = ContactPreferences(extra_time_zones=("America/Los_Angeles",), sms_consent=True)
    answer = decide(["sms_reminder"], jurisdiction="US", tz="America/New_York", now=now, prefs=prefs, validation_notice_sent=True)
    assert answer.deferred_until == local(DAY, time(8), "America/Los_Angeles")


def test_us_sms_needs_consent_and_the_first_communication_brings_the_validation_notice():
    now = local(DAY, time(10), "America/New_York")
    answer = decide(["sms_reminder"], jurisdiction="US", tz="America/New_York", now=now)
    assert [(d.action, d.decision, d.rule_id, d.run_action) for d in answer.decisions] == [
        ("sms_reminder", "rerouted", "US.sms_consent", "email_overdue_notice"),
        ("validation_notice", "allowed", "US.validation_notice", "validation_notice"),
    ]
    consent = ContactPreferences(sms_consent=True)
    answer = decide(["sms_reminder"], jurisdiction="US", tz="America/New_York", now=now, prefs=consent, validation_notice_sent=True)
    assert [(d.decision, d.run_action) for d in answer.decisions] == [("allowed", "sms_reminder")]
    assert answer.decisions[0].send_by == local(DAY, time(21), "America/New_York")


def test_us_time_barred_debt_blocks_the_legal_step():
    now = local(DAY, time(10), "America/New_York")
    barred = decide(["legal_referral"], jurisdiction="US", tz="America/New_York", now=now,
                    oldest_due_date=DAY - timedelta(days=1095))
    assert (barred.decisions[0].decision, barred.decisions[0].rule_id) == ("skipped", "US.time_barred")
    fresh = decide(["legal_referral"], jurisdiction="US", tz="America/New_York", now=now,
                   oldest_due_date=DAY - timedelta(days=1094))
    assert fresh.decisions[0].decision == "allowed"


def test_opt_out_and_attorney():
    now = local(DAY, time(10), "Asia/Shanghai")
    no_sms = decide(["sms_reminder", "email_overdue_notice"], now=now, prefs=ContactPreferences(opted_out_media=("sms",)))
    assert [(d.action, d.decision, d.rule_id) for d in no_sms.decisions] == [
        ("sms_reminder", "skipped", "CN.opt_out"), ("email_overdue_notice", "allowed", "CN.permitted")
    ]
    lawyer = decide(["agent_call", "demand_letter"], now=now, prefs=ContactPreferences(attorney_id="ATT-1"))
    assert [(d.decision, d.run_action) for d in lawyer.decisions] == [("rerouted", "attorney_notice"), ("skipped", None)]
    # The letter to the attorney is not an hour-restricted contact: it goes at night too.
    night = decide(["sms_reminder"], now=local(DAY, time(23), "Asia/Shanghai"), prefs=ContactPreferences(attorney_id="ATT-1"))
    assert night.deferred_until is None and night.decisions[0].run_action == "attorney_notice"


def test_cn_call_caps_and_two_collectors_for_a_visit():
    now = local(DAY, time(15), "Asia/Shanghai")
    connected = [CallAttempt(at=now - timedelta(hours=h), loan_id="L9", connected=True) for h in (1, 2, 3)]
    answer = decide(["agent_call"], now=now, calls=connected)
    assert (answer.decisions[0].rule_id, answer.decisions[0].run_action) == ("CN.connected_calls_per_day", "sms_reminder")
    # Yesterday's calls (local day) do not count.
    yesterday = [c.model_copy(update={"at": c.at - timedelta(hours=13)}) for c in connected]
    assert decide(["agent_call"], now=now, calls=yesterday).decisions[0].decision == "allowed"
    unanswered = [CallAttempt(at=now - timedelta(minutes=10 * i + 1), loan_id="L1", phone_number_id="m1") for i in range(6)]
    assert decide(["agent_call"], now=now, calls=unanswered).decisions[0].rule_id == "CN.unanswered_calls_per_number"
    visit = decide(["field_visit"], now=now)
    assert visit.decisions[0].requirements == ["collectors:2"]


def test_uk_legal_waits_for_the_default_notice_and_not_during_an_ombudsman_complaint():
    tz = "Europe/London"
    notice = local(DAY, time(9), tz)
    early = decide(["legal_referral"], jurisdiction="UK", tz=tz, now=notice + timedelta(days=10), default_notice_at=notice)
    assert early.deferred_until == local(DAY + timedelta(days=15), time(0), tz)
    assert early.decisions[0].rule_id == "UK.default_notice"
    ready = decide(["legal_referral"], jurisdiction="UK", tz=tz, now=local(DAY + timedelta(days=15), time(0), tz),
                   default_notice_at=notice)
    assert ready.decisions[0].decision == "allowed"
    never = decide(["legal_referral"], jurisdiction="UK", tz=tz, now=notice)
    assert [(d.decision, d.run_action, d.repeat_step) for d in never.decisions] == [("rerouted", "demand_letter", True)]
    no_letters = decide(["legal_referral"], jurisdiction="UK", tz=tz, now=notice, prefs=ContactPreferences(opted_out_media=("letter",)))
    assert [(d.decision, d.rule_id) for d in no_letters.decisions] == [("skipped", "UK.default_notice")]
    complaint = decide(["legal_referral"], jurisdiction="UK", tz=tz, now=notice + timedelta(days=20), default_notice_at=notice,
                       prefs=ContactPreferences(ombudsman_complaint_open=True))
    assert (complaint.decisions[0].decision, complaint.decisions[0].rule_id) == ("skipped", "UK.ombudsman_complaint")


def test_uk_preferred_channels_are_honoured_but_letters_still_go():
    tz = "Europe/London"
    prefs = ContactPreferences(preferred_media=("email",))
    answer = decide(["agent_call", "demand_letter"], jurisdiction="UK", tz=tz, now=local(DAY, time(10), tz), prefs=prefs)
    assert [(d.action, d.decision, d.run_action) for d in answer.decisions] == [
        ("agent_call", "rerouted", "email_overdue_notice"), ("demand_letter", "allowed", "demand_letter")
    ]


def test_cease_contact_leaves_only_the_permitted_actions():
    answer = decide(["agent_call", "demand_letter"], jurisdiction="US", tz="America/New_York",
                    now=local(DAY, time(10), "America/New_York"), cease_contact=True,
                    permitted_after_cease=("demand_letter", "legal_referral"))
    assert [(d.action, d.decision, d.rule_id) for d in answer.decisions] == [
        ("agent_call", "skipped", "cease_contact"), ("demand_letter", "allowed", "US.permitted")
    ]


def test_changing_a_preset_number_changes_behaviour_without_code():
    text = DEFAULT_POLICY_PATH.read_text(encoding="utf-8")
    later = parse_policy(text.replace('contact_hours = { opens = "08:00", closes = "22:00" }',
                                      'contact_hours = { opens = "09:30", closes = "22:00" }'))
    answer = decide(["sms_reminder"], now=local(DAY, time(23, 30), "Asia/Shanghai"), policy=later)
    assert answer.deferred_until == local(DAY + timedelta(days=1), time(9, 30), "Asia/Shanghai")
    two_calls = parse_policy(text.replace("max_call_attempts_per_7_days = 7", "max_call_attempts_per_7_days = 2"))
    now = local(DAY, time(9), "America/New_York")
    calls = [CallAttempt(at=now - timedelta(days=d), loan_id="L1") for d in (1, 2)]
    answer = decide(["agent_call"], jurisdiction="US", tz="America/New_York", now=now, calls=calls,
                    validation_notice_sent=True, policy=two_calls)
    assert answer.decisions[0].rule_id == "US.call_attempts_7_days"


def test_a_policy_without_a_jurisdictions_rules_is_refused():
    text = DEFAULT_POLICY_PATH.read_text(encoding="utf-8")
    start = text.index("[compliance.UK]")
    end = text.index("[currencies.CNY]")
    with pytest.raises(PolicyError, match=r"compliance: needs a \[compliance.<CODE>\] table for \['UK'\]"):
        parse_policy(text[:start] + text[end:])
    with pytest.raises(PolicyError, match="compliance.CN.reroute.*only communications"):
        parse_policy(text.replace('agent_call = ["sms_reminder", "email_overdue_notice"]', 'agent_call = ["legal_referral"]'))


# -- the property -------------------------------------------------------------------------------


def hours_text():
    return st.tuples(st.integers(0, 23), st.sampled_from([0, 30])).map(lambda hm: f"{hm[0]:02d}:{hm[1]:02d}")


@st.composite
def worlds(draw):
    jurisdiction = draw(st.sampled_from(["CN", "US", "UK"]))
    tz = draw(st.sampled_from(ZONES))
    day = draw(st.dates(date(2026, 1, 1), date(2028, 12, 31)))
    # Minutes of the day, weighted towards the window edges and the DST changes' small hours.
    # Half the worlds bunch calls on this loan around the caps, with a call to decide in the
    # daytime and no other zones or preferred hours in the way.
    bunched = draw(st.booleans())
    if bunched:
        minute = draw(st.integers(8 * 60, 21 * 60 - 1))
    else:
        minute = draw(st.one_of(st.integers(0, 24 * 60 - 1),
                                st.sampled_from([0, 59, 60, 119, 120, 179, 450, 479, 480, 1259, 1260, 1290, 1319, 1320, 1350, 1379])))
    now = calendar.local_instant(day, time(minute // 60, minute % 60), tz) + timedelta(seconds=draw(st.integers(0, 59)))
    preferred = None if bunched else draw(st.none() | st.tuples(hours_text(), hours_text()))
    agreed = draw(st.none() | st.tuples(hours_text(), hours_text()))
    prefs = ContactPreferences(
        preferred_opens=preferred[0] if preferred else None,
        preferred_closes=preferred[1] if preferred else None,
        agreed_opens=agreed[0] if agreed else None,
        agreed_closes=agreed[1] if agreed else None,
        opted_out_media=tuple(draw(st.sets(st.sampled_from(MEDIA[:2] if bunched else MEDIA), max_size=3))),
        preferred_media=() if bunched else tuple(draw(st.sets(st.sampled_from(MEDIA), max_size=2))),
        sms_consent=draw(st.booleans()),
        attorney_id=None if bunched else draw(st.none() | st.just("ATT-1")),
        extra_time_zones=() if bunched else tuple(draw(st.sets(st.sampled_from(ZONES), max_size=2))),
        ombudsman_complaint_open=draw(st.booleans()),
    )
    # The call log: spread over 8 days and two loans, or bunched on this loan in the last week
    # and today (around the caps).
    calls = [
        CallAttempt(
            at=now - timedelta(minutes=draw(st.integers(1, (7 * 24 - 1) * 60 if bunched else 8 * 24 * 60))),
            loan_id="L1" if bunched else draw(st.sampled_from(["L1", "L2"])),
            connected=draw(st.booleans()) if not bunched else False,
            phone_number_id=draw(st.sampled_from(["m1", "m2"])),
        )
        for _ in range(draw(st.sampled_from([5, 6, 6, 7, 7, 7, 8, 9]) if bunched else st.integers(0, 14)))
    ]
    if bunched and draw(st.booleans()):
        calls += [CallAttempt(at=now - timedelta(minutes=draw(st.integers(1, 120))), loan_id="L9", connected=True,
                              phone_number_id="m1") for _ in range(draw(st.integers(1, 3)))]
    return dict(
        jurisdiction=jurisdiction,
        tz=tz,
        now=now,
        prefs=prefs,
        calls=calls,
        actions=draw(st.sampled_from([a for a in STEP_ACTIONS if "agent_call" in a] if bunched else STEP_ACTIONS)),
        cease=draw(st.booleans()) and draw(st.booleans()),
        notice_days_ago=draw(st.none() | st.integers(0, 40)),
        validation_sent=draw(st.booleans()),
        due_days_ago=draw(st.integers(1, 1500)),
    )


def checker_world(w) -> checker.World:
    prefs = w["prefs"]
    return checker.World(
        jurisdiction=w["jurisdiction"],
        tz=w["tz"],
        loan_id="L1",
        oldest_due_date=calendar.local_date(w["now"], w["tz"]) - timedelta(days=w["due_days_ago"]),
        raw_policy=RAW,
        preferences=[(datetime(2000, 1, 1, tzinfo=UTC), checker.Preferences(
            preferred_hours=(prefs.preferred_opens, prefs.preferred_closes) if prefs.preferred_opens else None,
            agreed_hours=(prefs.agreed_opens, prefs.agreed_closes) if prefs.agreed_opens else None,
            opted_out=set(prefs.opted_out_media),
            preferred_media=set(prefs.preferred_media),
            sms_consent=prefs.sms_consent,
            attorney=prefs.attorney_id is not None,
            extra_zones=prefs.extra_time_zones,
            ombudsman=prefs.ombudsman_complaint_open,
        ))],
        calls=[checker.Call(at=c.at, loan_id=c.loan_id, connected=c.connected, number=c.phone_number_id or "") for c in w["calls"]],
        cease_at=w["now"] - timedelta(seconds=1) if w["cease"] else None,
    )


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(worlds())
def test_every_decision_is_lawful_and_no_step_is_lost(w):
    world = checker_world(w)
    now = w["now"]
    notice_at = now - timedelta(days=w["notice_days_ago"]) if w["notice_days_ago"] is not None else None
    answer = decide(
        w["actions"], jurisdiction=w["jurisdiction"], tz=w["tz"], now=now, prefs=w["prefs"], calls=w["calls"],
        oldest_due_date=world.oldest_due_date, cease_contact=w["cease"],
        permitted_after_cease=tuple(world.permitted_after_cease()), default_notice_at=notice_at,
        validation_notice_sent=w["validation_sent"],
    )
    decided = [d.action for d in answer.decisions]
    for d in answer.decisions:
        event(f"{d.decision} {d.rule_id.split('.')[-1]}")
    if answer.deferred_until is not None:
        # Deferred: only for the hour or a notice period, to the first lawful instant.
        assert answer.deferred_until > now
        for d in answer.decisions:
            assert d.decision == "deferred"
            if d.action == "legal_referral":
                assert "legal action inside the default notice's period" in checker.violations(world, d.action, now, default_notice_at=notice_at)
            else:
                assert not checker.hours_open(world, now), d
        if any(d.action != "legal_referral" for d in answer.decisions) and not any(d.action == "legal_referral" for d in answer.decisions):
            assert answer.deferred_until == checker.next_lawful_opening(world, now)
        return
    # Every action of the step is decided exactly once (the validation notice may be added).
    assert [a for a in decided if a != "validation_notice"] == list(w["actions"])
    for d in answer.decisions:
        if d.run_action is not None:
            broken = checker.violations(world, d.run_action, now, d.requirements, default_notice_at=notice_at, replaces=d.action)
            assert broken == [], (d, broken)
        if d.decision in ("skipped", "rerouted"):
            # Nothing lawful was dropped: the action itself broke a rule.
            broken = checker.violations(world, d.action, now, default_notice_at=notice_at)
            assert broken, d
