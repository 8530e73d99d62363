"""The report's statistics against published values: the normal table, Wilson's interval
(Newcombe 1998a, table I, method 3), Newcombe's hybrid interval of a difference (Newcombe 1998b,
table II, method 10), the pooled z-test (its square is Pearson's chi-square of the 2x2 table) and
Fleiss's sample size (10 % against 15 % at 5 % and 80 %: 686 per group)."""

from __future__ import annotations

import pytest

from collections_domain.analytics import stats


def test_the_normal_distribution_matches_the_table():
    assert stats.normal_cdf(0.0) == 0.5
    assert stats.normal_cdf(1.0) == pytest.approx(0.8413447, abs=1e-7)
    assert stats.normal_cdf(1.96) == pytest.approx(0.9750021, abs=1e-7)
    assert stats.normal_cdf(-2.5758) == pytest.approx(0.005, abs=1e-6)
    assert stats.normal_quantile(0.975) == pytest.approx(1.959964, abs=1e-6)
    assert stats.normal_quantile(0.80) == pytest.approx(0.841621, abs=1e-6)
    with pytest.raises(ValueError, match="strictly between 0 and 1"):
        stats.normal_quantile(1.0)


@pytest.mark.parametrize(("successes", "trials", "low", "high"), [
    # Newcombe (1998a), Statistics in Medicine 17:857-872, table I, method 3 (Wilson, no correction).
    (81, 263, 0.2553, 0.3662),
    (15, 148, 0.0624, 0.1605),
    (0, 20, 0.0000, 0.1611),
    (1, 29, 0.0061, 0.1718),
    (29, 29, 0.8830, 1.0000),
    (0, 1, 0.0000, 0.7935),
])
def test_wilson_interval_matches_newcombe(successes, trials, low, high):
    found = stats.wilson(successes, trials)
    assert found is not None
    assert found[0] == pytest.approx(low, abs=5e-5)
    assert found[1] == pytest.approx(high, abs=5e-5)


def test_wilson_of_no_trials_is_none_and_bad_counts_are_refused():
    assert stats.wilson(0, 0) is None
    assert stats.wilson(0, 17)[0] == 0.0 and stats.wilson(17, 17)[1] == 1.0  # exactly, not 1e-17 off
    with pytest.raises(ValueError, match="successes <= trials"):
        stats.wilson(3, 2)


@pytest.mark.parametrize(("champion", "challenger", "low", "high"), [
    # Newcombe (1998b), Statistics in Medicine 17:873-890, table II, method 10 (p1 - p2 with p1 the
    # challenger here): (a) 56/70 - 48/80, (b) 9/10 - 3/10, (c) 6/7 - 2/7, (d) 5/56 - 0/29,
    # (e) 0/10 - 0/20, (f) 0/10 - 0/10, (g) 10/10 - 0/20, (h) 10/10 - 0/10.
    ((48, 80), (56, 70), 0.0524, 0.3339),
    ((3, 10), (9, 10), 0.1705, 0.8090),
    ((2, 7), (6, 7), 0.0582, 0.8062),
    ((0, 29), (5, 56), -0.0381, 0.1926),
    ((0, 20), (0, 10), -0.1611, 0.2775),
    ((0, 10), (0, 10), -0.2775, 0.2775),
    ((0, 20), (10, 10), 0.6791, 1.0000),
    ((0, 10), (10, 10), 0.6075, 1.0000),
])
def test_difference_interval_matches_newcombe(champion, challenger, low, high):
    found = stats.difference_interval(*champion, *challenger)
    assert found[0] == pytest.approx(low, abs=5e-5)
    assert found[1] == pytest.approx(high, abs=5e-5)


def _pearson_chi_square(a: int, n_a: int, b: int, n_b: int) -> float:
    """Pearson's chi-square of the 2x2 table, from observed and expected counts (no correction)."""
    observed = [a, n_a - a, b, n_b - b]
    total, cured = n_a + n_b, a + b
    expected = [n_a * cured / total, n_a * (total - cured) / total, n_b * cured / total, n_b * (total - cured) / total]
    return sum((o - e) ** 2 / e for o, e in zip(observed, expected))


def test_the_z_test_is_pearsons_chi_square_and_two_sided():
    # Newcombe's example (a): 56/70 challenger against 48/80 champion.
    test = stats.two_proportion_test(48, 80, 56, 70)
    assert test.difference == pytest.approx(0.2)
    assert test.z is not None and test.p_value is not None
    assert test.z ** 2 == pytest.approx(_pearson_chi_square(48, 80, 56, 70))  # 7.0237
    assert test.z == pytest.approx(2.6502, abs=5e-5)
    assert test.p_value == pytest.approx(0.00805, abs=5e-6)
    reverse = stats.two_proportion_test(56, 70, 48, 80)
    assert reverse.z == pytest.approx(-test.z) and reverse.p_value == pytest.approx(test.p_value)
    assert (reverse.low, reverse.high) == pytest.approx((-test.high, -test.low))


def test_the_z_test_at_the_edges():
    assert stats.two_proportion_test(0, 0, 3, 10) == stats.ProportionTest(None, None, None, None, None)
    same = stats.two_proportion_test(0, 10, 0, 20)  # nobody cured: nothing to test, an interval still
    assert same.difference == 0.0 and same.z is None and same.p_value is None
    assert (same.low, same.high) == pytest.approx((-0.2775, 0.1611), abs=5e-5)
    with pytest.raises(ValueError):
        stats.two_proportion_test(11, 10, 3, 10)


def test_sample_size_matches_fleiss():
    # Fleiss (1981) 3.2, no continuity correction: 10 % against 15 %, two-sided 5 %, power 80 %.
    assert stats.sample_size_per_arm(0.10, 0.05) == 686
    assert stats.sample_size_per_arm(0.15, -0.05) == 686  # the same pair of rates
    assert stats.sample_size_per_arm(0.50, 0.10) == 388
    with pytest.raises(ValueError, match="two distinct rates"):
        stats.sample_size_per_arm(0.98, 0.05)
