"""The collections policy: the escalation ladder and its thresholds, as validated data.

A policy is a TOML file (``policies/default.toml`` ships with the package; ``COLLECTIONS_POLICY``
names another). ``load_policy`` validates it and raises ``PolicyError`` naming the key and the
rule that failed. The worker loads policies once at start; workflows receive the policy they run
through a local activity, so a running case keeps the policy version it started with.
"""

from __future__ import annotations

import hashlib
import tomllib
from datetime import time
from enum import StrEnum
from pathlib import Path
from typing import Literal

from babel.numbers import is_currency
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, field_validator, model_validator

from collections_domain.rules.strategy import STANDARD, Experiment, ReportingRules, ScoringRules

DEFAULT_POLICY_PATH = Path(__file__).parent / "policies" / "default.toml"


class Channel(StrEnum):
    """How an action reaches its target; also the delivery back-end's route name."""

    SMS = "sms"
    EMAIL = "email"
    AGENT_TASK = "agent_task"
    LETTER = "letter"
    AGENCY = "agency"
    LEGAL = "legal"


class ActionSpec(BaseModel):
    """What a ladder action does: its channel, message template and a label for operators."""

    model_config = ConfigDict(frozen=True)
    channel: Channel
    template: str
    label: str
    task_kind: str | None = None
    #: The medium by which the action reaches a person (``sms``, ``email``, ``call``, ``visit``,
    #: ``letter``), or ``None`` when it is not a communication with the borrower (placement,
    #: legal referral, manual review). The compliance gate rules by medium.
    medium: str | None = None


#: Every action a policy may name. ``manual_review`` is the fallback when a delivery fails for good.
ACTIONS: dict[str, ActionSpec] = {
    "sms_reminder": ActionSpec(channel=Channel.SMS, template="sms_reminder", label="SMS reminder", medium="sms"),
    "email_overdue_notice": ActionSpec(
        channel=Channel.EMAIL, template="email_overdue_notice", label="email with overdue details", medium="email"
    ),
    "agent_call": ActionSpec(
        channel=Channel.AGENT_TASK, template="agent_call", label="agent phone call", task_kind="call", medium="call"
    ),
    "field_visit": ActionSpec(
        channel=Channel.AGENT_TASK, template="field_visit", label="field visit", task_kind="visit", medium="visit"
    ),
    "demand_letter": ActionSpec(
        channel=Channel.LETTER, template="demand_letter", label="demand letter", medium="letter"
    ),
    # Added by the compliance gate, not named in ladders (collections_domain/rules/compliance.py):
    "validation_notice": ActionSpec(
        channel=Channel.LETTER, template="validation_notice", label="validation notice", medium="letter"
    ),
    "attorney_notice": ActionSpec(
        channel=Channel.LETTER, template="attorney_notice", label="letter to the borrower's attorney", medium="letter"
    ),
    "agency_placement": ActionSpec(
        channel=Channel.AGENCY, template="agency_placement", label="placement with agency"
    ),
    "legal_referral": ActionSpec(channel=Channel.LEGAL, template="legal_referral", label="legal referral"),
    "manual_review": ActionSpec(
        channel=Channel.AGENT_TASK, template="manual_review", label="manual review", task_kind="manual_review"
    ),
}


class PolicyError(ValueError):
    """A policy file is missing, is not TOML, or breaks a rule; the message names the key."""


def _parse_hhmm(value: str) -> time:
    try:
        hours, minutes = value.split(":")
        if len(hours) != 2 or len(minutes) != 2:
            raise ValueError
        return time(int(hours), int(minutes))
    except ValueError as err:
        raise ValueError(f"must be a local time HH:MM, got {value!r}") from err


class ContactWindow(BaseModel):
    """Local hours in which the workflow may contact the borrower (``opens`` <= t < ``closes``)."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    opens: str = "09:00"
    closes: str = "21:00"

    @field_validator("opens", "closes")
    @classmethod
    def _valid_hhmm(cls, value: str) -> str:
        _parse_hhmm(value)
        return value

    @model_validator(mode="after")
    def _opens_before_closes(self) -> ContactWindow:
        if self.opens_at >= self.closes_at:
            raise ValueError("opens must be earlier than closes")
        return self

    @property
    def opens_at(self) -> time:
        """Opening as a ``time``."""
        return _parse_hhmm(self.opens)

    @property
    def closes_at(self) -> time:
        """Closing as a ``time``."""
        return _parse_hhmm(self.closes)


class PromiseRules(BaseModel):
    """Promise-to-pay rules: grace days after the promised date, horizon, broken-promise cap, and
    how long after its deadline a promise waits for payments reported late (``late_report_minutes``:
    money paid by the deadline but reported after it still keeps the promise)."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    grace_days: int = Field(2, ge=0, le=30)
    horizon_days: int = Field(30, ge=1, le=365)
    max_broken: int = Field(2, ge=0, le=100)
    late_report_minutes: int = Field(0, ge=0, le=7 * 24 * 60)


class PaymentRules(BaseModel):
    """How payments enter a case's ledger: as of their ``paid_at``, at most ``max_backdate_days``
    before they reach the case (an older ``paid_at`` is applied as of that bound, and the
    status says so)."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    max_backdate_days: int = Field(30, ge=0, le=3650)


class IdentificationRules(BaseModel):
    """Overdue identification by the delinquency scan (``portfolio.scan``): a loan gets a case once
    an instalment is unpaid ``grace_days`` full local days after its due date, and its overdue
    amount is at least the currency's ``identification_minimum_minor``."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    grace_days: int = Field(0, ge=0, le=60)


#: A loan's money by kind (``case.ledger``): what payments pay, in the order a waterfall names them.
LedgerComponent = Literal["principal", "interest", "fees", "penalty"]
LEDGER_COMPONENTS = ("principal", "interest", "fees", "penalty")


class AccrualRules(BaseModel):
    """What a loan accrues while overdue in one jurisdiction (policy table ``[accrual.<CODE>]``),
    computed in closed form by ``case.ledger`` (no daily timers).

    - ``penalty_rate_bps``: penalty interest a year on overdue principal, in basis points
      (1800 = 18 %), on a ``day_count_basis``-day year, from the day after
      ``due_date + penalty_grace_days``.
    - A late fee once per instalment still unpaid ``late_fee_after_days`` full days after its due
      date: the lesser of ``late_fee_minor[currency]`` and ``late_fee_bps`` of the instalment
      (either may be absent; ``late_fee_after_days`` unset: no late fee).
    - ``max_charges_bps_per_year``: penalty and late fees on an instalment together never exceed
      this share of its principal a year, over its days past due (the legal cap; unset: none).

    The policy file names the source of each number.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")
    penalty_rate_bps: int = Field(0, ge=0, le=100_000)
    penalty_grace_days: int = Field(0, ge=0, le=365)
    late_fee_minor: dict[str, int] = {}
    late_fee_bps: int = Field(0, ge=0, le=10_000)
    late_fee_after_days: int | None = Field(None, ge=0, le=365)
    max_charges_bps_per_year: int | None = Field(None, ge=0, le=100_000)
    day_count_basis: Literal[360, 365] = 365

    @field_validator("late_fee_minor")
    @classmethod
    def _fees(cls, value: dict[str, int]) -> dict[str, int]:
        bad = {code: fee for code, fee in value.items() if not (0 <= fee <= 10**12)}
        if bad:
            raise ValueError(f"late fees must be 0 to 10^12 minor units, got {bad}")
        return value


class PortfolioRules(BaseModel):
    """Settings of one portfolio of loans (policy table ``[portfolios.<id>]``): ``accrual = false``
    switches accrual off (a portfolio replayed from a file that records what was due)."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    accrual: bool = True


class DeliveryRules(BaseModel):
    """What happens when a delivery fails for good (policy table ``[delivery]``).

    ``when_window_closes``: a provider still failing when the permitted contact hours close (the
    contact's ``send_by``) gets ``fallback_action`` (``"fallback"``, the default), or
    (``"next_window"``) the step is taken again at the next lawful window, where the compliance
    gate decides afresh and what was sent is not sent again, at most ``max_windows`` windows in
    all, after which the fallback runs.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")
    fallback_action: str = "manual_review"
    when_window_closes: Literal["fallback", "next_window"] = "fallback"
    max_windows: int = Field(3, ge=1, le=14)

    @field_validator("fallback_action")
    @classmethod
    def _known_action(cls, value: str) -> str:
        if value not in ACTIONS:
            raise ValueError(f"unknown action {value!r}; known: {', '.join(sorted(ACTIONS))}")
        return value


class PlanRules(BaseModel):
    """Limits on negotiated repayment plans (``propose_plan``). Shares are in basis points
    (1/100 of a percent: 1000 = 10 %), so no float ever touches money."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    max_instalments: int = Field(12, ge=2, le=120)
    max_term_days: int = Field(365, ge=1, le=3650)
    min_first_payment_bps: int = Field(1000, ge=0, le=10000)
    instalment_grace_days: int = Field(3, ge=0, le=30)
    max_deferral_days: int = Field(60, ge=1, le=365)
    max_waiver_bps: int = Field(5000, ge=0, le=10000)
    auto_approve_waiver_bps: int = Field(2000, ge=0, le=10000)
    waiver_pay_within_days: int = Field(14, ge=1, le=365)
    #: A plan child workflow continues as new after this many instalments (bounded history).
    instalments_per_run: int = Field(24, ge=1, le=1000)

    @model_validator(mode="after")
    def _auto_within_max(self) -> PlanRules:
        if self.auto_approve_waiver_bps > self.max_waiver_bps:
            raise ValueError("auto_approve_waiver_bps must be <= max_waiver_bps")
        if self.waiver_pay_within_days > self.max_deferral_days:
            raise ValueError("waiver_pay_within_days must be <= max_deferral_days (a waiver's pay_by limit)")
        return self


class ContactOutcomeRules(BaseModel):
    """How long agents have to report an agent task's outcome (``record_contact_outcome``)."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    call_report_hours: int = Field(48, ge=1, le=24 * 30)
    visit_report_hours: int = Field(120, ge=1, le=24 * 60)


class PauseRules(BaseModel):
    """Pauses and stops: the hardship pause, and what may still be sent after ``cease_contact``."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    hardship_days: int = Field(30, ge=1, le=365)
    #: Actions still taken after a cease-contact request, by jurisdiction (``*``: any other).
    #: The defaults keep the formal written notice of an intended remedy where the law lets it
    #: through (US: Regulation F, 12 CFR 1006.6(c)(2); UK: notices the Consumer Credit Act 1974
    #: requires, such as the default notice of s.87) and the hand-off to the legal team, which is
    #: not a communication with the borrower.
    after_cease_contact: dict[str, tuple[str, ...]] = {
        "US": ("demand_letter", "legal_referral"),
        "UK": ("demand_letter", "legal_referral"),
        "*": ("legal_referral",),
    }

    @field_validator("after_cease_contact", mode="before")
    @classmethod
    def _one_list_for_all(cls, value: object) -> object:
        # A single list (the shape before jurisdictions) applies everywhere; states saved with it
        # in running cases' histories still decode.
        return {"*": value} if isinstance(value, (list, tuple)) else value

    @field_validator("after_cease_contact")
    @classmethod
    def _known(cls, value: dict[str, tuple[str, ...]]) -> dict[str, tuple[str, ...]]:
        unknown = sorted({a for actions in value.values() for a in actions if a not in ACTIONS})
        if unknown:
            raise ValueError(f"unknown action(s) {unknown}; known: {', '.join(sorted(ACTIONS))}")
        if "*" not in value:
            raise ValueError("needs a '*' entry for the jurisdictions not listed")
        return value

    def permitted_after_cease(self, jurisdiction: str) -> tuple[str, ...]:
        """The actions still taken after ``cease_contact`` in ``jurisdiction``."""
        return self.after_cease_contact.get(jurisdiction, self.after_cease_contact["*"])


class PlacementRules(BaseModel):
    """Agency placements: how long a placement runs before it is recalled for review."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    term_days: int = Field(90, ge=1, le=3650)


class WriteOffRules(BaseModel):
    """Write-off: at ``days_past_due`` and with no payment for ``no_payment_days``, the case ends
    as ``written_off`` (the charge-off convention of 180 days, FFIEC Uniform Retail Credit
    Classification policy; the numbers are the lender's to set)."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    days_past_due: int = Field(180, ge=1, le=3650)
    no_payment_days: int = Field(90, ge=0, le=3650)


Medium = Literal["sms", "email", "call", "visit", "letter"]

#: The jurisdictions the product supports; a policy file needs ``[compliance.<CODE>]`` for each.
SUPPORTED_JURISDICTIONS = ("CN", "US", "UK")


class ComplianceRules(BaseModel):
    """One jurisdiction's contact rules (policy table ``[compliance.<CODE>]``), which the gate
    (``collections_domain.rules.compliance``) applies before every contact. The policy file names the
    source of each number; ``None`` switches a rule off.

    Hours are local wall-clock hours at the borrower's location (``opens`` <= t < ``closes``);
    counts are per local day (CN) or per rolling 7 x 24 hours (US).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")
    contact_hours: ContactWindow = ContactWindow(opens="08:00", closes="21:00")
    #: Media that may only be used inside ``contact_hours`` (letters are not sent "at" an hour).
    hour_restricted_media: tuple[Medium, ...] = ("sms", "email", "call", "visit")
    #: Check the hours in every time zone the borrower may be in (the case's and the profile's).
    all_plausible_time_zones: bool = False
    #: Narrow the hours to the borrower's stated preferred hours.
    honour_preferred_hours: bool = True
    #: Use only the borrower's preferred media when they named any.
    honour_preferred_channels: bool = False
    #: A stored borrower agreement may widen ``contact_hours``.
    agreement_may_widen_hours: bool = False
    #: A borrower represented by an attorney is reached only through the attorney.
    attorney_only: bool = True
    #: SMS needs the borrower's recorded consent.
    sms_needs_consent: bool = False
    max_connected_calls_per_day: int | None = Field(None, ge=0, le=100)
    max_unanswered_calls_per_number_per_day: int | None = Field(None, ge=0, le=100)
    max_call_attempts_per_7_days: int | None = Field(None, ge=0, le=100)
    no_calls_days_after_conversation: int | None = Field(None, ge=0, le=60)
    #: A field visit needs this many collectors.
    visit_collectors: int | None = Field(None, ge=1, le=10)
    #: Send a validation notice with the first communication (within ``validation_notice_within_days``).
    validation_notice: bool = False
    validation_notice_within_days: int = Field(5, ge=0, le=60)
    #: Days after ``oldest_due_date`` after which the debt is time-barred and the legal step is off.
    legal_time_bar_days: int | None = Field(None, ge=1, le=36500)
    #: The legal step waits until this many full days after the default notice (a demand letter).
    legal_after_default_notice_days: int | None = Field(None, ge=0, le=365)
    #: No legal step while the borrower's complaint is with the ombudsman.
    legal_blocked_by_ombudsman_complaint: bool = False
    #: Signal ``breathing_space`` pauses the ladder this many days (``None``: not available here).
    breathing_space_days: int | None = Field(None, ge=1, le=365)
    #: When an action's medium is not permitted, the alternatives tried in order.
    reroute: dict[str, tuple[str, ...]] = {}

    @field_validator("reroute")
    @classmethod
    def _known_alternatives(cls, value: dict[str, tuple[str, ...]]) -> dict[str, tuple[str, ...]]:
        named = set(value) | {a for alternatives in value.values() for a in alternatives}
        unknown = sorted(a for a in named if a not in ACTIONS)
        if unknown:
            raise ValueError(f"unknown action(s) {unknown}; known: {', '.join(sorted(ACTIONS))}")
        not_contacts = sorted(a for a in named if ACTIONS[a].medium is None)
        if not_contacts:
            raise ValueError(f"only communications can be rerouted, not {not_contacts}")
        return value


class CurrencyThresholds(BaseModel):
    """Money thresholds for one currency, in that currency's minor units: below
    ``minimum_overdue_minor`` reminders only; at or above ``legal_threshold_minor`` the legal
    track; the delinquency scan opens a case from ``identification_minimum_minor`` overdue."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    minimum_overdue_minor: int = Field(ge=0)
    legal_threshold_minor: int = Field(gt=0)
    identification_minimum_minor: int = Field(1, ge=1)

    @model_validator(mode="after")
    def _ordered(self) -> CurrencyThresholds:
        if self.legal_threshold_minor < self.minimum_overdue_minor:
            raise ValueError("legal_threshold_minor must be >= minimum_overdue_minor")
        return self


OutstandingCondition = Literal["any", "at_or_above_legal_threshold", "below_legal_threshold"]


class LadderStep(BaseModel):
    """One rung of the ladder: at ``days_past_due``, run ``actions`` if the conditions hold."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    name: str = Field(pattern=r"^[a-z][a-z0-9_]{0,31}$")
    days_past_due: int = Field(ge=1, le=3650)
    actions: tuple[str, ...] = Field(min_length=1)
    outstanding: OutstandingCondition = "any"
    applies_below_minimum: bool = False
    #: After a payment moves DPD back down (the ladder re-anchors on the next unpaid instalment),
    #: whether this step is taken again when DPD reaches it, or skipped as done in this episode.
    repeat_after_reanchor: bool = True

    @field_validator("actions")
    @classmethod
    def _known_actions(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        unknown = [a for a in value if a not in ACTIONS]
        if unknown:
            raise ValueError(f"unknown action(s) {unknown}; known: {', '.join(sorted(ACTIONS))}")
        if len(set(value)) != len(value):
            raise ValueError("an action may appear once per step")
        return value

    def applies_to(self, outstanding_minor: int, thresholds: CurrencyThresholds) -> bool:
        """Whether this step runs for a case with ``outstanding_minor`` overdue (minor units)."""
        if outstanding_minor <= 0:
            return False
        if outstanding_minor < thresholds.minimum_overdue_minor and not self.applies_below_minimum:
            return False
        if self.outstanding == "at_or_above_legal_threshold":
            return outstanding_minor >= thresholds.legal_threshold_minor
        if self.outstanding == "below_legal_threshold":
            return outstanding_minor < thresholds.legal_threshold_minor
        return True


def ladder_problem(steps: tuple[LadderStep, ...]) -> str | None:
    """What makes ``steps`` an incoherent ladder (repeated names, the reserved ``identified``, two
    steps on one day without exclusive outstanding conditions), or ``None``."""
    names = [s.name for s in steps]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        return f"names must be unique, repeated: {duplicates}"
    if "identified" in names:
        return "'identified' is reserved for the stage before the first step"
    by_day: dict[int, list[LadderStep]] = {}
    for step in steps:
        by_day.setdefault(step.days_past_due, []).append(step)
    for day, group in by_day.items():
        conditions = [s.outstanding for s in group]
        exclusive = len(group) == 1 or sorted(conditions) == ["at_or_above_legal_threshold", "below_legal_threshold"]
        if not exclusive:
            return (f"at days_past_due {day} the steps {[s.name for s in group]} overlap; two steps on one day "
                    "need outstanding conditions 'at_or_above_legal_threshold' and 'below_legal_threshold'")
    return None


class Treatment(BaseModel):
    """``[treatments.<name>]``: a ladder variant a score band or an experiment's arm runs
    (``rules.strategy``), with the shape and rules of ``[[steps]]``."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    description: str = ""
    steps: tuple[LadderStep, ...] = Field(min_length=1)

    @field_validator("steps")
    @classmethod
    def _sorted_by_days(cls, value: tuple[LadderStep, ...]) -> tuple[LadderStep, ...]:
        return tuple(sorted(value, key=lambda s: s.days_past_due))


class CollectionPolicy(BaseModel):
    """A whole policy file. Steps are kept sorted by ``days_past_due``. ``digest`` is the SHA-256
    of the file's text (``parse_policy``): cases record it with the version, so a file changed
    without a new version is caught instead of changing running cases."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    _digest: str = PrivateAttr(default="")
    version: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._-]+$")
    contact_window: ContactWindow = ContactWindow()
    promises: PromiseRules = PromiseRules()
    delivery: DeliveryRules = DeliveryRules()
    plans: PlanRules = PlanRules()
    contact_outcomes: ContactOutcomeRules = ContactOutcomeRules()
    pauses: PauseRules = PauseRules()
    placement: PlacementRules = PlacementRules()
    write_off: WriteOffRules = WriteOffRules()
    #: Contact rules by jurisdiction (policies saved before the compliance gate have none).
    compliance: dict[str, ComplianceRules] = {}
    payments: PaymentRules = PaymentRules()
    identification: IdentificationRules = IdentificationRules()
    #: Allocation waterfalls by jurisdiction (``*``: any other): buckets of components, each
    #: paid oldest instalment first (``case.ledger``).
    waterfall: dict[str, tuple[tuple[LedgerComponent, ...], ...]] = {"*": (("penalty", "fees", "interest", "principal"),)}
    #: Accrual by jurisdiction (none listed: nothing accrues).
    accrual: dict[str, AccrualRules] = {}
    portfolios: dict[str, PortfolioRules] = {}
    currencies: dict[str, CurrencyThresholds] = Field(min_length=1)
    steps: tuple[LadderStep, ...] = Field(min_length=1)
    #: Roll-rate buckets (``rules.strategy``; policies before issue 13 take the defaults).
    reporting: ReportingRules = ReportingRules()
    #: What one action costs, by currency then action, in minor units (KPIs' cost per cure).
    unit_costs: dict[str, dict[str, int]] = {}
    #: The propensity model and its bands, the ladder variants, the experiments (``rules.strategy``).
    scoring: ScoringRules = ScoringRules()
    treatments: dict[str, Treatment] = {}
    experiments: tuple[Experiment, ...] = ()
    _variants: dict[str, CollectionPolicy] = PrivateAttr(default_factory=dict)

    @field_validator("steps")
    @classmethod
    def _sorted_by_days(cls, value: tuple[LadderStep, ...]) -> tuple[LadderStep, ...]:
        return tuple(sorted(value, key=lambda s: s.days_past_due))

    @model_validator(mode="after")
    def _coherent_ladder(self) -> CollectionPolicy:
        problem = ladder_problem(self.steps)
        if problem:
            raise ValueError(f"steps: {problem}")
        for name, treatment in self.treatments.items():
            problem = ladder_problem(treatment.steps)
            if problem:
                raise ValueError(f"treatments.{name}.steps: {problem}")
        return self

    @model_validator(mode="after")
    def _known_strategy(self) -> CollectionPolicy:
        known = {STANDARD, *self.treatments}
        if STANDARD in self.treatments:
            raise ValueError(f"treatments: {STANDARD!r} is the file's own [[steps]]; give the variant another name")
        for band in self.scoring.bands:
            if band.treatment not in known:
                raise ValueError(f"scoring.bands: band {band.name!r} names unknown treatment {band.treatment!r}; known: {sorted(known)}")
        ids = [e.id for e in self.experiments]
        if len(set(ids)) != len(ids):
            raise ValueError("experiments: ids must be unique")
        bands = {b.name for b in self.scoring.bands}
        for experiment in self.experiments:
            for arm in experiment.arms:
                if arm.treatment not in known:
                    raise ValueError(f"experiments.{experiment.id}: arm {arm.name!r} names unknown treatment "
                                     f"{arm.treatment!r}; known: {sorted(known)}")
            unknown = sorted(set(experiment.bands) - bands)
            if unknown:
                raise ValueError(f"experiments.{experiment.id}: unknown band(s) {unknown}; known: {sorted(bands)}")
        for currency, costs in self.unit_costs.items():
            unknown = sorted(set(costs) - set(ACTIONS))
            if unknown:
                raise ValueError(f"unit_costs.{currency}: unknown action(s) {unknown}")
        return self

    def for_treatment(self, treatment: str | None) -> CollectionPolicy:
        """This policy with the ladder of ``treatment`` (``None`` or ``standard``: its own
        ``[[steps]]``); same version and digest, since the treatment is part of the file.

        Raises:
            KeyError: the policy has no such treatment.
        """
        if treatment is None or treatment == STANDARD:
            return self
        cached = self._variants.get(treatment)
        if cached is None:
            cached = self.model_copy(update={"steps": self.treatments[treatment].steps})
            cached._digest = self._digest
            cached._variants = {}
            self._variants[treatment] = cached
        return cached

    @field_validator("waterfall")
    @classmethod
    def _whole_waterfalls(cls, value: dict[str, tuple[tuple[str, ...], ...]]) -> dict[str, tuple[tuple[str, ...], ...]]:
        if "*" not in value:
            raise ValueError("needs a '*' entry for the jurisdictions not listed")
        for code, buckets in value.items():
            named = [component for bucket in buckets for component in bucket]
            if sorted(named) != sorted(LEDGER_COMPONENTS):
                raise ValueError(
                    f"{code}: the buckets must name each of {', '.join(LEDGER_COMPONENTS)} exactly once, got {named}"
                )
        return value

    def waterfall_for(self, jurisdiction: str) -> tuple[tuple[str, ...], ...]:
        """The allocation buckets of ``jurisdiction`` (policy ``waterfall``)."""
        return self.waterfall.get(jurisdiction, self.waterfall["*"])

    def accrual_for(self, jurisdiction: str, portfolio: str | None) -> AccrualRules | None:
        """The accrual rules of ``jurisdiction``, or ``None`` when nothing accrues there or the
        ``portfolio`` has accrual switched off (policy ``portfolios.<id>.accrual``)."""
        if portfolio is not None and portfolio in self.portfolios and not self.portfolios[portfolio].accrual:
            return None
        return self.accrual.get(jurisdiction)

    @property
    def digest(self) -> str:
        """SHA-256 (hex) of the policy file's text; empty for a policy built in code."""
        return self._digest

    def compliance_rules(self, jurisdiction: str) -> ComplianceRules:
        """The contact rules of ``jurisdiction``; raises ``KeyError`` when the policy has none."""
        return self.compliance[jurisdiction]

    def thresholds(self, currency: str) -> CurrencyThresholds:
        """Thresholds for ``currency``; raises ``KeyError`` when the policy has none."""
        return self.currencies[currency]


def _format_errors(err: ValidationError) -> str:
    parts = []
    for item in err.errors():
        loc = ".".join(str(p) for p in item["loc"]) or "(file)"
        parts.append(f"{loc}: {item['msg'].removeprefix('Value error, ')}")
    return "; ".join(parts)


def parse_policy(text: str, source: str = "<string>") -> CollectionPolicy:
    """Parse and validate policy TOML ``text``.

    Raises:
        PolicyError: not TOML, or a key breaks a rule; the message names ``source`` and the key.
    """
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise PolicyError(f"{source}: not valid TOML: {err}") from err
    try:
        policy = CollectionPolicy.model_validate(raw)
    except ValidationError as err:
        raise PolicyError(f"{source}: {_format_errors(err)}") from err
    # Checked here, not in the model: the model is also decoded inside workflows.
    not_iso = [code for code in policy.currencies if not is_currency(code)]
    if not_iso:
        raise PolicyError(f"{source}: currencies: not ISO 4217 currency codes: {not_iso}")
    missing = [code for code in SUPPORTED_JURISDICTIONS if code not in policy.compliance]
    if missing:
        raise PolicyError(f"{source}: compliance: needs a [compliance.<CODE>] table for {missing}")
    unknown = sorted(set(policy.compliance) - set(SUPPORTED_JURISDICTIONS))
    if unknown:
        raise PolicyError(
            f"{source}: compliance: unknown jurisdiction(s) {unknown}; known: {', '.join(SUPPORTED_JURISDICTIONS)}"
        )
    policy._digest = hashlib.sha256(text.encode("utf-8")).hexdigest()
    return policy


def load_policy(path: Path | str) -> CollectionPolicy:
    """Read and validate the policy file at ``path``.

    Raises:
        PolicyError: the file is missing or unreadable, or its content is invalid.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as err:
        raise PolicyError(f"{path}: cannot read policy file: {err.strerror or err}") from err
    return parse_policy(text, str(path))


class PolicyMismatch(RuntimeError):
    """A case runs a policy version whose file this process has with other content (or not at
    all). Raised inside workflow code, it fails the workflow task, which Temporal retries until a
    worker with the case's policy takes it: running cases never change policy silently."""


class PolicyRegistry:
    """The policies a worker knows: the current default plus every packaged one, by version.

    Raises:
        PolicyError: two files give the same version with different content.
    """

    def __init__(self, current: CollectionPolicy, others: list[CollectionPolicy] | None = None):
        self.current = current
        self._by_version: dict[str, CollectionPolicy] = {}
        for policy in [*(others or []), current]:
            known = self._by_version.get(policy.version)
            if known is not None and known.digest != policy.digest:
                raise PolicyError(
                    f"version: two policy files name version {policy.version!r} with different content; "
                    "a changed policy needs a new version (running cases keep the one they started with)"
                )
            self._by_version[policy.version] = policy

    def checked(self, version: str, digest: str) -> CollectionPolicy:
        """The policy ``version`` whose file has SHA-256 ``digest`` (what a running case recorded).

        Raises:
            PolicyMismatch: unknown here, or known with other content.
        """
        policy = self._by_version.get(version)
        if policy is None:
            raise PolicyMismatch(f"policy {version!r} is not known to this worker; known: {', '.join(self.versions)}")
        if digest and policy.digest and policy.digest != digest:
            raise PolicyMismatch(
                f"policy {version!r} here has digest {policy.digest[:12]}, the case ran {digest[:12]}: "
                "the file changed without a new version"
            )
        return policy

    @classmethod
    def from_settings(cls, policy_path: str | None) -> PolicyRegistry:
        """The packaged policies, with ``policy_path`` (``COLLECTIONS_POLICY``) as the default."""
        packaged = [load_policy(p) for p in sorted(DEFAULT_POLICY_PATH.parent.glob("*.toml"))]
        current = load_policy(policy_path) if policy_path else load_policy(DEFAULT_POLICY_PATH)
        return cls(current, packaged)

    def get(self, version: str | None) -> CollectionPolicy:
        """The policy ``version`` (``None``: the current default); ``KeyError`` when unknown."""
        if version is None:
            return self.current
        return self._by_version[version]

    @property
    def versions(self) -> list[str]:
        """Known versions, sorted."""
        return sorted(self._by_version)


_WORKER_POLICIES: list[PolicyRegistry] = []


def set_worker_policies(registry: PolicyRegistry) -> None:
    """Make ``registry`` the policies workflow code of this process reads (``worker_policy``);
    the worker sets it when it is built, a replayer before it replays."""
    _WORKER_POLICIES[:] = [registry]


def worker_policy(version: str, digest: str, treatment: str | None = None) -> CollectionPolicy:
    """The policy a running case recorded, from this process's registry (``set_worker_policies``),
    with the ladder of the case's ``treatment`` (``CollectionPolicy.for_treatment``).

    Workflows read it here instead of carrying it in their history (it is several KB), which is
    deterministic because a version's file may not change (``PolicyRegistry.checked``).

    Raises:
        PolicyMismatch: no registry was set, or it lacks the case's policy.
    """
    if not _WORKER_POLICIES:
        raise PolicyMismatch("no policies are configured in this process (set_worker_policies)")
    policy = _WORKER_POLICIES[0].checked(version, digest)
    try:
        return policy.for_treatment(treatment)
    except KeyError:
        raise PolicyMismatch(f"policy {version!r} has no treatment {treatment!r}") from None
