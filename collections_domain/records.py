"""Case events the workflow asks an activity to write to the database (ids and amounts only).

Each event carries a ``key`` unique within its workflow, so a retried write is applied once.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Literal

from pydantic import BaseModel, Field

from collections_domain.policy import CollectionPolicy


class CaseOpened(BaseModel):
    """The case exists: its loan, amounts (minor units), due date, zone, policy version."""

    kind: Literal["case_opened"] = "case_opened"
    key: str
    at: datetime
    loan_id: str
    borrower_id: str
    currency: str
    opening_overdue_minor: int
    oldest_due_date: date
    timezone: str
    jurisdiction: str
    policy_version: str


class CaseProgress(BaseModel):
    """The case's stage, outstanding amount and (when closed) outcome changed."""

    kind: Literal["case_progress"] = "case_progress"
    key: str
    at: datetime
    stage: str
    outstanding_minor: int
    outcome: str | None = None


class PaymentApplied(BaseModel):
    """A payment applied: ``applied_minor`` reduced the outstanding, ``overpaid_minor`` did not."""

    kind: Literal["payment_applied"] = "payment_applied"
    key: str
    at: datetime
    payment_id: str
    amount_minor: int
    applied_minor: int
    overpaid_minor: int
    currency: str
    paid_at: datetime


class PromiseOpened(BaseModel):
    """A promise to pay was accepted."""

    kind: Literal["promise_opened"] = "promise_opened"
    key: str
    at: datetime
    promise_id: str
    amount_minor: int
    promised_date: date


class PromiseResolved(BaseModel):
    """A promise was kept or broken."""

    kind: Literal["promise_resolved"] = "promise_resolved"
    key: str
    at: datetime
    promise_id: str
    status: Literal["kept", "broken"]
    paid_toward_minor: int


class SignalRejected(BaseModel):
    """A signal was rejected; ``reason`` names the field and the rule."""

    kind: Literal["signal_rejected"] = "signal_rejected"
    key: str
    at: datetime
    signal_kind: str
    signal_id: str
    reason: str


CaseEvent = Annotated[
    CaseOpened | CaseProgress | PaymentApplied | PromiseOpened | PromiseResolved | SignalRejected,
    Field(discriminator="kind"),
]


class CaseRecords(BaseModel):
    """A batch of events of one case, written in one transaction."""

    workflow_id: str
    loan_id: str
    oldest_due_date: date
    events: list[CaseEvent]


class ContactRequest(BaseModel):
    """What a contact activity needs: ids, amounts (minor units), dates. No personal data.

    ``idempotency_key`` is ``<workflow_id>:<oldest_due_date>:<step>:<action>``: unique in the
    database and sent as the ``Idempotency-Key`` header to HTTP providers.
    """

    idempotency_key: str
    workflow_id: str
    loan_id: str
    borrower_id: str
    step: str
    action: str
    days_past_due: int
    outstanding_minor: int
    paid_minor: int
    currency: str
    oldest_due_date: date
    jurisdiction: str
    policy_version: str
    failed_key: str | None = None


class ContactResult(BaseModel):
    """What a contact activity did: ``sent`` (http), ``recorded`` (record back-end), or
    ``already_done`` when an earlier run with the same key had succeeded."""

    idempotency_key: str
    status: str
    channel: str
    backend: str
    provider_reference: str | None = None


class CaseSetup(BaseModel):
    """What a case needs from outside before its first step: the policy it runs under and its
    currency's number of minor-unit digits (CNY 2, JPY 0), for display."""

    policy: CollectionPolicy
    currency_exponent: int
