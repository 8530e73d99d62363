"""Pure ladder rules: positions, late starts, promise and payment validation."""

from datetime import UTC, date, datetime

from collections_domain.rules import ladder
from collections_domain.case.contract import OpenPromise, PaymentReceived, PromiseToPay
from collections_domain.rules.policy import DEFAULT_POLICY_PATH, load_policy

POLICY = load_policy(DEFAULT_POLICY_PATH)
DUE = date(2026, 12, 1)
TZ = "Asia/Shanghai"


def at(day: int, hour: int = 12) -> datetime:
    return datetime(2026, 12, 1 + day, hour - 8 if hour >= 8 else hour, tzinfo=UTC) if day < 30 else datetime(2026, 12, 31, 4, tzinfo=UTC)


def position(now, last=0, outstanding=300_000):
    return ladder.position(
        POLICY, currency="CNY", oldest_due_date=DUE, tz_name=TZ, last_rung_days=last, outstanding_minor=outstanding, now=now
    )


def test_before_dpd_3_the_next_step_is_initial_at_nine_local():
    pos = position(datetime(2026, 12, 2, 4, tzinfo=UTC))
    assert pos.due is None
    assert pos.upcoming.days_past_due == 3
    assert pos.upcoming_at == datetime(2026, 12, 4, 1, tzinfo=UTC)  # 09:00 in Shanghai


def test_a_late_start_takes_only_the_step_its_dpd_puts_it_in():
    pos = position(datetime(2026, 12, 10, 4, tzinfo=UTC))  # DPD 9
    assert pos.step.name == "deep"
    assert [r.days_past_due for r in pos.stale] == [3]
    assert pos.upcoming.days_past_due == 30


def test_dpd_30_picks_legal_or_agency_by_the_threshold():
    late = datetime(2027, 1, 1, 4, tzinfo=UTC)
    assert position(late, last=7, outstanding=1_000_000).step.name == "legal"
    assert position(late, last=7, outstanding=999_999).step.name == "agency"


def test_under_the_minimum_only_reminders():
    late = datetime(2027, 1, 1, 4, tzinfo=UTC)
    pos = position(late, outstanding=4_999)
    assert pos.step.name == "initial" and pos.upcoming is None
    assert position(late, last=3, outstanding=4_999).due is None


def test_contact_window():
    assert ladder.next_contact_instant(datetime(2026, 12, 2, 2, tzinfo=UTC), TZ, POLICY) == datetime(2026, 12, 2, 2, tzinfo=UTC)
    # 23:30 local -> next morning 09:00 local.
    assert ladder.next_contact_instant(datetime(2026, 12, 2, 15, 30, tzinfo=UTC), TZ, POLICY) == datetime(2026, 12, 3, 1, tzinfo=UTC)
    # 07:00 local -> 09:00 the same day.
    assert ladder.next_contact_instant(datetime(2026, 12, 1, 23, tzinfo=UTC), TZ, POLICY) == datetime(2026, 12, 2, 1, tzinfo=UTC)


def test_promise_deadline_is_the_end_of_the_last_grace_day():
    assert ladder.promise_deadline(date(2026, 12, 10), TZ, POLICY) == datetime(2026, 12, 12, 16, tzinfo=UTC)


def test_payment_rules():
    now = datetime(2026, 12, 5, tzinfo=UTC)
    ok = PaymentReceived(payment_id="p1", amount_minor=1, currency="CNY", paid_at=now)
    assert ladder.payment_problem(ok, currency="CNY", now=now) is None
    assert "amount_minor" in ladder.payment_problem(ok.model_copy(update={"amount_minor": 0}), currency="CNY", now=now)
    assert "currency" in ladder.payment_problem(ok.model_copy(update={"currency": "USD"}), currency="CNY", now=now)
    future = ok.model_copy(update={"paid_at": datetime(2026, 12, 9, tzinfo=UTC)})
    assert "paid_at" in ladder.payment_problem(future, currency="CNY", now=now)


def test_promise_rules():
    now = datetime(2026, 12, 5, 4, tzinfo=UTC)  # 2026-12-05 local
    kwargs = dict(policy=POLICY, tz_name=TZ, outstanding_minor=10_000, open_promise=None, promises_broken=0, now=now)
    good = PromiseToPay(promise_id="x", amount_minor=5_000, promised_date=date(2026, 12, 8))
    assert ladder.promise_problem(good, **kwargs) is None
    assert ladder.promise_problem(good.model_copy(update={"promised_date": date(2026, 12, 5)}), **kwargs) is None
    cases = {
        "amount_minor: must be a positive": good.model_copy(update={"amount_minor": 0}),
        "must not exceed the outstanding": good.model_copy(update={"amount_minor": 10_001}),
        "must not be before today": good.model_copy(update={"promised_date": date(2026, 12, 4)}),
        "horizon_days": good.model_copy(update={"promised_date": date(2027, 1, 5)}),
    }
    for message, promise in cases.items():
        assert message in ladder.promise_problem(promise, **kwargs)
    other = OpenPromise(promise_id="y", amount_minor=1, promised_date=date(2026, 12, 6))
    assert "another promise" in ladder.promise_problem(good, **{**kwargs, "open_promise": other})
    assert "max_broken" in ladder.promise_problem(good, **{**kwargs, "promises_broken": 2})
