"""The KPI report's shapes: what ``kpis.compute_kpis`` returns, ``GET /v1/reports/kpis`` answers
and ``report.py`` renders. Money is integer minor units per currency (a portfolio in several
currencies is never summed across them); rates are fractions in [0, 1] with the counts they come
from; durations are days. Every figure carries its ``definition``: the sentence a collections
manager reads next to it."""

from __future__ import annotations

from datetime import date, datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from collections_domain.rules.policy import SUPPORTED_JURISDICTIONS, Channel

#: What a filter value may be: 1-64 ASCII letters, digits and ``. _ - : +``.
FILTER_VALUE = r"^[A-Za-z0-9._:+-]{1,64}$"
#: The jurisdictions and contact channels a report can be restricted to.
Jurisdiction = Literal[tuple(SUPPORTED_JURISDICTIONS)]  # type: ignore[valid-type]
ChannelName = Literal[tuple(channel.value for channel in Channel)]  # type: ignore[valid-type]


class Filters(BaseModel):
    """What the figures were restricted to (``None``: everything). ``opened_from`` and
    ``opened_to`` bound the cases by their opening date (UTC calendar day, inclusive); roll rates
    use the month-ends in that range."""

    model_config = ConfigDict(extra="forbid")
    opened_from: date | None = None
    opened_to: date | None = None
    policy_version: str | None = Field(default=None, pattern=FILTER_VALUE)
    strategy_arm: str | None = Field(default=None, pattern=FILTER_VALUE)  # "<experiment>:<arm>" or "none"
    segment: str | None = Field(default=None, pattern=FILTER_VALUE)  # a score band or a portfolio name
    jurisdiction: Jurisdiction | None = None
    channel: ChannelName | None = None

    @model_validator(mode="after")
    def _ordered(self) -> Filters:
        if self.opened_from and self.opened_to and self.opened_to < self.opened_from:
            raise ValueError("opened_to: must not be before opened_from")
        return self


class Rate(BaseModel):
    """``numerator / denominator`` with a Wilson 95 % interval (``stats.wilson``); ``value`` is
    ``None`` when the denominator is 0."""

    numerator: int
    denominator: int
    value: float | None
    low: float | None = None
    high: float | None = None


class RollRateMatrix(BaseModel):
    """Month-on-month transitions between DPD buckets (policy ``[reporting] dpd_buckets``).
    ``counts[i][j]``: loans in ``rows[i]`` at one month-end and in ``columns[j]`` at the next,
    summed over ``months``; ``rates[i][j]`` the share of row ``i``. Rows are the delinquent buckets;
    columns are ``current`` (cured), the buckets, and ``closed`` (written off, or out of the book)."""

    definition: str
    months: list[str]  # the month-ends compared, "YYYY-MM" of the first of each pair
    rows: list[str]
    columns: list[str]
    counts: list[list[int]]
    rates: list[list[float | None]]
    cure_rate_by_bucket: dict[str, Rate]  # the "current" column, as a rate with its interval


class StageFigure(BaseModel):
    """Cases by the furthest ladder step they reached (``identified``: none yet)."""

    stage: str
    cases: int
    cured: Rate
    median_days_to_cure: float | None


class CureCurve(BaseModel):
    """Share of one arm's cases cured by each day since opening (0 ... ``days[-1]``)."""

    arm: str
    cases: int
    days: list[int]
    cured_share: list[float]


class ChannelFigure(BaseModel):
    """Contacts on one channel: attempts, delivered, right-party contacts (a reported outcome of
    ``reached``, ``promise_made``, ``refused`` or ``dispute_raised`` on an agent task; ``None`` for
    channels with no outcome to report), and their cost (``cost_minor`` per currency)."""

    channel: str
    attempts: int
    delivered: int
    right_party_contact: Rate | None
    cost_minor: dict[str, int]


class RecoveryFigure(BaseModel):
    """Amount recovered over amount that entered collections, for one group (``track``: ``all``,
    ``stage:<name>``, ``agency:<name>`` or ``legal``), per currency."""

    track: str
    currency: str
    cases: int
    entered_minor: int
    recovered_minor: int
    rate: float | None


class ArmFigure(BaseModel):
    """One strategy arm (``collection_cases.strategy_arm``; ``none`` outside any experiment);
    ``treatment`` is the arm's treatment path, ``None`` when its cases run several (the ``none``
    arm holds every band's own)."""

    arm: str
    experiment_id: str | None
    treatment: str | None
    cases: int
    cured: Rate
    promise_kept: Rate
    recovered_minor: dict[str, int]
    cost_minor: dict[str, int]
    cost_per_cure_minor: dict[str, int | None]


class ArmComparison(BaseModel):
    """The two-proportion z-test of cure rates between a challenger and its experiment's
    champion (the first arm in the policy): ``difference`` = challenger - champion, with its 95 %
    interval, ``p_value`` two-sided; ``verdict`` says in words what the data so far supports."""

    experiment_id: str
    champion: str
    challenger: str
    difference: float | None
    low: float | None
    high: float | None
    p_value: float | None
    verdict: str


class Figure(BaseModel):
    """A headline figure: its name, value, unit and definition."""

    name: str
    value: float | int | None
    unit: str  # "share", "days", "cases", "minor units <CUR>"
    definition: str


class KpiReport(BaseModel):
    """The whole report (``kpis.compute_kpis``)."""

    generated_at: datetime
    filters: Filters
    cases: int
    headline: list[Figure]
    roll_rates: RollRateMatrix
    stages: list[StageFigure]
    cure_curves: list[CureCurve]
    promises: dict[str, Rate]  # "kept" (kept / resolved) and "made_per_case"-style rates
    channels: list[ChannelFigure]
    recovery: list[RecoveryFigure]
    arms: list[ArmFigure]
    comparisons: list[ArmComparison]
    definitions: dict[str, str] = Field(default_factory=dict)


class WhatIfRun(BaseModel):
    """One policy's replay of the same portfolio (``simulate --policy``)."""

    policy_version: str
    policy_path: str
    loans: int
    cases: int
    cures: int
    recovered_minor: dict[str, int]
    messages: int  # SMS and email
    letters: int
    agent_tasks: int
    hand_offs: int
    cost_minor: dict[str, int]


class WhatIf(BaseModel):
    """Policies side by side on the same loans; ``runs[0]`` is the baseline the differences use."""

    runs: list[WhatIfRun]
