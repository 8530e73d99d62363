"""The Home Credit loader's conventions: rounding, grain, on-time vs late payments."""

from decimal import Decimal

from collections_domain.portfolio.home_credit import PACKAGED_CSV, read_cases, to_minor


def test_rounding_is_half_up_to_minor_units():
    assert to_minor("5202.945") == 520295
    assert to_minor("0.005") == 1
    assert to_minor("0.004") == 0
    assert to_minor("33952.005") == 3395201
    assert Decimal("99.045") * 100 == Decimal("9904.500")


def test_packaged_file_has_every_case(tmp_path):
    cases = read_cases(PACKAGED_CSV)
    assert len(cases) == 2601
    assert len({c.loan_id for c in cases}) == len(cases)
    assert all(c.opening_minor > 0 for c in cases)
    assert all(p.days_after_due > 0 for c in cases for p in c.late_payments)


def test_an_instalment_paid_in_parts_is_one_case(tmp_path):
    csv = tmp_path / "i.csv"
    csv.write_text(
        "SK_ID_PREV,SK_ID_CURR,NUM_INSTALMENT_VERSION,NUM_INSTALMENT_NUMBER,DAYS_INSTALMENT,DAYS_ENTRY_PAYMENT,AMT_INSTALMENT,AMT_PAYMENT\n"
        "1,10,1.0,5,-100.0,-101.0,100.005,40.0\n"
        "1,10,1.0,5,-100.0,-95.0,100.005,60.0\n"
        "2,11,1.0,1,-50.0,-50.0,10.0,10.0\n"
        "3,12,0.0,2,-40.0,,20.0,\n"
    )
    cases = {c.loan_id: c for c in read_cases(csv)}
    assert set(cases) == {"hc-1-5-v1", "hc-3-2-v0"}
    split = cases["hc-1-5-v1"]
    assert split.instalment_minor == 10001 and split.opening_minor == 6001
    assert [(p.days_after_due, p.amount_minor) for p in split.late_payments] == [(5, 6000)]
    assert cases["hc-3-2-v0"].late_payments == []
