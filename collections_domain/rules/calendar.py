"""Calendar math in the borrower's time zone: local days, local wall-clock instants, DPD.

Workflows import this module through ``workflow.unsafe.imports_passed_through()`` so that
``zoneinfo`` here is the real one, not the sandbox's restricted proxy (see TEMPORAL_NOTES.md).
Every function is pure and deterministic: the answer depends only on the arguments and the
tz database shipped with the ``tzdata`` package.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError


class UnknownTimeZoneError(ValueError):
    """Raised when a name is not an IANA time zone known to the tz database."""


@lru_cache(maxsize=512)
def zone(name: str) -> ZoneInfo:
    """Return the IANA zone ``name``.

    Raises:
        UnknownTimeZoneError: ``name`` is not in the tz database (``"Mars/Olympus"``), or is
            not a plain zone name (paths, empty strings).
    """
    if not name or name.startswith("/") or ".." in name:
        raise UnknownTimeZoneError(f"timezone: {name!r} is not an IANA time zone name")
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError) as err:
        raise UnknownTimeZoneError(f"timezone: {name!r} is not an IANA time zone name") from err


def local_instant(day: date, wall_time: time, tz_name: str) -> datetime:
    """The UTC instant at which the borrower's clock shows ``wall_time`` on local ``day``.

    A wall time that does not exist on that day (inside a DST spring-forward gap) is moved
    forward by the gap, as a clock would show it; an ambiguous one (DST fall-back) takes the
    first occurrence.

    Returns:
        A timezone-aware datetime in UTC.
    """
    local = datetime.combine(day, wall_time).replace(tzinfo=zone(tz_name), fold=0)
    return local.astimezone(UTC)


def local_date(instant: datetime, tz_name: str) -> date:
    """The borrower's local calendar day at ``instant`` (which must be timezone-aware)."""
    if instant.tzinfo is None:
        raise ValueError("instant must be timezone-aware")
    return instant.astimezone(zone(tz_name)).date()


def local_wall_time(instant: datetime, tz_name: str) -> time:
    """The borrower's local clock reading at ``instant`` (which must be timezone-aware)."""
    if instant.tzinfo is None:
        raise ValueError("instant must be timezone-aware")
    return instant.astimezone(zone(tz_name)).time()


def days_past_due(oldest_due_date: date, instant: datetime, tz_name: str) -> int:
    """DPD at ``instant``: local calendar days since ``oldest_due_date``, never below 0.

    The due date itself is DPD 0; the borrower's next local day is DPD 1 (PROCESS.md).
    """
    return max(0, (local_date(instant, tz_name) - oldest_due_date).days)


def overdue_since(oldest_due_date: date, tz_name: str) -> datetime:
    """The UTC instant the loan became delinquent: local midnight starting DPD 1."""
    return local_instant(oldest_due_date + timedelta(days=1), time(0, 0), tz_name)


def utc_offset_hours(instant: datetime, tz_name: str) -> float:
    """The zone's UTC offset at ``instant``, in hours (for display only)."""
    offset = instant.astimezone(zone(tz_name)).utcoffset()
    return (offset or timedelta(0)).total_seconds() / 3600


#: Zones spread around the globe, for ``daytime_zone``.
DAYTIME_CANDIDATES = (
    "Asia/Shanghai", "Europe/London", "America/New_York", "America/Los_Angeles",
    "Pacific/Kiritimati", "Asia/Kolkata", "Australia/Sydney", "Pacific/Honolulu",
)


def daytime_zone(now: datetime, opens: time = time(9), closes: time = time(20)) -> str:
    """A zone whose local clock at ``now`` (UTC) is in ``[opens, closes)``: for demos and tests
    that want a case's due steps to run at once. Raises ``LookupError`` if none is (never with
    the default hours: the candidates cover the globe)."""
    for tz in DAYTIME_CANDIDATES:
        if opens <= local_wall_time(now, tz) < closes:
            return tz
    raise LookupError(f"no candidate zone has local time in [{opens}, {closes})")
