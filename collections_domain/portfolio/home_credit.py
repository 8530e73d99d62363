"""Home Credit's ``installments_payments.csv`` as a loan book (real loan data), loan by loan.

Conventions, stated once here and used by the demo, ``simulate`` and the tests:

- **Grain.** A loan is an ``SK_ID_PREV``: ``loan_id`` ``hc-<SK_ID_PREV>``, borrower
  ``hc-<SK_ID_CURR>``. The file is a random sample of instalment rows, so a loan has the
  instalments the sample kept: each ``(NUM_INSTALMENT_NUMBER, NUM_INSTALMENT_VERSION)`` is one
  instalment ``<number>-v<version>`` (rows sharing it are one instalment paid in parts), due on
  ``DAYS_INSTALMENT``; its amount is the largest ``AMT_INSTALMENT`` of its rows, all principal.
- **Payments.** Each row with a ``DAYS_ENTRY_PAYMENT`` and a positive ``AMT_PAYMENT`` is a
  payment of the loan, ``<loan_id>-<number>-v<version>-p<k>``, made at 12:00 local on its day (after
  that day's 09:00 step and the 00:30 scan). The loan book allocates it like any payment: oldest
  instalment first (it pays what is due, whatever instalment the row was recorded against).
- **Money.** Amounts have three decimals; each is parsed as a Decimal and rounded half-up to
  minor units (2 digits), then all arithmetic is integer. Nothing accrues on top (policy
  portfolio ``home-credit``: ``accrual = false``): the file records what was due.
- **Days.** Day offsets are on the borrower's local calendar; instalments fall due at local
  midnight of their day.
- **Markets.** The data has no location. Borrowers are spread over the lender's markets by
  ``SK_ID_CURR % 10``: 0-5 China (Asia/Shanghai, CNY, zh-CN; regions Shanghai, Beijing,
  Guangdong, Zhejiang, Jiangsu, Sichuan), 6 US East (America/New_York, USD, en; US-NY), 7 US
  West (America/Los_Angeles, USD, en; US-CA), 8-9 UK (Europe/London, GBP, en; London,
  Manchester). Amounts keep their numbers; only the currency label changes.
- **Anchor.** The demo puts day 0 of the file on today (``loan_in(anchor=today)``: everything in
  the file is in the past); ``simulate`` instead starts every borrower's loans at one virtual
  day, keeping each borrower's own days apart (``simulation.py``).

Source: Home Credit Default Risk (Kaggle, 2018), a 20,000-row sample: the rows of every loan with
a late, underpaid or unpaid instalment (``data/SOURCE.md``).
"""

from __future__ import annotations

import csv
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path

from collections_domain.case.contract import LoanInstalment, PaymentReceived
from collections_domain.portfolio.loan_book import LoanIn
from collections_domain.rules import calendar

PACKAGED_CSV = Path(__file__).parent / "data" / "home_credit_loans.csv"
PORTFOLIO = "home-credit"
#: When a payment of the file is made, on the borrower's clock.
PAYMENT_WALL_TIME = time(12, 0)
COLUMNS = (
    "SK_ID_PREV",
    "SK_ID_CURR",
    "NUM_INSTALMENT_VERSION",
    "NUM_INSTALMENT_NUMBER",
    "DAYS_INSTALMENT",
    "DAYS_ENTRY_PAYMENT",
    "AMT_INSTALMENT",
    "AMT_PAYMENT",
)


@dataclass(frozen=True)
class Market:
    """Where a borrower lives: time zone, jurisdiction, currency label, message locale and
    ISO 3166-2 region (the ``Region`` search attribute)."""

    timezone: str
    jurisdiction: str
    currency: str
    locale: str
    region: str


#: China's share, one ISO 3166-2 province or municipality per last digit 0-5.
CN_REGIONS = ("CN-SH", "CN-BJ", "CN-GD", "CN-ZJ", "CN-JS", "CN-SC")

MARKETS = {
    **{digit: Market("Asia/Shanghai", "CN", "CNY", "zh-CN", CN_REGIONS[digit]) for digit in range(6)},
    6: Market("America/New_York", "US", "USD", "en", "US-NY"),
    7: Market("America/Los_Angeles", "US", "USD", "en", "US-CA"),
    8: Market("Europe/London", "UK", "GBP", "en", "GB-LND"),
    9: Market("Europe/London", "UK", "GBP", "en", "GB-MAN"),
}


def market_for(sk_id_curr: int) -> Market:
    """The market convention for a Home Credit client id."""
    return MARKETS[sk_id_curr % 10]


def to_minor(amount: str) -> int:
    """A decimal amount string (``"5202.945"``) in minor units, rounded half-up (520295)."""
    return int((Decimal(amount) * 100).quantize(Decimal(1), rounding=ROUND_HALF_UP))


@dataclass(frozen=True)
class HcInstalment:
    """An instalment of a file loan: ``amount_minor`` of principal due on day ``due_day``."""

    instalment_id: str
    due_day: int
    amount_minor: int


@dataclass(frozen=True)
class HcPayment:
    """A payment of a file loan: ``amount_minor`` on day ``day`` (12:00 local)."""

    payment_id: str
    day: int
    amount_minor: int
    #: The instalment the file recorded it against (``HcInstalment.instalment_id``).
    instalment_id: str = ""


@dataclass
class HomeCreditLoan:
    """One loan of the file, its instalments (by due day) and payments (by day)."""

    loan_id: str
    source_loan_id: str
    borrower_id: str
    sk_id_curr: int
    instalments: list[HcInstalment] = field(default_factory=list)
    payments: list[HcPayment] = field(default_factory=list)

    @property
    def market(self) -> Market:
        """The borrower's market (time zone, jurisdiction, currency, locale, region)."""
        return market_for(self.sk_id_curr)

    @property
    def first_day(self) -> int:
        """The loan's first day in the file (its first instalment or payment)."""
        return min([i.due_day for i in self.instalments] + [p.day for p in self.payments])

    def loan_in(self, anchor: date) -> LoanIn:
        """The loan as the servicing system sends it, with day 0 of the file on ``anchor``."""
        market = self.market
        return LoanIn(
            loan_id=self.loan_id, borrower_id=self.borrower_id, currency=market.currency, timezone=market.timezone,
            jurisdiction=market.jurisdiction, region=market.region, portfolio=PORTFOLIO,  # type: ignore[arg-type]
            instalments=[
                LoanInstalment(instalment_id=i.instalment_id, due_date=anchor + timedelta(days=i.due_day),
                               principal_minor=i.amount_minor)
                for i in self.instalments
            ],
        )

    def paid_at(self, payment: HcPayment, anchor: date) -> datetime:
        """The instant (UTC) ``payment`` is made when day 0 of the file is ``anchor``."""
        return calendar.local_instant(anchor + timedelta(days=payment.day), PAYMENT_WALL_TIME, self.market.timezone)

    def payment_received(self, payment: HcPayment, anchor: date) -> PaymentReceived:
        """``payment`` as the gateway reports it."""
        return PaymentReceived(payment_id=payment.payment_id, amount_minor=payment.amount_minor,
                               currency=self.market.currency, paid_at=self.paid_at(payment, anchor))


class DataFileError(ValueError):
    """The CSV is missing a column or has a malformed value; the message names row and column."""


def read_loans(path: Path | str = PACKAGED_CSV) -> list[HomeCreditLoan]:
    """Every loan of an ``installments_payments.csv`` file, sorted by ``loan_id`` (a UTF-8
    byte-order mark is read as such).

    Raises:
        DataFileError: a required column is missing or a value cannot be parsed.
    """
    path = Path(path)
    groups: dict[str, list[tuple[int, dict[str, str]]]] = {}
    with path.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        missing = [c for c in COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise DataFileError(f"{path}: missing columns {missing}")
        for number, row in enumerate(reader, start=2):
            groups.setdefault(row["SK_ID_PREV"], []).append((number, row))
    loans = []
    for prev, rows in groups.items():
        try:
            loans.append(_loan_from_rows(prev, rows))
        except (ValueError, ArithmeticError) as err:
            raise DataFileError(f"{path}: loan {prev} (line {rows[0][0]}): {err}") from err
    return sorted(loans, key=lambda loan: loan.loan_id)


def _loan_from_rows(prev: str, rows: list[tuple[int, dict[str, str]]]) -> HomeCreditLoan:
    loan_id = f"hc-{int(float(prev))}"
    curr = int(float(rows[0][1]["SK_ID_CURR"]))
    loan = HomeCreditLoan(loan_id=loan_id, source_loan_id=str(int(float(prev))), borrower_id=f"hc-{curr}", sk_id_curr=curr)
    by_instalment: dict[str, list[dict[str, str]]] = {}
    for _, row in rows:
        key = f"{int(float(row['NUM_INSTALMENT_NUMBER']))}-v{int(float(row['NUM_INSTALMENT_VERSION']))}"
        by_instalment.setdefault(key, []).append(row)
    for key, group in by_instalment.items():
        loan.instalments.append(HcInstalment(key, int(float(group[0]["DAYS_INSTALMENT"])),
                                             max(to_minor(r["AMT_INSTALMENT"]) for r in group)))
        made = [(int(float(r["DAYS_ENTRY_PAYMENT"])), to_minor(r["AMT_PAYMENT"])) for r in group
                if r["DAYS_ENTRY_PAYMENT"] and r["AMT_PAYMENT"]]
        for k, (day, amount) in enumerate(sorted(made), start=1):
            if amount > 0:
                loan.payments.append(HcPayment(f"{loan_id}-{key}-p{k}", day, amount, key))
    loan.instalments.sort(key=lambda i: (i.due_day, i.instalment_id))
    loan.payments.sort(key=lambda p: (p.day, p.payment_id))
    return loan


def needs_collection(loan: HomeCreditLoan) -> bool:
    """Whether the file shows ``loan`` in arrears at some point: an instalment whose payments
    recorded against it on or before its due day add up to less than its amount (late,
    underpaid or unpaid). The packaged file holds every row of the sample's loans for which this
    holds (``data/SOURCE.md``)."""
    for instalment in loan.instalments:
        paid = sum(p.amount_minor for p in loan.payments
                   if p.instalment_id == instalment.instalment_id and p.day <= instalment.due_day)
        if paid < instalment.amount_minor:
            return True
    return False


def recent_first(loans: Iterable[HomeCreditLoan]) -> list[HomeCreditLoan]:
    """Loans whose last instalment is the most recent first (the demo shows these)."""
    return sorted(loans, key=lambda loan: (-max(i.due_day for i in loan.instalments), loan.loan_id))


def borrower_row(loan: HomeCreditLoan) -> dict[str, str]:
    """Synthetic contact details for a Home Credit client (the data has none), clearly fake."""
    market = loan.market
    return {
        "id": loan.borrower_id,
        "full_name": f"Home Credit client {loan.sk_id_curr}",
        "phone": f"+000 {loan.sk_id_curr:08d}",
        "email": f"client{loan.sk_id_curr}@example.invalid",
        "postal_address": f"Client {loan.sk_id_curr}, address on file",
        "locale": market.locale,
        "timezone": market.timezone,
        "source": "home-credit",
    }


def load_into_book(engine, policy, loans: Iterable[HomeCreditLoan], anchor: date, until: datetime) -> int:
    """Put ``loans`` in the loan book as the servicing system would have them at ``until``: each
    borrower (with the synthetic contact details), the loan and its schedule (day 0 on
    ``anchor``), and the payments made by then, each received when it was made. Returns how many
    loans. Idempotent."""
    from sqlmodel import Session

    from collections_domain.portfolio import loan_book
    from collections_domain.store.models import Borrower

    loans = list(loans)
    with Session(engine) as db:
        for loan in {loan.borrower_id: loan for loan in loans}.values():
            db.merge(Borrower(**borrower_row(loan)))
        db.commit()
    for loan in loans:
        loan_book.upsert_loan(engine, loan.loan_in(anchor), policy, source="home-credit")
        for payment in loan.payments:
            paid_at = loan.paid_at(payment, anchor)
            if paid_at <= until:
                # The servicing system received each payment of its history when it was made: the
                # book holds them as received then (month-end DPD, roll rates), not at the load.
                loan_book.record_payment(engine, loan.loan_id, loan.payment_received(payment, anchor), source="home-credit",
                                         now=paid_at)
        loan_book.refresh(engine, loan.loan_id, policy, until)
    return len(loans)
