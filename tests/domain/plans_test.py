"""Repayment plans (checking a proposal, splitting the money, instalment deadlines) and the
ladder's write-off instant and paused days, with Hypothesis properties on the money splits."""

from datetime import UTC, date, datetime, time, timedelta

import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

from collections_domain.rules import calendar
from collections_domain.rules import ladder
from collections_domain.rules import plans
from collections_domain.case.contract import PlanProposal
from collections_domain.rules.policy import DEFAULT_POLICY_PATH, load_policy

POLICY = load_policy(DEFAULT_POLICY_PATH)
RULES = POLICY.plans
TZ = "Asia/Shanghai"
NOW = datetime(2026, 12, 10, 4, tzinfo=UTC)  # 12:00 on 2026-12-10 in Shanghai
TODAY = date(2026, 12, 10)
OUTSTANDING = 100_000
INTEREST_FEES = 10_000


def instalments(dates, first=None, **extra) -> PlanProposal:
    return PlanProposal(plan_id="plan-1", kind="instalments", instalment_dates=dates, first_instalment_minor=first, **extra)


def deferral(new_due_date, **extra) -> PlanProposal:
    return PlanProposal(plan_id="plan-1", kind="deferral", new_due_date=new_due_date, **extra)


def waiver(waive_minor, **extra) -> PlanProposal:
    return PlanProposal(plan_id="plan-1", kind="waiver", waive_minor=waive_minor, **extra)


def problem(proposal, *, now=NOW, outstanding=OUTSTANDING, interest_fees=INTEREST_FEES, tz=TZ):
    return plans.plan_problem(
        proposal,
        policy=POLICY,
        tz_name=tz,
        now=now,
        outstanding_minor=outstanding,
        interest_fees_outstanding_minor=interest_fees,
    )


def schedule(proposal, *, outstanding=OUTSTANDING):
    return plans.build_schedule(proposal, policy=POLICY, tz_name=TZ, now=NOW, outstanding_minor=outstanding)


def days(*offsets: int) -> list[date]:
    return [TODAY + timedelta(days=o) for o in offsets]


def test_default_policy_has_the_plan_limits_these_examples_assume():
    assert (RULES.max_instalments, RULES.max_term_days, RULES.min_first_payment_bps) == (12, 365, 1000)
    assert (RULES.instalment_grace_days, RULES.max_deferral_days, RULES.waiver_pay_within_days) == (3, 60, 14)
    assert (RULES.max_waiver_bps, RULES.auto_approve_waiver_bps) == (5000, 2000)
    assert (POLICY.write_off.days_past_due, POLICY.write_off.no_payment_days) == (180, 90)


# --- split_equally / instalment_amounts -------------------------------------------------------


@pytest.mark.parametrize(
    ("total", "count", "parts"),
    [
        (1001, 3, [333, 333, 335]),
        (100, 4, [25, 25, 25, 25]),
        (7, 7, [1] * 7),
        (5, 1, [5]),
        (2, 3, [0, 0, 2]),
        (0, 3, [0, 0, 0]),
    ],
)
def test_split_equally_examples(total, count, parts):
    assert plans.split_equally(total, count) == parts


@pytest.mark.parametrize(("total", "count"), [(100, 0), (100, -1), (-1, 3)])
def test_split_equally_rejects_no_parts_or_a_negative_total(total, count):
    with pytest.raises(ValueError):
        plans.split_equally(total, count)


@settings(max_examples=300, deadline=None)
@given(total=st.integers(0, 10**12), count=st.integers(1, 120))
def test_split_equally_parts_sum_to_total_with_the_remainder_last(total, count):
    parts = plans.split_equally(total, count)
    assert len(parts) == count
    assert sum(parts) == total
    assert all(isinstance(p, int) and p >= 0 for p in parts)
    assert len(set(parts[:-1])) <= 1  # every part but the last is equal
    assert 0 <= parts[-1] - parts[0] <= count - 1


def test_instalment_amounts_with_a_first_instalment():
    amounts = plans.instalment_amounts(100_001, 4, 40_000)
    assert amounts == [40_000, 20_000, 20_000, 20_001]
    assert sum(amounts) == 100_001


def test_instalment_amounts_without_a_first_instalment_splits_equally():
    assert plans.instalment_amounts(100_001, 3, None) == [33_333, 33_333, 33_335]


@settings(max_examples=200, deadline=None)
@given(data=st.data(), total=st.integers(2, 10**12), count=st.integers(2, 120))
def test_instalment_amounts_first_is_first_minor_and_they_sum_to_total(data, total, count):
    first = data.draw(st.integers(0, total), label="first_minor")
    amounts = plans.instalment_amounts(total, count, first)
    assert len(amounts) == count
    assert amounts[0] == first
    assert sum(amounts) == total
    assert amounts[1:] == plans.split_equally(total - first, count - 1)


def test_shares_in_basis_points_round_up_and_down():
    assert plans.ceil_share(100_001, 1000) == 10_001
    assert plans.floor_share(100_001, 1000) == 10_000
    assert plans.ceil_share(100_000, 1000) == plans.floor_share(100_000, 1000) == 10_000


# --- plan_problem: instalments ----------------------------------------------------------------


def test_a_valid_instalments_plan_is_accepted():
    assert problem(instalments(days(0, 30, 60))) is None
    assert problem(instalments(days(0, RULES.max_term_days))) is None  # last date exactly at the term
    assert problem(instalments(days(*range(0, 120, 10)), first=20_000)) is None  # 12 dates, the max


def test_today_is_the_borrowers_local_day_not_utc():
    early = datetime(2026, 12, 9, 17, tzinfo=UTC)  # 01:00 on 2026-12-10 in Shanghai, still the 9th in UTC
    assert problem(instalments(days(0, 30)), now=early) is None
    message = problem(instalments(days(-1, 30)), now=early)
    assert message is not None and message.startswith("instalment_dates:")
    assert "2026-12-10" in message


def test_too_many_instalments_names_max_instalments():
    message = problem(instalments(days(*range(RULES.max_instalments + 1)), first=20_000))
    assert message is not None
    assert message.startswith(f"instalment_dates: at most {RULES.max_instalments} instalments")
    assert "plans.max_instalments" in message
    assert f"got {RULES.max_instalments + 1}" in message


def test_twenty_instalments_are_rejected_by_the_maximum():
    message = problem(instalments(days(*range(20)), first=50_000))
    assert message is not None and "plans.max_instalments" in message


def test_a_single_date_is_not_an_instalments_plan():
    message = problem(instalments(days(5)))
    assert message is not None and message.startswith("instalment_dates:")
    message = problem(instalments(None))
    assert message is not None and message.startswith("instalment_dates:")


@pytest.mark.parametrize("offsets", [(0, 30, 30), (0, 40, 30), (10, 5)])
def test_dates_must_be_strictly_increasing(offsets):
    message = problem(instalments(days(*offsets)))
    assert message is not None
    assert message.startswith("instalment_dates:")
    assert "strictly increasing" in message


def test_first_date_before_today_is_rejected():
    message = problem(instalments(days(-1, 30)))
    assert message is not None
    assert message.startswith("instalment_dates:")
    assert "before today" in message


def test_last_date_beyond_the_term_names_max_term_days():
    message = problem(instalments(days(0, RULES.max_term_days + 1)))
    assert message is not None
    assert message.startswith("instalment_dates:")
    assert "plans.max_term_days" in message
    assert str(TODAY + timedelta(days=RULES.max_term_days)) in message


def test_first_instalment_minor_below_the_minimum_names_min_first_payment_bps():
    minimum = plans.ceil_share(OUTSTANDING, RULES.min_first_payment_bps)
    message = problem(instalments(days(0, 30, 60), first=minimum - 1))
    assert message is not None
    assert message.startswith("first_instalment_minor:")
    assert "plans.min_first_payment_bps" in message
    assert str(minimum) in message
    assert problem(instalments(days(0, 30, 60), first=minimum)) is None


def test_an_equal_split_whose_first_part_is_below_the_minimum_is_rejected():
    # 100001 in 10 parts: 10000 first, below ceil(10% of 100001) = 10001.
    message = problem(instalments(days(*range(0, 100, 10))), outstanding=100_001)
    assert message is not None
    assert message.startswith("instalment_dates:")
    assert "plans.min_first_payment_bps" in message
    assert "10001" in message


@pytest.mark.parametrize("first", [0, -5, OUTSTANDING, OUTSTANDING - 1])
def test_first_instalment_minor_must_leave_a_minor_unit_for_every_other(first):
    message = problem(instalments(days(0, 30, 60), first=first))
    assert message is not None and message.startswith("first_instalment_minor:")


def test_more_instalments_than_minor_units_is_rejected():
    message = problem(instalments(days(0, 1, 2)), outstanding=2)
    assert message is not None and message.startswith("instalment_dates:")


@pytest.mark.parametrize(
    ("proposal", "field"),
    [
        (instalments(days(0, 30), new_due_date=TODAY + timedelta(days=5)), "new_due_date"),
        (instalments(days(0, 30), waive_minor=100), "waive_minor"),
        (instalments(days(0, 30), pay_by=TODAY), "pay_by"),
        (deferral(TODAY + timedelta(days=5), instalment_dates=days(0, 30)), "instalment_dates"),
        (deferral(TODAY + timedelta(days=5), first_instalment_minor=100), "first_instalment_minor"),
        (waiver(1000, new_due_date=TODAY + timedelta(days=5)), "new_due_date"),
    ],
)
def test_a_field_of_another_kind_is_rejected(proposal, field):
    message = problem(proposal)
    assert message is not None
    article = "an" if proposal.kind == "instalments" else "a"
    assert message.startswith(f"{field}: not used by {article} {proposal.kind} plan")


def test_nothing_outstanding_is_rejected_for_every_kind():
    for proposal in (instalments(days(0, 30)), deferral(TODAY + timedelta(days=5)), waiver(100)):
        message = problem(proposal, outstanding=0)
        assert message is not None and "nothing is outstanding" in message


# --- plan_problem: deferral -------------------------------------------------------------------


def test_a_deferral_within_the_limit_is_accepted():
    assert problem(deferral(TODAY + timedelta(days=1))) is None
    assert problem(deferral(TODAY + timedelta(days=RULES.max_deferral_days))) is None


def test_a_deferral_to_today_or_earlier_is_rejected():
    for offset in (0, -3):
        message = problem(deferral(TODAY + timedelta(days=offset)))
        assert message is not None
        assert message.startswith("new_due_date:")
        assert "after today" in message


def test_a_deferral_beyond_max_deferral_days_names_the_key():
    message = problem(deferral(TODAY + timedelta(days=RULES.max_deferral_days + 1)))
    assert message is not None
    assert message.startswith("new_due_date:")
    assert "plans.max_deferral_days" in message


def test_a_deferral_needs_a_new_due_date():
    message = problem(deferral(None))
    assert message is not None and message.startswith("new_due_date:")


# --- plan_problem: waiver ---------------------------------------------------------------------


def test_a_waiver_up_to_the_auto_approve_share_needs_no_approver():
    auto = plans.floor_share(INTEREST_FEES, RULES.auto_approve_waiver_bps)
    assert auto == 2000
    assert problem(waiver(auto)) is None


def test_a_waiver_above_the_auto_approve_share_needs_an_approver():
    auto = plans.floor_share(INTEREST_FEES, RULES.auto_approve_waiver_bps)
    message = problem(waiver(auto + 1))
    assert message is not None
    assert message.startswith("approver_id:")
    assert "plans.auto_approve_waiver_bps" in message
    assert problem(waiver(auto + 1, approver_id="supervisor-7")) is None


def test_a_waiver_above_max_waiver_bps_is_rejected_even_with_an_approver():
    cap = plans.floor_share(INTEREST_FEES, RULES.max_waiver_bps)
    assert cap == 5000
    assert problem(waiver(cap, approver_id="supervisor-7")) is None
    message = problem(waiver(cap + 1, approver_id="supervisor-7"))
    assert message is not None
    assert message.startswith("waive_minor:")
    assert "plans.max_waiver_bps" in message
    assert "principal is never waived" in message


def test_a_waiver_with_no_interest_or_fees_outstanding_is_rejected():
    message = problem(waiver(1, approver_id="supervisor-7"), interest_fees=0)
    assert message is not None
    assert message.startswith("waive_minor: no interest or fees are outstanding")
    assert "principal is never waived" in message


def test_a_waiver_must_leave_something_to_pay():
    # Interest and fees larger than the outstanding amount (inconsistent input): the cap alone
    # would allow waiving everything, so the waiver is rejected.
    assert problem(waiver(999, approver_id="supervisor-7"), outstanding=1000, interest_fees=10_000) is None
    message = problem(waiver(1000, approver_id="supervisor-7"), outstanding=1000, interest_fees=10_000)
    assert message is not None
    assert message.startswith("waive_minor: must leave something to pay")


@pytest.mark.parametrize("amount", [None, 0, -10])
def test_a_waiver_needs_a_positive_amount(amount):
    message = problem(waiver(amount))
    assert message is not None and message.startswith("waive_minor:")


def test_a_waiver_pay_by_must_be_from_today_to_max_deferral_days():
    assert problem(waiver(1000, pay_by=TODAY)) is None
    assert problem(waiver(1000, pay_by=TODAY + timedelta(days=RULES.max_deferral_days))) is None
    before = problem(waiver(1000, pay_by=TODAY - timedelta(days=1)))
    assert before is not None and before.startswith("pay_by:")
    after = problem(waiver(1000, pay_by=TODAY + timedelta(days=RULES.max_deferral_days + 1)))
    assert after is not None and after.startswith("pay_by:") and "plans.max_deferral_days" in after


# --- build_schedule ---------------------------------------------------------------------------


def test_instalments_schedule_puts_the_remainder_on_the_last():
    proposal = instalments(days(0, 30, 60))
    assert problem(proposal, outstanding=100_001) is None
    items, waived = schedule(proposal, outstanding=100_001)
    assert waived == 0
    assert [i.amount_minor for i in items] == [33_333, 33_333, 33_335]
    assert [i.due_date for i in items] == days(0, 30, 60)
    assert [i.seq for i in items] == [1, 2, 3]
    assert all(i.status == "open" for i in items)


def test_instalments_schedule_with_a_first_instalment():
    proposal = instalments(days(0, 30, 60, 90), first=40_000)
    assert problem(proposal, outstanding=100_001) is None
    items, waived = schedule(proposal, outstanding=100_001)
    assert waived == 0
    assert [i.amount_minor for i in items] == [40_000, 20_000, 20_000, 20_001]


def test_deferral_schedule_is_the_whole_amount_on_the_new_date():
    new_due = TODAY + timedelta(days=45)
    items, waived = schedule(deferral(new_due), outstanding=123_457)
    assert waived == 0
    assert [(i.seq, i.due_date, i.amount_minor) for i in items] == [(1, new_due, 123_457)]


def test_waiver_schedule_defaults_to_waiver_pay_within_days():
    items, waived = schedule(waiver(3000, approver_id="supervisor-7"), outstanding=100_000)
    assert waived == 3000
    assert [(i.seq, i.due_date, i.amount_minor) for i in items] == [
        (1, TODAY + timedelta(days=RULES.waiver_pay_within_days), 97_000)
    ]


def test_waiver_schedule_uses_pay_by_when_given():
    pay_by = TODAY + timedelta(days=5)
    items, waived = schedule(waiver(1500, pay_by=pay_by), outstanding=100_000)
    assert waived == 1500
    assert [(i.due_date, i.amount_minor) for i in items] == [(pay_by, 98_500)]


def test_waiver_default_pay_by_counts_from_the_borrowers_local_day():
    late_utc = datetime(2026, 12, 10, 17, tzinfo=UTC)  # 01:00 on 2026-12-11 in Shanghai
    items, _ = plans.build_schedule(
        waiver(1000), policy=POLICY, tz_name=TZ, now=late_utc, outstanding_minor=100_000
    )
    assert items[0].due_date == date(2026, 12, 11) + timedelta(days=RULES.waiver_pay_within_days)


@st.composite
def instalment_proposals(draw):
    outstanding = draw(st.integers(1, 10**10), label="outstanding")
    count = draw(st.integers(2, RULES.max_instalments), label="count")
    offsets = sorted(
        draw(st.lists(st.integers(0, RULES.max_term_days), min_size=count, max_size=count, unique=True))
    )
    low = plans.ceil_share(outstanding, RULES.min_first_payment_bps)
    high = outstanding - (count - 1)
    first = draw(
        st.one_of(
            st.none(),
            st.integers(max(1, low), max(1, low, high)),  # mostly a valid first instalment
            st.integers(-5, outstanding + 5),  # anything, valid or not
        ),
        label="first_minor",
    )
    return outstanding, days(*offsets), first


@settings(max_examples=300, deadline=None)
@given(instalment_proposals())
def test_every_accepted_instalments_plan_sums_exactly_and_meets_the_minimum_first(case):
    outstanding, dates, first = case
    proposal = instalments(dates, first=first)
    message = problem(proposal, outstanding=outstanding)
    count = len(dates)
    minimum_first = -(-outstanding * RULES.min_first_payment_bps // 10_000)
    # Independent oracle: dates are valid by construction, so only the money decides.
    if count > outstanding:
        expected_ok = False
    elif first is None:
        expected_ok = outstanding // count >= minimum_first
    else:
        expected_ok = 1 <= first <= outstanding - (count - 1) and first >= minimum_first
    assert (message is None) == expected_ok, message
    event("accepted" if message is None else "rejected")
    if message is not None:
        assert message.split(":", 1)[0] in ("instalment_dates", "first_instalment_minor")
        return
    items, waived = schedule(proposal, outstanding=outstanding)
    amounts = [i.amount_minor for i in items]
    assert waived == 0
    assert sum(amounts) == outstanding
    assert amounts[0] >= minimum_first
    assert all(a >= 1 for a in amounts)
    assert [i.due_date for i in items] == dates
    assert [i.seq for i in items] == list(range(1, count + 1))
    if first is not None:
        assert amounts[0] == first


# --- instalment_deadline ----------------------------------------------------------------------


def test_instalment_deadline_is_local_midnight_after_the_grace_days():
    assert plans.instalment_deadline(date(2026, 12, 10), TZ, POLICY) == datetime(2026, 12, 13, 16, tzinfo=UTC)


def test_instalment_deadline_follows_daylight_saving_in_new_york():
    # Due 2027-03-10 + 3 grace days: ends at local midnight starting 2027-03-14, still EST (UTC-5).
    assert plans.instalment_deadline(date(2027, 3, 10), "America/New_York", POLICY) == datetime(
        2027, 3, 14, 5, tzinfo=UTC
    )
    # One day later the midnight is EDT (UTC-4).
    assert plans.instalment_deadline(date(2027, 3, 11), "America/New_York", POLICY) == datetime(
        2027, 3, 15, 4, tzinfo=UTC
    )


# --- ladder.write_off_instant -----------------------------------------------------------------

DUE = date(2026, 12, 1)


def write_off(last_activity_at, *, due=DUE, tz=TZ):
    return ladder.write_off_instant(POLICY, oldest_due_date=due, tz_name=tz, last_activity_at=last_activity_at)


def test_write_off_with_no_payment_is_local_midnight_starting_dpd_180():
    opened = calendar.overdue_since(DUE, TZ)  # the case opened at the start of DPD 1
    expected = calendar.local_instant(DUE + timedelta(days=180), time(0), TZ)
    assert write_off(opened) == expected
    assert expected == datetime(2027, 5, 29, 16, tzinfo=UTC)  # 2027-05-30 00:00 in Shanghai


def test_write_off_after_a_payment_on_dpd_150_waits_91_local_days():
    paid = calendar.local_instant(DUE + timedelta(days=150), time(12), TZ)
    assert write_off(paid) == calendar.local_instant(DUE + timedelta(days=241), time(0), TZ)
    assert write_off(paid) == datetime(2027, 7, 29, 16, tzinfo=UTC)  # 2027-07-30 00:00 in Shanghai


def test_write_off_payment_late_in_the_local_day_counts_that_local_day():
    # 23:30 in Shanghai on DPD 150 is 15:30 UTC the same day; 00:30 on DPD 151 is still DPD 150 in UTC.
    late = calendar.local_instant(DUE + timedelta(days=150), time(23, 30), TZ)
    after_midnight = calendar.local_instant(DUE + timedelta(days=151), time(0, 30), TZ)
    assert write_off(late) == calendar.local_instant(DUE + timedelta(days=241), time(0), TZ)
    assert write_off(after_midnight) == calendar.local_instant(DUE + timedelta(days=242), time(0), TZ)


def test_write_off_in_new_york_uses_the_offset_of_the_write_off_day():
    ny = "America/New_York"
    due = date(2026, 7, 1)  # EDT (UTC-4) when the case opens
    opened = calendar.overdue_since(due, ny)
    assert opened == datetime(2026, 7, 2, 4, tzinfo=UTC)
    # DPD 180 is 2026-12-28, EST (UTC-5): local midnight is 05:00 UTC.
    assert write_off(opened, due=due, tz=ny) == datetime(2026, 12, 28, 5, tzinfo=UTC)
    # A payment on 2027-03-01 (EST) at noon: write-off starts 2027-05-31, EDT (UTC-4).
    paid = datetime(2027, 3, 1, 17, tzinfo=UTC)
    assert write_off(paid, due=due, tz=ny) == datetime(2027, 5, 31, 4, tzinfo=UTC)


ZONES = ["Asia/Shanghai", "America/New_York", "Europe/London", "America/Santiago", "Pacific/Kiritimati", "Pacific/Pago_Pago"]


@settings(max_examples=200, deadline=None)
@given(
    tz=st.sampled_from(ZONES),
    due=st.dates(date(2024, 1, 1), date(2030, 12, 31)),
    activity_after=st.integers(0, 400 * 24 * 3600),
)
def test_write_off_is_the_start_of_the_later_local_day(tz, due, activity_after):
    last_activity = calendar.overdue_since(due, tz) + timedelta(seconds=activity_after)
    result = write_off(last_activity, due=due, tz=tz)
    rules = POLICY.write_off
    expected_day = max(
        due + timedelta(days=rules.days_past_due),
        calendar.local_date(last_activity, tz) + timedelta(days=rules.no_payment_days + 1),
    )
    assert result.utcoffset() == timedelta(0)
    assert calendar.local_date(result, tz) == expected_day
    # The first instant of that local day: one microsecond earlier is the day before.
    assert calendar.local_date(result - timedelta(microseconds=1), tz) == expected_day - timedelta(days=1)
    assert result > last_activity


# --- ladder.paused_days -----------------------------------------------------------------------


def test_paused_days_is_zero_within_one_local_day():
    start = datetime(2026, 12, 10, 16, 30, tzinfo=UTC)  # 00:30 on 2026-12-11 in Shanghai
    end = datetime(2026, 12, 11, 15, 30, tzinfo=UTC)  # 23:30 on 2026-12-11 in Shanghai (a UTC day later)
    assert ladder.paused_days(start, end, TZ) == 0


def test_paused_days_counts_local_days_not_utc_days():
    start = datetime(2026, 12, 10, 15, 30, tzinfo=UTC)  # 23:30 on 2026-12-10 in Shanghai
    end = datetime(2026, 12, 10, 16, 30, tzinfo=UTC)  # 00:30 on 2026-12-11 in Shanghai, an hour later
    assert ladder.paused_days(start, end, TZ) == 1


def test_paused_days_across_spring_forward_in_london_counts_calendar_days():
    # London springs forward at 01:00 UTC on 2027-03-28. 23:30 GMT on the 27th to 00:30 BST on the 29th:
    # 24 hours of elapsed time, but two local calendar days.
    start = datetime(2027, 3, 27, 23, 30, tzinfo=UTC)
    end = datetime(2027, 3, 28, 23, 30, tzinfo=UTC)
    assert ladder.paused_days(start, end, "Europe/London") == 2


def test_paused_days_across_fall_back_in_london_counts_calendar_days():
    # London falls back at 01:00 UTC on 2026-10-25. 00:30 BST to 23:30 GMT, both on the 25th: 0 days.
    start = datetime(2026, 10, 24, 23, 30, tzinfo=UTC)
    end = datetime(2026, 10, 25, 23, 30, tzinfo=UTC)
    assert ladder.paused_days(start, end, "Europe/London") == 0
    # A week across the change is 7 calendar days although it lasts 7 days and an hour.
    assert ladder.paused_days(datetime(2026, 10, 21, 11, tzinfo=UTC), datetime(2026, 10, 28, 12, tzinfo=UTC), "Europe/London") == 7


def test_paused_days_is_zero_when_the_end_is_before_the_start():
    start = datetime(2026, 12, 20, 4, tzinfo=UTC)
    assert ladder.paused_days(start, start - timedelta(days=5), TZ) == 0
    assert ladder.paused_days(start, start, TZ) == 0
