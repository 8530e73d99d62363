"""The loan book: the loans the servicing system feeds the product, with their schedules and
payments, whether or not a collections case is open (``loans``, ``loan_instalments``,
``loan_payments``).

The servicing system posts loans (with their instalments), payments, reversals, new
instalments and schedule adjustments through the HTTP API or the nightly CSV file
(``import_csv``). The book adds them up with the same ledger as the cases
(``case.ledger.derive``), keeps each loan's oldest unpaid due date for the delinquency scan
(``portfolio.scan``), and gives a new case exactly the facts it needs: the instalments that fell
due since the loan was last current, the payments since then, and the credit it had then
(``case_input``). Everything here is idempotent: the same loan, instalment or payment posted
again changes nothing; the same id with other values is refused (``BookConflict``), naming it.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from datetime import UTC, datetime, time
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from collections_domain.case.contract import (
    CURRENCY_PATTERN,
    ID_PATTERN,
    REGION_PATTERN,
    CaseInput,
    Identifier,
    LoanInstalment,
    OpeningPayment,
    OpeningReason,
    PaymentReceived,
    PaymentReversed,
    ScheduleAdjusted,
    describe_errors,
)
from collections_domain.case.money import value_instant
from collections_domain.case.ledger import Ledger, LedgerLine, LedgerPayment, LedgerRules, LedgerView, derive
from collections_domain.rules import calendar
from collections_domain.rules.policy import CollectionPolicy
from collections_domain.rules.validation import (
    book_instalment_problem,
    book_loan_problems,
    payment_entry_problem,
    total_problem,
)
from collections_domain.store.db import session
from collections_domain.store.models import Borrower, Loan, LoanInstalmentRecord, LoanPaymentRecord, WriteOff


class BookConflict(ValueError):
    """An id the book already has came with other values; the message reads ``"field: rule"``."""


class BookRefused(ValueError):
    """What was sent to the book breaks a rule (``rules.validation``): ``problems`` lists each as
    ``"field: rule"``; the message joins them with ``"; "``."""

    def __init__(self, *problems: str) -> None:
        super().__init__("; ".join(problems))
        self.problems = list(problems)


class LoanIn(BaseModel):
    """A loan as the servicing system sends it: ids, currency, the borrower's calendar and
    jurisdiction, its portfolio, and its ``instalments`` (all of them, due or not). Amounts in
    minor units; dates ``YYYY-MM-DD`` on the borrower's calendar. Posting it again adds new
    instalments and changes nothing else (a changed instalment is an adjustment)."""

    model_config = ConfigDict(extra="forbid")
    loan_id: Identifier
    borrower_id: Identifier
    currency: str = Field("CNY", pattern=CURRENCY_PATTERN)
    timezone: str = Field("Asia/Shanghai", min_length=1, max_length=64)
    jurisdiction: Literal["CN", "US", "UK"] = "CN"
    region: str | None = Field(None, pattern=REGION_PATTERN)
    portfolio: str | None = Field(None, pattern=ID_PATTERN)
    instalments: list[LoanInstalment] = Field(default_factory=list, max_length=1000)

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        calendar.zone(value)  # UnknownTimeZoneError is a ValueError: named by pydantic
        return value

    @field_validator("instalments")
    @classmethod
    def _unique(cls, value: list[LoanInstalment]) -> list[LoanInstalment]:
        ids = [line.instalment_id for line in value]
        repeated = sorted({i for i in ids if ids.count(i) > 1})
        if repeated:
            raise ValueError(f"each instalment_id once, repeated: {repeated}")
        for line in value:
            problem = book_instalment_problem(line)
            if problem:
                raise ValueError(f"instalment {line.instalment_id}: {problem}")
        problem = total_problem((line.total_minor for line in value), "instalments")
        if problem:
            raise ValueError(problem.removeprefix("instalments: "))
        return value


@dataclass
class BookChange:
    """What a write to the book did: ``created`` (new rows), ``unchanged`` (already there)."""

    created: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)


def _utc(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _now() -> datetime:
    return datetime.now(UTC)


# -- writes ------------------------------------------------------------------------------------


def upsert_loan(engine: Engine, loan: LoanIn, policy: CollectionPolicy, *, source: str = "api") -> BookChange:
    """Add ``loan`` and any of its instalments the book lacks (a borrower row is created with no
    contact details when the book has none: contacts then go to manual review).

    Raises:
        BookRefused: the loan breaks a rule (``rules.validation.book_loan_problems``: a currency
            ``policy`` covers, amounts adding up to at most 2^53-1).
        BookConflict: the loan is in the book with another borrower or currency, or an
            instalment id with another due date or amounts.
    """
    problems = book_loan_problems(loan.currency, loan.instalments, policy, calendar.local_date(_now(), loan.timezone))
    if problems:
        raise BookRefused(*problems)
    change = BookChange()
    now = _now()
    with session(engine) as db:
        row = db.get(Loan, loan.loan_id)
        if row is not None and (row.borrower_id, row.currency) != (loan.borrower_id, loan.currency):
            raise BookConflict(f"loan_id: loan {loan.loan_id} is in the book for borrower {row.borrower_id} in "
                               f"{row.currency}; a different loan needs its own loan_id")
        if db.get(Borrower, loan.borrower_id) is None:
            db.add(Borrower(id=loan.borrower_id, full_name=loan.borrower_id, timezone=loan.timezone,
                            locale="zh-CN" if loan.jurisdiction == "CN" else "en", source=source))
            db.flush()
        if row is None:
            row = Loan(id=loan.loan_id, borrower_id=loan.borrower_id, currency=loan.currency, source=source)
            change.created.append(f"loan {loan.loan_id}")
        row.timezone, row.jurisdiction, row.region, row.portfolio = loan.timezone, loan.jurisdiction, loan.region, loan.portfolio
        row.updated_at = now
        db.add(row)
        db.flush()
        for instalment in loan.instalments:
            _add_instalment(db, loan.loan_id, instalment, change, now, loan.timezone)
        db.commit()
    return change


def _add_instalment(db: Session, loan_id: str, instalment: LoanInstalment, change: BookChange, now: datetime,
                    timezone: str, field: str = "") -> None:
    problem = book_instalment_problem(instalment, field, today=calendar.local_date(now, timezone))
    if problem:
        raise BookRefused(problem)
    known = db.exec(select(LoanInstalmentRecord).where(LoanInstalmentRecord.loan_id == loan_id,
                                                       LoanInstalmentRecord.instalment_id == instalment.instalment_id)).first()
    values = (instalment.due_date, instalment.principal_minor, instalment.interest_minor, instalment.fees_minor)
    if known is None:
        charged = db.exec(select(LoanInstalmentRecord).where(LoanInstalmentRecord.loan_id == loan_id,
                                                             LoanInstalmentRecord.cancelled_at.is_(None))).all()  # type: ignore[union-attr]
        problem = total_problem([instalment.total_minor] + [r.principal_minor + r.interest_minor + r.fees_minor for r in charged],
                                "instalments")
        if problem:
            raise BookRefused(f"{problem} (with the loan's other instalments)")
    if known is not None:
        if (known.due_date, known.principal_minor, known.interest_minor, known.fees_minor) != values:
            raise BookConflict(f"instalment_id: instalment {instalment.instalment_id} of loan {loan_id} is in the book "
                               f"due {known.due_date} for {known.principal_minor}/{known.interest_minor}/{known.fees_minor}; "
                               "change it with a schedule adjustment")
        change.unchanged.append(f"instalment {instalment.instalment_id}")
        return
    db.add(LoanInstalmentRecord(loan_id=loan_id, instalment_id=instalment.instalment_id, due_date=instalment.due_date,
                                principal_minor=instalment.principal_minor, interest_minor=instalment.interest_minor,
                                fees_minor=instalment.fees_minor, updated_at=now))
    change.created.append(f"instalment {instalment.instalment_id}")


def add_instalment(engine: Engine, loan_id: str, instalment: LoanInstalment) -> BookChange:
    """Add one instalment to a loan's schedule (it fell due, or is announced).

    Raises:
        LookupError: the loan is not in the book. BookConflict: the id is there with other values.
        BookRefused: the instalment breaks a rule (``rules.validation.book_instalment_problem``).
    """
    change = BookChange()
    with session(engine) as db:
        row = db.get(Loan, loan_id)
        if row is None:
            raise LookupError(f"loan_id: loan {loan_id} is not in the loan book")
        _add_instalment(db, loan_id, instalment, change, _now(), row.timezone)
        db.commit()
    return change


def adjust_schedule(engine: Engine, loan_id: str, adjustment: ScheduleAdjusted) -> BookChange:
    """Cancel and add instalments of a loan's schedule (a restructure, a cancellation).

    Raises:
        LookupError: the loan or an instalment to cancel is not in the book.
        BookConflict: an instalment to add is there with other values.
        BookRefused: an instalment to add breaks a rule (nothing of the adjustment is written).
    """
    change = BookChange()
    now = _now()
    with session(engine) as db:
        loan = db.get(Loan, loan_id)
        if loan is None:
            raise LookupError(f"loan_id: loan {loan_id} is not in the loan book")
        for index, instalment_id in enumerate(adjustment.cancel):
            row = db.exec(select(LoanInstalmentRecord).where(LoanInstalmentRecord.loan_id == loan_id,
                                                             LoanInstalmentRecord.instalment_id == instalment_id)).first()
            if row is None:
                raise LookupError(f"cancel.{index}: instalment {instalment_id} of loan {loan_id} is not in the loan book")
            if row.cancelled_at is None:
                row.cancelled_at, row.updated_at = adjustment.effective_at or now, now
                db.add(row)
                change.created.append(f"cancel {instalment_id}")
        for index, instalment in enumerate(adjustment.add):
            _add_instalment(db, loan_id, instalment, change, now, loan.timezone, f"add.{index}")
        db.commit()
    return change


def currency_of(engine: Engine, loan_id: str) -> str | None:
    """The currency of loan ``loan_id`` of the book, or ``None`` when the book does not have it."""
    with Session(engine) as db:
        loan = db.get(Loan, loan_id)
        return loan.currency if loan is not None else None


def record_payment(engine: Engine, loan_id: str, payment: PaymentReceived, *, source: str = "api",
                   now: datetime | None = None) -> bool | None:
    """Record a payment of a loan of the book (``loan_payments``), once per ``payment_id``; after
    a write-off it is a recovery. ``now``: the receiver's clock (default: this process's), which
    ``paid_at`` is checked against. Returns ``True`` when stored now, ``False`` when that payment
    was there already, ``None`` when the loan is not in the book.

    Raises:
        BookRefused: the payment breaks a rule where it enters (``payment_entry_problem``: a
            positive amount in the loan's currency, ``paid_at`` not ahead of ``now``, at most 10
            years back), or would take the loan's payments above 2^53-1 in total.
        BookConflict: that payment id is there with another amount or currency.
    """
    now = now or _now()
    with session(engine) as db:
        loan = db.get(Loan, loan_id)
        if loan is None:
            return None
        problem = payment_entry_problem(payment, currency=loan.currency, now=now)
        if problem:
            raise BookRefused(problem)
        known = db.exec(select(LoanPaymentRecord).where(LoanPaymentRecord.loan_id == loan_id,
                                                        LoanPaymentRecord.payment_id == payment.payment_id)).first()
        if known is not None:
            if (known.amount_minor, known.currency) != (payment.amount_minor, payment.currency):
                raise BookConflict(f"payment_id: payment {payment.payment_id} of loan {loan_id} is in the book as "
                                   f"{known.amount_minor} {known.currency}; a different payment needs its own payment_id")
            return False
        paid = db.exec(select(LoanPaymentRecord.amount_minor).where(LoanPaymentRecord.loan_id == loan_id,
                                                                    LoanPaymentRecord.reversed_at.is_(None))).all()  # type: ignore[union-attr]
        problem = total_problem([payment.amount_minor, *paid], "amount_minor")
        if problem:
            raise BookRefused(f"{problem} (with the loan's other payments)")
        db.add(LoanPaymentRecord(loan_id=loan_id, payment_id=payment.payment_id, amount_minor=payment.amount_minor,
                                 currency=payment.currency, paid_at=payment.paid_at.astimezone(UTC), received_at=now,
                                 recovery=loan.status == "written_off", source=source))
        db.commit()
    return True


def record_reversal(engine: Engine, loan_id: str, reversal: PaymentReversed) -> bool | None:
    """Mark a payment of the book reversed. Returns ``True`` when marked now, ``False`` when it
    was already, ``None`` when the book has no such payment (or no such loan)."""
    with session(engine) as db:
        row = db.exec(select(LoanPaymentRecord).where(LoanPaymentRecord.loan_id == loan_id,
                                                      LoanPaymentRecord.payment_id == reversal.payment_id)).first()
        if row is None:
            return None
        if row.reversed_at is not None:
            return False
        row.reversed_at = reversal.reversed_at or _now()
        row.reversal_id, row.reversal_reason = reversal.reversal_id, reversal.reason
        db.add(row)
        db.commit()
    return True


def mark_sent(engine: Engine, loan_id: str, *, episode: str, instalments: list[str] = (), payments: list[str] = ()) -> None:
    """Remember that these instalments and payments reached the case ``episode`` (a run id)."""
    with session(engine) as db:
        for row in db.exec(select(LoanInstalmentRecord).where(LoanInstalmentRecord.loan_id == loan_id,
                                                              LoanInstalmentRecord.instalment_id.in_(list(instalments)))):  # type: ignore[attr-defined]
            row.forwarded_to = episode
            db.add(row)
        for row in db.exec(select(LoanPaymentRecord).where(LoanPaymentRecord.loan_id == loan_id,
                                                           LoanPaymentRecord.payment_id.in_(list(payments)))):  # type: ignore[attr-defined]
            row.case_episode_id = row.case_episode_id or episode
            db.add(row)
        db.commit()


# -- reading the book --------------------------------------------------------------------------


class Recovery(BaseModel):
    """What came back on a written-off loan: ``written_off_minor`` (the case's write-off,
    table ``write_offs``), ``recovered_minor`` (payments received after it and not reversed,
    ``loan_payments.recovery``) and ``remaining_minor`` (written off and not recovered, >= 0)."""

    written_off_minor: int
    recovered_minor: int
    remaining_minor: int
    written_off_at: datetime


@dataclass
class BookLoan:
    """One loan of the book with its schedule and payments, and what they add up to;
    ``recovery`` once the loan was written off."""

    loan: Loan
    instalments: list[LoanInstalmentRecord]
    payments: list[LoanPaymentRecord]
    view: LedgerView
    recovery: Recovery | None = None


def ledger_of(loan: Loan, instalments: list[LoanInstalmentRecord], payments: list[LoanPaymentRecord],
              policy: CollectionPolicy) -> Ledger:
    """The book's facts of a loan as a case ledger (the same arithmetic as its cases). A payment
    that went to a case is valued as the case valued it (``money.value_instant``: at most
    ``payments.max_backdate_days`` before it arrived); one the servicing system recorded on its
    own (history, a nightly file) as of its ``paid_at``."""
    lines = [
        LedgerLine(instalment_id=i.instalment_id, due_date=i.due_date, principal_minor=i.principal_minor,
                   interest_minor=i.interest_minor, fees_minor=i.fees_minor, added_at=_utc(i.updated_at) or _now(),
                   cancelled_at=_utc(i.cancelled_at))
        for i in instalments
    ]
    paid = [
        LedgerPayment(payment_id=p.payment_id, amount_minor=p.amount_minor, paid_at=_utc(p.paid_at),  # type: ignore[arg-type]
                      value_at=(value_instant(_utc(p.paid_at), _utc(p.received_at), policy)  # type: ignore[arg-type]
                                if p.case_episode_id else _utc(p.paid_at)),
                      received_at=_utc(p.received_at), reversed_at=_utc(p.reversed_at),  # type: ignore[arg-type]
                      reversal_id=p.reversal_id)
        for p in payments if p.currency == loan.currency
    ]
    return Ledger(lines=lines, payments=paid)


def rules_for(loan: Loan, policy: CollectionPolicy) -> LedgerRules:
    """How the book adds up ``loan``: the policy's waterfall and accrual for its jurisdiction and portfolio."""
    return LedgerRules.for_case(policy, jurisdiction=loan.jurisdiction, currency=loan.currency, timezone=loan.timezone,
                                portfolio=loan.portfolio)


def read_loan(engine: Engine, loan_id: str, policy: CollectionPolicy, now: datetime | None = None) -> BookLoan | None:
    """Loan ``loan_id`` of the book as of ``now`` (default: the clock), or ``None``."""
    now = now or _now()
    with Session(engine, expire_on_commit=False) as db:
        loan = db.get(Loan, loan_id)
        if loan is None:
            return None
        instalments = list(db.exec(select(LoanInstalmentRecord).where(LoanInstalmentRecord.loan_id == loan_id)
                                   .order_by(LoanInstalmentRecord.due_date, LoanInstalmentRecord.id)))
        payments = list(db.exec(select(LoanPaymentRecord).where(LoanPaymentRecord.loan_id == loan_id)
                                .order_by(LoanPaymentRecord.id)))
        write_off = db.exec(select(WriteOff).where(WriteOff.loan_id == loan_id)
                            .order_by(WriteOff.written_off_at.desc())).first()  # type: ignore[attr-defined]
    view = derive(ledger_of(loan, instalments, payments, policy), rules_for(loan, policy), now)
    return BookLoan(loan, instalments, payments, view, _recovery(write_off, payments))


def _recovery(write_off: WriteOff | None, payments: list[LoanPaymentRecord]) -> Recovery | None:
    if write_off is None:
        return None
    recovered = sum(p.amount_minor for p in payments
                    if p.recovery and p.reversed_at is None and p.currency == write_off.currency)
    return Recovery(written_off_minor=write_off.amount_minor, recovered_minor=recovered,
                    remaining_minor=max(write_off.amount_minor - recovered, 0),
                    written_off_at=_utc(write_off.written_off_at))  # type: ignore[arg-type]


def refresh(engine: Engine, loan_id: str, policy: CollectionPolicy, now: datetime | None = None) -> BookLoan | None:
    """Re-add the loan up and keep its oldest unpaid due date (``loans.oldest_unpaid_due_date``)."""
    book = read_loan(engine, loan_id, policy, now)
    if book is None:
        return None
    owing = [line.due_date for line in book.view.lines if line.status in ("open", "not_due")]
    oldest = min(owing) if owing else None
    with session(engine) as db:
        row = db.get(Loan, loan_id)
        if row is not None and row.oldest_unpaid_due_date != oldest:
            row.oldest_unpaid_due_date = oldest
            db.add(row)
            db.commit()
    return book


def case_input(book: BookLoan, *, reason: OpeningReason, policy_version: str | None = None) -> CaseInput:
    """The input of a case for a loan of the book: the instalments due since the loan was last
    current (``LedgerView.current_until``), the payments since then, and the credit left then.

    Raises:
        ValueError: nothing is due (the loan is current).
    """
    loan, view = book.loan, book.view
    since = view.current_until
    tz = loan.timezone
    today = calendar.local_date(view.as_of, tz)
    due_lines = [
        i for i in book.instalments
        if i.due_date <= today and (i.cancelled_at is None or _utc(i.cancelled_at) > view.as_of)
        and (since is None or calendar.local_instant(i.due_date, time(0, 0), tz) > since)
    ]
    if not due_lines:
        raise ValueError(f"loan_id: loan {loan.id} has nothing due since it was last current")
    payments = [
        OpeningPayment(payment_id=p.payment_id, amount_minor=p.amount_minor, paid_at=_utc(p.paid_at))  # type: ignore[arg-type]
        for p in book.payments
        if p.reversed_at is None and p.currency == loan.currency and (since is None or _utc(p.paid_at) > since)
        and _utc(p.paid_at) <= view.as_of  # type: ignore[operator]
    ]
    if since is not None and view.credit_at_current_until > 0:
        payments.insert(0, OpeningPayment(payment_id=f"credit-{calendar.local_date(since, tz).isoformat()}",
                                          amount_minor=view.credit_at_current_until, paid_at=since))
    lines = [LoanInstalment(instalment_id=i.instalment_id, due_date=i.due_date, principal_minor=i.principal_minor,
                            interest_minor=i.interest_minor, fees_minor=i.fees_minor) for i in due_lines]
    return CaseInput(
        loan_id=loan.id, borrower_id=loan.borrower_id, currency=loan.currency,
        oldest_due_date=min(line.due_date for line in lines), timezone=tz, jurisdiction=loan.jurisdiction,
        region=loan.region, portfolio=loan.portfolio, policy_version=policy_version,
        instalments=lines, payments=payments, opening_reason=reason,
    )


# -- the nightly file --------------------------------------------------------------------------

#: The columns of the book's CSV file; ``record`` says what a row is.
CSV_COLUMNS = ("record", "loan_id", "borrower_id", "currency", "timezone", "jurisdiction", "region", "portfolio",
               "instalment_id", "due_date", "principal_minor", "interest_minor", "fees_minor", "payment_id",
               "amount_minor", "paid_at", "reversal_id", "reason")
RECORDS = ("loan", "instalment", "payment", "reversal")


class CsvRowError(ValueError):
    """A row of the book's CSV file breaks a rule; the message names the line and the column."""


@dataclass
class ImportReport:
    """What ``import_csv`` did: counts by record, the loans it touched, and the rows it refused
    (``"line N: field: rule"``; the other rows are imported)."""

    loans: int = 0
    instalments: int = 0
    payments: int = 0
    reversals: int = 0
    unchanged: int = 0
    touched: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    #: The reversals marked now, ``(loan_id, reversal)``: the caller delivers them to the loan's
    #: case (``servicing.deliver_reversal``), which may re-open a case the payment had ended.
    new_reversals: list[tuple[str, PaymentReversed]] = field(default_factory=list)


def _int(value: str, column: str) -> int:
    if value.strip() == "":
        return 0
    try:
        number = int(value.strip())
    except ValueError:
        raise CsvRowError(f"{column}: must be a whole number of minor units, got {value!r}") from None
    return number


def _row_models(row: dict[str, str]) -> Any:
    record = (row.get("record") or "").strip()
    loan_id = (row.get("loan_id") or "").strip()
    if record not in RECORDS:
        raise CsvRowError(f"record: must be one of {', '.join(RECORDS)}, got {record!r}")
    amounts = {name: _int(row.get(name) or "", name) for name in ("principal_minor", "interest_minor", "fees_minor")}
    if record == "loan":
        fields = {k: (row.get(k) or "").strip() for k in ("loan_id", "borrower_id", "currency", "timezone", "jurisdiction")}
        extra = {k: (row.get(k) or "").strip() or None for k in ("region", "portfolio")}
        return record, loan_id, LoanIn(**{k: v for k, v in fields.items() if v}, **extra)
    if record == "instalment":
        return record, loan_id, LoanInstalment(instalment_id=(row.get("instalment_id") or "").strip(),
                                               due_date=(row.get("due_date") or "").strip(), **amounts)
    if record == "payment":
        return record, loan_id, PaymentReceived(payment_id=(row.get("payment_id") or "").strip(),
                                                amount_minor=_int(row.get("amount_minor") or "", "amount_minor"),
                                                currency=(row.get("currency") or "").strip(),
                                                paid_at=(row.get("paid_at") or "").strip())
    return record, loan_id, PaymentReversed(reversal_id=(row.get("reversal_id") or "").strip(),
                                            payment_id=(row.get("payment_id") or "").strip(),
                                            reason=(row.get("reason") or "").strip() or "other",
                                            reversed_at=(row.get("paid_at") or "").strip() or None)


def read_csv_rows(text: str) -> tuple[list[tuple[int, str, str, Any]], list[str]]:
    """Parse the book's CSV text (a UTF-8 byte-order mark is read as such): the rows as
    ``(line, record, loan_id, model)`` and the errors of the rows refused."""
    text = text.removeprefix("\ufeff")
    reader = csv.DictReader(io.StringIO(text))
    columns = [c.strip() for c in reader.fieldnames or []]
    missing = [c for c in ("record", "loan_id") if c not in columns]
    if missing:
        return [], [f"line 1: the header lacks {missing}; columns: {', '.join(CSV_COLUMNS)}"]
    unknown = sorted(set(columns) - set(CSV_COLUMNS))
    if unknown:
        return [], [f"line 1: unknown columns {unknown}; columns: {', '.join(CSV_COLUMNS)}"]
    rows, errors = [], []
    for raw in reader:
        number = reader.line_num  # the physical line the row ends on (blank lines and quoted newlines count)
        if None in raw:
            errors.append(f"line {number}: {len(columns) + len(raw[None])} fields, the header has {len(columns)} columns")
            continue
        row = {(k or "").strip(): (v or "") for k, v in raw.items()}
        if not any(value.strip() for value in row.values()):
            continue  # a row of empty fields (a spreadsheet's trailing rows)
        try:
            record, loan_id, model = _row_models(row)
            if not loan_id:
                raise CsvRowError("loan_id: required")
            rows.append((number, record, loan_id, model))
        except ValidationError as err:
            errors.append(f"line {number}: " + "; ".join(describe_errors(err)))
        except (CsvRowError, ValueError) as err:
            errors.append(f"line {number}: {err}")
    return rows, errors


def import_csv(engine: Engine, policy: CollectionPolicy, path: Path | str | None = None, *,
               text: str | None = None, now: datetime | None = None) -> ImportReport:
    """Import the servicing system's nightly CSV (``CSV_COLUMNS``; one ``record`` a row: ``loan``,
    ``instalment``, ``payment``, ``reversal``). Every row is checked by the same models the API
    uses; a refused row is reported by line and column and the others are imported. Idempotent:
    importing the file again changes nothing. Loan rows go first, whatever their place in the
    file; each loan touched is added up again under ``policy`` (``refresh``). ``now``: the clock
    payments' ``paid_at`` are checked against (default: this process's).

    Raises:
        OSError: the file cannot be read.
    """
    content = text if text is not None else Path(path).read_text(encoding="utf-8-sig")  # type: ignore[arg-type]
    rows, errors = read_csv_rows(content)
    report = ImportReport(errors=errors)
    rows.sort(key=lambda row: (row[1] != "loan", row[0]))
    for number, record, loan_id, model in rows:
        try:
            if record == "loan":
                change = upsert_loan(engine, model, policy, source="csv")
                report.loans += sum(1 for c in change.created if c.startswith("loan "))
            elif record == "instalment":
                change = add_instalment(engine, loan_id, model)
                report.instalments += len(change.created)
                report.unchanged += len(change.unchanged)
            elif record == "payment":
                stored = record_payment(engine, loan_id, model, source="csv", now=now)
                if stored is None:
                    raise LookupError(f"loan_id: loan {loan_id} is not in the loan book (give its loan row first)")
                report.payments += int(stored)
                report.unchanged += int(not stored)
            else:
                marked = record_reversal(engine, loan_id, model)
                if marked is None:
                    raise LookupError(f"payment_id: loan {loan_id} has no payment {model.payment_id} in the book")
                report.reversals += int(marked)
                report.unchanged += int(not marked)
                if marked:
                    report.new_reversals.append((loan_id, model))
        except (BookConflict, BookRefused, LookupError) as err:
            report.errors.append(f"line {number}: {err}")
            continue
        if loan_id not in report.touched:
            report.touched.append(loan_id)
    for loan_id in report.touched:
        refresh(engine, loan_id, policy, now)
    report.errors.sort(key=lambda error: int(error.split(":")[0].removeprefix("line ")))
    return report

