"""The strategy as policy data (``rules.strategy``): bands, treatments, experiments, and the
deterministic assignment of a case to an arm."""

from __future__ import annotations

import math
from collections import Counter
from datetime import date

import pytest

from collections_domain.rules.policy import DEFAULT_POLICY_PATH, PolicyError, load_policy, parse_policy
from collections_domain.rules.strategy import BPS, NO_EXPERIMENT, Experiment, ExperimentArm, ScoringRules, assign

POLICY = load_policy(DEFAULT_POLICY_PATH)
BASE = DEFAULT_POLICY_PATH.read_text(encoding="utf-8")
OPENED = date(2027, 1, 15)


def experiment(shares: tuple[int, ...], id_: str = "exp-1") -> Experiment:
    return Experiment(id=id_, arms=tuple(ExperimentArm(name=f"arm{i}", treatment="standard", share_bps=s)
                                         for i, s in enumerate(shares)))


def test_bands_map_scores_to_the_policys_treatments():
    scoring = POLICY.scoring
    assert [b.name for b in scoring.bands] == ["low", "medium", "high"]
    low, medium, _ = (b.below_bps for b in scoring.bands)
    assert scoring.band_of(0).name == "low" and scoring.band_of(low - 1).name == "low"
    assert scoring.band_of(low).name == "medium" and scoring.band_of(medium - 1).name == "medium"
    assert scoring.band_of(medium).name == "high" and scoring.band_of(BPS).name == "high"
    # outside the experiment's band, the band's own treatment
    assert assign(scoring, POLICY.experiments, loan_id="L-1", probability_bps=0, model_version="m",
                  opened_on=OPENED).treatment == "early_call"
    top = assign(scoring, POLICY.experiments, loan_id="L-1", probability_bps=BPS, model_version="m", opened_on=OPENED)
    assert (top.score_band, top.treatment, top.experiment_id, top.arm, top.strategy_arm) == ("high", "self_cure", None, NO_EXPERIMENT, "none")


def test_the_experiment_takes_its_band_and_every_arm_is_a_treatment_of_the_policy():
    medium = next(b for b in POLICY.scoring.bands if b.name == "medium")
    got = {assign(POLICY.scoring, POLICY.experiments, loan_id=f"L-{i}", probability_bps=medium.below_bps - 1,
                  model_version="m", opened_on=OPENED).strategy_arm for i in range(200)}
    assert got == {"early-call-2027-01:champion", "early-call-2027-01:challenger"}
    for arm in POLICY.experiments[0].arms:
        assert POLICY.for_treatment(arm.treatment).steps


def test_a_treatment_is_the_same_policy_with_another_ladder():
    self_cure = POLICY.for_treatment("self_cure")
    assert (self_cure.version, self_cure.digest) == (POLICY.version, POLICY.digest)
    assert [s.name for s in self_cure.steps] == ["initial", "reminder", "deep", "legal", "agency"]
    assert POLICY.for_treatment("standard") is POLICY and POLICY.for_treatment(None) is POLICY
    assert POLICY.for_treatment("self_cure") is self_cure  # built once per process
    with pytest.raises(KeyError):
        POLICY.for_treatment("nope")


def test_assignment_is_stable_for_a_loan():
    exp = experiment((5000, 5000))
    first = [exp.arm_for(f"hc-{i}").name for i in range(1000)]
    again = [experiment((5000, 5000)).arm_for(f"hc-{i}").name for i in range(1000)]
    assert first == again
    # a later case of the same loan is in the same arm, whatever its score or day
    a = assign(ScoringRules(), (exp,), loan_id="hc-7", probability_bps=None, model_version=None, opened_on=OPENED)
    b = assign(ScoringRules(), (exp,), loan_id="hc-7", probability_bps=None, model_version=None, opened_on=date(2027, 6, 1))
    assert a == b


@pytest.mark.parametrize("shares", [(5000, 5000), (2000, 8000), (3334, 3333, 3333)])
def test_assignment_is_balanced_within_four_standard_errors(shares):
    # Tolerance: each arm's share of N loans is within 4 binomial standard errors of its traffic
    # share, sqrt(p(1-p)/N) (N = 20,000: at most 1.4 points for 50/50), per arm.
    n = 20_000
    counts = Counter(experiment(shares).arm_for(f"loan-{i:06d}").name for i in range(n))
    for index, share in enumerate(shares):
        p = share / BPS
        tolerance = 4 * math.sqrt(p * (1 - p) / n)
        assert abs(counts[f"arm{index}"] / n - p) <= tolerance, (counts, shares)


def test_experiments_assign_independently():
    # The arm in one experiment says nothing about the arm in another (the hash includes the id):
    # each of the 4 combinations of two 50/50 experiments holds a quarter, within 4 standard errors.
    n = 20_000
    first, second = experiment((5000, 5000), "exp-a"), experiment((5000, 5000), "exp-b")
    pairs = Counter((first.arm_for(f"L{i}").name, second.arm_for(f"L{i}").name) for i in range(n))
    tolerance = 4 * math.sqrt(0.25 * 0.75 / n)
    assert len(pairs) == 4 and all(abs(c / n - 0.25) <= tolerance for c in pairs.values()), pairs


def test_experiment_dates_bound_who_enters():
    exp = Experiment(id="dated", starts_on=date(2027, 1, 1), ends_on=date(2027, 1, 31),
                     arms=(ExperimentArm(name="a", treatment="standard", share_bps=5000),
                           ExperimentArm(name="b", treatment="standard", share_bps=5000)))
    assert exp.covers(None, date(2027, 1, 1)) and exp.covers(None, date(2027, 1, 31))
    assert not exp.covers(None, date(2026, 12, 31)) and not exp.covers(None, date(2027, 2, 1))


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        ('share_bps = 5000 },\n]', 'share_bps = 4000 },\n]', "share_bps must add up to 10000"),
        ('share_bps = 5000 },\n]', 'share_bps = "5000" },\n]', "share_bps: Input should be a valid integer"),
        ('{ name = "low", below_bps = 1500, treatment = "early_call" }', '{ name = "low", below_bps = 2500, treatment = "nope" }',
         "unknown treatment 'nope'"),
        ('{ name = "high", treatment = "self_cure" }', '{ name = "high", below_bps = 9000, treatment = "self_cure" }',
         "the last band takes every higher score"),
        ('bands = ["medium"]', 'bands = ["middling"]', "unknown band"),
        ('name = "reminder"', 'name = "initial"', "treatments.self_cure.steps: names must be unique"),
        ("treatments.early_call", "treatments.standard", "'standard' is the file's own"),
        ("[unit_costs.GBP]\nsms_reminder = 3", "[unit_costs.GBP]\ncarrier_pigeon = 3", "unit_costs.GBP: unknown action"),
        ('{ name = "30-59", min_days = 30, max_days = 59 }', '{ name = "30-59", min_days = 31, max_days = 59 }', "contiguous"),
    ],
)
def test_a_broken_strategy_names_the_key(old, new, message):
    assert old in BASE, old
    with pytest.raises(PolicyError, match=message):
        parse_policy(BASE.replace(old, new), "test.toml")


def test_reporting_buckets():
    assert [POLICY.reporting.bucket_of(d) for d in (0, 1, 29, 30, 59, 60, 89, 90, 400)] == [
        None, "1-29", "1-29", "30-59", "30-59", "60-89", "60-89", "90+", "90+"]
