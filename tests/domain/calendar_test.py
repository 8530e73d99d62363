"""Calendar math: local days, 09:00 local instants across DST and extreme offsets, DPD."""

from datetime import UTC, date, datetime, time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from collections_domain.rules import calendar


def test_local_instant_in_shanghai_is_utc_plus_8():
    assert calendar.local_instant(date(2026, 12, 2), time(9), "Asia/Shanghai") == datetime(2026, 12, 2, 1, tzinfo=UTC)


def test_new_york_nine_am_moves_with_daylight_saving():
    # 2027-03-14 is the US spring-forward day: EST (UTC-5) before, EDT (UTC-4) on and after.
    assert calendar.local_instant(date(2027, 3, 13), time(9), "America/New_York") == datetime(2027, 3, 13, 14, tzinfo=UTC)
    assert calendar.local_instant(date(2027, 3, 14), time(9), "America/New_York") == datetime(2027, 3, 14, 13, tzinfo=UTC)


def test_wall_time_in_a_spring_forward_gap_moves_forward():
    # 02:30 does not exist in New York on 2027-03-14; a clock shows 03:30 EDT.
    instant = calendar.local_instant(date(2027, 3, 14), time(2, 30), "America/New_York")
    assert instant == datetime(2027, 3, 14, 7, 30, tzinfo=UTC)
    assert calendar.local_wall_time(instant, "America/New_York") == time(3, 30)


def test_ambiguous_wall_time_takes_first_occurrence():
    # 01:30 happens twice in London on 2026-10-25; the first is BST (UTC+1).
    assert calendar.local_instant(date(2026, 10, 25), time(1, 30), "Europe/London") == datetime(2026, 10, 25, 0, 30, tzinfo=UTC)


@pytest.mark.parametrize(
    ("tz", "expected"),
    [("Pacific/Kiritimati", datetime(2026, 12, 1, 19, tzinfo=UTC)), ("Etc/GMT+12", datetime(2026, 12, 2, 21, tzinfo=UTC))],
)
def test_extreme_offsets(tz, expected):
    assert calendar.local_instant(date(2026, 12, 2), time(9), tz) == expected


def test_days_past_due_counts_local_calendar_days():
    due = date(2026, 12, 1)
    # 2026-12-01 20:00 UTC is already 2026-12-02 in Shanghai: DPD 1 there, DPD 0 in London.
    instant = datetime(2026, 12, 1, 20, tzinfo=UTC)
    assert calendar.days_past_due(due, instant, "Asia/Shanghai") == 1
    assert calendar.days_past_due(due, instant, "Europe/London") == 0
    assert calendar.days_past_due(due, datetime(2026, 11, 20, tzinfo=UTC), "Asia/Shanghai") == 0


def test_unknown_zone_is_rejected_with_the_field_name():
    for name in ("Mars/Olympus", "", "../etc/passwd"):
        with pytest.raises(calendar.UnknownTimeZoneError, match="timezone"):
            calendar.zone(name)


def test_naive_instants_are_refused():
    with pytest.raises(ValueError, match="timezone-aware"):
        calendar.local_date(datetime(2026, 1, 1), "Asia/Shanghai")


ZONES = ["Asia/Shanghai", "America/New_York", "Europe/London", "Pacific/Kiritimati", "Etc/GMT+12", "Australia/Lord_Howe", "America/Santiago"]


@given(day=st.dates(min_value=date(2000, 1, 1), max_value=date(2040, 12, 31)), tz=st.sampled_from(ZONES))
def test_nine_am_local_round_trips_to_the_same_day(day, tz):
    instant = calendar.local_instant(day, time(9), tz)
    assert calendar.local_date(instant, tz) == day
    assert calendar.local_wall_time(instant, tz) == time(9)
    assert calendar.days_past_due(day, instant, tz) == 0
