"""The shape every benchmark section returns, and how the suite prints and saves it.

A ``Figure`` is one measured value next to the baseline the same run measured seconds apart on
the same machine (bare workflows, or the naive ladder in ``bench/naive.py``), their ratio, and the
goal the ratio (or the value) is held to. These machines are noisy: absolute times are printed for
reference, ratios are the figures to hold. Nothing here fails on time; ``goal_met`` is reported.
"""

from __future__ import annotations

import operator
import os
from dataclasses import asdict, dataclass, field
from typing import Any

#: Comparison operators a goal may use.
_COMPARE = {"<=": operator.le, ">=": operator.ge, "==": operator.eq}


@dataclass
class Figure:
    """One benchmark figure.

    ``name``: what was measured, in the field's terms (``case_open_ratio``,
    ``events.no_payment_to_hand_off``). ``value``: the product's figure, in ``unit`` (``events``,
    ``actions``, ``bytes``, ``KB``, ``MB``, ``s``, ``cases/s``). ``baseline``: the same figure for the
    baseline named in ``baseline_name`` (None when the figure has no baseline). ``goal``: e.g.
    ``"ratio <= 2"`` or ``"value <= 45"`` (issue 14's goals), checked by ``goal_met``.
    ``detail``: free text (sizes, worker counts, the profile that bounds a missed goal).
    """

    section: str
    name: str
    value: float
    unit: str
    baseline: float | None = None
    baseline_name: str | None = None
    goal: str | None = None
    detail: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def ratio(self) -> float | None:
        """``value / baseline`` (None without a baseline, or with a zero one)."""
        if self.baseline in (None, 0):
            return None
        return self.value / self.baseline  # type: ignore[operator]

    @property
    def goal_met(self) -> bool | None:
        """Whether the goal holds (None when there is no goal or its subject is missing)."""
        if not self.goal:
            return None
        subject, op, limit = self.goal.split()
        left = self.ratio if subject == "ratio" else self.value
        if left is None:
            return None
        return _COMPARE[op](left, float(limit))

    def as_dict(self) -> dict[str, Any]:
        """The figure with its ratio and verdict, for the JSON summary."""
        data = asdict(self)
        data["ratio"] = None if self.ratio is None else round(self.ratio, 4)
        data["goal_met"] = self.goal_met
        return data


def load_average() -> tuple[float, float, float]:
    """The machine's 1/5/15-minute load averages (printed with every section)."""
    try:
        return os.getloadavg()
    except OSError:  # not on this platform
        return (0.0, 0.0, 0.0)
