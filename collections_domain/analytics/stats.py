"""The statistics of the KPI report: Wilson intervals of rates, the two-proportion z-test of a
challenger's cure rate against its champion's with Newcombe's interval of the difference, and
the sample size that would show a given difference. Plain functions of counts, no I/O.

References (the tests check the published values):

- E. B. Wilson, "Probable inference, the law of succession, and statistical inference", JASA
  22 (1927) 209-212; R. G. Newcombe, "Two-sided confidence intervals for the single proportion:
  comparison of seven methods", Statistics in Medicine 17 (1998) 857-872 (method 3).
- R. G. Newcombe, "Interval estimation for the difference between independent proportions:
  comparison of eleven methods", Statistics in Medicine 17 (1998) 873-890 (method 10, the hybrid
  score interval: it stays inside [-1, 1] and keeps its coverage with the small arms an
  experiment starts with, where the simple Wald interval does not).
- J. L. Fleiss, *Statistical Methods for Rates and Proportions* (2nd ed., 1981), 3.2: the
  pooled two-proportion z-test and the sample size per group without continuity correction.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import NormalDist

#: The two-sided confidence (and 1 - significance) the report uses everywhere.
CONFIDENCE = 0.95
#: Significance of the experiments' tests, and the power their sample sizes aim at.
ALPHA = 0.05
POWER = 0.80


def normal_cdf(x: float) -> float:
    """Φ(x), the standard normal distribution function (through ``math.erf``)."""
    return 0.5 * (1.0 + math.erf(x / math.sqrt(2.0)))


def normal_quantile(p: float) -> float:
    """Φ⁻¹(p) for 0 < p < 1 (``statistics.NormalDist``; 0.975 -> 1.959964).

    Raises:
        ValueError: ``p`` is not strictly between 0 and 1.
    """
    if not 0.0 < p < 1.0:
        raise ValueError(f"p: must be strictly between 0 and 1, got {p}")
    return NormalDist().inv_cdf(p)


def _z(confidence: float) -> float:
    return normal_quantile(0.5 + confidence / 2.0)


def wilson(successes: int, trials: int, confidence: float = CONFIDENCE) -> tuple[float, float] | None:
    """The Wilson score interval ``(low, high)`` of ``successes / trials``; ``None`` when
    ``trials`` is 0 (no rate to bound).

    Raises:
        ValueError: a count is negative, or ``successes > trials``.
    """
    if trials < 0 or successes < 0 or successes > trials:
        raise ValueError(f"successes/trials: need 0 <= successes <= trials, got {successes}/{trials}")
    if trials == 0:
        return None
    z = _z(confidence)
    p = successes / trials
    denominator = 1.0 + z * z / trials
    centre = (p + z * z / (2.0 * trials)) / denominator
    half = z * math.sqrt(p * (1.0 - p) / trials + z * z / (4.0 * trials * trials)) / denominator
    # At 0 and at ``trials`` a bound is exactly 0 or 1; the floating-point difference is not.
    low = 0.0 if successes == 0 else max(0.0, centre - half)
    high = 1.0 if successes == trials else min(1.0, centre + half)
    return low, high


@dataclass(frozen=True)
class ProportionTest:
    """Challenger (``b``) against champion (``a``): ``difference`` = p_b - p_a with its Newcombe
    interval ``(low, high)``, the pooled ``z`` statistic and its two-sided ``p_value``. ``z`` and
    ``p_value`` are ``None`` when every case of both arms ended the same way (no variance to test);
    everything is ``None`` when an arm has no cases."""

    difference: float | None
    low: float | None
    high: float | None
    z: float | None
    p_value: float | None


def two_proportion_test(successes_a: int, trials_a: int, successes_b: int, trials_b: int,
                        confidence: float = CONFIDENCE) -> ProportionTest:
    """The two-sided pooled z-test of p_b = p_a (Fleiss 3.2, no continuity correction: ``z²`` is
    Pearson's chi-square of the 2x2 table) and Newcombe's hybrid score interval of p_b - p_a.

    Raises:
        ValueError: a count is negative, or successes exceed trials.
    """
    if trials_a == 0 or trials_b == 0:
        for successes, trials in ((successes_a, trials_a), (successes_b, trials_b)):
            wilson(successes, trials)  # the same argument checks
        return ProportionTest(None, None, None, None, None)
    low, high = difference_interval(successes_a, trials_a, successes_b, trials_b, confidence)
    p_a, p_b = successes_a / trials_a, successes_b / trials_b
    pooled = (successes_a + successes_b) / (trials_a + trials_b)
    variance = pooled * (1.0 - pooled) * (1.0 / trials_a + 1.0 / trials_b)
    if variance <= 0.0:
        return ProportionTest(p_b - p_a, low, high, None, None)
    z = (p_b - p_a) / math.sqrt(variance)
    return ProportionTest(p_b - p_a, low, high, z, min(1.0, 2.0 * (1.0 - normal_cdf(abs(z)))))


def difference_interval(successes_a: int, trials_a: int, successes_b: int, trials_b: int,
                        confidence: float = CONFIDENCE) -> tuple[float, float]:
    """Newcombe's hybrid score interval (method 10) of p_b - p_a, from the Wilson intervals of
    each proportion.

    Raises:
        ValueError: an arm has no trials, or its counts are invalid.
    """
    bounds_a, bounds_b = wilson(successes_a, trials_a, confidence), wilson(successes_b, trials_b, confidence)
    if bounds_a is None or bounds_b is None:
        raise ValueError("trials: both arms need at least one case")
    (low_a, high_a), (low_b, high_b) = bounds_a, bounds_b
    p_a, p_b = successes_a / trials_a, successes_b / trials_b
    difference = p_b - p_a
    low = difference - math.sqrt((p_b - low_b) ** 2 + (high_a - p_a) ** 2)
    high = difference + math.sqrt((high_b - p_b) ** 2 + (p_a - low_a) ** 2)
    return max(-1.0, low), min(1.0, high)


def sample_size_per_arm(baseline: float, difference: float, alpha: float = ALPHA, power: float = POWER) -> int:
    """Cases per arm for a two-sided test at ``alpha`` to detect, with probability ``power``, a
    rate of ``baseline + difference`` against ``baseline`` (Fleiss, no continuity correction;
    rounded up). 0.10 against 0.15 at 5 % and 80 %: 686.

    Raises:
        ValueError: the rates are not in [0, 1], or ``difference`` is 0.
    """
    other = baseline + difference
    if not (0.0 <= baseline <= 1.0 and 0.0 <= other <= 1.0) or difference == 0:
        raise ValueError(f"baseline/difference: need two distinct rates in [0, 1], got {baseline} and {other}")
    mean = (baseline + other) / 2.0
    z_alpha, z_beta = normal_quantile(1.0 - alpha / 2.0), normal_quantile(power)
    root = (z_alpha * math.sqrt(2.0 * mean * (1.0 - mean))
            + z_beta * math.sqrt(baseline * (1.0 - baseline) + other * (1.0 - other)))
    return math.ceil(root * root / (difference * difference) - 1e-9)
