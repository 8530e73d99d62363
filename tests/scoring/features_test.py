"""The features and episodes read a loan as the product does (oldest-first allocation, overdue
from the day after the due date, the scan's opening rule) and never look past their day."""

from __future__ import annotations

import math
from datetime import date, timedelta

import pytest

from collections_domain.scoring.features import (
    FEATURE_NAMES,
    Episode,
    OpeningRule,
    episodes,
    features_from_schedule,
)

D = date(2026, 1, 10)


def day(n: int) -> date:
    return D + timedelta(days=n)


def test_one_unpaid_instalment_on_the_day_after_its_due_date():
    values = features_from_schedule([(D, 100_000)], [], day(1))
    assert list(values) == list(FEATURE_NAMES)
    assert values == {
        "log_instalments_due": math.log1p(1),
        "share_earlier_paid_late": 0.0,
        "log_earlier_episodes": 0.0,
        "log_overdue_minor": math.log1p(100_000),
        "overdue_to_instalment": 1.0,
        "paid_to_due": 0.0,
        "no_payment_yet": 1.0,
        "log_days_since_last_payment": 0.0,
        "log_days_since_first_due": math.log1p(1),
        "last_payment_to_instalment": 0.0,
    }


def test_history_counts_late_instalments_earlier_episodes_and_the_last_payment():
    # Monthly 1,000.00; the first paid 5 days late, the second on its due day, the third in part.
    instalments = [(day(0), 100_000), (day(30), 100_000), (day(60), 100_000)]
    payments = [(day(5), 100_000), (day(30), 100_000), (day(55), 40_000)]
    values = features_from_schedule(instalments, payments, day(61))
    assert values["log_instalments_due"] == math.log1p(3)
    assert values["share_earlier_paid_late"] == 0.5  # of the two settled, the first was late
    assert values["log_earlier_episodes"] == math.log1p(1)
    assert values["log_overdue_minor"] == math.log1p(60_000)
    assert values["overdue_to_instalment"] == 0.6
    assert values["paid_to_due"] == pytest.approx(240_000 / 300_000)
    assert values["no_payment_yet"] == 0.0
    assert values["log_days_since_last_payment"] == math.log1p(6)
    assert values["log_days_since_first_due"] == math.log1p(61)
    assert values["last_payment_to_instalment"] == 0.4


def test_nothing_on_or_after_the_day_changes_the_features():
    instalments = [(day(0), 100_000), (day(30), 100_000)]
    payments = [(day(3), 50_000)]
    before = features_from_schedule(instalments, payments, day(31))
    later = features_from_schedule(instalments + [(day(31), 5), (day(90), 100_000)],
                                   payments + [(day(31), 150_000), (day(40), 1)], day(31))
    assert later == before


def test_episodes_open_the_day_after_an_unpaid_due_date_and_end_when_nothing_due_is_owing():
    instalments = [(day(0), 100_000), (day(30), 100_000), (day(60), 100_000)]
    payments = [(day(5), 100_000), (day(30), 100_000), (day(75), 30_000), (day(80), 70_000)]
    assert episodes(instalments, payments) == [
        Episode(opened_on=day(1), oldest_due_date=day(0), overdue_minor=100_000, current_on=day(5)),
        Episode(opened_on=day(61), oldest_due_date=day(60), overdue_minor=100_000, current_on=day(80)),
    ]
    assert episodes(instalments, payments, before=day(61)) == episodes(instalments, payments)[:1]


def test_the_opening_rule_sets_the_minimum_overdue_and_the_grace():
    short = [(day(0), 100_000), (day(30), 100_000)], [(day(0), 99_950), (day(30), 100_050)]  # 0.50 short for a month
    assert [(e.opened_on, e.overdue_minor, e.current_on) for e in episodes(*short)] == [(day(1), 50, day(30))]
    assert episodes(*short, OpeningRule(minimum_overdue_minor=100)) == []
    late = [(day(0), 100_000)], [(day(3), 100_000)]  # paid on DPD 3
    assert [e.opened_on for e in episodes(*late, OpeningRule(grace_days=2))] == [day(3)]
    assert episodes(*late, OpeningRule(grace_days=3)) == []


def test_an_episode_keeps_the_oldest_owing_due_date():
    # 0.50 short on the first, the second unpaid: the episode that opens counts DPD from the first.
    instalments, payments = [(day(0), 100_000), (day(30), 100_000)], [(day(0), 99_950)]
    assert episodes(instalments, payments, OpeningRule(minimum_overdue_minor=100)) == [
        Episode(opened_on=day(31), oldest_due_date=day(0), overdue_minor=100_050, current_on=None)]


def test_credit_paid_ahead_covers_the_next_instalment():
    instalments = [(day(0), 100_000), (day(30), 100_000)]
    assert episodes(instalments, [(day(0), 200_000)]) == []


@pytest.mark.parametrize("instalments, payments", [
    ([(D, -1)], []),
    ([("2026-01-10", 100)], []),
    ([(D, 100.0)], []),
    ([(D, 100)], [(D, 0)]),
    ([(D, 100)], [(D, True)]),
])
def test_a_malformed_instalment_or_payment_is_refused(instalments, payments):
    with pytest.raises(ValueError, match="instalments|payments"):
        features_from_schedule(instalments, payments, day(1))
