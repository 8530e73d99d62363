"""Database tables (SQLModel). Borrowers are the only table with personal data.

Every row that an activity writes carries a unique key derived from the workflow id and the
step (``idempotency_key``) or the signal's own id, so a retried activity writes once.
Amounts are integers in minor units; instants are stored as UTC.
"""

from __future__ import annotations

from datetime import UTC, date, datetime

from sqlalchemy import Column, DateTime, UniqueConstraint
from sqlmodel import Field, SQLModel


def utcnow() -> datetime:
    """Now, timezone-aware UTC (activities only; workflows use ``workflow.now()``)."""
    return datetime.now(UTC)


def _utc_column(nullable: bool = False) -> Column:
    return Column(DateTime(timezone=True), nullable=nullable)


class Borrower(SQLModel, table=True):
    """A borrower and their contact details: the only personal data the product stores."""

    __tablename__ = "borrowers"
    id: str = Field(primary_key=True, max_length=64)
    full_name: str
    phone: str | None = None
    email: str | None = None
    postal_address: str | None = None
    locale: str = "zh-CN"
    timezone: str = "Asia/Shanghai"
    source: str | None = None


class Loan(SQLModel, table=True):
    """A loan as the servicing system describes it (no personal data)."""

    __tablename__ = "loans"
    id: str = Field(primary_key=True, max_length=64)
    borrower_id: str = Field(foreign_key="borrowers.id", index=True, max_length=64)
    currency: str = Field(max_length=3)
    instalment_minor: int | None = None
    source: str | None = None


class CollectionCase(SQLModel, table=True):
    """One collections case: a workflow id and the due date it opened for."""

    __tablename__ = "collection_cases"
    __table_args__ = (UniqueConstraint("workflow_id", "oldest_due_date"),)
    id: int | None = Field(default=None, primary_key=True)
    workflow_id: str = Field(index=True, max_length=80)
    loan_id: str = Field(index=True, max_length=64)
    borrower_id: str = Field(max_length=64)
    currency: str = Field(max_length=3)
    opening_overdue_minor: int
    outstanding_minor: int
    oldest_due_date: date
    timezone: str
    jurisdiction: str = Field(max_length=2)
    policy_version: str
    stage: str = "identified"
    outcome: str | None = None
    opened_at: datetime = Field(sa_column=_utc_column())
    closed_at: datetime | None = Field(default=None, sa_column=_utc_column(nullable=True))


class ContactAttempt(SQLModel, table=True):
    """Every contact the ladder makes: one row per idempotency key, with its attempts."""

    __tablename__ = "contact_attempts"
    id: int | None = Field(default=None, primary_key=True)
    idempotency_key: str = Field(unique=True, max_length=200)
    workflow_id: str = Field(index=True, max_length=80)
    loan_id: str = Field(index=True, max_length=64)
    step: str
    action: str
    channel: str
    backend: str
    status: str  # sent | recorded | failed
    attempts: int = 0
    days_past_due: int
    amount_minor: int
    currency: str = Field(max_length=3)
    locale: str | None = None
    rendered: str | None = None
    provider_reference: str | None = None
    last_error: str | None = None
    created_at: datetime = Field(sa_column=_utc_column())
    updated_at: datetime = Field(sa_column=_utc_column())


class Payment(SQLModel, table=True):
    """A payment applied to a case (``payment_id`` unique per loan)."""

    __tablename__ = "payments"
    __table_args__ = (UniqueConstraint("loan_id", "payment_id"),)
    id: int | None = Field(default=None, primary_key=True)
    payment_id: str = Field(max_length=64)
    workflow_id: str = Field(index=True, max_length=80)
    loan_id: str = Field(index=True, max_length=64)
    amount_minor: int
    applied_minor: int
    overpaid_minor: int = 0
    currency: str = Field(max_length=3)
    paid_at: datetime = Field(sa_column=_utc_column())
    applied_at: datetime = Field(sa_column=_utc_column())


class PromiseRecord(SQLModel, table=True):
    """A promise to pay and how it ended (``open``, ``kept``, ``broken``)."""

    __tablename__ = "promises"
    __table_args__ = (UniqueConstraint("loan_id", "promise_id"),)
    id: int | None = Field(default=None, primary_key=True)
    promise_id: str = Field(max_length=64)
    workflow_id: str = Field(index=True, max_length=80)
    loan_id: str = Field(index=True, max_length=64)
    amount_minor: int
    promised_date: date
    status: str = "open"
    paid_toward_minor: int = 0
    made_at: datetime = Field(sa_column=_utc_column())
    resolved_at: datetime | None = Field(default=None, sa_column=_utc_column(nullable=True))


class RejectedSignalRecord(SQLModel, table=True):
    """A signal the workflow rejected, with the rule it broke; never silently dropped."""

    __tablename__ = "rejected_signals"
    id: int | None = Field(default=None, primary_key=True)
    record_key: str = Field(unique=True, max_length=200)
    workflow_id: str = Field(index=True, max_length=80)
    loan_id: str = Field(index=True, max_length=64)
    kind: str
    signal_id: str
    reason: str
    received_at: datetime = Field(sa_column=_utc_column())


class Placement(SQLModel, table=True):
    """A case placed with a third-party collection agency."""

    __tablename__ = "placements"
    id: int | None = Field(default=None, primary_key=True)
    idempotency_key: str = Field(unique=True, max_length=200)
    workflow_id: str = Field(index=True, max_length=80)
    loan_id: str = Field(index=True, max_length=64)
    agency: str
    amount_minor: int
    currency: str = Field(max_length=3)
    days_past_due: int
    placed_at: datetime = Field(sa_column=_utc_column())


class LegalReferral(SQLModel, table=True):
    """A case filed with the legal team or an outside law firm."""

    __tablename__ = "legal_referrals"
    id: int | None = Field(default=None, primary_key=True)
    idempotency_key: str = Field(unique=True, max_length=200)
    workflow_id: str = Field(index=True, max_length=80)
    loan_id: str = Field(index=True, max_length=64)
    amount_minor: int
    currency: str = Field(max_length=3)
    days_past_due: int
    jurisdiction: str = Field(max_length=2)
    filed_at: datetime = Field(sa_column=_utc_column())
