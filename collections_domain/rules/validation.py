"""Every rule an input must meet where it enters, in one place for the worker, the API, the CLI
and the loan book's CSV import.

- A case input: CONTRACT.md's input table (ids, amounts, currency, time zone, jurisdiction, policy
  version), plus: the policy must have thresholds for the currency, and the oldest due date must
  not be after the borrower's local today (a loan is delinquent from the day after its due date).
- A payment entering by any path (``payment_entry_problem``): a positive amount, the loan's
  currency, ``paid_at`` at most ``PAID_AT_SKEW`` ahead of the receiver's clock and at most
  ``MAX_AGE_DAYS`` back.
- A loan of the loan book (``book_loan_problems``) and each of its instalments
  (``book_instalment_problem``): a currency the policy covers, amounts that add up to at most
  ``MAX_MINOR`` (2^53-1), no ``penalty_minor`` (penalty accrues by policy, in the case).
- Text typed on the command line (``parse_minor``, ``id_problem``): amounts are whole numbers in
  ASCII digits, ids follow ``ID_PATTERN``; the CLI then checks them with the API's request models.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import date, datetime, timedelta

from babel.numbers import is_currency

from collections_domain.case.contract import (
    ID_PATTERN,
    MAX_MINOR,
    CaseInput,
    LoanInstalment,
    PaymentReceived,
)
from collections_domain.rules import calendar
from collections_domain.rules.policy import CollectionPolicy, PolicyRegistry

#: How far back a date or payment may go: 10 years, past every supported jurisdiction's
#: limitation period for consumer debt.
MAX_AGE_DAYS = 3650
#: How far ahead of the receiver's clock a payment's ``paid_at`` may be (clock skew between systems).
PAID_AT_SKEW = timedelta(minutes=5)
#: How far ahead an instalment may fall due: 50 years, beyond any consumer loan's term.
MAX_FUTURE_DAYS = 18_262


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

    The due date must not be after the borrower's local today (``case.timezone``); each of the
    input's ``instalments`` falls due within ``due_date_range_problem``'s bounds.
    """
    today = calendar.local_date(now, case.timezone)
    if case.oldest_due_date > today:
        return (
            f"oldest_due_date: must not be after today in {case.timezone} ({today.isoformat()}); "
            f"got {case.oldest_due_date.isoformat()}"
        )
    for index, line in enumerate(case.instalments):
        problem = due_date_range_problem(line.due_date, today, f"instalments.{index}.due_date")
        if problem:
            return problem
    return None


def due_date_range_problem(due: date, today: date, field: str = "due_date") -> str | None:
    """Why an instalment due on ``due`` is refused on the borrower's ``today``, or ``None``: at
    most ``MAX_AGE_DAYS`` back (older debts are past every supported jurisdiction's limitation
    period) and ``MAX_FUTURE_DAYS`` ahead."""
    if due < today - timedelta(days=MAX_AGE_DAYS):
        return f"{field}: must be within the last {MAX_AGE_DAYS} days (10 years), got {due.isoformat()}"
    if due > today + timedelta(days=MAX_FUTURE_DAYS):
        return f"{field}: must be at most {MAX_FUTURE_DAYS} days (50 years) ahead, got {due.isoformat()}"
    return None


def payment_entry_problem(payment: PaymentReceived, *, currency: str | None, now: datetime) -> str | None:
    """Why ``payment`` must be refused where it enters (API, CLI, CSV, loan book), or ``None``.

    ``currency`` is the loan's (or the case's) when known. The case applies its own, looser rule
    (``ladder.payment_problem``: a day of skew) because it judges on the workflow's clock."""
    if payment.amount_minor <= 0:
        return f"amount_minor: must be a positive integer in minor units, got {payment.amount_minor}"
    if currency is not None and payment.currency != currency:
        return f"currency: must be the loan's currency {currency}, got {payment.currency!r}"
    if payment.paid_at > now + PAID_AT_SKEW:
        return (f"paid_at: must not be in the future (more than {PAID_AT_SKEW.seconds // 60} minutes ahead of now), "
                f"got {payment.paid_at.isoformat()}")
    if payment.paid_at < now - timedelta(days=MAX_AGE_DAYS):
        return f"paid_at: must be within the last {MAX_AGE_DAYS} days (10 years), got {payment.paid_at.isoformat()}"
    return None


def book_instalment_problem(line: LoanInstalment, field: str = "", *, today: date | None = None) -> str | None:
    """Why the loan book refuses instalment ``line`` (``"field: rule"``, prefixed by ``field``),
    or ``None``; with ``today`` (the borrower's), its due date is checked against the range too."""
    problem = line.problem(field)
    if problem:
        return problem
    where = f"{field}." if field else ""
    if line.penalty_minor:
        return (f"{where}penalty_minor: the loan book takes principal, interest and fees; penalty interest "
                "accrues in the case by policy ([accrual]), so it must be 0")
    if today is not None:
        return due_date_range_problem(line.due_date, today, f"{where}due_date")
    return None


def total_problem(amounts: Iterable[int], field: str) -> str | None:
    """``"field: ... at most 2^53-1"`` when ``amounts`` add up to more than ``MAX_MINOR``."""
    total = sum(amounts)
    if total > MAX_MINOR:
        return f"{field}: the total must be at most 2^53-1 ({MAX_MINOR}) minor units, got {total}"
    return None


def book_loan_problems(currency: str, instalments: list[LoanInstalment], policy: CollectionPolicy,
                       today: date) -> list[str]:
    """Every rule a loan of the book breaks (its ``currency`` and ``instalments``, due dates
    against the borrower's ``today``), as ``"field: rule"``; empty when it may be stored."""
    problems = []
    if not is_currency(currency):
        problems.append(f"currency: {currency!r} is not an ISO 4217 currency code")
    elif currency not in policy.currencies:
        problems.append(f"currency: policy {policy.version} has no thresholds for {currency} "
                        f"(it covers {', '.join(sorted(policy.currencies))})")
    for index, line in enumerate(instalments):
        problem = book_instalment_problem(line, f"instalments.{index}", today=today)
        if problem:
            problems.append(problem)
    problem = total_problem((line.total_minor for line in instalments), "instalments")
    if problem:
        problems.append(problem)
    return problems


def time_zone_problem(time_zone: str | None, field: str = "time_zone") -> str | None:
    """``"time_zone: ..."`` when ``time_zone`` is given and not an IANA name, else ``None``."""
    if time_zone is None:
        return None
    try:
        calendar.zone(time_zone)
    except calendar.UnknownTimeZoneError as err:
        return f"{field}: {err}".replace(f"{field}: timezone: ", f"{field}: ")
    return None


#: The API's rule for loan, borrower, payment and other ids (``contract.ID_PATTERN``), in words.
ID_RULE = "must be 1-64 characters, each a letter, a digit, '-', '_' or '.'"
_ID = re.compile(ID_PATTERN)
#: A whole number as text: ASCII digits with an optional leading '-', nothing else (no '1e23',
#: '1_000', '1.0', spaces or other scripts' digits), at most 20 digits before the bounds apply.
_WHOLE_NUMBER = re.compile(r"-?[0-9]{1,20}")


def id_problem(value: str, field: str) -> str | None:
    """``"field: ..."`` when ``value`` is not an id the API takes (``ID_PATTERN``: 1-64 ASCII
    letters, digits, ``-``, ``_``, ``.``), else ``None``."""
    if _ID.fullmatch(value):
        return None
    return f"{field}: {ID_RULE}, got {value[:80]!r}"


def parse_minor(text: str, field: str) -> int:
    """An amount in minor units typed as text (a command-line argument): ASCII digits with an
    optional leading ``-``, read as the integer the API's JSON body would carry. Its bounds are
    the request model's (``PositiveMinor``: 1 to 2^53-1; ``Minor``: 0 to 2^53-1).

    Raises:
        ValueError: ``"field: must be a whole number of minor units ..."`` for anything else
            (``1e23``, ``1.5``, ``1_000``, more than 20 digits).
    """
    if not _WHOLE_NUMBER.fullmatch(text):
        raise ValueError(f"{field}: must be a whole number of minor units (digits only, at most "
                         f"2^53-1 = {MAX_MINOR}), got {text[:40]!r}")
    return int(text)
