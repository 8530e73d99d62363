"""Turn Home Credit's ``installments_payments.csv`` into collections cases (real loan data).

Conventions, stated once here and used by ``load`` (the demo), ``simulate`` and the tests:

- **Grain.** The file is a random sample of instalment rows, so each instalment is its own
  case: ``loan_id`` is ``hc-<SK_ID_PREV>-<NUM_INSTALMENT_NUMBER>-v<NUM_INSTALMENT_VERSION>``
  (rows sharing that key are one instalment paid in parts); ``borrower_id`` is
  ``hc-<SK_ID_CURR>``.
- **Money.** Amounts have three decimals; each amount (due and each payment) is parsed as a
  Decimal and rounded half-up to minor units (2 digits), then all arithmetic is integer.
- **Days.** ``DAYS_INSTALMENT`` (due) and ``DAYS_ENTRY_PAYMENT`` (paid) are day offsets on the
  borrower's local calendar. A payment on or before the due day is on time: it lowers the
  amount overdue when the case opens. A payment ``k`` days after the due day is a late payment,
  sent as ``payment_received`` at 12:00 local on DPD ``k`` (after that day's 09:00 step).
- **Cases.** An instalment is a case when its amount due exceeds its on-time payments (late,
  underpaid or unpaid).
- **Markets.** The data has no location. Borrowers are spread over the lender's markets by
  ``SK_ID_CURR % 10``: 0-5 China (Asia/Shanghai, CNY, zh-CN; regions Shanghai, Beijing,
  Guangdong, Zhejiang, Jiangsu, Sichuan), 6 US East (America/New_York, USD, en; US-NY), 7 US
  West (America/Los_Angeles, USD, en; US-CA), 8-9 UK (Europe/London, GBP, en; London,
  Manchester). Amounts keep their numbers; only the currency label changes.
- **Anchor.** For the portfolio ``load``, day 0 of the file is the anchor date (default: today,
  UTC): a due day -12 is the local date anchor - 12 days. ``simulate`` instead replays every
  case from its own first day past due (see ``simulation.py``).

Source: Home Credit Default Risk (Kaggle, 2018), a 20,000-row sample; see ``data/SOURCE.md``.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, timedelta
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path

from collections_domain.case.contract import CaseInput

PACKAGED_CSV = Path(__file__).parent / "data" / "home_credit_installments_cases.csv"
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
class LatePayment:
    """A payment ``days_after_due`` days after the due day, in minor units."""

    payment_id: str
    days_after_due: int
    amount_minor: int


@dataclass
class HomeCreditCase:
    """One late, underpaid or unpaid instalment: a collections case.

    ``due_day`` is the file's day offset; ``opening_minor`` is the amount due minus on-time
    payments; ``late_payments`` are sorted by day.
    """

    loan_id: str
    borrower_id: str
    sk_id_curr: int
    due_day: int
    instalment_minor: int
    opening_minor: int
    late_payments: list[LatePayment] = field(default_factory=list)

    @property
    def market(self) -> Market:
        """The borrower's market (time zone, jurisdiction, currency, locale)."""
        return market_for(self.sk_id_curr)

    def case_input(self, oldest_due_date: date, principal_due_minor: int | None = None) -> CaseInput:
        """The workflow input for this case with its due day at ``oldest_due_date``."""
        market = self.market
        return CaseInput(
            loan_id=self.loan_id,
            borrower_id=self.borrower_id,
            currency=market.currency,
            principal_due_minor=self.opening_minor if principal_due_minor is None else principal_due_minor,
            oldest_due_date=oldest_due_date,
            timezone=market.timezone,
            jurisdiction=market.jurisdiction,
            region=market.region,
        )


class DataFileError(ValueError):
    """The CSV is missing a column or has a malformed value; the message names row and column."""


def read_cases(path: Path | str = PACKAGED_CSV) -> list[HomeCreditCase]:
    """Every case in an ``installments_payments.csv`` file, sorted by ``loan_id``.

    Raises:
        DataFileError: a required column is missing or a value cannot be parsed.
    """
    path = Path(path)
    groups: dict[tuple[str, str, str], list[dict[str, str]]] = {}
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        missing = [c for c in COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise DataFileError(f"{path}: missing columns {missing}")
        for row in reader:
            key = (row["SK_ID_PREV"], row["NUM_INSTALMENT_NUMBER"], row["NUM_INSTALMENT_VERSION"])
            groups.setdefault(key, []).append(row)
    cases = []
    for (prev, number, version), rows in groups.items():
        try:
            case = _case_from_rows(prev, number, version, rows)
        except (ValueError, ArithmeticError) as err:
            raise DataFileError(f"{path}: instalment {prev}/{number}/{version}: {err}") from err
        if case is not None:
            cases.append(case)
    return sorted(cases, key=lambda c: c.loan_id)


def _case_from_rows(prev: str, number: str, version: str, rows: list[dict[str, str]]) -> HomeCreditCase | None:
    due_day = int(float(rows[0]["DAYS_INSTALMENT"]))
    instalment_minor = max(to_minor(r["AMT_INSTALMENT"]) for r in rows)
    loan_id = f"hc-{prev}-{number}-v{int(float(version))}"
    on_time = 0
    late: list[tuple[int, int]] = []
    for row in rows:
        if not row["DAYS_ENTRY_PAYMENT"] or not row["AMT_PAYMENT"]:
            continue
        paid_day = int(float(row["DAYS_ENTRY_PAYMENT"]))
        amount = to_minor(row["AMT_PAYMENT"])
        if amount <= 0:
            continue
        if paid_day <= due_day:
            on_time += amount
        else:
            late.append((paid_day - due_day, amount))
    opening = instalment_minor - on_time
    if opening <= 0:
        return None
    late.sort()
    payments = [
        LatePayment(payment_id=f"{loan_id}-p{i + 1}", days_after_due=days, amount_minor=amount)
        for i, (days, amount) in enumerate(late)
    ]
    return HomeCreditCase(
        loan_id=loan_id,
        borrower_id=f"hc-{int(float(rows[0]['SK_ID_CURR']))}",
        sk_id_curr=int(float(rows[0]["SK_ID_CURR"])),
        due_day=due_day,
        instalment_minor=instalment_minor,
        opening_minor=opening,
        late_payments=payments,
    )


def open_at_anchor(cases: Iterable[HomeCreditCase]) -> list[tuple[HomeCreditCase, int]]:
    """Cases still owing at the end of the file (day 0), with the amount owed then (minor units).

    Late payments made before day 0 are netted into that amount: a servicing system reports
    what is overdue now. Newest due date first.
    """
    still_open = []
    for case in cases:
        owed = case.opening_minor - sum(p.amount_minor for p in case.late_payments if case.due_day + p.days_after_due < 0)
        if owed > 0 and case.due_day < 0:
            still_open.append((case, owed))
    return sorted(still_open, key=lambda item: (-item[0].due_day, item[0].loan_id))


def due_date_at_anchor(case: HomeCreditCase, anchor: date) -> date:
    """The case's due date when day 0 of the file is ``anchor``."""
    return anchor + timedelta(days=case.due_day)


def borrower_row(case: HomeCreditCase) -> dict[str, str]:
    """Synthetic contact details for a Home Credit client (the data has none), clearly fake."""
    market = case.market
    return {
        "id": case.borrower_id,
        "full_name": f"Home Credit client {case.sk_id_curr}",
        "phone": f"+000 {case.sk_id_curr:08d}",
        "email": f"client{case.sk_id_curr}@example.invalid",
        "postal_address": f"Client {case.sk_id_curr}, address on file",
        "locale": market.locale,
        "timezone": market.timezone,
        "source": "home-credit",
    }
