"""The loan ledger: allocation, DPD, credit, value dates, reversals, reliefs and closed-form accrual
(``collections_domain.case.ledger``), with no Temporal."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from hypothesis import given, settings
from hypothesis import strategies as st

from collections_domain.case.ledger import (
    AccrualFreeze,
    AccrualTerms,
    Ledger,
    LedgerLine,
    LedgerPayment,
    LedgerRelief,
    LedgerRules,
    derive,
)

TZ = "Asia/Shanghai"
D0 = date(2026, 3, 1)
RULES = LedgerRules(timezone=TZ)


def at(day: date, hour: int = 12, minute: int = 0) -> datetime:
    """Local wall time in Shanghai, as UTC."""
    return datetime.combine(day, time(hour, minute), ZoneInfo(TZ)).astimezone(UTC)


def line(instalment_id: str, due: date, principal: int, interest: int = 0, fees: int = 0, **extra) -> LedgerLine:
    return LedgerLine(instalment_id=instalment_id, due_date=due, principal_minor=principal, interest_minor=interest,
                      fees_minor=fees, added_at=at(due, 1), **extra)


def pay(payment_id: str, amount: int, when: datetime, **extra) -> LedgerPayment:
    return LedgerPayment(payment_id=payment_id, amount_minor=amount, paid_at=when, value_at=when, received_at=when, **extra)


def test_dpd_counts_from_the_oldest_instalment_still_owing_and_moves_when_it_is_paid():
    ledger = Ledger(lines=[line("1", D0, 100_000), line("2", D0 + timedelta(days=30), 100_000)])
    before = derive(ledger, RULES, at(D0 + timedelta(days=35)))
    assert before.days_past_due == 35
    assert before.outstanding.total == 200_000 and before.overdue.total == 200_000
    ledger.payments.append(pay("p1", 100_000, at(D0 + timedelta(days=35))))
    after = derive(ledger, RULES, at(D0 + timedelta(days=35), 13))
    assert after.days_past_due == 5  # now counted from instalment 2
    assert after.oldest_unpaid_due_date == D0 + timedelta(days=30)
    assert [line.status for line in after.lines] == ["paid", "open"]
    assert after.max_days_past_due == 35


def test_an_instalment_due_today_is_outstanding_but_not_overdue_and_a_later_one_is_not_due():
    ledger = Ledger(lines=[line("1", D0, 50_000), line("2", D0 + timedelta(days=30), 50_000)])
    view = derive(ledger, RULES, at(D0, 10))
    assert view.days_past_due == 0
    assert view.outstanding.total == 50_000 and view.overdue.total == 0
    assert view.not_yet_due_minor == 50_000
    assert [line.status for line in view.lines] == ["open", "not_due"]


def test_the_default_waterfall_pays_the_oldest_instalment_charges_first():
    ledger = Ledger(lines=[line("1", D0, 10_000, interest=2_000, fees=1_000), line("2", D0 + timedelta(days=1), 10_000, interest=2_000)])
    ledger.payments.append(pay("p", 14_000, at(D0 + timedelta(days=3))))
    view = derive(ledger, RULES, at(D0 + timedelta(days=3), 13))
    allocations = [(a.instalment_id, a.component, a.amount_minor) for a in view.payments[0].allocations]
    assert allocations == [("1", "fees", 1_000), ("1", "interest", 2_000), ("1", "principal", 10_000), ("2", "interest", 1_000)]
    assert view.outstanding.interest == 1_000 and view.outstanding.principal == 10_000


def test_a_bucketed_waterfall_pays_every_instalment_before_any_charge():
    us = LedgerRules(timezone=TZ, waterfall=(("interest", "principal"), ("fees", "penalty")))
    ledger = Ledger(lines=[line("1", D0, 10_000, fees=500), line("2", D0 + timedelta(days=1), 10_000, fees=500)])
    ledger.payments.append(pay("p", 20_000, at(D0 + timedelta(days=3))))
    view = derive(ledger, us, at(D0 + timedelta(days=3), 13))
    assert view.outstanding.principal == 0 and view.outstanding.fees == 1_000
    assert view.days_past_due == 3  # fees still owing keep the oldest line open


def test_overpayment_is_credit_and_pays_the_next_instalment_when_it_falls_due():
    ledger = Ledger(lines=[line("1", D0, 30_000), line("2", D0 + timedelta(days=30), 30_000)])
    ledger.payments.append(pay("p", 40_000, at(D0 + timedelta(days=5))))
    view = derive(ledger, RULES, at(D0 + timedelta(days=10)))
    assert view.outstanding.total == 0 and view.credit_minor == 10_000
    assert view.payments[0].credit_minor == 10_000 and view.payments[0].applied_minor == 30_000
    later = derive(ledger, RULES, at(D0 + timedelta(days=30), 8))
    assert later.credit_minor == 0 and later.outstanding.total == 20_000


def test_a_payment_reported_late_is_applied_as_of_its_value_date():
    ledger = Ledger(lines=[line("1", D0, 30_000), line("2", D0 + timedelta(days=1), 30_000)])
    ledger.payments.append(pay("late-report", 30_000, at(D0 + timedelta(days=10))))
    ledger.payments.append(
        LedgerPayment(payment_id="early", amount_minor=30_000, paid_at=at(D0 + timedelta(days=2)),
                      value_at=at(D0 + timedelta(days=2)), received_at=at(D0 + timedelta(days=12)))
    )
    view = derive(ledger, RULES, at(D0 + timedelta(days=12), 13))
    by_id = {p.payment_id: p for p in view.payments}
    assert by_id["early"].allocations[0].instalment_id == "1"  # valued first, so it paid the oldest
    assert by_id["late-report"].allocations[0].instalment_id == "2"
    assert view.max_days_past_due == 9  # instalment 2 was owing from D0+1 to D0+10


def test_a_reversed_payment_is_as_if_never_made():
    ledger = Ledger(lines=[line("1", D0, 30_000)])
    ledger.payments.append(pay("p", 30_000, at(D0 + timedelta(days=3))))
    assert derive(ledger, RULES, at(D0 + timedelta(days=4))).outstanding.total == 0
    ledger.payments[0].reversed_at = at(D0 + timedelta(days=6))
    view = derive(ledger, RULES, at(D0 + timedelta(days=6), 13))
    assert view.outstanding.total == 30_000 and view.days_past_due == 6
    assert view.payments[0].status == "reversed" and view.paid_minor == 0


def test_a_cancelled_instalment_owes_nothing_and_what_it_was_paid_becomes_credit():
    ledger = Ledger(lines=[line("1", D0, 30_000), line("2", D0 + timedelta(days=1), 30_000)])
    ledger.payments.append(pay("p", 30_000, at(D0 + timedelta(days=2))))
    ledger.lines[0].cancelled_at = at(D0 + timedelta(days=3))
    view = derive(ledger, RULES, at(D0 + timedelta(days=3), 13))
    assert view.lines[0].status == "cancelled"
    assert view.outstanding.total == 0  # the 30,000 paid to line 1 now pays line 2
    assert view.credit_minor == 0


def test_a_waiver_never_forgives_principal():
    ledger = Ledger(lines=[line("1", D0, 30_000, interest=2_000, fees=1_000)])
    ledger.reliefs.append(LedgerRelief(relief_id="w", kind="waiver", amount_minor=10_000, value_at=at(D0 + timedelta(days=2)),
                                       reason="plan", components=("penalty", "fees", "interest")))
    view = derive(ledger, RULES, at(D0 + timedelta(days=3)))
    assert view.outstanding.principal == 30_000 and view.outstanding.interest == 0 and view.outstanding.fees == 0
    assert view.relieved_minor == 3_000


PENALTY = LedgerRules(timezone=TZ, accrual=AccrualTerms(penalty_rate_bps=3650))  # 0.1 % a day, exactly


def test_penalty_interest_accrues_per_local_day_on_overdue_principal_and_stops_when_paid():
    ledger = Ledger(lines=[line("1", D0, 100_000)])
    # The due date itself accrues nothing; days D0+1 .. D0+9 do: 9 days x 100 = 900.
    assert derive(ledger, PENALTY, at(D0 + timedelta(days=10))).outstanding.penalty == 900
    ledger.payments.append(pay("p", 50_900, at(D0 + timedelta(days=10))))
    view = derive(ledger, PENALTY, at(D0 + timedelta(days=20)))
    # The default waterfall paid the penalty first; 50,000 principal accrues 50 a day from day 10.
    assert view.outstanding.principal == 50_000
    assert view.outstanding.penalty == 10 * 50


def test_a_late_fee_is_charged_once_if_still_unpaid_and_the_cap_bounds_all_charges():
    terms = AccrualTerms(late_fee_minor=2_500, late_fee_bps=500, late_fee_after_days=15)
    rules = LedgerRules(timezone=TZ, accrual=terms)
    ledger = Ledger(lines=[line("1", D0, 40_000), line("2", D0 + timedelta(days=30), 100_000)])
    view = derive(ledger, rules, at(D0 + timedelta(days=60)))
    assert view.late_fees_minor == 2_000 + 2_500  # 5 % of 40,000 < 25.00; 25.00 < 5 % of 100,000
    paid_in_time = Ledger(lines=[line("1", D0, 40_000)], payments=[pay("p", 40_000, at(D0 + timedelta(days=14)))])
    assert derive(paid_in_time, rules, at(D0 + timedelta(days=60))).late_fees_minor == 0
    capped = LedgerRules(timezone=TZ, accrual=AccrualTerms(penalty_rate_bps=36_500, max_charges_bps_per_year=3_650))
    view = derive(Ledger(lines=[line("1", D0, 100_000)]), capped, at(D0 + timedelta(days=11)))
    assert view.outstanding.penalty == 10 * 100  # 10 % a day asked, 0.1 % a day allowed


def test_nothing_accrues_while_accrual_is_frozen():
    ledger = Ledger(lines=[line("1", D0, 100_000)],
                    freezes=[AccrualFreeze(reason="breathing_space", start=at(D0 + timedelta(days=5), 9),
                                           end=at(D0 + timedelta(days=8), 9))])
    # Accruing days D0+1 .. D0+9 minus frozen D0+5, D0+6, D0+7.
    assert derive(ledger, PENALTY, at(D0 + timedelta(days=10))).outstanding.penalty == 6 * 100


# -- properties: conservation of money, and the closed form against a day-by-day reference --------


def _reference_penalty(lines: list[LedgerLine], payments: list[LedgerPayment], rate_bps: int, today: date) -> int:
    """Penalty owing at ``today``, day by day (the waterfall: penalty, fees, interest, principal)."""
    remaining = {ln.instalment_id: {"principal": 0, "interest": 0, "fees": 0, "penalty": 0} for ln in lines}
    numerators = dict.fromkeys(remaining, 0)
    accrued = dict.fromkeys(remaining, 0)
    due = set()
    tz = ZoneInfo(TZ)
    by_day: dict[date, list[LedgerPayment]] = {}
    for p in payments:
        by_day.setdefault(p.value_at.astimezone(tz).date(), []).append(p)
    first = min([ln.due_date for ln in lines] + list(by_day))
    day = first
    credit = 0
    while day <= today:
        for ln in lines:
            if ln.due_date == day:
                due.add(ln.instalment_id)
                remaining[ln.instalment_id].update(principal=ln.principal_minor, interest=ln.interest_minor, fees=ln.fees_minor)
        order = sorted((ln for ln in lines if ln.instalment_id in due), key=lambda ln: (ln.due_date, lines.index(ln)))
        money = credit + sum(p.amount_minor for p in sorted(by_day.get(day, []), key=lambda p: p.value_at))
        for ln in order:
            for component in ("penalty", "fees", "interest", "principal"):
                take = min(money, remaining[ln.instalment_id][component])
                remaining[ln.instalment_id][component] -= take
                money -= take
        credit = money
        if day < today:
            for ln in order:
                if day > ln.due_date:
                    numerators[ln.instalment_id] += remaining[ln.instalment_id]["principal"] * rate_bps
                    new = numerators[ln.instalment_id] // (10_000 * 365)
                    remaining[ln.instalment_id]["penalty"] += new - accrued[ln.instalment_id]
                    accrued[ln.instalment_id] = new
        day += timedelta(days=1)
    return sum(r["penalty"] for r in remaining.values())


@st.composite
def ledgers(draw):
    count = draw(st.integers(1, 4))
    lines = [
        line(str(i), D0 + timedelta(days=draw(st.integers(0, 90))), draw(st.integers(1, 500_000)),
             interest=draw(st.integers(0, 50_000)), fees=draw(st.integers(0, 5_000)))
        for i in range(count)
    ]
    payments = [
        pay(f"p{i}", draw(st.integers(1, 600_000)), at(D0 + timedelta(days=draw(st.integers(0, 120))), draw(st.integers(0, 23))))
        for i in range(draw(st.integers(0, 5)))
    ]
    return Ledger(lines=lines, payments=payments)


@settings(max_examples=150, deadline=None)
@given(ledgers(), st.integers(0, 150), st.integers(0, 20_000))
def test_money_is_conserved_and_the_closed_form_matches_a_day_by_day_accrual(ledger, days, rate_bps):
    rules = LedgerRules(timezone=TZ, accrual=AccrualTerms(penalty_rate_bps=rate_bps))
    as_of = at(D0 + timedelta(days=days), 23, 59)
    view = derive(ledger, rules, as_of)
    valued = sum(p.amount_minor for p in ledger.payments if p.value_at <= as_of)
    assert valued == view.paid_minor + view.credit_minor  # every minor unit is on a line or credit
    for status in view.lines:
        if status.status in ("open", "paid"):
            assert status.charged.total - status.relieved_minor - status.paid_minor == status.outstanding.total
    assert view.outstanding.total >= 0 and view.credit_minor >= 0
    assert (view.credit_minor == 0) or (view.outstanding.total == 0)  # credit only when nothing due is owing
    today = as_of.astimezone(ZoneInfo(TZ)).date()
    due_lines = [ln for ln in ledger.lines if ln.due_date <= today]
    if due_lines:
        assert view.outstanding.penalty == _reference_penalty(
            due_lines, [p for p in ledger.payments if p.value_at <= as_of], rate_bps, today
        )
