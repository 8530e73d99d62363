"""The loan ledger inside a case: what the borrower owes, as facts with value instants (pure).

A ``Ledger`` holds facts: the loan's lines (its instalments, and lines the legal track adds such
as court costs), the payments (each as of its value instant, its ``paid_at``), their reversals,
reliefs (waivers, write-downs, settlements) and the intervals in which accrual is frozen.
``derive(ledger, rules, as_of)`` walks the facts in value order and returns a ``LedgerView``:
per line and per component (principal, interest, fees, penalty) what was charged and what is
outstanding, the credit left over, days past due on the borrower's calendar, the penalty
interest and late fees accrued, and where each payment went.

Everything is derived from the facts, never stored: a payment reported late with an earlier
value date, or a reversal, re-allocates what came after it, the way a servicing system
reprocesses back-dated transactions (Apache Fineract does the same). A reversed payment is
treated as never made.

Conventions (each a policy key where it is a choice; ``rules.policy``):

- A line becomes payable at the local start of its due date; on its due date it is due but not
  overdue (DPD 0). DPD is the local days since the due date of the oldest line still owing.
- Payments pay only lines due at their value instant; money beyond them is credit, applied
  to lines as they fall due (and to charges as they are added), by the same waterfall.
- The waterfall (``waterfall.<CODE>``) is a list of buckets, each a list of components; for
  each bucket in turn, lines are paid oldest first, and within a line the bucket's components
  in order.
- Penalty interest (``accrual.<CODE>``) accrues per local day on a line's principal still owing
  at the end of that day, from the day after ``due_date + penalty_grace_days``, at
  ``penalty_rate_bps`` a year on a ``day_count_basis``-day year, in closed form: integer
  numerators summed per interval between facts, floored to minor units. A late fee is charged
  once per instalment at the local start of ``due_date + late_fee_after_days + 1`` if its
  scheduled amount (principal, interest, fees) is still owing then. Penalty and late fees on a
  line together never exceed ``max_charges_bps_per_year`` of its principal, annualised over
  its days past due. Frozen days (breathing space, hardship, plans) accrue nothing and charge
  no fee.

No Temporal, no I/O, no clock: ``as_of`` is an argument. All amounts are integers in minor units.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from typing import Literal

from pydantic import BaseModel

from collections_domain.rules import calendar
from collections_domain.rules.policy import AccrualRules, CollectionPolicy

COMPONENTS: tuple[str, ...] = ("principal", "interest", "fees", "penalty")
Component = Literal["principal", "interest", "fees", "penalty"]
#: What a waiver may forgive: never principal (PROCESS.md "Forbearance").
WAIVABLE: tuple[str, ...] = ("penalty", "fees", "interest")
LineKind = Literal["instalment", "legal_costs", "judgment"]
ReliefKind = Literal["waiver", "write_down", "settlement"]


class Amounts(BaseModel):
    """Amounts by component, in minor units."""

    principal: int = 0
    interest: int = 0
    fees: int = 0
    penalty: int = 0

    @property
    def total(self) -> int:
        """The sum of the four components."""
        return self.principal + self.interest + self.fees + self.penalty

    @classmethod
    def of(cls, values: dict[str, int]) -> Amounts:
        """From a ``{component: minor units}`` dict (missing components are 0)."""
        return cls(**{c: values.get(c, 0) for c in COMPONENTS})


class LedgerLine(BaseModel):
    """A line the borrower owes from ``due_date``: a scheduled instalment, or a line the legal
    track adds (``legal_costs``: court costs; ``judgment``: interest a court awarded).

    Amounts are what was charged on it, in minor units; ``penalty_minor`` is penalty interest
    accrued before the case knew of the line (carried in from the loan book). ``cancelled_at``
    is the value instant of a cancellation (a schedule adjustment): from then on it owes
    nothing, and what was paid to it returns as credit.
    """

    instalment_id: str
    due_date: date
    principal_minor: int = 0
    interest_minor: int = 0
    fees_minor: int = 0
    penalty_minor: int = 0
    kind: LineKind = "instalment"
    added_at: datetime
    cancelled_at: datetime | None = None
    cancel_reason: str | None = None

    @property
    def scheduled(self) -> dict[str, int]:
        """The charged amounts as a component dict."""
        return {"principal": self.principal_minor, "interest": self.interest_minor, "fees": self.fees_minor,
                "penalty": self.penalty_minor}

    @property
    def total_minor(self) -> int:
        """Everything charged on the line when it was added."""
        return self.principal_minor + self.interest_minor + self.fees_minor + self.penalty_minor


class LedgerPayment(BaseModel):
    """A payment: ``amount_minor`` applied as of ``value_at`` (its ``paid_at``, bounded by the
    policy's ``payments.max_backdate_days``), received by the case at ``received_at``. A
    reversal (bounce, chargeback) sets ``reversed_at``: the payment is then treated as never made."""

    payment_id: str
    amount_minor: int
    paid_at: datetime
    value_at: datetime
    received_at: datetime
    reversed_at: datetime | None = None
    reversal_id: str | None = None
    reversal_reason: str | None = None


class LedgerRelief(BaseModel):
    """Money forgiven without being paid: a ``waiver`` (a plan's, of ``components`` other than
    principal), a ``write_down`` (a dispute upheld, a judgment for less) or a ``settlement``
    (the legal track settled). Taken from lines ``oldest_first`` or ``newest_first``."""

    relief_id: str
    kind: ReliefKind
    amount_minor: int
    value_at: datetime
    reason: str
    components: tuple[str, ...] = COMPONENTS
    order: Literal["oldest_first", "newest_first"] = "oldest_first"


class AccrualFreeze(BaseModel):
    """An interval with no penalty interest and no late fee: a breathing space (Debt Respite
    Scheme Regulations 2020, reg. 7), a hardship pause or a repayment plan. ``end`` ``None``: open."""

    reason: str
    start: datetime
    end: datetime | None = None


class Ledger(BaseModel):
    """The facts of one case's loan (see the module docstring)."""

    lines: list[LedgerLine] = []
    payments: list[LedgerPayment] = []
    reliefs: list[LedgerRelief] = []
    freezes: list[AccrualFreeze] = []

    def line(self, instalment_id: str) -> LedgerLine | None:
        """The line with ``instalment_id``, or ``None``."""
        return next((line for line in self.lines if line.instalment_id == instalment_id), None)

    def payment(self, payment_id: str) -> LedgerPayment | None:
        """The payment with ``payment_id``, or ``None``."""
        return next((p for p in self.payments if p.payment_id == payment_id), None)


@dataclass(frozen=True)
class AccrualTerms:
    """Accrual for one case: the policy's ``accrual.<CODE>`` rules with the late fee in the case's
    currency (``AccrualRules``: the meaning of each field)."""

    penalty_rate_bps: int = 0
    penalty_grace_days: int = 0
    late_fee_minor: int = 0
    late_fee_bps: int = 0
    late_fee_after_days: int | None = None
    max_charges_bps_per_year: int | None = None
    day_count_basis: int = 365

    @classmethod
    def of(cls, rules: AccrualRules, currency: str) -> AccrualTerms:
        """``rules`` for a case in ``currency``."""
        return cls(
            penalty_rate_bps=rules.penalty_rate_bps,
            penalty_grace_days=rules.penalty_grace_days,
            late_fee_minor=rules.late_fee_minor.get(currency, 0),
            late_fee_bps=rules.late_fee_bps,
            late_fee_after_days=rules.late_fee_after_days,
            max_charges_bps_per_year=rules.max_charges_bps_per_year,
            day_count_basis=rules.day_count_basis,
        )


@dataclass(frozen=True)
class LedgerRules:
    """How a ledger adds up: the borrower's IANA ``timezone`` (local days), the ``waterfall``
    buckets (policy ``waterfall.<CODE>``) and the ``accrual`` terms (policy ``accrual.<CODE>``;
    ``None`` when nothing accrues, or accrual is off for the case's portfolio)."""

    timezone: str
    waterfall: tuple[tuple[str, ...], ...] = (("penalty", "fees", "interest", "principal"),)
    accrual: AccrualTerms | None = None

    @classmethod
    def for_case(cls, policy: CollectionPolicy, *, jurisdiction: str, currency: str, timezone: str,
                 portfolio: str | None) -> LedgerRules:
        """The rules of a case: ``policy``'s waterfall and accrual for its jurisdiction and portfolio."""
        accrual = policy.accrual_for(jurisdiction, portfolio)
        return cls(
            timezone=timezone,
            waterfall=policy.waterfall_for(jurisdiction),
            accrual=AccrualTerms.of(accrual, currency) if accrual is not None else None,
        )


class Allocation(BaseModel):
    """Part of a payment (or of credit) applied to one component of one line."""

    instalment_id: str
    component: Component
    amount_minor: int


class LineStatus(BaseModel):
    """One line as of the view's instant. ``status``: ``not_due`` (its due date is later),
    ``open`` (something is owing), ``paid`` or ``cancelled``. ``charged`` includes accrued
    penalty interest and late fees; ``days_past_due`` is 0 unless it is open past its due date."""

    instalment_id: str
    kind: LineKind
    due_date: date
    status: Literal["not_due", "open", "paid", "cancelled"]
    charged: Amounts
    outstanding: Amounts
    paid_minor: int
    relieved_minor: int = 0
    days_past_due: int = 0


class PaymentStatus(BaseModel):
    """Where one payment went: ``allocations`` at its value instant, and ``credit_minor``, the
    part that no due line needed then (credit, applied to lines as they fall due)."""

    payment_id: str
    amount_minor: int
    paid_at: datetime
    value_at: datetime
    received_at: datetime
    status: Literal["applied", "reversed"]
    applied_minor: int = 0
    credit_minor: int = 0
    allocations: list[Allocation] = []
    reversal_id: str | None = None


class LedgerView(BaseModel):
    """What a ledger adds up to at ``as_of`` (see the module docstring). ``outstanding``: lines
    due on or before the local day of ``as_of``; ``overdue``: due before it; ``not_yet_due_minor``:
    lines due later. ``max_days_past_due``: the highest DPD reached from ``since`` to ``as_of``."""

    as_of: datetime
    days_past_due: int
    oldest_unpaid_due_date: date | None
    outstanding: Amounts
    overdue: Amounts
    not_yet_due_minor: int
    credit_minor: int
    paid_minor: int
    relieved_minor: int
    penalty_accrued_minor: int
    late_fees_minor: int
    max_days_past_due: int
    last_payment_value_at: datetime | None
    lines: list[LineStatus]
    payments: list[PaymentStatus]
    #: The last instant after which nothing due was owing (``None``: owing since the first line
    #: fell due, or never owing), and the credit left then. Everything a case needs to know of
    #: the loan came after it: lines due later, payments valued later, and that credit.
    current_until: datetime | None = None
    credit_at_current_until: int = 0

    def line(self, instalment_id: str) -> LineStatus | None:
        """The status of line ``instalment_id``, or ``None``."""
        return next((line for line in self.lines if line.instalment_id == instalment_id), None)

    @property
    def waivable_minor(self) -> int:
        """What a waiver may forgive now: penalty, fees and interest outstanding (never principal)."""
        return self.outstanding.penalty + self.outstanding.fees + self.outstanding.interest


@dataclass
class _Line:
    fact: LedgerLine
    order: int
    due: bool = False
    cancelled: bool = False
    remaining: dict[str, int] = field(default_factory=lambda: dict.fromkeys(COMPONENTS, 0))
    charged: dict[str, int] = field(default_factory=lambda: dict.fromkeys(COMPONENTS, 0))
    paid: int = 0
    relieved: int = 0
    penalty_numerator: int = 0
    penalty_accrued: int = 0
    late_fee: int = 0
    overdue_days: int = 0
    late_fee_done: bool = False

    @property
    def owing(self) -> int:
        return sum(self.remaining.values())

    @property
    def scheduled_owing(self) -> int:
        # Checked before the line's one late fee is charged, so fees here are the scheduled ones.
        return self.remaining["principal"] + self.remaining["interest"] + self.remaining["fees"]


_DUE, _CANCEL, _LATE_FEE, _RELIEF, _PAY = range(5)


class _Walk:
    """One pass over the facts in value order (``derive``)."""

    def __init__(self, ledger: Ledger, rules: LedgerRules):
        self.rules = rules
        self.tz = rules.timezone
        self.lines = [_Line(fact=fact, order=i) for i, fact in enumerate(ledger.lines)]
        self.freezes = [
            (calendar.local_date(f.start, self.tz), calendar.local_date(f.end, self.tz) if f.end else None)
            for f in ledger.freezes
        ]
        self.credit = 0
        self.payments: dict[str, PaymentStatus] = {}
        self.day: date | None = None

    # -- accrual ------------------------------------------------------------------------------

    def _accruing_days(self, start: date, end: date, after: date) -> int:
        """Days ``d`` with ``start <= d < end`` and ``d > after``, outside every freeze."""
        lo = max(start, after + timedelta(days=1))
        if lo >= end:
            return 0
        days = (end - lo).days
        for f_start, f_end in self.freezes:
            a, b = max(lo, f_start), min(end, f_end) if f_end is not None else end
            if a < b:
                days -= (b - a).days
        return max(days, 0)

    def _frozen(self, day: date) -> bool:
        return any(start <= day and (end is None or day < end) for start, end in self.freezes)

    def accrue_until(self, day: date) -> None:
        """Accrue every due line from the current day up to (not including) ``day``."""
        rules = self.rules.accrual
        if self.day is None or day <= self.day:
            self.day = day if self.day is None else max(self.day, day)
            return
        if rules is not None:
            basis = 10_000 * rules.day_count_basis
            for line in self.lines:
                if not line.due or line.cancelled or line.fact.kind != "instalment":
                    continue
                due = line.fact.due_date
                line.overdue_days += self._accruing_days(self.day, day, due)
                days = self._accruing_days(self.day, day, due + timedelta(days=rules.penalty_grace_days))
                principal = line.remaining["principal"]
                if days and principal > 0 and rules.penalty_rate_bps:
                    line.penalty_numerator += principal * rules.penalty_rate_bps * days
                accrued = line.penalty_numerator // basis
                cap = self._cap(line)
                if cap is not None:
                    accrued = min(accrued, max(cap - line.late_fee, line.penalty_accrued))
                if accrued > line.penalty_accrued:
                    added = accrued - line.penalty_accrued
                    line.penalty_accrued = accrued
                    line.remaining["penalty"] += added
                    line.charged["penalty"] += added
        self.day = day

    def _cap(self, line: _Line) -> int | None:
        rules = self.rules.accrual
        if rules is None or rules.max_charges_bps_per_year is None:
            return None
        return line.fact.principal_minor * rules.max_charges_bps_per_year * line.overdue_days // (
            10_000 * rules.day_count_basis
        )

    # -- facts --------------------------------------------------------------------------------

    def _due_lines(self) -> list[_Line]:
        return sorted(
            (line for line in self.lines if line.due and not line.cancelled),
            key=lambda line: (line.fact.due_date, line.order),
        )

    def _allocate(self, amount: int) -> tuple[list[Allocation], int]:
        allocations: list[Allocation] = []
        left = amount
        for bucket in self.rules.waterfall:
            for line in self._due_lines():
                for component in bucket:
                    take = min(left, line.remaining[component])
                    if take > 0:
                        line.remaining[component] -= take
                        line.paid += take
                        left -= take
                        allocations.append(Allocation(instalment_id=line.fact.instalment_id,
                                                      component=component, amount_minor=take))  # type: ignore[arg-type]
                if left == 0:
                    return allocations, 0
        return allocations, left

    def _apply_credit(self) -> None:
        if self.credit > 0:
            _, self.credit = self._allocate(self.credit)

    def fall_due(self, line: _Line) -> None:
        line.due = True
        for component, amount in line.fact.scheduled.items():
            line.remaining[component] += amount
            line.charged[component] += amount
        self._apply_credit()

    def cancel(self, line: _Line) -> None:
        line.cancelled = True
        self.credit += line.paid
        line.paid = 0
        line.remaining = dict.fromkeys(COMPONENTS, 0)
        self._apply_credit()

    def late_fee(self, line: _Line) -> None:
        rules = self.rules.accrual
        if rules is None or line.late_fee_done or not line.due or line.cancelled or self._frozen(self.day or line.fact.due_date):
            return
        line.late_fee_done = True
        if line.scheduled_owing <= 0:
            return
        candidates = [rules.late_fee_minor] if rules.late_fee_minor else []
        if rules.late_fee_bps:
            scheduled = line.fact.principal_minor + line.fact.interest_minor + line.fact.fees_minor
            candidates.append(scheduled * rules.late_fee_bps // 10_000)
        fee = min(candidates) if candidates else 0
        cap = self._cap(line)
        if cap is not None:
            fee = min(fee, max(0, cap - line.penalty_accrued - line.late_fee))
        if fee > 0:
            line.late_fee += fee
            line.remaining["fees"] += fee
            line.charged["fees"] += fee
            self._apply_credit()

    def relieve(self, relief: LedgerRelief) -> None:
        left = relief.amount_minor
        lines = self._due_lines()
        if relief.order == "newest_first":
            lines = list(reversed(lines))
        for line in lines:
            for component in relief.components:
                take = min(left, line.remaining[component])
                if take > 0:
                    line.remaining[component] -= take
                    line.relieved += take
                    left -= take
        # What could not be relieved (nothing that large was owing) is simply not forgiven.

    def pay(self, payment: LedgerPayment) -> None:
        allocations, left = self._allocate(payment.amount_minor)
        self.credit += left
        self.payments[payment.payment_id] = PaymentStatus(
            payment_id=payment.payment_id,
            amount_minor=payment.amount_minor,
            paid_at=payment.paid_at,
            value_at=payment.value_at,
            received_at=payment.received_at,
            status="applied",
            applied_minor=payment.amount_minor - left,
            credit_minor=left,
            allocations=allocations,
        )

    # -- DPD ---------------------------------------------------------------------------------

    def oldest_owing(self, day: date) -> date | None:
        """The due date of the oldest line due on or before ``day`` with something owing."""
        dates = [line.fact.due_date for line in self.lines
                 if line.due and not line.cancelled and line.owing > 0 and line.fact.due_date <= day]
        return min(dates) if dates else None

    def dpd(self, day: date) -> int:
        oldest = self.oldest_owing(day)
        return max(0, (day - oldest).days) if oldest is not None else 0


def derive(ledger: Ledger, rules: LedgerRules, as_of: datetime, *, since: datetime | None = None) -> LedgerView:
    """What ``ledger`` adds up to at ``as_of`` (timezone-aware), under ``rules``.

    ``since`` (default: the first fact) bounds ``max_days_past_due`` from below: the highest DPD
    reached between ``since`` and ``as_of``. Facts valued after ``as_of`` are left out; so are
    payments reversed by then.
    """
    tz = rules.timezone
    walk = _Walk(ledger, rules)
    events: list[tuple[datetime, int, int, object]] = []
    for line in walk.lines:
        due_at = calendar.local_instant(line.fact.due_date, time(0, 0), tz)
        cancelled_at = line.fact.cancelled_at
        if cancelled_at is not None and cancelled_at <= due_at:
            continue  # cancelled before it fell due: it never owed anything
        if due_at <= as_of:
            events.append((due_at, _DUE, line.order, line))
        if cancelled_at is not None and cancelled_at <= as_of:
            events.append((cancelled_at, _CANCEL, line.order, line))
        accrual = rules.accrual
        if accrual is not None and accrual.late_fee_after_days is not None and line.fact.kind == "instalment":
            fee_day = line.fact.due_date + timedelta(days=accrual.late_fee_after_days + 1)
            fee_at = calendar.local_instant(fee_day, time(0, 0), tz)
            if fee_at <= as_of:
                events.append((fee_at, _LATE_FEE, line.order, line))
    reversed_payments: dict[str, LedgerPayment] = {}
    for seq, payment in enumerate(ledger.payments):
        if payment.reversed_at is not None and payment.reversed_at <= as_of:
            reversed_payments[payment.payment_id] = payment
            continue
        if payment.value_at <= as_of:
            events.append((payment.value_at, _PAY, seq, payment))
    for seq, relief in enumerate(ledger.reliefs):
        if relief.value_at <= as_of:
            events.append((relief.value_at, _RELIEF, seq, relief))
    events.sort(key=lambda event: (event[0], event[1], event[2]))

    today = calendar.local_date(as_of, tz)
    since_day = calendar.local_date(since, tz) if since is not None else None
    max_dpd = 0
    last_value: datetime | None = None
    current: tuple[datetime | None, int] = (None, 0)
    for instant, kind, _, fact in events:
        day = calendar.local_date(instant, tz)
        if walk.day is not None and day > walk.day:
            # DPD on each local day between facts only grows; the last day before this fact is its peak.
            if since_day is None or day - timedelta(days=1) >= since_day:
                max_dpd = max(max_dpd, walk.dpd(day - timedelta(days=1)))
        walk.accrue_until(day)
        if since_day is None or day >= since_day:
            max_dpd = max(max_dpd, walk.dpd(day))
        if kind == _DUE:
            walk.fall_due(fact)  # type: ignore[arg-type]
        elif kind == _CANCEL:
            walk.cancel(fact)  # type: ignore[arg-type]
        elif kind == _LATE_FEE:
            walk.late_fee(fact)  # type: ignore[arg-type]
        elif kind == _RELIEF:
            walk.relieve(fact)  # type: ignore[arg-type]
        else:
            walk.pay(fact)  # type: ignore[arg-type]
            last_value = fact.value_at  # type: ignore[attr-defined]
        if not any(line.owing > 0 for line in walk.lines if line.due and not line.cancelled):
            current = (instant, walk.credit)
    walk.accrue_until(today)
    max_dpd = max(max_dpd, walk.dpd(today))
    view = _view(walk, ledger, as_of, today, max_dpd, last_value, reversed_payments)
    view.current_until, view.credit_at_current_until = current
    return view


def _view(walk: _Walk, ledger: Ledger, as_of: datetime, today: date, max_dpd: int, last_value: datetime | None,
          reversed_payments: dict[str, LedgerPayment]) -> LedgerView:
    outstanding = dict.fromkeys(COMPONENTS, 0)
    overdue = dict.fromkeys(COMPONENTS, 0)
    not_yet_due = 0
    lines: list[LineStatus] = []
    for line in sorted(walk.lines, key=lambda line: (line.fact.due_date, line.order)):
        fact = line.fact
        if fact.cancelled_at is not None and fact.cancelled_at <= as_of:
            status = "cancelled"
        elif not line.due:
            status = "not_due"
            not_yet_due += fact.total_minor
        elif line.owing > 0:
            status = "open"
        else:
            status = "paid"
        if status in ("open", "paid"):
            for component in COMPONENTS:
                outstanding[component] += line.remaining[component]
                if fact.due_date < today:
                    overdue[component] += line.remaining[component]
        lines.append(
            LineStatus(
                instalment_id=fact.instalment_id,
                kind=fact.kind,
                due_date=fact.due_date,
                status=status,  # type: ignore[arg-type]
                charged=Amounts.of(line.charged if line.due else fact.scheduled),
                outstanding=Amounts.of(line.remaining if status == "open" else {}),
                paid_minor=line.paid,
                relieved_minor=line.relieved,
                days_past_due=max(0, (today - fact.due_date).days) if status == "open" else 0,
            )
        )
    payments = []
    for payment in ledger.payments:
        if payment.payment_id in reversed_payments:
            payments.append(PaymentStatus(
                payment_id=payment.payment_id, amount_minor=payment.amount_minor, paid_at=payment.paid_at,
                value_at=payment.value_at, received_at=payment.received_at, status="reversed",
                reversal_id=payment.reversal_id,
            ))
        elif payment.payment_id in walk.payments:
            payments.append(walk.payments[payment.payment_id])
    oldest = walk.oldest_owing(today)
    return LedgerView(
        as_of=as_of,
        days_past_due=walk.dpd(today),
        oldest_unpaid_due_date=oldest,
        outstanding=Amounts.of(outstanding),
        overdue=Amounts.of(overdue),
        not_yet_due_minor=not_yet_due,
        credit_minor=walk.credit,
        paid_minor=sum(line.paid for line in walk.lines),
        relieved_minor=sum(line.relieved for line in walk.lines),
        penalty_accrued_minor=sum(line.penalty_accrued for line in walk.lines),
        late_fees_minor=sum(line.late_fee for line in walk.lines),
        max_days_past_due=max_dpd,
        last_payment_value_at=last_value,
        lines=lines,
        payments=payments,
    )
