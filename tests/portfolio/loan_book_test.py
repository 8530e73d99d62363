"""The loan book refuses what every other entry point refuses (one validation: rules/validation.py),
names the line, field and rule, and values payments as the case does. Each test is a defect the
newcomer trial of the loan book found (the book took these, and the money or the loan was then
invisible or stuck)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from pydantic import ValidationError
from sqlmodel import select

from collections_domain.case.contract import MAX_MINOR, LoanInstalment, PaymentReceived, ScheduleAdjusted
from collections_domain.portfolio import loan_book
from collections_domain.portfolio.scan import ScanRequest
from collections_domain.rules.policy import PolicyRegistry
from collections_domain.store.db import make_engine, session
from collections_domain.store.models import LoanPaymentRecord
from tests.databases import fresh_database_url

POLICY = PolicyRegistry.from_settings(None).current
HEADER = ("record,loan_id,borrower_id,currency,timezone,jurisdiction,region,portfolio,instalment_id,due_date,"
          "principal_minor,interest_minor,fees_minor,payment_id,amount_minor,paid_at,reversal_id,reason")


@pytest.fixture
def engine(tmp_path):
    engine = make_engine(fresh_database_url(tmp_path))
    yield engine
    engine.dispose()


def loan(loan_id: str = "L-1", **fields) -> loan_book.LoanIn:
    base = dict(loan_id=loan_id, borrower_id="B-1", instalments=[
        LoanInstalment(instalment_id="1", due_date="2026-11-01", principal_minor=100_000)])
    return loan_book.LoanIn(**{**base, **fields})


def test_a_loan_whose_amounts_add_up_past_2_53_or_repeat_an_id_is_refused_naming_the_rule():
    with pytest.raises(ValidationError, match="2\\^53-1"):
        loan(instalments=[LoanInstalment(instalment_id="1", due_date="2026-11-01", principal_minor=MAX_MINOR,
                                         interest_minor=MAX_MINOR)])
    with pytest.raises(ValidationError, match="each instalment_id once"):
        loan(instalments=[LoanInstalment(instalment_id="1", due_date="2026-11-01", principal_minor=1)] * 2)
    with pytest.raises(ValidationError, match="penalty_minor: the loan book takes principal, interest and fees"):
        loan(instalments=[LoanInstalment(instalment_id="1", due_date="2026-11-01", penalty_minor=100)])


def test_a_currency_the_policy_does_not_cover_is_refused(engine):
    with pytest.raises(loan_book.BookRefused, match="currency: policy .* has no thresholds for XXX"):
        loan_book.upsert_loan(engine, loan(currency="XXX"), POLICY)


def test_a_payment_in_another_currency_or_out_of_time_bounds_never_enters_the_book(engine):
    loan_book.upsert_loan(engine, loan(), POLICY)
    now = datetime(2026, 12, 1, 12, tzinfo=UTC)

    def pay(**fields):
        base = dict(payment_id="P-1", amount_minor=500, currency="CNY", paid_at=now)
        return loan_book.record_payment(engine, "L-1", PaymentReceived(**{**base, **fields}), now=now)

    for fields, rule in [
        ({"currency": "USD"}, "currency: must be the loan's currency CNY"),
        ({"paid_at": now + timedelta(days=1)}, "paid_at: must not be in the future"),
        ({"paid_at": now - timedelta(days=3651)}, "paid_at: must be within the last 3650 days"),
        ({"amount_minor": -5}, "amount_minor: must be a positive integer"),
    ]:
        with pytest.raises(loan_book.BookRefused, match=rule):
            pay(**fields)
    assert pay(amount_minor=MAX_MINOR) is True
    with pytest.raises(loan_book.BookRefused, match="2\\^53-1"):
        pay(payment_id="P-2", amount_minor=1)
    with session(engine) as db:
        assert [row.payment_id for row in db.exec(select(LoanPaymentRecord))] == ["P-1"]


def test_the_csv_names_the_physical_line_refuses_extra_fields_and_skips_empty_rows(engine):
    text = "\n".join([
        HEADER,
        "loan,L-7,B-7,CNY,Asia/Shanghai,CN,,,,,,,,,,,,",
        "",
        "instalment,L-7,,,,,,,1,2026-11-01,1000,0,0,,,,,",
        "payment,L-7,,CNY,,,,,,,,,,p-neg,-5,2026-11-02T10:00:00+08:00,,",
        "payment,L-7,,CNY,,,,,,,,,,p-old,100,1990-01-01T10:00:00+08:00,,",
        "payment,L-7,,CNY,,,,,,,,,,p-new,100,2099-01-01T10:00:00+08:00,,",
        "payment,L-7,,USD,,,,,,,,,,p-usd,100,2026-11-02T10:00:00+08:00,,",
        "instalment,L-7,,,,,,,2,2026-11-08,1000,0,0,,,,,,extra",
        "instalment,L-7,,,,,,,3,2026-11-09,0,0,0,,,,,",
        "instalment,L-X,,,,,,,1,2026-11-09,100,0,0,,,,,",
        "loan,L-8,B-8,XXX,Asia/Shanghai,CN,,,,,,,,,,,,",
        ",,,,,,,,,,,,,,,,,",
        "",
    ])
    report = loan_book.import_csv(engine, POLICY, text=text)
    assert (report.loans, report.instalments, report.payments) == (1, 1, 0)
    errors = "\n".join(report.errors)
    assert "line 5: amount_minor: must be a positive integer" in errors
    assert "line 6: paid_at: must be within the last 3650 days" in errors
    assert "line 7: paid_at: must not be in the future" in errors
    assert "line 8: currency: must be the loan's currency CNY" in errors
    assert "line 9: 19 fields, the header has 18 columns" in errors
    assert "line 10: principal_minor + interest_minor + fees_minor + penalty_minor: the sum must be > 0" in errors
    assert "line 11: loan_id: loan L-X is not in the loan book" in errors
    assert "line 12: currency: policy" in errors and "XXX" in errors
    assert len(report.errors) == 8, report.errors  # the row of empty fields is skipped, not refused


def test_a_payment_that_went_to_a_case_is_valued_as_the_case_valued_it(engine):
    """The case applies a payment at most ``payments.max_backdate_days`` before it arrived; the
    book showed the same payment at its old ``paid_at`` (the two disagreed on DPD and accrual)."""
    loan_book.upsert_loan(engine, loan(), POLICY)
    now = datetime(2026, 12, 1, 12, tzinfo=UTC)
    old = now - timedelta(days=400)
    loan_book.record_payment(engine, "L-1", PaymentReceived(payment_id="to-case", amount_minor=100, currency="CNY",
                                                            paid_at=old), now=now)
    loan_book.record_payment(engine, "L-1", PaymentReceived(payment_id="history", amount_minor=100, currency="CNY",
                                                            paid_at=old), now=now)
    loan_book.mark_sent(engine, "L-1", episode="run-1", payments=["to-case"])
    view = loan_book.read_loan(engine, "L-1", POLICY, now).view
    values = {p.payment_id: p.value_at for p in view.payments}
    assert values["to-case"] == now - timedelta(days=POLICY.payments.max_backdate_days)
    assert values["history"] == old  # the servicing system's own record, as it says


def test_an_empty_adjustment_and_an_unknown_scan_zone_are_refused():
    with pytest.raises(ValidationError, match="cancel, add: an adjustment cancels or adds at least one instalment"):
        ScheduleAdjusted(adjustment_id="A-1", reason_code="other")
    with pytest.raises(ValidationError, match="'Mars/Base' is not an IANA time zone name"):
        ScanRequest(time_zone="Mars/Base")


def test_a_due_date_out_of_range_is_refused_before_anything_is_written(engine):
    """From the second trial: due dates of year 1 or 9999 passed, overflowed the calendar after
    the rows were written, and broke the loan for good (every read a 500)."""
    for due in ("0001-01-01", "9999-12-31"):
        with pytest.raises(loan_book.BookRefused, match="instalments.0.due_date: must be"):
            loan_book.upsert_loan(engine, loan(instalments=[LoanInstalment(instalment_id="1", due_date=due,
                                                                           principal_minor=100)],
                                               timezone="America/Los_Angeles"), POLICY)
    loan_book.upsert_loan(engine, loan(), POLICY)
    adjustment = ScheduleAdjusted(adjustment_id="A-1", reason_code="restructure", cancel=["1"],
                                  add=[LoanInstalment(instalment_id="1b", due_date="0001-01-01", principal_minor=100)])
    with pytest.raises(loan_book.BookRefused, match="add.0.due_date: must be within the last 3650 days"):
        loan_book.adjust_schedule(engine, "L-1", adjustment)
    book = loan_book.read_loan(engine, "L-1", POLICY)
    assert [(line.instalment_id, line.status) for line in book.view.lines] == [("1", "open")]  # nothing of it written
    with pytest.raises(loan_book.BookRefused, match="due_date: must be at most 18262 days"):
        loan_book.add_instalment(engine, "L-1", LoanInstalment(instalment_id="9", due_date="9999-12-31", principal_minor=1))
