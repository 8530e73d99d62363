"""The compliance gate: whether each contact of a ladder step is lawful now, by jurisdiction.

Pure and deterministic (no I/O, no clock): the workflow calls ``decide_step`` with the policy's
``[compliance.<CODE>]`` rules (``ComplianceRules``), the case's facts, the borrower's contact
profile (loaded from the database by an activity) and ``now`` (``workflow.now()``), and records
every answer. The answer for each action is one of:

- ``allowed``: run it (with ``requirements``, e.g. two collectors for a CN field visit);
- ``rerouted``: a cap, an opt-out, a missing consent or an attorney moves it to another action
  (``run_action``), the first of the policy's ``reroute`` alternatives that is itself allowed;
- ``skipped``: nothing lawful is left for it (a cease request, a time-barred debt...);
- ``deferred``: only because of the hour (or a notice period), for the whole step, until
  ``deferred_until``; the workflow sleeps on a durable timer and asks again.

Each answer names its rule (``rule_id``, ``<CODE>.<rule>`` or ``cease_contact``) and the reason.
Sources of the numbers: the comments of ``policies/default.toml``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Literal

from pydantic import BaseModel, ConfigDict, field_validator

from collections_domain.rules import calendar
from collections_domain.rules.policy import ACTIONS, ComplianceRules, Medium, _parse_hhmm

Decision = Literal["allowed", "deferred", "rerouted", "skipped"]
MEDIA: tuple[str, ...] = ("sms", "email", "call", "visit", "letter")
#: The action that writes to the borrower's attorney instead of the borrower.
ATTORNEY_ACTION = "attorney_notice"
#: The US validation notice (12 CFR 1006.34), added to the first step that communicates.
VALIDATION_ACTION = "validation_notice"
#: The step action that counts as the default notice before legal action (UK, CCA 1974 s.87).
DEFAULT_NOTICE_ACTION = "demand_letter"
#: Agent-task outcomes in which the agent spoke with the borrower (a "connected" call).
CONNECTED_OUTCOMES = ("reached", "refused", "promise_made", "dispute_raised")
#: How far back the profile's call log must reach for the caps (7 x 24 h, plus a local day).
CALL_LOOKBACK = timedelta(days=8)


def _hhmm(value: str | None) -> str | None:
    if value is not None:
        _parse_hhmm(value)
    return value


class ContactPreferences(BaseModel):
    """A borrower's stated preferences and consents (table ``contact_preferences``). Ids and
    flags only: no names, numbers or addresses.

    Hours are local ``HH:MM`` strings; ``opted_out_media`` and ``preferred_media`` are media
    (``sms``, ``email``, ``call``, ``visit``, ``letter``); ``extra_time_zones`` are IANA names of
    other places the borrower may be (US: every plausible zone is checked).
    """

    model_config = ConfigDict(frozen=True)
    preferred_opens: str | None = None
    preferred_closes: str | None = None
    agreed_opens: str | None = None
    agreed_closes: str | None = None
    opted_out_media: tuple[Medium, ...] = ()
    preferred_media: tuple[Medium, ...] = ()
    sms_consent: bool = False
    attorney_id: str | None = None
    extra_time_zones: tuple[str, ...] = ()
    ombudsman_complaint_open: bool = False

    @field_validator("preferred_opens", "preferred_closes", "agreed_opens", "agreed_closes")
    @classmethod
    def _local_hhmm(cls, value: str | None) -> str | None:
        return _hhmm(value)

    @field_validator("extra_time_zones")
    @classmethod
    def _known_zones(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for name in value:
            calendar.zone(name)
        return value


class CallAttempt(BaseModel):
    """One phone call attempt to the borrower by anyone (agents, agencies, the dialer), or an agent
    call task the product created that has no logged attempt yet (``planned``)."""

    model_config = ConfigDict(frozen=True)
    at: datetime
    loan_id: str
    connected: bool = False
    phone_number_id: str | None = None
    planned: bool = False


class ContactProfile(BaseModel):
    """What the gate needs from the database about a borrower at ``as_of`` (UTC): preferences
    and the call log of every loan of theirs over ``CALL_LOOKBACK``."""

    borrower_id: str
    as_of: datetime
    preferences: ContactPreferences = ContactPreferences()
    call_attempts: list[CallAttempt] = []
    #: Not for the gate: the task queue of each rate-limited channel on the worker that loaded
    #: the profile (``CONTACT_RATE_LIMITS``). Kept with the profile in the history, so a step's
    #: contacts replay on the queues they ran on even after the setting changed.
    task_queues: dict[str, str] = {}


class CaseFacts(BaseModel):
    """The case's own facts the rules need (from the workflow's state)."""

    jurisdiction: str
    timezone: str
    loan_id: str
    oldest_due_date: date
    cease_contact: bool = False
    permitted_after_cease: tuple[str, ...] = ()
    #: When the last default notice (a demand letter) was sent, if ever.
    default_notice_at: datetime | None = None
    validation_notice_sent: bool = False


class ContactDecision(BaseModel):
    """The gate's answer for one action of a step (recorded in ``contact_decisions`` and in the
    case status). ``run_action`` is what runs (``None`` when skipped or deferred);
    ``send_by`` is the instant the contact window closes (the send activity refuses after it)."""

    step: str
    action: str
    decision: Decision
    rule_id: str
    reason: str
    decided_at: datetime
    days_past_due: int = 0
    run_action: str | None = None
    deferred_until: datetime | None = None
    send_by: datetime | None = None
    requirements: list[str] = []
    #: The step is to be taken again later (a UK legal step that first sent the default notice).
    repeat_step: bool = False


class StepDecision(BaseModel):
    """The gate's answer for a whole step: ``deferred_until`` set means wait (the ``decisions``
    then are the deferred ones); otherwise one decision per action (plus any notice it adds)."""

    decisions: list[ContactDecision]
    deferred_until: datetime | None = None


# -- hours ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Hours:
    """The local hours contact may happen (``opens`` <= t < ``closes``), in every zone of ``zones``,
    and the rule that set them. ``opens is None``: no hour is permitted at all."""

    opens: time | None
    closes: time | None
    zones: tuple[str, ...]
    rule_id: str
    source: str

    def open_at(self, instant: datetime) -> bool:
        """Whether contact is permitted at ``instant`` in every zone."""
        if self.opens is None or self.closes is None:
            return False
        return all(self.opens <= calendar.local_wall_time(instant, z) < self.closes for z in self.zones)

    def next_opening(self, now: datetime) -> datetime | None:
        """The first instant at or after ``now`` when contact is permitted in every zone, or
        ``None`` if there is none in the next three days (the zones' windows never overlap)."""
        if self.opens is None:
            return None
        if self.open_at(now):
            return now
        candidates = []
        for z in self.zones:
            today = calendar.local_date(now, z)
            for offset in range(-1, 4):
                candidate = calendar.local_instant(today + timedelta(days=offset), self.opens, z)
                if candidate > now:
                    candidates.append(candidate)
        for candidate in sorted(candidates):
            if self.open_at(candidate):
                return candidate
        return None

    def closes_after(self, now: datetime) -> datetime | None:
        """The first instant after ``now`` (inside the window) when some zone's window closes."""
        if self.closes is None:
            return None
        ends = []
        for z in self.zones:
            today = calendar.local_date(now, z)
            for offset in range(0, 2):
                end = calendar.local_instant(today + timedelta(days=offset), self.closes, z)
                if end > now:
                    ends.append(end)
        return min(ends) if ends else None


def contact_hours(rules: ComplianceRules, facts: CaseFacts, prefs: ContactPreferences) -> Hours:
    """The hours contact is permitted for this borrower: the jurisdiction's ``contact_hours``,
    widened by a stored agreement where ``agreement_may_widen_hours`` (CN), narrowed to the
    borrower's preferred hours where ``honour_preferred_hours``, checked in the case's zone and,
    where ``all_plausible_time_zones`` (US), in the profile's other zones too."""
    code = facts.jurisdiction
    opens, closes = rules.contact_hours.opens_at, rules.contact_hours.closes_at
    rule_id, source = f"{code}.contact_hours", f"policy compliance.{code}.contact_hours"
    if rules.agreement_may_widen_hours and prefs.agreed_opens and prefs.agreed_closes:
        agreed_opens, agreed_closes = _parse_hhmm(prefs.agreed_opens), _parse_hhmm(prefs.agreed_closes)
        if agreed_opens < agreed_closes and (agreed_opens < opens or agreed_closes > closes):
            opens, closes = min(opens, agreed_opens), max(closes, agreed_closes)
            rule_id, source = f"{code}.agreed_hours", "the borrower's stored agreement on contact hours"
    if rules.honour_preferred_hours and prefs.preferred_opens and prefs.preferred_closes:
        preferred_opens, preferred_closes = _parse_hhmm(prefs.preferred_opens), _parse_hhmm(prefs.preferred_closes)
        if preferred_opens > opens or preferred_closes < closes:
            opens, closes = max(opens, preferred_opens), min(closes, preferred_closes)
            rule_id, source = f"{code}.preferred_hours", "the borrower's preferred contact hours"
    zones = [facts.timezone]
    if rules.all_plausible_time_zones:
        zones += [z for z in prefs.extra_time_zones if z not in zones]
    if opens >= closes:
        return Hours(None, None, tuple(zones), rule_id, source)
    return Hours(opens, closes, tuple(zones), rule_id, source)


# -- calls -------------------------------------------------------------------------------------


def call_block(rules: ComplianceRules, facts: CaseFacts, profile: ContactProfile, now: datetime) -> tuple[str, str] | None:
    """Why a new call attempt (an agent call task) may not be made now, as ``(rule_id, reason)``,
    or ``None``. Counts the profile's call log (all the borrower's loans; planned tasks too)."""
    code, tz = facts.jurisdiction, facts.timezone
    attempts = [a for a in profile.call_attempts if a.at <= now]
    today = calendar.local_date(now, tz)
    todays = [a for a in attempts if calendar.local_date(a.at, tz) == today]
    if rules.max_connected_calls_per_day is not None:
        connected = sum(1 for a in todays if a.connected)
        if connected >= rules.max_connected_calls_per_day:
            return (
                f"{code}.connected_calls_per_day",
                f"{connected} connected calls today (local), the cap is {rules.max_connected_calls_per_day} "
                f"per debtor (policy compliance.{code}.max_connected_calls_per_day)",
            )
    if rules.max_unanswered_calls_per_number_per_day is not None:
        per_number: dict[str, int] = {}
        for a in todays:
            if not a.connected and not a.planned:
                number = a.phone_number_id or "unknown"
                per_number[number] = per_number.get(number, 0) + 1
        for number, count in sorted(per_number.items()):
            if count >= rules.max_unanswered_calls_per_number_per_day:
                return (
                    f"{code}.unanswered_calls_per_number",
                    f"{count} unanswered attempts to number {number} today (local), the cap is "
                    f"{rules.max_unanswered_calls_per_number_per_day} (policy "
                    f"compliance.{code}.max_unanswered_calls_per_number_per_day)",
                )
    this_debt = [a for a in attempts if a.loan_id == facts.loan_id]
    if rules.no_calls_days_after_conversation is not None:
        quiet = timedelta(days=rules.no_calls_days_after_conversation)
        talks = [a for a in this_debt if a.connected and now - a.at < quiet]
        if talks:
            last = max(a.at for a in talks)
            return (
                f"{code}.call_after_conversation",
                f"a phone conversation at {last.isoformat()} about this debt; no calls for "
                f"{rules.no_calls_days_after_conversation} days after one (policy "
                f"compliance.{code}.no_calls_days_after_conversation)",
            )
    if rules.max_call_attempts_per_7_days is not None:
        week = [a for a in this_debt if now - a.at < timedelta(days=7)]
        if len(week) >= rules.max_call_attempts_per_7_days:
            return (
                f"{code}.call_attempts_7_days",
                f"{len(week)} call attempts about this debt in the last 7 days, the cap is "
                f"{rules.max_call_attempts_per_7_days} (policy compliance.{code}.max_call_attempts_per_7_days)",
            )
    return None


# -- one action --------------------------------------------------------------------------------


def medium_block(
    action: str,
    rules: ComplianceRules,
    facts: CaseFacts,
    profile: ContactProfile,
    hours: Hours,
    now: datetime,
) -> tuple[str, str] | None:
    """Why ``action``'s medium may not be used for this borrower now (``(rule_id, reason)``), or
    ``None``. The hour itself is not checked here (that defers, it does not reroute), only whether
    any hour is permitted at all."""
    code = facts.jurisdiction
    prefs = profile.preferences
    medium = ACTIONS[action].medium
    if medium is None:
        return None
    if medium in prefs.opted_out_media:
        return f"{code}.opt_out", f"the borrower opted out of {medium}"
    if rules.honour_preferred_channels and prefs.preferred_media and medium != "letter" and medium not in prefs.preferred_media:
        return (
            f"{code}.preferred_channels",
            f"the borrower prefers {', '.join(prefs.preferred_media)} (policy compliance.{code}.honour_preferred_channels)",
        )
    if medium == "sms" and rules.sms_needs_consent and not prefs.sms_consent:
        return f"{code}.sms_consent", f"no recorded consent to SMS (policy compliance.{code}.sms_needs_consent)"
    if medium == "call":
        blocked = call_block(rules, facts, profile, now)
        if blocked:
            return blocked
    if medium in rules.hour_restricted_media and hours.opens is None:
        return hours.rule_id, f"no hour is permitted: {hours.source} leave no window"
    if medium in rules.hour_restricted_media and hours.next_opening(now) is None:
        return (
            f"{code}.no_common_hours",
            f"no hour in the next 3 days is permitted in every zone the borrower may be in ({', '.join(hours.zones)})",
        )
    return None


def legal_block(rules: ComplianceRules, facts: CaseFacts, profile: ContactProfile, now: datetime) -> tuple[str, str, datetime | None] | None:
    """Why the legal referral may not go now: ``(rule_id, reason, wait_until)``; ``wait_until``
    set means wait (a notice period), ``None`` means skip. ``None`` overall: it may go."""
    code, tz = facts.jurisdiction, facts.timezone
    if rules.legal_time_bar_days is not None:
        barred_on = facts.oldest_due_date + timedelta(days=rules.legal_time_bar_days)
        if calendar.local_date(now, tz) >= barred_on:
            return (
                f"{code}.time_barred",
                f"the debt is time-barred since {barred_on.isoformat()} (policy compliance.{code}.legal_time_bar_days)",
                None,
            )
    if rules.legal_blocked_by_ombudsman_complaint and profile.preferences.ombudsman_complaint_open:
        return (
            f"{code}.ombudsman_complaint",
            f"a complaint is with the ombudsman (policy compliance.{code}.legal_blocked_by_ombudsman_complaint)",
            None,
        )
    if rules.legal_after_default_notice_days is not None:
        if facts.default_notice_at is None:
            return (
                f"{code}.default_notice",
                f"no default notice ({DEFAULT_NOTICE_ACTION}) was sent; legal action needs one "
                f"{rules.legal_after_default_notice_days} days before (policy compliance.{code}.legal_after_default_notice_days)",
                None,
            )
        notice_day = calendar.local_date(facts.default_notice_at, tz)
        ready = calendar.local_instant(notice_day + timedelta(days=rules.legal_after_default_notice_days + 1), time(0), tz)
        if now < ready:
            return (
                f"{code}.default_notice",
                f"the default notice of {notice_day.isoformat()} gives {rules.legal_after_default_notice_days} "
                f"days to pay (policy compliance.{code}.legal_after_default_notice_days)",
                ready,
            )
    return None


def decide_step(
    *,
    step: str,
    actions: tuple[str, ...],
    rules: ComplianceRules,
    facts: CaseFacts,
    profile: ContactProfile,
    now: datetime,
    days_past_due: int = 0,
) -> StepDecision:
    """Decide every action of a due step (see the module's docstring).

    Order of the rules for each action: legal-action bars (legal referral); the cease request
    (``pauses.after_cease_contact``, passed in ``facts.permitted_after_cease``); the attorney
    (all communications go to the attorney, once per step); the medium (opt-out, preferred media,
    SMS consent, call caps, no permitted hour), rerouted in ``rules.reroute`` order to an
    alternative not already in the step; then, for what will run, the hour: a step with a
    communication to run outside the permitted hours is deferred whole to their next opening.
    """
    code = facts.jurisdiction
    prefs = profile.preferences
    hours = contact_hours(rules, facts, prefs)

    def decision(action: str, kind: Decision, rule_id: str, reason: str, **extra) -> ContactDecision:
        return ContactDecision(
            step=step, action=action, decision=kind, rule_id=rule_id, reason=reason,
            decided_at=now, days_past_due=days_past_due, **extra,
        )

    decisions: list[ContactDecision] = []
    running: set[str] = set()
    wait_for_notice: list[tuple[str, str, datetime]] = []
    attorney = rules.attorney_only and prefs.attorney_id is not None
    for action in actions:
        spec = ACTIONS[action]
        if action == "legal_referral":
            blocked = legal_block(rules, facts, profile, now)
            if (
                blocked and blocked[0] == f"{code}.default_notice" and facts.default_notice_at is None
                and not (facts.cease_contact and DEFAULT_NOTICE_ACTION not in facts.permitted_after_cease)
                and DEFAULT_NOTICE_ACTION not in actions
                and medium_block(DEFAULT_NOTICE_ACTION, rules, facts, profile, hours, now) is None
                and not attorney
            ):
                # No default notice yet: send it now, and take the legal step again once its
                # notice period has run.
                decisions.append(decision(
                    action, "rerouted", blocked[0],
                    f"{blocked[1]}; the default notice goes now and the legal step follows "
                    f"{rules.legal_after_default_notice_days} days after it",
                    run_action=DEFAULT_NOTICE_ACTION, repeat_step=True,
                ))
                running.add(DEFAULT_NOTICE_ACTION)
                continue
            if blocked and blocked[2] is not None:
                wait_for_notice.append((action, f"{blocked[0]}", blocked[2]))
                decisions.append(decision(action, "deferred", blocked[0], blocked[1], deferred_until=blocked[2]))
                continue
            if blocked:
                decisions.append(decision(action, "skipped", blocked[0], blocked[1]))
                continue
        if facts.cease_contact and action not in facts.permitted_after_cease:
            decisions.append(
                decision(action, "skipped", "cease_contact",
                         f"the borrower asked that contact stop (policy pauses.after_cease_contact.{code})")
            )
            continue
        if spec.medium is None:
            decisions.append(decision(action, "allowed", f"{code}.not_a_contact", "not a communication with the borrower", run_action=action))
            running.add(action)
            continue
        if attorney:
            if ATTORNEY_ACTION in running:
                decisions.append(decision(action, "skipped", f"{code}.attorney_only",
                                          f"represented by attorney {prefs.attorney_id}, already written to in this step"))
            else:
                decisions.append(decision(action, "rerouted", f"{code}.attorney_only",
                                          f"represented by attorney {prefs.attorney_id}: contact the attorney only",
                                          run_action=ATTORNEY_ACTION))
                running.add(ATTORNEY_ACTION)
            continue
        blocked = medium_block(action, rules, facts, profile, hours, now)
        if blocked is None:
            decisions.append(decision(action, "allowed", f"{code}.permitted", "every rule of the jurisdiction holds", run_action=action))
            running.add(action)
            continue
        alternative = next(
            (
                alt for alt in rules.reroute.get(action, ())
                if alt not in actions and alt not in running
                and not (facts.cease_contact and alt not in facts.permitted_after_cease)
                and medium_block(alt, rules, facts, profile, hours, now) is None
            ),
            None,
        )
        if alternative is not None:
            decisions.append(decision(action, "rerouted", blocked[0], f"{blocked[1]}; sent as {alternative} instead",
                                      run_action=alternative))
            running.add(alternative)
        else:
            decisions.append(decision(action, "skipped", blocked[0], f"{blocked[1]}; no permitted alternative"))

    # The US validation notice goes with the first step that communicates with the borrower.
    communicates = any(ACTIONS[a].medium is not None and a != ATTORNEY_ACTION for a in running)
    ceased = facts.cease_contact and VALIDATION_ACTION not in facts.permitted_after_cease
    if rules.validation_notice and not facts.validation_notice_sent and communicates and not attorney and not ceased:
        if "letter" in prefs.opted_out_media:
            decisions.append(decision(VALIDATION_ACTION, "skipped", f"{code}.opt_out", "the borrower opted out of letters"))
        else:
            decisions.append(
                decision(VALIDATION_ACTION, "allowed", f"{code}.validation_notice",
                         f"sent with the first communication, within {rules.validation_notice_within_days} days "
                         f"(policy compliance.{code}.validation_notice_within_days)", run_action=VALIDATION_ACTION)
            )
            running.add(VALIDATION_ACTION)

    # The hour: defer the whole step if anything to run needs the window and it is closed.
    restricted = [d for d in decisions if d.run_action and ACTIONS[d.run_action].medium in rules.hour_restricted_media]
    waits = [until for _, _, until in wait_for_notice]
    if restricted and not hours.open_at(now):
        opening = hours.next_opening(now)
        assert opening is not None  # medium_block skipped or rerouted anything with no opening
        waits.append(opening)
        deferred = [
            decision(d.action, "deferred", hours.rule_id,
                     f"outside the permitted hours ({hours.source}: {hours.opens:%H:%M}-{hours.closes:%H:%M} "
                     f"local in {', '.join(hours.zones)}); waits until {opening.isoformat()}",
                     deferred_until=opening)
            for d in restricted
        ]
        notice = [d for d in decisions if d.decision == "deferred"]
        return StepDecision(decisions=notice + deferred, deferred_until=min(waits))
    if waits:
        return StepDecision(decisions=[d for d in decisions if d.decision == "deferred"], deferred_until=min(waits))
    send_by = hours.closes_after(now)
    for d in decisions:
        if d.run_action is None:
            continue
        medium = ACTIONS[d.run_action].medium
        if medium in rules.hour_restricted_media:
            d.send_by = send_by
        if medium == "visit" and rules.visit_collectors:
            d.requirements.append(f"collectors:{rules.visit_collectors}")
    return StepDecision(decisions=decisions)
