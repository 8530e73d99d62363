"""The KPIs of the hand-built portfolio of ``fixture.py``, each against its computation on paper
(in the comments next to it), on SQLite or PostgreSQL (``TEST_DATABASE_URL``): roll rates from
month-end DPD, stages and time to cure, cure curves, promises, right-party contact and cost per
channel, recovery per currency and track, cost per cure, arms and the champion/challenger test,
the filters, an empty database, a database without the strategy columns, and the what-if totals."""

from __future__ import annotations

from datetime import date

import pytest
from sqlalchemy import text
from sqlalchemy.engine import Engine

from collections_domain.analytics import stats
from collections_domain.analytics.figures import Filters, KpiReport, Rate
from collections_domain.analytics.kpis import (
    DEFINITIONS,
    compute_kpis,
    verdict,
    whatif_run,
)
from collections_domain.analytics.snapshots import (
    Month,
    month_end_snapshots,
    months_from,
    read_book,
)
from collections_domain.case.ledger import derive
from collections_domain.portfolio.loan_book import ledger_of, rules_for
from collections_domain.rules.ladder import stage_order
from collections_domain.store.db import make_engine
from tests.analytics.fixture import (
    AGENCY,
    NOW,
    OLD_VERSION,
    kpi_policy,
    write_portfolio,
)
from tests.databases import fresh_database_url

POLICY = kpi_policy()


@pytest.fixture(scope="module")
def engine(tmp_path_factory) -> Engine:
    engine = make_engine(fresh_database_url(tmp_path_factory.mktemp("kpis")))
    write_portfolio(engine, POLICY)
    yield engine
    engine.dispose()


@pytest.fixture(scope="module")
def report(engine) -> KpiReport:
    return compute_kpis(engine, POLICY, now=NOW)


def kpis(engine: Engine, **filters) -> KpiReport:
    return compute_kpis(engine, POLICY, Filters(**filters), now=NOW)


def rate(numerator: int, denominator: int, interval: bool = True) -> Rate:
    """The rate the report should carry: the counts, their quotient, Wilson's interval."""
    bounds = stats.wilson(numerator, denominator) if interval else None
    return Rate(numerator=numerator, denominator=denominator, value=numerator / denominator if denominator else None,
                low=bounds[0] if bounds else None, high=bounds[1] if bounds else None)


def matrix(report: KpiReport) -> dict[str, dict[str, int]]:
    """The roll-rate counts as {row: {column: loans}}, zero cells left out."""
    roll = report.roll_rates
    return {row: {col: n for col, n in zip(roll.columns, counts) if n} for row, counts in zip(roll.rows, roll.counts)}


def headline(report: KpiReport) -> dict[str, float | int | None]:
    return {figure.name: figure.value for figure in report.headline}


# -- roll rates -----------------------------------------------------------------------------------


def test_roll_rates_count_each_loans_bucket_from_one_month_end_to_the_next(report):
    roll = report.roll_rates
    # The first case opened in January (C4, 01-02); NOW is 05-01: month-ends 01-31 ... 04-30, three pairs.
    assert roll.months == ["2026-01", "2026-02", "2026-03"]
    assert roll.rows == ["1-29", "30-59", "60-89", "90+"]
    assert roll.columns == ["current", "1-29", "30-59", "60-89", "90+", "closed"]
    # States by month-end (fixture table): L1 1-29 cur cur cur; L2 1-29 30-59 60-89 cur;
    # L3 1-29 30-59 cur cur; L4 30-59 30-59 60-89 closed; L5 cur 1-29 30-59 60-89; L6 cur cur cur 1-29.
    # From 1-29: L1 Jan->current; L2 Jan, L3 Jan, L5 Feb ->30-59                      = 1 + 3 = 4 loans
    # From 30-59: L3 Feb->current; L4 Jan->30-59; L2 Feb, L4 Feb, L5 Mar ->60-89      = 1 + 1 + 3 = 5
    # From 60-89: L2 Mar->current (paid, known 04-02); L4 Mar->closed (written off 04-15) = 1 + 1 = 2
    # (L6's 04-30 1-29 and every current month-end start no row.)
    assert matrix(report) == {
        "1-29": {"current": 1, "30-59": 3},
        "30-59": {"current": 1, "30-59": 1, "60-89": 3},
        "60-89": {"current": 1, "closed": 1},
        "90+": {},
    }
    assert roll.rates[0] == [1 / 4, 0.0, 3 / 4, 0.0, 0.0, 0.0]
    assert roll.rates[1] == [1 / 5, 0.0, 1 / 5, 3 / 5, 0.0, 0.0]
    assert roll.rates[2] == [1 / 2, 0.0, 0.0, 0.0, 0.0, 1 / 2]
    assert roll.rates[3] == [None] * 6  # nobody reached 90+
    # Cure rate out of each bucket: the current column over the row.
    assert roll.cure_rate_by_bucket == {"1-29": rate(1, 4), "30-59": rate(1, 5), "60-89": rate(1, 2), "90+": rate(0, 0)}


def test_a_payment_reported_after_a_month_end_is_unknown_at_it(engine):
    with engine.connect() as connection:
        book = read_book(connection, ["L2"])
    months = months_from(Month(2026, 1), Month(2026, 4))
    rows = month_end_snapshots(book, POLICY, months, now=NOW)
    # L2: I1 due 01-05 owing -> 01-31: 26, 02-28: 54 (I2 due 02-05 too), 03-31: 85 (Jan 5 + 26 + 28 + 31): the
    # payment paid 03-30 reached the product on 04-02; 04-30: both paid -> 0.
    assert [(r.month, r.days_past_due, r.overdue_minor, r.status) for r in rows] == [
        ("2026-01", 26, 50000, "active"), ("2026-02", 54, 100000, "active"),
        ("2026-03", 85, 100000, "active"), ("2026-04", 0, 0, "active")]
    # The ledger alone (every payment) values it on 03-30 and would call the loan current at March's end.
    loan = book[0]
    march_end = Month(2026, 3).end("Asia/Shanghai")
    assert march_end.isoformat() == "2026-03-31T15:59:59.999999+00:00"  # 23:59:59.999999 in Shanghai
    assert derive(ledger_of(loan.loan, loan.instalments, loan.payments, POLICY), rules_for(loan.loan, POLICY),
                  march_end).days_past_due == 0


# -- stages, time to cure, cure curves ---------------------------------------------------------------


def test_stages_are_the_furthest_step_reached_with_their_cure_rate(report):
    # Furthest step with a decision: C7 none (identified); C6 initial; C1, C2, C5 deep; C4 legal; C3 agency.
    # Days to cure: C1 01-11 -> 02-20 = 40; C2 01-06 -> 04-02 = 86; C3 01-21 -> 03-15 = 53; C6 03-02 -> 03-05 = 3.
    assert [(s.stage, s.cases, s.cured, s.median_days_to_cure) for s in report.stages] == [
        ("identified", 1, rate(0, 1), None),
        ("initial", 1, rate(1, 1), 3.0),
        ("deep", 3, rate(2, 3), 63.0),  # C1 and C2 cured: median of 40 and 86
        ("legal", 1, rate(0, 1), None),  # C4 written off
        ("agency", 1, rate(1, 1), 53.0),
    ]
    # The stage order follows the policy's ladders: a treatment's own step sits after the one before it.
    assert stage_order(POLICY) == ["identified", "initial", "reminder", "deep", "legal", "agency"]


def test_cure_curves_by_arm(report):
    curves = {c.arm: c for c in report.cure_curves}
    assert list(curves) == ["exp1:a", "exp1:b", "none"]
    for curve in curves.values():
        assert curve.days == list(range(91))
    # exp1:a = C1 (40 days), C3 (53), C4 (not cured): 0 until day 39, 1/3 from day 40, 2/3 from day 53.
    assert curves["exp1:a"].cases == 3
    assert curves["exp1:a"].cured_share == [0.0] * 40 + [1 / 3] * 13 + [2 / 3] * 38
    # exp1:b = C2 (86 days), C5 (open): 1/2 from day 86.
    assert curves["exp1:b"].cured_share == [0.0] * 86 + [1 / 2] * 5
    # none = C6 (3 days), C7 (open): 1/2 from day 3.
    assert curves["none"].cured_share == [0.0] * 3 + [1 / 2] * 88


# -- promises, contact, cost --------------------------------------------------------------------------


def test_promises_kept_over_resolved(report):
    # Made: C1 kept; C2 broken, broken; C5 broken; C6 kept; C7 open = 6 promises on 5 of the 7 cases.
    assert report.promises == {
        "kept": rate(2, 5),  # kept 2 over resolved 2 + 3 (the open one waits)
        "made_per_case": rate(6, 7, interval=False),
        "cases_with_promise": rate(5, 7),
    }


def test_channels_count_attempts_deliveries_right_party_contact_and_cost(report):
    channels = {c.channel: c for c in report.channels}
    assert list(channels) == ["sms", "email", "agent_task", "letter", "agency", "legal"]
    # SMS: C1-C6, all delivered. CNY cases C1, C2, C4, C6: 4 x 5 = 20; GBP C3, C5: 2 x 4 = 8.
    assert (channels["sms"].attempts, channels["sms"].delivered, channels["sms"].cost_minor) == (6, 6, {"CNY": 20, "GBP": 8})
    # E-mail: C1-C6, C2's failed (costs nothing): CNY C1, C4, C6 = 3 x 1; GBP 2 x 1.
    assert (channels["email"].attempts, channels["email"].delivered, channels["email"].cost_minor) == (6, 5, {"CNY": 3, "GBP": 2})
    # Agent tasks: five calls and C2's manual review (the failed e-mail's fallback).
    # CNY: calls C1, C2, C4 = 3 x 300 + review 200 = 1100; GBP: calls C3, C5 = 2 x 250 = 500.
    agent = channels["agent_task"]
    assert (agent.attempts, agent.delivered, agent.cost_minor) == (6, 6, {"CNY": 1100, "GBP": 500})
    # Right-party contact: C1 reached, C3 refused over the 5 call outcomes (C2 no answer, C4 wrong number, C5 missed).
    assert agent.right_party_contact == rate(2, 5)
    # Letters: C1-C5, C5's still pending. CNY 3 x 800 = 2400; GBP C3 90.
    assert (channels["letter"].attempts, channels["letter"].delivered, channels["letter"].cost_minor) == (5, 4, {"CNY": 2400, "GBP": 90})
    assert (channels["agency"].attempts, channels["agency"].cost_minor) == (1, {"GBP": 1500})
    assert (channels["legal"].attempts, channels["legal"].cost_minor) == (1, {"CNY": 50000})
    assert all(channels[c].right_party_contact is None for c in ("sms", "email", "letter", "agency", "legal"))


# -- recovery ----------------------------------------------------------------------------------


def test_recovery_per_currency_stage_agency_and_legal(report):
    found = {(r.track, r.currency): (r.cases, r.entered_minor, r.recovered_minor, r.rate) for r in report.recovery}
    assert list(found) == [
        ("all", "CNY"), ("all", "GBP"), ("stage:identified", "CNY"), ("stage:initial", "CNY"), ("stage:deep", "CNY"),
        ("stage:deep", "GBP"), ("stage:legal", "CNY"), ("stage:agency", "GBP"), (f"agency:{AGENCY}", "GBP"),
        ("legal", "CNY"),
    ]
    # Entered: C1 100000; C2 50000 + I2 50000 (fell due 02-05 during the case); C4 1200000 (its I2 falls due
    # 06-01, after the case ended); C6 20000; C7 20000 -> CNY 1440000. C3 30000; C5 40000 + 40000 - 40000
    # (I2 added, then cancelled) -> GBP 70000.
    # Recovered (applied, not reversed): C1 100000 (of 100500: 500 overpaid); C2 100000; C4 200000 (the 50000
    # bounced); C6 20000 -> CNY 420000; C3 10000 + 20000 -> GBP 30000.
    assert found[("all", "CNY")] == (5, 1440000, 420000, 420000 / 1440000)
    assert found[("all", "GBP")] == (2, 70000, 30000, 30000 / 70000)
    assert found[("stage:identified", "CNY")] == (1, 20000, 0, 0.0)  # C7
    assert found[("stage:initial", "CNY")] == (1, 20000, 20000, 1.0)  # C6
    assert found[("stage:deep", "CNY")] == (2, 200000, 200000, 1.0)  # C1, C2
    assert found[("stage:deep", "GBP")] == (1, 40000, 0, 0.0)  # C5
    assert found[("stage:legal", "CNY")] == (1, 1200000, 200000, 200000 / 1200000)  # C4
    assert found[("stage:agency", "GBP")] == (1, 30000, 30000, 1.0)  # C3
    # Agency: C3 placed 20000 when its decision ran (02-19; the row's own clock says 2025-12-01), recalled
    # 03-15 09:30: of its payments only 03-15 09:00 (20000) fell while placed, not 02-10 (10000).
    assert found[(f"agency:{AGENCY}", "GBP")] == (1, 20000, 20000, 1.0)
    # Legal: C4 referred 1200000 on 01-31; paid 200000 on 02-15 after it (and 50000 that bounced).
    assert found[("legal", "CNY")] == (1, 1200000, 200000, 200000 / 1200000)


# -- headline, arms, comparisons ------------------------------------------------------------------


def test_headline_figures(report):
    assert report.cases == 7
    assert headline(report) == {
        "Cases": 7,
        "Cure rate": 4 / 7,  # C1, C2, C3, C6
        "Median days to cure": 46.5,  # 3, 40, 53, 86 -> (40 + 53) / 2
        "Mean days to cure": 45.5,  # (3 + 40 + 53 + 86) / 4 = 182 / 4
        "Roll rate out of 1-29": 3 / 4,  # of the 4 loans leaving 1-29, 3 went to 30-59
        "Promises kept": 2 / 5,
        "Right-party contact rate": 2 / 5,
        # Cost per case (delivered contacts x unit cost): C1 5 + 1 + 300 + 800 = 1106; C2 5 + 200 + 300 + 800
        # = 1305; C4 5 + 1 + 300 + 800 + 50000 = 51106; C6 5 + 1 = 6 -> CNY 53523, cures C1, C2, C6:
        # 53523 / 3 = 17841. C3 4 + 1 + 250 + 90 + 1500 = 1845; C5 4 + 1 + 250 = 255 -> GBP 2100, cure C3.
        "Recovery rate (CNY)": 420000 / 1440000,
        "Recovered (CNY)": 420000,
        "Cost (CNY)": 53523,
        "Cost per cure (CNY)": 17841,
        "Recovery rate (GBP)": 30000 / 70000,
        "Recovered (GBP)": 30000,
        "Cost (GBP)": 2100,
        "Cost per cure (GBP)": 2100,
    }
    assert all(figure.definition for figure in report.headline)


def test_arms_with_cure_rate_promises_money_and_cost_per_cure(report):
    arms = {a.arm: a for a in report.arms}
    assert list(arms) == ["exp1:a", "exp1:b", "none"]
    a, b, none = arms["exp1:a"], arms["exp1:b"], arms["none"]
    # exp1:a = C1 (CNY, cured), C3 (GBP, cured), C4 (CNY, written off).
    assert (a.experiment_id, a.treatment, a.cases, a.cured, a.promise_kept) == ("exp1", "standard", 3, rate(2, 3), rate(1, 1))
    assert a.recovered_minor == {"CNY": 100000 + 200000, "GBP": 30000}
    assert a.cost_minor == {"CNY": 1106 + 51106, "GBP": 1845}
    assert a.cost_per_cure_minor == {"CNY": 52212, "GBP": 1845}  # one cure in each currency
    # exp1:b = C2 (CNY, cured; promises broken twice), C5 (GBP, open; promise broken).
    assert (b.experiment_id, b.treatment, b.cases, b.cured, b.promise_kept) == ("exp1", "early_call", 2, rate(1, 2), rate(0, 3))
    assert (b.recovered_minor, b.cost_minor, b.cost_per_cure_minor) == (
        {"CNY": 100000, "GBP": 0}, {"CNY": 1305, "GBP": 255}, {"CNY": 1305, "GBP": None})  # no GBP cure
    # none = C6 (strategy columns NULL: before the strategy) and C7 (arm "none").
    assert (none.experiment_id, none.cases, none.cured, none.promise_kept) == (None, 2, rate(1, 2), rate(1, 1))
    assert (none.recovered_minor, none.cost_minor, none.cost_per_cure_minor) == ({"CNY": 20000}, {"CNY": 6}, {"CNY": 6})


def test_the_challenger_is_compared_with_the_champion(report):
    [comparison] = report.comparisons
    assert (comparison.experiment_id, comparison.champion, comparison.challenger) == ("exp1", "exp1:a", "exp1:b")
    # Champion a cures 2/3, challenger b 1/2: difference 1/2 - 2/3 = -1/6.
    assert comparison.difference == pytest.approx(-1 / 6, abs=1e-15)
    # Pooled p = 3/5, SE = sqrt(0.6 x 0.4 x (1/3 + 1/2)) = sqrt(0.2) = 0.44721; z = -0.16667 / 0.44721 = -0.37268;
    # two-sided p = 2 (1 - Φ(0.37268)) = 2 (1 - 0.64531) = 0.70939.
    assert comparison.p_value == pytest.approx(0.70939, abs=1e-5)
    # Newcombe: Wilson(2/3) = [0.20766, 0.93851], Wilson(1/2) = [0.09453, 0.90547];
    # low = -1/6 - sqrt((0.5 - 0.09453)² + (0.93851 - 0.66667)²) = -0.65483; high = -1/6 + sqrt((0.90547 - 0.5)²
    # + (0.66667 - 0.20766)²) = 0.44578.
    assert (comparison.low, comparison.high) == pytest.approx((-0.65483, 0.44578), abs=1e-5)
    # Not shown: 5 points above 2/3 need 1338 cases per arm (Fleiss), the smaller arm has 2: 1336 more, about 1,300.
    assert comparison.verdict == ("no difference shown yet (p = 0.71; about 1,300 more cases per arm would show "
                                  "a 5-point difference)")


def test_the_verdict_names_a_difference_the_data_shows():
    shown = stats.two_proportion_test(48, 80, 56, 70)  # p = 0.008
    assert verdict(shown, champion="a", challenger="b", champion_rate=0.6, cases=70) == (
        "challenger b cures more than champion a (p = 0.008)")
    worse = stats.two_proportion_test(56, 70, 48, 80)
    assert verdict(worse, champion="champion", challenger="challenger", champion_rate=0.8, cases=70) == (
        "challenger cures less than champion (p = 0.008)")
    enough = stats.two_proportion_test(5000, 10000, 5010, 10000)
    assert verdict(enough, champion="a", challenger="b", champion_rate=0.5, cases=10000).startswith(
        "no difference shown (p = 0.89; with 10,000 cases per arm a 5-point difference would have shown")
    nobody = stats.two_proportion_test(0, 4, 0, 3)
    assert verdict(nobody, champion="a", challenger="b", champion_rate=0.0, cases=3) == (
        "no difference shown yet (no case of either arm cured yet; about 150 more cases per arm "
        "would show a 5-point difference)")
    # 0 % against 5 %: (1.95996 x sqrt(2 x 0.025 x 0.975) + 0.84162 x sqrt(0.05 x 0.95))² / 0.05² = 151.9 -> 152
    # per arm; 3 there: 149 more, about 150.


# -- filters ----------------------------------------------------------------------------------------


def test_filter_by_arm(engine):
    report = kpis(engine, strategy_arm="exp1:b")
    assert (report.cases, headline(report)["Cure rate"]) == (2, 1 / 2)  # C2 cured, C5 open
    assert [a.arm for a in report.arms] == ["exp1:b"]
    assert report.comparisons == []  # the champion is filtered out
    # Loans L2, L5 from January (C2 opened 01-06): L2 1-29 -> 30-59 -> 60-89 -> current; L5 cur -> 1-29 -> 30-59 -> 60-89.
    assert matrix(report) == {"1-29": {"30-59": 2}, "30-59": {"60-89": 2}, "60-89": {"current": 1}, "90+": {}}
    assert kpis(engine, strategy_arm="b").model_dump(exclude={"filters"}) == report.model_dump(exclude={"filters"})
    none = kpis(engine, strategy_arm="none")  # C6 (NULL) and C7 ("none")
    assert (none.cases, [a.arm for a in none.arms]) == (2, ["none"])


def test_filter_by_jurisdiction_segment_and_policy_version(engine):
    uk = kpis(engine, jurisdiction="UK")  # C3, C5
    assert (uk.cases, headline(uk)["Cure rate"]) == (2, 1 / 2)
    assert {(r.track, r.currency) for r in uk.recovery} >= {("all", "GBP")}
    assert {r.currency for r in uk.recovery} == {"GBP"}
    assert [(a.arm, a.cases) for a in uk.arms] == [("exp1:a", 1), ("exp1:b", 1)]
    # Only L3 and L5: L3 1-29 -> 30-59 -> current; L5 1-29 (Feb) -> 30-59 -> 60-89.
    assert matrix(uk) == {"1-29": {"30-59": 2}, "30-59": {"current": 1, "60-89": 1}, "60-89": {}, "90+": {}}
    assert kpis(engine, segment="home-credit").cases == 1  # C3's portfolio
    low = kpis(engine, segment="low")  # C1, C4's score band
    assert (low.cases, headline(low)["Cure rate"]) == (2, 1 / 2)
    old = kpis(engine, policy_version=OLD_VERSION)  # C6, C7
    assert (old.cases, [a.arm for a in old.arms]) == (2, ["none"])


def test_filter_by_opening_dates(engine):
    report = kpis(engine, opened_from=date(2026, 2, 1), opened_to=date(2026, 3, 31))
    assert (report.cases, headline(report)["Cure rate"]) == (2, 1 / 2)  # C5 (02-11), C6 (03-02, cured)
    # Month-ends in range: 02-28 and 03-31, one pair, every loan of the book:
    # L2 30-59 -> 60-89, L3 30-59 -> current, L4 30-59 -> 60-89, L5 1-29 -> 30-59.
    assert report.roll_rates.months == ["2026-02"]
    assert matrix(report) == {"1-29": {"30-59": 1}, "30-59": {"current": 1, "60-89": 2}, "60-89": {}, "90+": {}}
    # To 03-30: March's end is out of range, no pair is left.
    short = kpis(engine, opened_from=date(2026, 2, 1), opened_to=date(2026, 3, 30))
    assert short.roll_rates.months == [] and matrix(short) == {"1-29": {}, "30-59": {}, "60-89": {}, "90+": {}}
    assert short.roll_rates.cure_rate_by_bucket["1-29"] == rate(0, 0)
    january = kpis(engine, opened_to=date(2026, 1, 31))  # C1-C4
    assert (january.cases, headline(january)["Cure rate"]) == (4, 3 / 4)


def test_filter_by_channel(engine):
    report = kpis(engine, channel="legal")  # C4 alone had a legal contact
    assert report.cases == 1
    assert [(c.channel, c.attempts, c.cost_minor) for c in report.channels] == [("legal", 1, {"CNY": 50000})]
    assert headline(report)["Cost (CNY)"] == 50000 and headline(report)["Cost per cure (CNY)"] is None  # not cured
    agent = kpis(engine, channel="agent_task")  # C1-C5; C6 had none
    assert agent.cases == 5
    assert [c.channel for c in agent.channels] == ["agent_task"]
    assert agent.channels[0].right_party_contact == rate(2, 5)


# -- edges, what-if, definitions ------------------------------------------------------------------


def test_an_empty_database(tmp_path):
    engine = make_engine(fresh_database_url(tmp_path))
    try:
        report = compute_kpis(engine, POLICY, now=NOW)
        assert report.cases == 0 and report.stages == [] and report.arms == [] and report.recovery == []
        assert report.roll_rates.months == [] and report.roll_rates.counts == [[0] * 6] * 4
        assert report.promises["kept"] == rate(0, 0) and headline(report)["Cure rate"] is None
        run = whatif_run(engine, POLICY, policy_path="p.toml", loans=0)
        assert (run.cases, run.cures, run.recovered_minor, run.cost_minor) == (0, 0, {}, {})
    finally:
        engine.dispose()


def test_a_database_without_the_strategy_columns_reads_every_case_as_arm_none(tmp_path):
    engine = make_engine(fresh_database_url(tmp_path))
    try:
        write_portfolio(engine, POLICY)
        with engine.begin() as connection:
            for name in ("strategy_arm", "experiment_id", "treatment", "score_band"):
                connection.execute(text(f"ALTER TABLE collection_cases DROP COLUMN {name}"))
        report = compute_kpis(engine, POLICY, now=NOW)
        assert [(a.arm, a.cases, a.experiment_id, a.treatment) for a in report.arms] == [("none", 7, None, None)]
        assert report.comparisons == [] and report.cases == 7
        assert kpis(engine, segment="low").cases == 0  # no score bands without the column
    finally:
        engine.dispose()


def test_whatif_totals(engine):
    run = whatif_run(engine, POLICY, policy_path="policies/test.toml", loans=6)
    assert (run.policy_version, run.policy_path, run.loans) == (POLICY.version, "policies/test.toml", 6)
    assert (run.cases, run.cures) == (7, 4)
    assert run.recovered_minor == {"CNY": 420000, "GBP": 30000}
    # Delivered: SMS 6 + e-mail 5; letters 4 (C5's pending); agent tasks 5 calls + 1 review; agency 1 + legal 1.
    assert (run.messages, run.letters, run.agent_tasks, run.hand_offs) == (11, 4, 6, 2)
    assert run.cost_minor == {"CNY": 53523, "GBP": 2100}


def test_every_section_has_its_definition(report):
    assert report.roll_rates.definition == DEFINITIONS["roll_rates"]
    for key in ("cure_curves", "recovery", "stages", "promises", "channels", "arms", "comparisons", "filters", "cost"):
        assert report.definitions[key], key
