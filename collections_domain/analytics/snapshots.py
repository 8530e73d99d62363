"""Each loan's days past due at each month-end, as the loan book knew it then: the rows that roll
rates are counted from (``kpis.compute_kpis``).

DPD comes from the loan ledger itself (``loan_book.ledger_of`` and ``case.ledger.derive``, the
product's one DPD computation) at the last instant of the month in the loan's own time zone. The
ledger leaves out facts *valued* after that instant, but not a payment valued before it that
reached the product later (a late gateway report, a back-dated servicing file): such a payment
was unknown at the month-end, so it is left out here before the ledger adds the loan up. A
reversal counts from its own instant (the ledger's rule). The schedule is taken as the servicing
system sent it (the book knows every schedule from the start).
"""

from __future__ import annotations

from calendar import monthrange
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

from sqlalchemy.engine import Connection
from sqlmodel import Session, select

from collections_domain.case.ledger import derive
from collections_domain.portfolio.loan_book import ledger_of, rules_for
from collections_domain.rules import calendar
from collections_domain.rules.policy import CollectionPolicy
from collections_domain.store.models import (
    Loan,
    LoanInstalmentRecord,
    LoanPaymentRecord,
)

#: A loan's status at a month-end before anything ended it for good.
ACTIVE = "active"
#: Loans read per query (bounded ``IN`` lists on every database).
_CHUNK = 500


@dataclass(frozen=True)
class Month:
    """A calendar month: ``index`` counts months (``year * 12 + month - 1``), so the next month
    is ``index + 1``; ``label`` is ``YYYY-MM``."""

    year: int
    month: int

    @property
    def index(self) -> int:
        return self.year * 12 + self.month - 1

    @property
    def label(self) -> str:
        return f"{self.year:04d}-{self.month:02d}"

    @property
    def last_day(self) -> date:
        return date(self.year, self.month, monthrange(self.year, self.month)[1])

    @property
    def first_day(self) -> date:
        return date(self.year, self.month, 1)

    @property
    def following(self) -> Month:
        return Month(self.year + self.month // 12, self.month % 12 + 1)

    @property
    def preceding(self) -> Month:
        return Month(self.year - (self.month == 1), 12 if self.month == 1 else self.month - 1)

    @classmethod
    def of(cls, day: date) -> Month:
        return cls(day.year, day.month)

    def end(self, tz_name: str) -> datetime:
        """The last instant of the month on the borrower's clock (UTC): one microsecond before
        local midnight starting the next month."""
        return calendar.local_instant(self.following.first_day, time(0, 0), tz_name) - timedelta(microseconds=1)


def months_from(first: Month, last: Month) -> list[Month]:
    """``first`` ... ``last`` inclusive (empty when ``last`` is before ``first``)."""
    months, month = [], first
    while month.index <= last.index:
        months.append(month)
        month = month.following
    return months


def months_back(month: Month, count: int) -> Month:
    """The month ``count`` months before ``month``."""
    index = month.index - count
    return Month(index // 12, index % 12 + 1)


@dataclass(frozen=True)
class Snapshot:
    """One loan at one month-end: DPD and the overdue amount (minor units) as the ledger adds
    them up, and ``status``: ``active``, or what ended the loan for good by then (``written_off``,
    ``settled``, ``closed_bankruptcy``...)."""

    loan_id: str
    month: str
    month_index: int
    month_end: datetime
    days_past_due: int
    overdue_minor: int
    status: str


@dataclass
class _BookLoan:
    loan: Loan
    instalments: list[LoanInstalmentRecord]
    payments: list[LoanPaymentRecord]


def _aware(value: datetime | None) -> datetime | None:
    """A stored instant as UTC (SQLite gives them back naive, PostgreSQL aware)."""
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def read_book(connection: Connection, loan_ids: Iterable[str]) -> list[_BookLoan]:
    """The loans ``loan_ids`` of the loan book with their schedules and payments (loans the book
    does not have are left out: cases opened by hand)."""
    ids = sorted(set(loan_ids))
    loans: dict[str, _BookLoan] = {}
    with Session(bind=connection) as db:
        for start in range(0, len(ids), _CHUNK):
            chunk = ids[start:start + _CHUNK]
            for loan in db.exec(select(Loan).where(Loan.id.in_(chunk))):  # type: ignore[attr-defined]
                loans[loan.id] = _BookLoan(loan, [], [])
            for line in db.exec(select(LoanInstalmentRecord).where(LoanInstalmentRecord.loan_id.in_(chunk))  # type: ignore[attr-defined]
                                .order_by(LoanInstalmentRecord.due_date, LoanInstalmentRecord.id)):
                loans[line.loan_id].instalments.append(line)
            for payment in db.exec(select(LoanPaymentRecord).where(LoanPaymentRecord.loan_id.in_(chunk))  # type: ignore[attr-defined]
                                   .order_by(LoanPaymentRecord.id)):
                loans[payment.loan_id].payments.append(payment)
    return [loans[loan_id] for loan_id in ids if loan_id in loans]


def known_at(payments: Sequence[LoanPaymentRecord], instant: datetime) -> list[LoanPaymentRecord]:
    """The payments the product knew of at ``instant``: paid and received by then."""
    return [p for p in payments
            if _aware(p.paid_at) <= instant and _aware(p.received_at) <= instant]  # type: ignore[operator]


def month_end_snapshots(book: Sequence[_BookLoan], policy: CollectionPolicy, months: Sequence[Month], *,
                        now: datetime, ended: dict[str, tuple[datetime, str]] | None = None) -> list[Snapshot]:
    """Every loan of ``book`` at every month-end of ``months`` that has passed at ``now`` in the
    loan's time zone. ``ended``: for a loan ended for good, the instant and what ended it (a
    write-off, a settlement...): from then on its status says so.

    The loan is added up by the ledger with the payments known at the month-end (``known_at``).
    """
    ended = ended or {}
    rows = []
    for entry in book:
        loan = entry.loan
        rules = rules_for(loan, policy)
        end_at, end_status = ended.get(loan.id, (None, ACTIVE))
        for month in months:
            instant = month.end(loan.timezone)
            if instant > now:
                break
            view = derive(ledger_of(loan, entry.instalments, known_at(entry.payments, instant), policy), rules, instant)
            status = end_status if end_at is not None and _aware(end_at) <= instant else ACTIVE  # type: ignore[operator]
            rows.append(Snapshot(loan_id=loan.id, month=month.label, month_index=month.index, month_end=instant,
                                 days_past_due=view.days_past_due, overdue_minor=view.overdue.total, status=status))
    return rows
