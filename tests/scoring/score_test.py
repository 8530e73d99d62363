"""The run-time score reads the loan book as the training read the CSV: a loan loaded through the
product's loan book scores exactly as its schedule from the file, at every episode's opening;
a case opened by hand is scored from its input alone."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta

import pytest

from collections_domain.case.contract import (
    LoanInstalment,
    PaymentReceived,
    PaymentReversed,
    ScheduleAdjusted,
)
from collections_domain.portfolio import home_credit, loan_book
from collections_domain.rules import calendar
from collections_domain.rules.policy import PolicyRegistry
from collections_domain.scoring import train
from collections_domain.scoring.features import episodes
from collections_domain.scoring.model import (
    book_schedule,
    load_model,
    score_loan,
    score_schedule,
)
from collections_domain.store.db import make_engine, session
from collections_domain.store.models import LoanPaymentRecord
from tests.databases import fresh_database_url

POLICY = PolicyRegistry.from_settings(None).current
ANCHOR = date(2026, 6, 1)


@pytest.fixture(scope="module")
def loans():
    """A few file loans with several episodes, in each market (time zone)."""
    by_zone: dict[str, list[home_credit.HomeCreditLoan]] = {}
    rule = load_model().opening_rule
    for loan in home_credit.read_loans():
        instalments, payments = train.schedule_of(loan, ANCHOR)
        if len(episodes(instalments, payments, rule)) >= 2 and len(loan.payments) >= 2:
            by_zone.setdefault(loan.market.timezone, []).append(loan)
    return [loan for zone in sorted(by_zone) for loan in by_zone[zone][:2]]


@pytest.fixture
def engine(tmp_path, loans):
    engine = make_engine(fresh_database_url(tmp_path))
    last = max(max(p.day for p in loan.payments) for loan in loans)
    home_credit.load_into_book(engine, POLICY, loans, ANCHOR, until=datetime.combine(
        ANCHOR + timedelta(days=last + 2), time(0), tzinfo=UTC))
    yield engine
    engine.dispose()


def test_a_book_loan_scores_as_its_schedule_from_the_file_at_each_opening(engine, loans):
    assert len({loan.market.timezone for loan in loans}) == 4
    model = load_model()
    compared = 0
    for loan in loans:
        instalments, payments = train.schedule_of(loan, ANCHOR)
        book = book_schedule(engine, loan.loan_id)
        assert sorted(book.instalments) == sorted(instalments) and sorted(book.payments) == sorted(payments)
        tz = loan.market.timezone
        for episode in episodes(instalments, payments, model.opening_rule):
            for day in (episode.opened_on, episode.opened_on + timedelta(days=10)):
                # The scan's instant (00:30 local) and one late in the evening of the same day.
                for wall in (time(0, 30), time(23, 30)):
                    at = calendar.local_instant(day, wall, tz)
                    expected = score_schedule(instalments, payments, day)
                    assert score_loan(engine, loan.loan_id, at) == expected
                    assert 0 <= expected.probability_bps <= 10_000 and expected.model_version == model.version
                    compared += 1
    assert compared >= 32


def test_cancelled_instalments_reversed_payments_and_other_currencies_are_left_out(tmp_path):
    engine = make_engine(fresh_database_url(tmp_path, "exclusions"))
    now = datetime(2026, 12, 1, 12, tzinfo=UTC)
    loan_book.upsert_loan(engine, loan_book.LoanIn(
        loan_id="L-9", borrower_id="B-9", currency="CNY", timezone="Asia/Shanghai", instalments=[
            LoanInstalment(instalment_id="1", due_date=date(2026, 10, 1), principal_minor=90_000, interest_minor=9_000,
                           fees_minor=1_000),
            LoanInstalment(instalment_id="2", due_date=date(2026, 11, 1), principal_minor=100_000),
            LoanInstalment(instalment_id="3", due_date=date(2026, 11, 15), principal_minor=100_000)]), POLICY)
    for payment_id, amount, paid_at in [("P-1", 100_000, datetime(2026, 10, 1, 4, tzinfo=UTC)),
                                        ("P-2", 60_000, datetime(2026, 11, 1, 4, tzinfo=UTC))]:
        loan_book.record_payment(engine, "L-9", PaymentReceived(payment_id=payment_id, amount_minor=amount, currency="CNY",
                                                                paid_at=paid_at), now=now)
    loan_book.record_reversal(engine, "L-9", PaymentReversed(reversal_id="R-1", payment_id="P-2",
                                                             reversed_at=datetime(2026, 11, 3, tzinfo=UTC)))
    loan_book.adjust_schedule(engine, "L-9", ScheduleAdjusted(adjustment_id="A-1", reason_code="cancellation", cancel=["3"]))
    with session(engine) as db:  # a payment in another currency, as an old import may have left it
        db.add(LoanPaymentRecord(loan_id="L-9", payment_id="P-3", amount_minor=50_000, currency="USD",
                                 paid_at=datetime(2026, 11, 2, tzinfo=UTC), received_at=now))
        db.commit()
    book = book_schedule(engine, "L-9")
    assert book == ([(date(2026, 10, 1), 100_000), (date(2026, 11, 1), 100_000)], [(date(2026, 10, 1), 100_000)],
                    "Asia/Shanghai")
    assert score_loan(engine, "L-9", now) == score_schedule(book.instalments, book.payments, date(2026, 12, 1))
    engine.dispose()


def test_a_loan_not_in_the_book_has_no_score_and_a_naive_instant_is_refused(engine):
    assert score_loan(engine, "no-such-loan", datetime(2026, 12, 1, tzinfo=UTC)) is None
    with pytest.raises(ValueError, match="timezone-aware"):
        score_loan(engine, "no-such-loan", datetime(2026, 12, 1))
