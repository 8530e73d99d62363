"""Pure rules for negotiated repayment plans: checking a proposal and splitting the money.

No Temporal, no I/O. The workflow's ``propose_plan`` validator and handler call ``plan_problem``
and ``build_plan``; unit tests (including Hypothesis properties) call them directly. Limits come
from the policy's ``[plans]`` table; shares are in basis points so no float touches money.
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta

from collections_domain.rules import calendar
from collections_domain.case.contract import Instalment, PlanProposal
from collections_domain.rules.policy import CollectionPolicy

BPS = 10_000


def ceil_share(amount_minor: int, bps: int) -> int:
    """``amount_minor * bps / 10000`` rounded up to a whole minor unit (integer arithmetic)."""
    return -(-amount_minor * bps // BPS)


def floor_share(amount_minor: int, bps: int) -> int:
    """``amount_minor * bps / 10000`` rounded down to a whole minor unit (integer arithmetic)."""
    return amount_minor * bps // BPS


def split_equally(total_minor: int, count: int) -> list[int]:
    """``total_minor`` in ``count`` equal parts, the remainder minor units on the last part.

    ``split_equally(1001, 3) == [333, 333, 335]``; the parts always sum to ``total_minor``.
    Raises ``ValueError`` for ``count < 1`` or a negative total.
    """
    if count < 1 or total_minor < 0:
        raise ValueError("count must be >= 1 and total_minor >= 0")
    base, remainder = divmod(total_minor, count)
    return [base] * (count - 1) + [base + remainder]


def instalment_amounts(total_minor: int, count: int, first_minor: int | None) -> list[int]:
    """The amounts of ``count`` instalments summing to ``total_minor``: equal parts with the
    remainder on the last, or ``first_minor`` first and the rest split equally over the others."""
    if first_minor is None:
        return split_equally(total_minor, count)
    return [first_minor] + split_equally(total_minor - first_minor, count - 1)


def instalment_deadline(due_date: date, tz_name: str, policy: CollectionPolicy) -> datetime:
    """UTC instant an instalment is judged missed: the end (local midnight) of ``due_date`` plus
    the policy's ``plans.instalment_grace_days``."""
    last_day = due_date + timedelta(days=policy.plans.instalment_grace_days)
    return calendar.local_instant(last_day + timedelta(days=1), time(0, 0), tz_name)


def plan_problem(
    proposal: PlanProposal,
    *,
    policy: CollectionPolicy,
    tz_name: str,
    now: datetime,
    outstanding_minor: int,
    interest_fees_outstanding_minor: int,
) -> str | None:
    """Why ``proposal`` breaks the policy (``"field: rule (policy key)"``), or ``None``.

    Checks only the proposal against the money and the policy's ``plans.*`` limits; the case's
    own state (closed, another plan, an open promise or dispute) is checked by the workflow.
    """
    rules = policy.plans
    today = calendar.local_date(now, tz_name)
    if outstanding_minor <= 0:
        return "plan_id: nothing is outstanding"
    extra = _fields_of_other_kinds(proposal)
    if extra:
        return f"{extra[0]}: not used by {'an' if proposal.kind[0] in 'aeiou' else 'a'} {proposal.kind} plan"
    if proposal.kind == "instalments":
        dates = proposal.instalment_dates
        if not dates or len(dates) < 2:
            return "instalment_dates: an instalments plan needs at least 2 dates"
        if len(dates) > rules.max_instalments:
            return (
                f"instalment_dates: at most {rules.max_instalments} instalments "
                f"(policy plans.max_instalments), got {len(dates)}"
            )
        if any(b <= a for a, b in zip(dates, dates[1:])):
            return "instalment_dates: must be strictly increasing"
        if dates[0] < today:
            return f"instalment_dates: the first date must not be before today ({today}, borrower's calendar)"
        latest = today + timedelta(days=rules.max_term_days)
        if dates[-1] > latest:
            return (
                f"instalment_dates: the last date must be at most {rules.max_term_days} days ahead "
                f"(policy plans.max_term_days), latest {latest}"
            )
        if len(dates) > outstanding_minor:
            return f"instalment_dates: {len(dates)} instalments cannot split {outstanding_minor} minor units"
        minimum_first = ceil_share(outstanding_minor, rules.min_first_payment_bps)
        first = proposal.first_instalment_minor
        if first is not None:
            if first < 1 or first > outstanding_minor - (len(dates) - 1):
                return (
                    f"first_instalment_minor: must be from 1 to {outstanding_minor - (len(dates) - 1)} "
                    f"(the others need at least 1 minor unit each), got {first}"
                )
        amounts = instalment_amounts(outstanding_minor, len(dates), first)
        if amounts[0] < minimum_first:
            field = "first_instalment_minor" if first is not None else "instalment_dates"
            return (
                f"{field}: the first instalment ({amounts[0]}) must be at least {minimum_first}, "
                f"{rules.min_first_payment_bps / 100:g} % of {outstanding_minor} (policy plans.min_first_payment_bps)"
            )
        if first is not None and any(a < 1 for a in amounts):
            return "first_instalment_minor: leaves an instalment of 0"
        return None
    if proposal.kind == "deferral":
        new_due = proposal.new_due_date
        if new_due is None:
            return "new_due_date: required for a deferral"
        latest = today + timedelta(days=rules.max_deferral_days)
        if new_due <= today:
            return f"new_due_date: must be after today ({today}, borrower's calendar)"
        if new_due > latest:
            return (
                f"new_due_date: at most {rules.max_deferral_days} days ahead "
                f"(policy plans.max_deferral_days), latest {latest}"
            )
        return None
    # waiver
    waive = proposal.waive_minor
    if waive is None:
        return "waive_minor: required for a waiver"
    if waive <= 0:
        return f"waive_minor: must be a positive integer in minor units, got {waive}"
    if interest_fees_outstanding_minor <= 0:
        return "waive_minor: no interest or fees are outstanding; principal is never waived"
    cap = floor_share(interest_fees_outstanding_minor, rules.max_waiver_bps)
    if waive > cap:
        return (
            f"waive_minor: at most {cap}, {rules.max_waiver_bps / 100:g} % of the {interest_fees_outstanding_minor} "
            f"interest and fees outstanding (policy plans.max_waiver_bps); principal is never waived"
        )
    if waive >= outstanding_minor:
        return f"waive_minor: must leave something to pay, the outstanding amount is {outstanding_minor}"
    auto = floor_share(interest_fees_outstanding_minor, rules.auto_approve_waiver_bps)
    if waive > auto and proposal.approver_id is None:
        return (
            f"approver_id: required for a waiver above {auto} ({rules.auto_approve_waiver_bps / 100:g} % of the "
            f"interest and fees, policy plans.auto_approve_waiver_bps)"
        )
    pay_by = proposal.pay_by
    if pay_by is not None:
        latest = today + timedelta(days=rules.max_deferral_days)
        if pay_by < today:
            return f"pay_by: must not be before today ({today}, borrower's calendar)"
        if pay_by > latest:
            return f"pay_by: at most {rules.max_deferral_days} days ahead (policy plans.max_deferral_days), latest {latest}"
    return None


def _fields_of_other_kinds(proposal: PlanProposal) -> list[str]:
    used = {
        "instalments": {"instalment_dates", "first_instalment_minor"},
        "deferral": {"new_due_date"},
        "waiver": {"waive_minor", "pay_by", "approver_id"},
    }[proposal.kind]
    optional_everywhere = {"plan_id", "kind", "proposed_by", "approver_id"}
    return [
        name
        for name in ("instalment_dates", "first_instalment_minor", "new_due_date", "waive_minor", "pay_by")
        if getattr(proposal, name) is not None and name not in used and name not in optional_everywhere
    ]


def build_schedule(
    proposal: PlanProposal, *, policy: CollectionPolicy, tz_name: str, now: datetime, outstanding_minor: int
) -> tuple[list[Instalment], int]:
    """The instalments of an accepted ``proposal`` and the amount it forgives when completed.

    Call only after ``plan_problem`` returned ``None``. Amounts sum exactly to
    ``outstanding_minor - waived``.
    """
    if proposal.kind == "instalments":
        dates = proposal.instalment_dates or []
        amounts = instalment_amounts(outstanding_minor, len(dates), proposal.first_instalment_minor)
        return [Instalment(seq=i + 1, due_date=d, amount_minor=a) for i, (d, a) in enumerate(zip(dates, amounts))], 0
    if proposal.kind == "deferral":
        assert proposal.new_due_date is not None
        return [Instalment(seq=1, due_date=proposal.new_due_date, amount_minor=outstanding_minor)], 0
    waived = proposal.waive_minor or 0
    today = calendar.local_date(now, tz_name)
    pay_by = proposal.pay_by or today + timedelta(days=policy.plans.waiver_pay_within_days)
    return [Instalment(seq=1, due_date=pay_by, amount_minor=outstanding_minor - waived)], waived
