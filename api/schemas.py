"""Request and response bodies of the HTTP API. Amounts are integers in minor units of the case's
currency; dates are ``YYYY-MM-DD`` in the borrower's calendar; instants are RFC 3339 with an offset
(answers are UTC). Bodies carry ids, amounts and dates only, except a contact outcome's ``note``
(stored in ``contact_notes``, never in the workflow)."""

from __future__ import annotations

import re
from datetime import date, datetime, timedelta
from typing import Annotated, Any, Literal

from pydantic import (
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    Strict as StrictValue,
    field_validator,
    model_validator,
)

from collections_domain.case.contract import CURRENCY_PATTERN, ID_PATTERN, REGION_PATTERN, ContactOutcomeKind, Outcome, PlanKind
from collections_domain.case.ledger import LedgerView
from collections_domain.portfolio.loan_book import Recovery
from collections_domain.rules.validation import MAX_AGE_DAYS, time_zone_problem

#: The largest amount the API takes: 2^53 - 1 minor units, so that every JSON client reads it exactly.
MAX_MINOR = 9_007_199_254_740_991

LoanIdStr = Annotated[str, Field(pattern=ID_PATTERN, description="1-64 letters, digits, '-', '_' or '.'.")]
IdStr = Annotated[str, Field(pattern=ID_PATTERN)]
#: How far back a due date or a payment may lie: 10 years, beyond the longest limitation period of
#: the supported jurisdictions (CN 3 years, UK 6, US states at most 10).

Minor = Annotated[int, StrictValue(), Field(ge=0, le=MAX_MINOR, description="Minor units (fen, cents), 0 to 2^53-1; a JSON integer.")]
PositiveMinor = Annotated[int, StrictValue(), Field(ge=1, le=MAX_MINOR, description="Minor units (fen, cents), 1 to 2^53-1; a JSON integer.")]
Currency = Annotated[str, Field(pattern=CURRENCY_PATTERN, description="ISO 4217 code in capitals, such as CNY.")]


def _iso_date(value):
    if isinstance(value, date) and not isinstance(value, datetime):
        return value
    if not isinstance(value, str) or not re.fullmatch(r"\d{4}-\d{2}-\d{2}", value):
        raise ValueError("must be a date YYYY-MM-DD (a JSON string)")
    return value


def _rfc3339(value):
    if isinstance(value, datetime):
        return value
    if not isinstance(value, str) or not re.fullmatch(r"\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?([Zz]|[+-]\d{2}:\d{2})?", value):
        raise ValueError("must be an RFC 3339 instant such as 2026-12-01T10:00:00+08:00 (a JSON string)")
    return value


#: A calendar date as a JSON string ``YYYY-MM-DD`` only (not a number, not an instant).
IsoDate = Annotated[date, BeforeValidator(_iso_date)]
#: An instant as an RFC 3339 JSON string with its offset (not a Unix number).
Instant = Annotated[AwareDatetime, BeforeValidator(_rfc3339)]


class Strict(BaseModel):
    """Request bodies refuse unknown fields, so a typo is named instead of ignored."""

    model_config = ConfigDict(extra="forbid")


#: The most instalments or payments one request carries (a request body is at most 64 KB; a loan
#: with more comes through the loan book's CSV file).
MAX_LINES = 200


class InstalmentRequest(Strict):
    """One instalment of the loan (``LoanInstalment``): amounts in minor units due on a local date."""

    instalment_id: IdStr
    due_date: IsoDate
    principal_minor: Minor = 0
    interest_minor: Minor = 0
    fees_minor: Minor = 0
    penalty_minor: Minor = 0


class OpeningPaymentRequest(Strict):
    """A payment made before the case opens (``OpeningPayment``), as of its ``paid_at``."""

    payment_id: IdStr
    amount_minor: PositiveMinor
    paid_at: Instant


class CaseOpenRequest(Strict):
    """Open a collections case for a delinquent loan (CONTRACT.md "Workflow" input)."""

    loan_id: LoanIdStr
    borrower_id: IdStr = Field(description="The borrower's id; contact details are read from the database.")
    currency: Currency = "CNY"
    principal_due_minor: Minor = 0
    interest_due_minor: Minor = 0
    fees_due_minor: Minor = 0
    oldest_due_date: IsoDate = Field(description="The oldest unpaid due date, not after the borrower's today.")
    timezone: str = Field("Asia/Shanghai", min_length=1, max_length=64, description="IANA time zone of the borrower.")
    jurisdiction: Literal["CN", "US", "UK"] = "CN"
    policy_version: str | None = Field(None, min_length=1, max_length=64, description="Default: the current policy.")
    region: str | None = Field(None, pattern=REGION_PATTERN,
                               description="The borrower's ISO 3166-2 region (CN-SH, US-NY...), for filtering by Region.")
    portfolio: str | None = Field(None, pattern=ID_PATTERN,
                                  description="The loan book's portfolio; the policy may switch accrual off for it "
                                              "(`no-accrual`, `home-credit`).")
    instalments: list[InstalmentRequest] = Field(
        default_factory=list, max_length=MAX_LINES,
        description="The loan's instalments due and unpaid (instead of the three amounts): each applied once per id.")
    payments: list[OpeningPaymentRequest] = Field(
        default_factory=list, max_length=MAX_LINES,
        description="Payments made on those instalments before the case opens (allocated by the policy's waterfall).")

    @field_validator("oldest_due_date")
    @classmethod
    def _recent_enough(cls, value: date) -> date:
        if value < date.today() - timedelta(days=MAX_AGE_DAYS):
            raise ValueError(f"must be within the last {MAX_AGE_DAYS} days (10 years: older debts are past every "
                             "supported jurisdiction's limitation period)")
        return value

    @model_validator(mode="after")
    def _total_fits(self) -> "CaseOpenRequest":
        if self.principal_due_minor + self.interest_due_minor + self.fees_due_minor > MAX_MINOR:
            raise ValueError("principal_due_minor + interest_due_minor + fees_due_minor: the sum must be at most 2^53-1")
        return self


class CaseRef(BaseModel):
    """Where a case runs. ``created`` is false when the loan's case was already running (nothing
    changed; ``differences`` lists given values that differ from the running case's).
    ``pending`` is true when no worker had taken the case's first task yet (answered 202): the
    worker still checks the input, so read ``status_url`` to see it open."""

    loan_id: str
    workflow_id: str
    run_id: str
    created: bool
    pending: bool = False
    differences: list[str] = []
    #: Instalments of the request the running case lacked, sent to it as ``instalment_due``.
    forwarded_instalments: list[str] = []
    status_url: str


class PaymentRequest(Strict):
    """A payment received for the loan (signal ``payment_received``); applied once per ``payment_id``."""

    payment_id: IdStr
    amount_minor: PositiveMinor
    currency: Currency
    paid_at: Instant = Field(description="When the money arrived, RFC 3339 with an offset; not in the future, "
                                               "at most 10 years ago (rules.validation.payment_entry_problem).")


class PromiseRequest(Strict):
    """A promise to pay (signal ``promise_to_pay``), checked by the case against the policy."""

    promise_id: IdStr
    amount_minor: PositiveMinor
    promised_date: IsoDate = Field(description="The borrower's calendar date they will pay by.")


class SignalAccepted(BaseModel):
    """What happened to a posted payment, reversal, instalment, promise or other signal.

    ``delivered``: the case has it; it applies or rejects it (a rejection is listed with its rule
    in the case's ``rejected_signals`` and the ``rejected_signals`` table).
    ``reopened``: a reversal re-opened the case that had ended with that payment.
    ``recorded_in_book``: no case is open; the loan book applied it (the scan opens a case if the
    loan is overdue; after a write-off, a payment is a recovery: ``reason`` ``written_off``).
    ``held_for_reconciliation``: no running case and the loan is not in the book (``reason``:
    ``no_case``, ``case_closed``, ``written_off``); kept in ``unmatched_payments``, nothing is lost.
    """

    loan_id: str
    signal: str
    id: str
    status: Literal["delivered", "reopened", "recorded_in_book", "held_for_reconciliation"]
    reason: str | None = None
    detail: str
    status_url: str


class PlanRequest(Strict):
    """A negotiated repayment plan (update ``propose_plan``): ``instalments`` with
    ``instalment_dates`` (and optionally ``first_instalment_minor``), ``deferral`` with
    ``new_due_date``, or ``waiver`` with ``waive_minor`` (interest and fees only)."""

    plan_id: IdStr
    kind: PlanKind
    instalment_dates: list[IsoDate] | None = Field(None, max_length=120)
    first_instalment_minor: PositiveMinor | None = None
    new_due_date: IsoDate | None = None
    waive_minor: PositiveMinor | None = None
    pay_by: IsoDate | None = None
    approver_id: IdStr | None = None
    proposed_by: IdStr | None = None


class PromiseInOutcome(Strict):
    promise_id: IdStr
    amount_minor: PositiveMinor
    promised_date: IsoDate


class ContactOutcomeRequest(Strict):
    """What an agent's contact achieved (update ``record_contact_outcome``). ``note`` is free
    text kept in the database only."""

    task_key: str = Field(min_length=1, max_length=200, pattern=r"^[\x21-\x7e]+$")
    outcome: ContactOutcomeKind
    agent_id: IdStr
    promise: PromiseInOutcome | None = None
    dispute_id: IdStr | None = None
    note: str | None = Field(None, min_length=1, max_length=2000)


class CaseSummary(BaseModel):
    """One case as Temporal visibility lists it (search attributes, no personal data)."""

    loan_id: str | None
    workflow_id: str
    run_id: str
    execution_status: str
    stage: str | None
    outstanding_minor: int | None
    jurisdiction: str | None
    region: str | None
    outcome: str | None
    overdue_since: datetime | None
    started_at: datetime | None
    closed_at: datetime | None


class CaseList(BaseModel):
    """A page of cases; pass ``next_page_token`` back for the next page (absent on the last)."""

    query: str
    cases: list[CaseSummary]
    next_page_token: str | None = None


class ContactRow(BaseModel):
    """One line of a case's contact history (attempts, outcomes with notes, logged calls, hand-offs)."""

    at: datetime
    kind: str
    what: str
    status: str
    detail: str | None


class ContactHistory(BaseModel):
    loan_id: str
    contacts: list[ContactRow]


class UnmatchedPaymentOut(BaseModel):
    """A payment held for reconciliation (no running case when it was posted)."""

    loan_id: str
    payment_id: str
    amount_minor: int
    currency: str
    paid_at: datetime
    received_at: datetime
    reason: str
    status: str


class UnmatchedPayments(BaseModel):
    payments: list[UnmatchedPaymentOut]


class ApiKeyRequest(Strict):
    """A new API key: a name for people and its scopes."""

    name: str = Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9 ._-]+$")
    scopes: list[Literal["read", "write", "decode", "admin"]] = Field(min_length=1, max_length=4)


class ApiKeyOut(BaseModel):
    """A key as listed (never its secret)."""

    id: str
    name: str
    scopes: list[str]
    created_at: datetime
    revoked_at: datetime | None


class ApiKeyCreated(ApiKeyOut):
    """A new key: ``key`` is the whole secret, shown this once; send it as ``Authorization: Bearer <key>``.
    A replay of the creating request (same Idempotency-Key) answers ``key: null``: the secret is
    never stored, not even for replays; revoke the key and make a new one if it was lost."""

    key: str | None


class ApiKeyList(BaseModel):
    keys: list[ApiKeyOut]


class Health(BaseModel):
    status: Literal["ok"]
    checks: dict[str, Any] = {}


__all__ = [name for name in dir() if name[0].isupper()] + ["Outcome", "MAX_MINOR"]


class LoanRequest(Strict):
    """A loan for the loan book (``portfolio.loan_book.LoanIn``) with its instalments, due or not
    (at most 200 a request: post again to add more, or use the CSV file)."""

    loan_id: LoanIdStr
    borrower_id: IdStr
    currency: Currency = "CNY"
    timezone: str = Field("Asia/Shanghai", min_length=1, max_length=64, description="IANA time zone of the borrower.")
    jurisdiction: Literal["CN", "US", "UK"] = "CN"
    region: str | None = Field(None, pattern=REGION_PATTERN)
    portfolio: str | None = Field(None, pattern=ID_PATTERN)
    instalments: list[InstalmentRequest] = Field(default_factory=list, max_length=MAX_LINES)

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        from collections_domain.rules import calendar

        calendar.zone(value)
        return value


class LoanOut(BaseModel):
    """A loan of the book and what its facts add up to now (``ledger``: every instalment and
    payment, DPD, outstanding by component, credit). ``status``: ``active``, ``written_off``,
    ``settled`` or ``closed``."""

    loan_id: str
    borrower_id: str
    currency: str
    timezone: str
    jurisdiction: str
    region: str | None = None
    portfolio: str | None = None
    status: str
    ledger: LedgerView
    #: After a write-off: the amount written off, what came back since, what remains.
    recovery: Recovery | None = None
    case_url: str


class ReversalRequest(Strict):
    """A payment that bounced or was charged back (signal ``payment_reversed``)."""

    reversal_id: IdStr
    payment_id: IdStr
    reason: Literal["bounced", "chargeback", "error", "other"] = "other"
    reversed_at: Instant | None = None


class AdjustmentRequest(Strict):
    """A change of the loan's schedule (signal ``schedule_adjusted``): instalments to cancel and
    new ones to add; ``reference`` an id of the servicing system's record (no free text)."""

    adjustment_id: IdStr
    reason_code: Literal["restructure", "cancellation", "correction", "other"]
    reference: IdStr | None = None
    cancel: list[IdStr] = Field(default_factory=list, max_length=MAX_LINES)
    add: list[InstalmentRequest] = Field(default_factory=list, max_length=MAX_LINES)
    effective_at: Instant | None = None


class ScanRequestBody(Strict):
    """Run the delinquency scan for one IANA time zone's loans (``None``: every zone)."""

    time_zone: str | None = Field(None, min_length=1, max_length=64)

    @field_validator("time_zone")
    @classmethod
    def _known_zone(cls, value: str | None) -> str | None:
        problem = time_zone_problem(value)
        if problem:
            raise ValueError(problem.removeprefix("time_zone: "))
        return value


class ScanAccepted(BaseModel):
    """The scan started: its workflow id (``DelinquencyScanWorkflow``; its result says what it did)."""

    scan_id: str
    time_zone: str | None = None
