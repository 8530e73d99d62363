"""The collection strategy as policy data: DPD buckets for reporting, unit costs, score bands,
treatment paths and champion/challenger experiments, and the one function that assigns a case
its treatment at opening (``assign``).

Policy keys (``policies/default.toml``):

- ``[reporting] dpd_buckets``: the buckets roll rates are counted between (``min_days`` ...
  ``max_days``, the last open-ended), contiguous from DPD 1.
- ``[unit_costs.<CUR>]``: what one action costs, in minor units of ``CUR``.
- ``[scoring]``: the propensity model's version (``model``) and ``bands``, each the probability
  of cure below which (``below_bps``, basis points: 10000 = certain) a case is in it, and the
  treatment path the band gets.
- ``[treatments.<name>]``: a ladder variant (``steps``, the shape of ``[[steps]]``). The name
  ``standard`` is the file's own ``[[steps]]`` and needs no table.
- ``[[experiments]]``: an experiment over some bands (none: all) between ``starts_on`` and
  ``ends_on`` (local dates, inclusive; open when missing) with ``arms``, each a treatment and a
  traffic share in basis points (the shares add up to 10000). The first arm is the champion.

A case keeps its assignment for life: it is made once, at opening, and recorded in the
database (``strategy_assignments``) and the history (band, model version, treatment, arm: never
the loan's features).
"""

from __future__ import annotations

import hashlib
from datetime import date

from pydantic import BaseModel, ConfigDict, Field, model_validator

#: The treatment whose ladder is the policy's own ``[[steps]]``.
STANDARD = "standard"
#: The arm of a case that is in no experiment (``StrategyArm``).
NO_EXPERIMENT = "none"
#: Basis points: shares and probabilities are integers out of this.
BPS = 10_000


class DpdBucket(BaseModel):
    """One DPD bucket: ``min_days`` to ``max_days`` inclusive (``None``: and above)."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    name: str = Field(pattern=r"^[A-Za-z0-9+_-]{1,16}$")
    min_days: int = Field(ge=1, le=3650, strict=True)
    max_days: int | None = Field(default=None, ge=1, le=3650, strict=True)

    def holds(self, days_past_due: int) -> bool:
        """Whether a loan ``days_past_due`` late is in this bucket."""
        return days_past_due >= self.min_days and (self.max_days is None or days_past_due <= self.max_days)


DEFAULT_BUCKETS = (
    DpdBucket(name="1-29", min_days=1, max_days=29),
    DpdBucket(name="30-59", min_days=30, max_days=59),
    DpdBucket(name="60-89", min_days=60, max_days=89),
    DpdBucket(name="90+", min_days=90),
)


class ReportingRules(BaseModel):
    """``[reporting]``: the DPD buckets of roll rates (contiguous from DPD 1, the last open)."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    dpd_buckets: tuple[DpdBucket, ...] = Field(default=DEFAULT_BUCKETS, min_length=1)

    @model_validator(mode="after")
    def _contiguous(self) -> ReportingRules:
        expected = 1
        for index, bucket in enumerate(self.dpd_buckets):
            if bucket.min_days != expected:
                raise ValueError(f"dpd_buckets: {bucket.name!r} must start at DPD {expected} (contiguous from 1)")
            last = index == len(self.dpd_buckets) - 1
            if last != (bucket.max_days is None):
                raise ValueError("dpd_buckets: only the last bucket is open-ended (no max_days)")
            if bucket.max_days is not None:
                if bucket.max_days < bucket.min_days:
                    raise ValueError(f"dpd_buckets: {bucket.name!r} ends before it starts")
                expected = bucket.max_days + 1
        return self

    def bucket_of(self, days_past_due: int) -> str | None:
        """The bucket name of a loan ``days_past_due`` late, ``None`` when it is current (DPD 0)."""
        return next((b.name for b in self.dpd_buckets if b.holds(days_past_due)), None)


class ScoreBand(BaseModel):
    """A band of the propensity score: cases whose probability of cure is below ``below_bps``
    (and at or above the previous band's) get ``treatment``; the last band has no bound."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    name: str = Field(pattern=r"^[a-z][a-z0-9_]{0,19}$")
    below_bps: int | None = Field(default=None, ge=1, le=BPS, strict=True)
    treatment: str = STANDARD


class ScoringRules(BaseModel):
    """``[scoring]``: which model scores cases at opening (``None``: no scoring, every case
    runs ``standard``), and the bands in ascending order of probability."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    model: str | None = Field(default=None, pattern=r"^[A-Za-z0-9._-]{1,40}$")
    bands: tuple[ScoreBand, ...] = ()

    @model_validator(mode="after")
    def _ascending(self) -> ScoringRules:
        if self.model is not None and not self.bands:
            raise ValueError("bands: a model needs at least one band")
        bounds = [b.below_bps for b in self.bands]
        if bounds and bounds[-1] is not None:
            raise ValueError("bands: the last band takes every higher score (no below_bps)")
        if any(b is None for b in bounds[:-1]):
            raise ValueError("bands: every band but the last needs below_bps")
        inner = [b for b in bounds[:-1] if b is not None]
        if inner != sorted(set(inner)):
            raise ValueError("bands: below_bps must increase from band to band")
        names = [b.name for b in self.bands]
        if len(set(names)) != len(names):
            raise ValueError("bands: names must be unique")
        return self

    def band_of(self, probability_bps: int) -> ScoreBand:
        """The band of a probability of cure (basis points)."""
        for band in self.bands:
            if band.below_bps is None or probability_bps < band.below_bps:
                return band
        raise ValueError("bands: none defined")


class ExperimentArm(BaseModel):
    """One arm: a treatment and its share of the experiment's cases (basis points)."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    name: str = Field(pattern=r"^[a-z][a-z0-9_]{0,19}$")
    treatment: str
    share_bps: int = Field(ge=1, le=BPS, strict=True)


class Experiment(BaseModel):
    """A champion/challenger experiment (module docstring); the first arm is the champion."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    id: str = Field(pattern=r"^[A-Za-z0-9._-]{1,40}$")
    description: str = ""
    bands: tuple[str, ...] = ()
    starts_on: date | None = None
    ends_on: date | None = None
    arms: tuple[ExperimentArm, ...] = Field(min_length=2)

    @model_validator(mode="after")
    def _whole(self) -> Experiment:
        total = sum(a.share_bps for a in self.arms)
        if total != BPS:
            raise ValueError(f"arms: share_bps must add up to {BPS}, got {total}")
        names = [a.name for a in self.arms]
        if len(set(names)) != len(names) or NO_EXPERIMENT in names:
            raise ValueError(f"arms: names must be unique and not {NO_EXPERIMENT!r}")
        if self.starts_on and self.ends_on and self.ends_on < self.starts_on:
            raise ValueError("ends_on: before starts_on")
        return self

    def covers(self, band: str | None, on: date) -> bool:
        """Whether a case of ``band`` opened on local date ``on`` enters this experiment."""
        if self.bands and band not in self.bands:
            return False
        return (self.starts_on is None or on >= self.starts_on) and (self.ends_on is None or on <= self.ends_on)

    def arm_for(self, loan_id: str) -> ExperimentArm:
        """The arm of ``loan_id``: SHA-256 of ``<experiment id>:<loan id>`` taken modulo 10000 and
        placed on the arms' cumulative shares. Stable for a loan (every case of it, every worker)
        and independent between experiments."""
        digest = hashlib.sha256(f"{self.id}:{loan_id}".encode()).digest()
        slot = int.from_bytes(digest[:8], "big") % BPS
        cumulative = 0
        for arm in self.arms:
            cumulative += arm.share_bps
            if slot < cumulative:
                return arm
        return self.arms[-1]  # unreachable: the shares add up to BPS


class CaseStrategy(BaseModel):
    """What a case was assigned at opening: its score band and the model that scored it (both
    ``None`` without scoring), its treatment path, and its experiment and arm (``none`` outside
    any). Kept in the case's history and state: no features, no personal data."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    score_band: str | None = None
    model_version: str | None = None
    treatment: str = STANDARD
    experiment_id: str | None = None
    arm: str = NO_EXPERIMENT

    @property
    def strategy_arm(self) -> str:
        """The ``StrategyArm`` search attribute: ``<experiment id>:<arm>``, or ``none``."""
        return f"{self.experiment_id}:{self.arm}" if self.experiment_id else NO_EXPERIMENT


def assign(scoring: ScoringRules, experiments: tuple[Experiment, ...], *, loan_id: str,
           probability_bps: int | None, model_version: str | None, opened_on: date) -> CaseStrategy:
    """The strategy of a case of ``loan_id`` opened on local date ``opened_on`` with a propensity
    of ``probability_bps`` (``None``: not scored): its band's treatment, unless the first
    experiment that covers the band and date assigns an arm (``Experiment.arm_for``)."""
    band = scoring.band_of(probability_bps) if probability_bps is not None and scoring.bands else None
    treatment = band.treatment if band else STANDARD
    for experiment in experiments:
        if experiment.covers(band.name if band else None, opened_on):
            arm = experiment.arm_for(loan_id)
            return CaseStrategy(score_band=band.name if band else None, model_version=model_version,
                                treatment=arm.treatment, experiment_id=experiment.id, arm=arm.name)
    return CaseStrategy(score_band=band.name if band else None, model_version=model_version, treatment=treatment)
