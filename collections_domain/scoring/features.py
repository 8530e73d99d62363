"""The propensity score's features: what a loan's schedule and payments say about it as of one
local day, computed by one function for training and for scoring (``features_from_schedule``).

Conventions (the loan book's and the case ledger's, ``case/ledger.py``):

- A schedule is ``(due_date, amount_minor)`` pairs and payments ``(paid_on, amount_minor)``
  pairs: dates on the borrower's local calendar, amounts in minor units of the loan's currency.
- **As of day** ``as_of`` means at the start of that local day, when the delinquency scan opens
  cases: instalments due before ``as_of`` are overdue if unpaid (one due on ``as_of`` is due but
  not overdue), payments made before ``as_of`` are known, and nothing later is looked at.
- Payments are allocated oldest instalment first, cumulatively: instalment ``k`` is paid once the
  payments add up to everything due through ``k``; money beyond what is due waits for the next
  instalment (credit).
- An **episode** is a case as the scan opens it: on the first day on which the oldest owing
  instalment is more than ``OpeningRule.grace_days`` days past due and the overdue amount is at
  least ``OpeningRule.minimum_overdue_minor``; it lasts until the end of the first day on which
  nothing due is owing (the case's ``cured``). A loan may have several.

No personal attribute enters: only amounts, dates and counts of the loan's own schedule.
"""

from __future__ import annotations

import math
from bisect import bisect_left, bisect_right
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from itertools import accumulate

#: ``(due_date, amount_minor)``: an instalment due on a local date, in minor units.
Instalment = tuple[date, int]
#: ``(paid_on, amount_minor)``: a payment made on a local date, in minor units.
Payment = tuple[date, int]

#: The features, in the model's order. Counts, day spans and amounts are ``log1p``-scaled;
#: ratios are capped at ``RATIO_CAP``. (How many instalments are overdue is left out: at opening
#: it is nearly always 1, so the data cannot teach its weight.)
FEATURE_NAMES: tuple[str, ...] = (
    "log_instalments_due",  # instalments due before as_of
    "share_earlier_paid_late",  # of the instalments settled before, the share paid after their due day
    "log_earlier_episodes",  # episodes opened before as_of
    "log_overdue_minor",  # overdue amount (minor units)
    "overdue_to_instalment",  # overdue / the last instalment due
    "paid_to_due",  # paid so far / due so far
    "no_payment_yet",  # 1 when nothing was ever paid, else 0
    "log_days_since_last_payment",  # 0 when nothing was ever paid (see no_payment_yet)
    "log_days_since_first_due",
    "last_payment_to_instalment",  # last payment / the last instalment due (0: none)
)
RATIO_CAP = 10.0


@dataclass(frozen=True)
class OpeningRule:
    """When the scan opens a case (policy ``identification``): the oldest owing instalment more
    than ``grace_days`` local days past due and at least ``minimum_overdue_minor`` overdue."""

    grace_days: int = 0
    minimum_overdue_minor: int = 1

    def __post_init__(self) -> None:
        if self.grace_days < 0 or self.minimum_overdue_minor < 1:
            raise ValueError(f"OpeningRule: grace_days must be >= 0 and minimum_overdue_minor >= 1, got {self}")


@dataclass(frozen=True)
class Episode:
    """One delinquency episode: opened at the start of local day ``opened_on`` with
    ``overdue_minor`` overdue, the oldest owing instalment due on ``oldest_due_date``;
    ``current_on`` is the first day at whose end nothing due was owing (``None``: not yet, as far
    as the payments given show)."""

    opened_on: date
    oldest_due_date: date
    overdue_minor: int
    current_on: date | None


class _Timeline:
    """A schedule and its payments as cumulative sums by day, for cheap "as of" questions."""

    def __init__(self, instalments: Sequence[Instalment], payments: Sequence[Payment]) -> None:
        _check(instalments, payments)
        self.instalments = sorted(instalments, key=lambda i: i[0])
        self.payments = sorted(payments, key=lambda p: p[0])
        self.due_dates = [d for d, _ in self.instalments]
        self.due_cum = list(accumulate(a for _, a in self.instalments))
        self.paid_dates = [d for d, _ in self.payments]
        self.paid_cum = list(accumulate(a for _, a in self.payments))

    def due_before(self, day: date) -> int:
        """Everything due on days before ``day``."""
        n = bisect_left(self.due_dates, day)
        return self.due_cum[n - 1] if n else 0

    def paid_before(self, day: date) -> int:
        """Everything paid on days before ``day``."""
        n = bisect_left(self.paid_dates, day)
        return self.paid_cum[n - 1] if n else 0

    def paid_through(self, day: date) -> int:
        """Everything paid on days up to and including ``day``."""
        n = bisect_right(self.paid_dates, day)
        return self.paid_cum[n - 1] if n else 0

    def oldest_owing(self, day: date) -> int | None:
        """The index of the oldest instalment due before ``day`` still owing at its start, or ``None``."""
        paid = self.paid_before(day)
        k = bisect_right(self.due_cum, paid)  # first instalment whose cumulative due exceeds what was paid
        if k < len(self.instalments) and self.due_dates[k] < day:
            return k
        return None

    def episodes(self, rule: OpeningRule, before: date | None = None) -> list[Episode]:
        """The episodes opened on days before ``before`` (all when ``None``), oldest first."""
        found: list[Episode] = []
        day = self.due_dates[0] if self.due_dates else None
        last = max(self.due_dates[-1:] + self.paid_dates[-1:], default=None)
        while day is not None and (before is None or day < before):
            k = self.oldest_owing(day)
            overdue = self.due_before(day) - self.paid_before(day)
            if k is not None and (day - self.due_dates[k]).days > rule.grace_days and overdue >= rule.minimum_overdue_minor:
                current_on = self._current_on(day)
                found.append(Episode(day, self.due_dates[k], overdue, current_on))
                if current_on is None:
                    break
                day = _next_day(current_on)
            else:
                day = self._next_candidate(day, rule)
            if day is not None and last is not None and day > _add_days(last, rule.grace_days + 1):
                break
        return found

    def _current_on(self, day: date) -> date | None:
        """The first day from ``day`` on at whose end everything due by then is paid."""
        # Only the days of payments can turn the loan current (what is due only grows).
        for i in range(bisect_left(self.paid_dates, day), len(self.paid_dates)):
            if i + 1 < len(self.paid_dates) and self.paid_dates[i + 1] == self.paid_dates[i]:
                continue  # the day's last payment decides
            on = self.paid_dates[i]
            n = bisect_right(self.due_dates, on)
            if self.paid_cum[i] >= (self.due_cum[n - 1] if n else 0):
                return on
        return None

    def _next_candidate(self, day: date, rule: OpeningRule) -> date | None:
        """The next day on which an episode could open: the day after the grace of the next
        instalment to fall due (whether or not it is paid), or the next day if one is owing."""
        k = self.oldest_owing(day)
        if k is not None:
            return _next_day(day)
        n = bisect_left(self.due_dates, day)
        if n >= len(self.due_dates):
            return None
        return max(_add_days(self.due_dates[n], rule.grace_days + 1), _next_day(day))


def _check(instalments: Sequence[Instalment], payments: Sequence[Payment]) -> None:
    for due, amount in instalments:
        if not _is_day(due) or isinstance(amount, bool) or not isinstance(amount, int) or amount < 0:
            raise ValueError(f"instalments: each must be (date, amount_minor >= 0), got {(due, amount)!r}")
    for day, amount in payments:
        if not _is_day(day) or isinstance(amount, bool) or not isinstance(amount, int) or amount <= 0:
            raise ValueError(f"payments: each must be (date, amount_minor > 0), got {(day, amount)!r}")


def _is_day(value: object) -> bool:
    return isinstance(value, date) and not isinstance(value, datetime)


def _next_day(day: date) -> date:
    return date.fromordinal(day.toordinal() + 1)


def _add_days(day: date, days: int) -> date:
    return date.fromordinal(day.toordinal() + days)


def episodes(instalments: Sequence[Instalment], payments: Sequence[Payment], rule: OpeningRule = OpeningRule(),
             *, before: date | None = None) -> list[Episode]:
    """The delinquency episodes of a loan, oldest first (see the module's conventions).

    Args:
        instalments: ``(due_date, amount_minor)`` pairs, any order; amounts >= 0.
        payments: ``(paid_on, amount_minor)`` pairs, any order; amounts > 0.
        rule: when an episode opens.
        before: only the episodes opened on local days before it (``None``: all).

    Raises:
        ValueError: an instalment or payment is not a (date, int) pair with a valid amount.
    """
    return _Timeline(instalments, payments).episodes(rule, before)


def overdue_paid_by(instalments: Sequence[Instalment], payments: Sequence[Payment], episode: Episode,
                    day: date) -> bool:
    """Whether everything overdue when ``episode`` opened (all that was due before its opening
    day) was paid by the end of local day ``day`` (the model's label, with ``day`` the last day
    before the hand-off)."""
    timeline = _Timeline(instalments, payments)
    return timeline.paid_through(day) >= timeline.due_before(episode.opened_on)


def features_from_schedule(instalments: Sequence[Instalment], payments: Sequence[Payment], as_of: date, *,
                           rule: OpeningRule = OpeningRule()) -> dict[str, float]:
    """The features of a loan at the start of local day ``as_of`` (``FEATURE_NAMES``, in order).

    Only instalments due before ``as_of`` and payments made before it are read; anything later
    in the arguments is ignored, so a whole history can be passed.

    Args:
        instalments: ``(due_date, amount_minor)`` pairs, any order (local dates, minor units >= 0).
        payments: ``(paid_on, amount_minor)`` pairs, any order (local dates, minor units > 0).
        as_of: the local day, e.g. the day the case opens.
        rule: when an episode opens (counts ``log_earlier_episodes``); the model gives its own.

    Returns:
        ``{name: value}`` for every name of ``FEATURE_NAMES`` (finite floats).

    Raises:
        ValueError: an instalment or payment is not a (date, int) pair with a valid amount, or
            ``as_of`` is not a date.
    """
    if not _is_day(as_of):
        raise ValueError(f"as_of: must be a local date, got {as_of!r}")
    _check(instalments, payments)
    timeline = _Timeline([i for i in instalments if i[0] < as_of], [p for p in payments if p[0] < as_of])
    due = timeline.due_before(as_of)
    paid = timeline.paid_before(as_of)
    n_due = len(timeline.instalments)
    oldest = timeline.oldest_owing(as_of)
    settled = oldest if oldest is not None else n_due  # the instalments before the oldest owing one
    late = sum(1 for k in range(settled) if timeline.paid_through(timeline.due_dates[k]) < timeline.due_cum[k])
    last_instalment = timeline.instalments[-1][1] if n_due else 0
    overdue = max(due - paid, 0)
    last_payment = timeline.payments[-1] if timeline.payments else None
    return {
        "log_instalments_due": math.log1p(n_due),
        "share_earlier_paid_late": late / settled if settled else 0.0,
        "log_earlier_episodes": math.log1p(len(timeline.episodes(rule, as_of))),
        "log_overdue_minor": math.log1p(overdue),
        "overdue_to_instalment": _ratio(overdue, last_instalment),
        "paid_to_due": _ratio(paid, due),
        "no_payment_yet": 0.0 if last_payment else 1.0,
        "log_days_since_last_payment": math.log1p((as_of - last_payment[0]).days) if last_payment else 0.0,
        "log_days_since_first_due": math.log1p((as_of - timeline.due_dates[0]).days) if n_due else 0.0,
        "last_payment_to_instalment": _ratio(last_payment[1], last_instalment) if last_payment else 0.0,
    }


def _ratio(numerator: int, denominator: int) -> float:
    if denominator <= 0:
        return RATIO_CAP if numerator > 0 else 0.0
    return min(numerator / denominator, RATIO_CAP)
