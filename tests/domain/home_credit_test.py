"""The Home Credit loader's conventions: rounding, grain (a loan is an SK_ID_PREV), instalments
paid in parts, payments made at noon local, and the packaged file's selection."""

from datetime import date, datetime
from decimal import Decimal

import pytest

from collections_domain.portfolio.home_credit import (
    PACKAGED_CSV,
    DataFileError,
    needs_collection,
    read_loans,
    to_minor,
)

HEADER = "SK_ID_PREV,SK_ID_CURR,NUM_INSTALMENT_VERSION,NUM_INSTALMENT_NUMBER,DAYS_INSTALMENT,DAYS_ENTRY_PAYMENT,AMT_INSTALMENT,AMT_PAYMENT\n"


def test_rounding_is_half_up_to_minor_units():
    assert to_minor("5202.945") == 520295
    assert to_minor("0.005") == 1
    assert to_minor("0.004") == 0
    assert to_minor("33952.005") == 3395201
    assert Decimal("99.045") * 100 == Decimal("9904.500")


def test_packaged_file_has_every_loan_in_arrears_and_nothing_else():
    loans = read_loans(PACKAGED_CSV)
    assert len(loans) == 2445
    assert len({loan.loan_id for loan in loans}) == len(loans)
    assert sum(len(loan.instalments) for loan in loans) >= len(loans)
    assert all(needs_collection(loan) for loan in loans)


def test_a_loan_is_its_instalments_and_payments(tmp_path):
    csv = tmp_path / "i.csv"
    csv.write_text(
        "\ufeff" + HEADER
        + "1,10,1.0,5,-100.0,-101.0,100.005,40.0\n"
        "1,10,1.0,5,-100.0,-95.0,100.005,60.0\n"
        "1,10,1.0,6,-70.0,-71.0,100.005,100.01\n"
        "2,11,1.0,1,-50.0,-50.0,10.0,10.0\n"
        "3,12,0.0,2,-40.0,,20.0,\n",
        encoding="utf-8",
    )
    loans = {loan.loan_id: loan for loan in read_loans(csv)}
    assert set(loans) == {"hc-1", "hc-2", "hc-3"}
    split = loans["hc-1"]
    assert [(i.instalment_id, i.due_day, i.amount_minor) for i in split.instalments] == [
        ("5-v1", -100, 10001), ("6-v1", -70, 10001)]
    assert [(p.payment_id, p.day, p.amount_minor) for p in split.payments] == [
        ("hc-1-5-v1-p1", -101, 4000), ("hc-1-5-v1-p2", -95, 6000), ("hc-1-6-v1-p1", -71, 10001)]
    assert needs_collection(split)  # 40.00 of 100.01 by the due day
    assert not needs_collection(loans["hc-2"])  # paid on the day
    assert needs_collection(loans["hc-3"]) and loans["hc-3"].payments == []
    paid = split.payment_received(split.payments[0], anchor=date(2026, 12, 1))
    assert paid.currency == "CNY" and paid.paid_at == datetime.fromisoformat("2026-08-22T12:00:00+08:00")


def test_a_malformed_file_names_the_loan_and_line(tmp_path):
    csv = tmp_path / "bad.csv"
    csv.write_text(HEADER + "7,10,1.0,5,-100.0,-101.0,abc,40.0\n", encoding="utf-8")
    with pytest.raises(DataFileError, match="loan 7 \\(line 2\\)"):
        read_loans(csv)
    missing = tmp_path / "missing.csv"
    missing.write_text("SK_ID_PREV,SK_ID_CURR\n1,2\n", encoding="utf-8")
    with pytest.raises(DataFileError, match="missing columns"):
        read_loans(missing)
