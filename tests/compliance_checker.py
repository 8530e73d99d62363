"""An independent checker of contact records against the jurisdictions' rules.

Written apart from the gate (``collections_domain.rules.compliance``): it imports nothing of the
product but reads the policy's raw TOML tables itself and does its own clock arithmetic with
``zoneinfo``. The property tests feed it what was recorded (contact decisions and the contacts
they ran) and what the test knows of the world (preferences over time, the call log); it returns
every violation it finds, as text.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

POLICY_FILE = Path(__file__).resolve().parents[1] / "collections_domain" / "rules" / "policies" / "default.toml"

MEDIUM = {
    "sms_reminder": "sms",
    "email_overdue_notice": "email",
    "agent_call": "call",
    "field_visit": "visit",
    "demand_letter": "letter",
    "validation_notice": "letter",
    "attorney_notice": "letter",
}
CONNECTED = {"reached", "refused", "promise_made", "dispute_raised"}
#: Words of an opt-out instruction (every SMS and email must carry one, 12 CFR 1006.6(e)).
OPT_OUT_WORDS = ("STOP", "UNSUBSCRIBE", "退订")


#: The limits of the law itself, kept here apart from the policy file: a policy may be stricter,
#: never looser. (CN: GB/T 45251-2025 and the NIFA guideline; US: 12 CFR 1006.6(b)(1)(i) and
#: 1006.14(b)(2). The UK's hours are a policy default in CONC, not law, so none here.)
STATUTE = {
    "CN": {"hours": ("08:00", "22:00"), "max_connected_calls_per_day": 3, "max_unanswered_calls_per_number_per_day": 6},
    "US": {"hours": ("08:00", "21:00"), "max_call_attempts_per_7_days": 7, "no_calls_days_after_conversation": 7},
}


def load_raw_policy(path: Path = POLICY_FILE) -> dict:
    """The policy file as plain TOML data."""
    return tomllib.loads(path.read_text(encoding="utf-8"))


def _hm(text: str) -> time:
    hours, minutes = text.split(":")
    return time(int(hours), int(minutes))


@dataclass
class Preferences:
    """What the borrower had told the lender at some instant."""

    preferred_hours: tuple[str, str] | None = None
    agreed_hours: tuple[str, str] | None = None
    opted_out: set[str] = field(default_factory=set)
    preferred_media: set[str] = field(default_factory=set)
    sms_consent: bool = False
    attorney: bool = False
    extra_zones: tuple[str, ...] = ()
    ombudsman: bool = False


@dataclass
class Call:
    """One logged call attempt (agents, agencies, the dialer) or an agent task created."""

    at: datetime
    loan_id: str
    connected: bool
    number: str = "mobile-1"
    planned: bool = False


@dataclass
class World:
    """What the checker knows about one case: its jurisdiction and zone, the raw policy, the
    preferences timeline (``(from_instant, Preferences)``, sorted), the call log and the case's
    facts."""

    jurisdiction: str
    tz: str
    loan_id: str
    oldest_due_date: date
    raw_policy: dict
    preferences: list[tuple[datetime, Preferences]]
    calls: list[Call] = field(default_factory=list)
    cease_at: datetime | None = None

    @property
    def rules(self) -> dict:
        return self.raw_policy["compliance"][self.jurisdiction]

    def prefs_at(self, at: datetime) -> Preferences:
        current = Preferences()
        for since, prefs in self.preferences:
            if since <= at:
                current = prefs
        return current

    def permitted_after_cease(self) -> list[str]:
        table = self.raw_policy.get("pauses", {}).get("after_cease_contact", {})
        return list(table.get(self.jurisdiction, table.get("*", [])))


def _window(world: World, prefs: Preferences) -> tuple[time, time] | None:
    rules = world.rules
    opens, closes = _hm(rules["contact_hours"]["opens"]), _hm(rules["contact_hours"]["closes"])
    statute = STATUTE.get(world.jurisdiction, {}).get("hours")
    if statute:
        opens, closes = max(opens, _hm(statute[0])), min(closes, _hm(statute[1]))
    if rules.get("agreement_may_widen_hours") and prefs.agreed_hours:
        agreed = _hm(prefs.agreed_hours[0]), _hm(prefs.agreed_hours[1])
        if agreed[0] < agreed[1]:
            opens, closes = min(opens, agreed[0]), max(closes, agreed[1])
    if rules.get("honour_preferred_hours", True) and prefs.preferred_hours:
        preferred = _hm(prefs.preferred_hours[0]), _hm(prefs.preferred_hours[1])
        opens, closes = max(opens, preferred[0]), min(closes, preferred[1])
    return (opens, closes) if opens < closes else None


def _zones(world: World, prefs: Preferences) -> list[str]:
    zones = [world.tz]
    if world.rules.get("all_plausible_time_zones"):
        zones += list(prefs.extra_zones)
    return zones


def hours_open(world: World, at: datetime) -> bool:
    """Whether the borrower may be contacted at ``at`` on an hour-restricted medium."""
    prefs = world.prefs_at(at)
    window = _window(world, prefs)
    if window is None:
        return False
    for zone in _zones(world, prefs):
        wall = at.astimezone(ZoneInfo(zone)).time()
        if not (window[0] <= wall < window[1]):
            return False
    return True


def _limit(world: World, key: str) -> int | None:
    """The stricter of the policy's number and the statute's."""
    values = [v for v in (world.rules.get(key), STATUTE.get(world.jurisdiction, {}).get(key)) if v is not None]
    return min(values) if values else None


def _call_violations(world: World, at: datetime) -> list[str]:
    tz = ZoneInfo(world.tz)
    before = [c for c in world.calls if c.at < at]
    today = at.astimezone(tz).date()
    same_day = [c for c in before if c.at.astimezone(tz).date() == today]
    found = []
    cap = _limit(world, "max_connected_calls_per_day")
    if cap is not None and sum(c.connected for c in same_day) >= cap:
        found.append("connected calls per day")
    cap = _limit(world, "max_unanswered_calls_per_number_per_day")
    if cap is not None:
        numbers: dict[str, int] = {}
        for c in same_day:
            if not c.connected and not c.planned:
                numbers[c.number] = numbers.get(c.number, 0) + 1
        if any(n >= cap for n in numbers.values()):
            found.append("unanswered calls per number")
    debt = [c for c in before if c.loan_id == world.loan_id]
    cap = _limit(world, "max_call_attempts_per_7_days")
    if cap is not None and sum(1 for c in debt if at - c.at < timedelta(days=7)) >= cap:
        found.append("call attempts in 7 days")
    # Stricter here means longer: the larger of the policy's quiet days and the statute's.
    quiet_days = [v for v in (world.rules.get("no_calls_days_after_conversation"),
                              STATUTE.get(world.jurisdiction, {}).get("no_calls_days_after_conversation")) if v is not None]
    quiet = max(quiet_days) if quiet_days else None
    if quiet is not None and any(c.connected and at - c.at < timedelta(days=quiet) for c in debt):
        found.append("call within the quiet days after a conversation")
    return found


def violations(world: World, action: str, at: datetime, requirements: list[str] | None = None,
               default_notice_at: datetime | None = None, replaces: str | None = None) -> list[str]:
    """Every rule of ``world``'s jurisdiction that contacting by ``action`` at ``at`` breaks.
    ``replaces``: the step's action that a letter to the attorney stands in for (it may go after
    a cease request when that action may)."""
    rules = world.rules
    prefs = world.prefs_at(at)
    medium = MEDIUM.get(action)
    found: list[str] = []
    ceased = world.cease_at is not None and world.cease_at <= at
    as_action = replaces if action == "attorney_notice" and replaces else action
    if ceased and as_action not in world.permitted_after_cease():
        found.append("contact after a cease request")
    if action == "legal_referral":
        bar = rules.get("legal_time_bar_days")
        if bar is not None and at.astimezone(ZoneInfo(world.tz)).date() >= world.oldest_due_date + timedelta(days=bar):
            found.append("legal action on a time-barred debt")
        if rules.get("legal_blocked_by_ombudsman_complaint") and prefs.ombudsman:
            found.append("legal action during an ombudsman complaint")
        notice_days = rules.get("legal_after_default_notice_days")
        if notice_days is not None:
            if default_notice_at is None:
                found.append("legal action without a default notice")
            else:
                tz = ZoneInfo(world.tz)
                first_day = default_notice_at.astimezone(tz).date() + timedelta(days=notice_days + 1)
                if at.astimezone(tz).date() < first_day:
                    found.append("legal action inside the default notice's period")
    if medium is None:
        return found
    if action == "attorney_notice":
        # Written to the attorney, not the borrower: the borrower's media rules do not apply.
        return found
    if prefs.attorney and rules.get("attorney_only", True) and action != "attorney_notice":
        found.append("contact with a borrower represented by an attorney")
    if medium in prefs.opted_out:
        found.append(f"{medium} after an opt-out")
    if rules.get("honour_preferred_channels") and prefs.preferred_media and medium != "letter" and medium not in prefs.preferred_media:
        found.append(f"{medium} outside the preferred media")
    if medium == "sms" and rules.get("sms_needs_consent") and not prefs.sms_consent:
        found.append("SMS without consent")
    if medium in rules.get("hour_restricted_media", []) and not hours_open(world, at):
        found.append(f"{medium} outside the permitted hours")
    if medium == "call":
        found += _call_violations(world, at)
    if medium == "visit" and rules.get("visit_collectors"):
        if f"collectors:{rules['visit_collectors']}" not in (requirements or []):
            found.append("visit without the required collectors")
    return found


def next_lawful_opening(world: World, after: datetime) -> datetime | None:
    """The first minute at or after ``after`` when the hours are open (a minute-by-minute walk
    over three days: slow, obviously right)."""
    at = after
    for _ in range(3 * 24 * 60 + 1):
        if hours_open(world, at):
            return at
        at = (at + timedelta(minutes=1)).replace(second=0, microsecond=0)
    return None


def utc(value: datetime) -> datetime:
    """SQLite gives naive UTC datetimes back."""
    return value if value.tzinfo else value.replace(tzinfo=UTC)
