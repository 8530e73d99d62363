"""Borrower contact preferences, consents and the call log: what the compliance gate reads.

Written by the command line (``starter.py preferences``, ``starter.py record-call``) and, later,
the API; read by the activity ``load_contact_profile`` before each step. Every function validates
its input and raises ``ValueError`` naming the field and the rule.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError
from sqlalchemy.engine import Engine
from sqlmodel import select

from collections_domain.case.contract import ID_PATTERN
from collections_domain.rules.compliance import MEDIA, ContactPreferences
from collections_domain.store.db import session
from collections_domain.store.models import Attorney, CallAttemptRecord, CollectionCase, ContactPreferencesRecord, utcnow

_ID = re.compile(ID_PATTERN)
CALL_SOURCES = ("agent", "agency", "dialer")


def _check_id(field: str, value: str | None) -> None:
    if value is not None and not _ID.match(value):
        raise ValueError(f"{field}: must be 1-64 characters, each a letter, a digit, '-', '_' or '.', got {value!r}")


def _media(field: str, values: list[str] | tuple[str, ...]) -> list[str]:
    unknown = [v for v in values if v not in MEDIA]
    if unknown:
        raise ValueError(f"{field}: unknown medium {unknown}; known: {', '.join(MEDIA)}")
    return sorted(set(values), key=MEDIA.index)


def _hours(field: str, text: str | None) -> tuple[str | None, str | None]:
    """``"HH:MM-HH:MM"`` -> (opens, closes); ``""`` clears; ``None`` leaves unchanged."""
    if text is None or text == "":
        return None, None
    parts = text.split("-")
    if len(parts) != 2:
        raise ValueError(f"{field}: must be HH:MM-HH:MM (local), got {text!r}")
    try:
        ContactPreferences(preferred_opens=parts[0], preferred_closes=parts[1])
    except ValidationError as err:
        raise ValueError(f"{field}: must be HH:MM-HH:MM (local), got {text!r}") from err
    if parts[0] >= parts[1]:
        raise ValueError(f"{field}: the opening must be earlier than the closing, got {text!r}")
    return parts[0], parts[1]


def set_contact_preferences(
    engine: Engine,
    borrower_id: str,
    *,
    preferred_hours: str | None = None,
    agreed_hours: str | None = None,
    opt_out: list[str] | None = None,
    opt_in: list[str] | None = None,
    preferred_media: list[str] | None = None,
    sms_consent: bool | None = None,
    attorney_id: str | None = None,
    attorney_name: str | None = None,
    attorney_address: str | None = None,
    attorney_email: str | None = None,
    extra_time_zones: list[str] | None = None,
    ombudsman_complaint_open: bool | None = None,
) -> ContactPreferences:
    """Change a borrower's preferences (only the arguments given); returns the result.

    ``preferred_hours``/``agreed_hours`` are ``"HH:MM-HH:MM"`` local (``""`` clears);
    ``opt_in`` removes media from the opt-outs, then ``opt_out`` adds them; ``attorney_id=""`` removes the attorney;
    ``extra_time_zones`` replaces the list (IANA names).

    Raises:
        ValueError: a field breaks its rule (the message names it).
    """
    _check_id("borrower_id", borrower_id)
    if attorney_id is None and (attorney_name or attorney_address or attorney_email):
        raise ValueError("attorney_id: required with the attorney's name, address or email")
    with session(engine) as db:
        row = db.get(ContactPreferencesRecord, borrower_id) or ContactPreferencesRecord(
            borrower_id=borrower_id, updated_at=utcnow()
        )
        if preferred_hours is not None:
            row.preferred_opens, row.preferred_closes = _hours("preferred_hours", preferred_hours)
        if agreed_hours is not None:
            row.agreed_opens, row.agreed_closes = _hours("agreed_hours", agreed_hours)
        opted = set(filter(None, row.opted_out_media.split(",")))
        if opt_in:  # withdrawals first, so that opt_in=all with opt_out=[...] sets the list
            opted -= set(_media("opt_in", opt_in))
        if opt_out:
            opted |= set(_media("opt_out", opt_out))
        row.opted_out_media = ",".join(_media("opt_out", sorted(opted)))
        if preferred_media is not None:
            row.preferred_media = ",".join(_media("preferred_media", [m for m in preferred_media if m]))
        if sms_consent is not None:
            row.sms_consent = sms_consent
        if ombudsman_complaint_open is not None:
            row.ombudsman_complaint_open = ombudsman_complaint_open
        if extra_time_zones is not None:
            zones = [z for z in extra_time_zones if z]  # [""] clears the list
            try:
                ContactPreferences(extra_time_zones=tuple(zones))
            except ValidationError as err:
                message = str(err.errors()[0]["msg"]).removeprefix("Value error, ").removeprefix("timezone: ")
                raise ValueError(f"time_zone: {message}") from err
            row.extra_time_zones = ",".join(zones)
        if attorney_id is not None:
            if attorney_id == "":
                row.attorney_id = None
            else:
                _check_id("attorney_id", attorney_id)
                attorney = db.get(Attorney, attorney_id)
                if attorney is None and not attorney_name:
                    raise ValueError(f"attorney_id: attorney {attorney_id} is not on file; give --attorney-name and an address")
                if attorney is not None:
                    # Other borrowers may share this attorney: their details are not changed here.
                    differ = [
                        field for field, given, stored in (
                            ("attorney_name", attorney_name, attorney.full_name),
                            ("attorney_address", attorney_address, attorney.postal_address),
                            ("attorney_email", attorney_email, attorney.email),
                        ) if given and given != stored
                    ]
                    if differ:
                        raise ValueError(
                            f"{differ[0]}: attorney {attorney_id} is on file with other details, which other "
                            "borrowers' letters use; link it with --attorney-id alone, or use a new attorney id"
                        )
                else:
                    attorney = Attorney(id=attorney_id, full_name=attorney_name or "", postal_address=attorney_address,
                                        email=attorney_email)
                if not attorney.postal_address:
                    raise ValueError(f"attorney_address: attorney {attorney_id} needs a postal address (letters go there)")
                db.add(attorney)
                row.attorney_id = attorney_id
        row.updated_at = utcnow()
        db.add(row)
        db.commit()
        return preferences_of(row)


def preferences_of(row: ContactPreferencesRecord | None) -> ContactPreferences:
    """The gate's view of a ``contact_preferences`` row (defaults when there is none)."""
    if row is None:
        return ContactPreferences()

    def items(text: str) -> tuple[Any, ...]:
        return tuple(part.strip() for part in text.split(",") if part.strip())

    return ContactPreferences(
        preferred_opens=row.preferred_opens,
        preferred_closes=row.preferred_closes,
        agreed_opens=row.agreed_opens,
        agreed_closes=row.agreed_closes,
        opted_out_media=items(row.opted_out_media),
        preferred_media=items(row.preferred_media),
        sms_consent=row.sms_consent,
        attorney_id=row.attorney_id,
        extra_time_zones=items(row.extra_time_zones),
        ombudsman_complaint_open=row.ombudsman_complaint_open,
    )


def get_contact_preferences(engine: Engine, borrower_id: str) -> ContactPreferences:
    """A borrower's preferences as the gate sees them (defaults when none are stored).

    Raises:
        ValueError: ``borrower_id`` is not a valid id.
    """
    _check_id("borrower_id", borrower_id)
    with session(engine) as db:
        return preferences_of(db.get(ContactPreferencesRecord, borrower_id))


def record_call_attempt(
    engine: Engine,
    *,
    attempt_id: str,
    loan_id: str,
    attempted_at: datetime,
    connected: bool,
    phone_number_id: str | None = None,
    source: str = "dialer",
    borrower_id: str | None = None,
) -> bool:
    """Log a call attempt made outside the product (an agency, the dialer) so the call caps count it.

    ``attempted_at`` must be timezone-aware; the borrower is the loan's (from its case) unless given.
    Returns False when ``attempt_id`` was already logged (idempotent).

    Raises:
        ValueError: a bad id, a naive time, an unknown source, or a loan with no case and no borrower.
    """
    _check_id("attempt_id", attempt_id)
    _check_id("loan_id", loan_id)
    _check_id("phone_number_id", phone_number_id)
    if attempted_at.tzinfo is None:
        raise ValueError("attempted_at: must carry a UTC offset (RFC 3339), got a naive time")
    if source not in CALL_SOURCES:
        raise ValueError(f"source: must be one of {', '.join(CALL_SOURCES)}, got {source!r}")
    with session(engine) as db:
        if borrower_id is None:
            case = db.exec(select(CollectionCase).where(CollectionCase.loan_id == loan_id)).first()
            if case is None:
                raise ValueError(f"loan_id: no case for loan {loan_id}; give the borrower_id")
            borrower_id = case.borrower_id
        _check_id("borrower_id", borrower_id)
        key = f"{source}:{attempt_id}"
        logged = db.exec(select(CallAttemptRecord).where(CallAttemptRecord.attempt_key == key)).first()
        if logged is not None:
            differ = [
                f"{field} {stored} (not {given})" for field, given, stored in (
                    ("loan_id", loan_id, logged.loan_id),
                    ("attempted_at", attempted_at.astimezone(UTC),
                     logged.attempted_at if logged.attempted_at.tzinfo else logged.attempted_at.replace(tzinfo=UTC)),
                    ("connected", connected, logged.connected),
                    ("phone_number_id", phone_number_id, logged.phone_number_id),
                ) if given != stored
            ]
            if differ:
                raise ValueError(f"attempt_id: {key} is already logged with " + ", ".join(differ) + "; a log is never changed")
            return False
        db.add(
            CallAttemptRecord(
                attempt_key=key,
                borrower_id=borrower_id,
                loan_id=loan_id,
                attempted_at=attempted_at.astimezone(UTC),  # SQLite keeps no offset: store UTC
                connected=connected,
                phone_number_id=phone_number_id,
                source=source,
            )
        )
        db.commit()
    return True
