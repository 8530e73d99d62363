"""Every rule a case input must meet before a case opens, in one place for the worker and clients.

Rules: CONTRACT.md's input table (ids, amounts, currency, time zone, jurisdiction, policy
version), plus: the policy must have thresholds for the currency, and the oldest due date must not
be after the borrower's local today (a loan is delinquent from the day after its due date).
"""

from __future__ import annotations

from datetime import datetime

from babel.numbers import is_currency

from collections_domain.rules import calendar
from collections_domain.case.contract import CaseInput
from collections_domain.rules.policy import PolicyRegistry


def case_input_problems(case: CaseInput, policies: PolicyRegistry) -> list[str]:
    """Every rule ``case`` breaks as ``"field: rule"`` strings; empty when it may open."""
    problems = case.input_problems
    if problems:
        return problems
    if not is_currency(case.currency):
        problems.append(f"currency: {case.currency!r} is not an ISO 4217 currency code")
    try:
        calendar.zone(case.timezone)
    except calendar.UnknownTimeZoneError as err:
        problems.append(str(err))
    try:
        policy = policies.get(case.policy_version)
    except KeyError:
        problems.append(
            f"policy_version: unknown policy {case.policy_version!r}; known: {', '.join(policies.versions)}"
        )
        return problems
    if not problems and case.currency not in policy.currencies:
        problems.append(
            f"currency: policy {policy.version} has no thresholds for {case.currency}; "
            f"it covers {', '.join(sorted(policy.currencies))}"
        )
    return problems


def due_date_problem(case: CaseInput, now: datetime) -> str | None:
    """Why ``case.oldest_due_date`` cannot open a case at ``now``, or ``None``.

    The due date must not be after the borrower's local today (``case.timezone``).
    """
    today = calendar.local_date(now, case.timezone)
    if case.oldest_due_date > today:
        return (
            f"oldest_due_date: must not be after today in {case.timezone} ({today.isoformat()}); "
            f"got {case.oldest_due_date.isoformat()}"
        )
    return None
