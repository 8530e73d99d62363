"""Database tables (SQLModel). Borrowers are the only table with personal data.

Every row that an activity writes carries a unique key derived from the workflow id and the
step (``idempotency_key``) or the signal's own id, so a retried activity writes once.
Amounts are integers in minor units; instants are stored as UTC.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import BigInteger, Column, DateTime, UniqueConstraint
from sqlmodel import Field, SQLModel

#: Constraint and index names are fixed by this convention, so that Alembic migrations name the
#: same objects on every database (PostgreSQL would otherwise pick its own names).
SQLModel.metadata.naming_convention = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utcnow() -> datetime:
    """Now, timezone-aware UTC (activities only; workflows use ``workflow.now()``)."""
    return datetime.now(UTC)


def _utc_column(nullable: bool = False) -> Column:
    return Column(DateTime(timezone=True), nullable=nullable)


def _minor_units(**field_args: Any) -> Any:
    """An amount in minor units: a 64-bit integer column (PostgreSQL's INTEGER stops at 2^31,
    about 21 million in a two-decimal currency, and far less in a currency like IDR or KRW)."""
    return Field(sa_type=BigInteger, **field_args)


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
    """A loan of the loan book, as the servicing system describes it (no personal data): its
    borrower, currency, the borrower's calendar and jurisdiction, and its ``status``
    (``active``; ``written_off``, ``settled`` or ``closed`` once collections ended it for good).
    Its schedule is ``loan_instalments``, its payments ``loan_payments``."""

    __tablename__ = "loans"
    id: str = Field(primary_key=True, max_length=64)
    borrower_id: str = Field(foreign_key="borrowers.id", index=True, max_length=64)
    currency: str = Field(max_length=3)
    instalment_minor: int | None = _minor_units(default=None)
    source: str | None = None
    # Added with the loan book (issue 11).
    timezone: str = Field(default="Asia/Shanghai", max_length=64, sa_column_kwargs={"server_default": "Asia/Shanghai"})
    jurisdiction: str = Field(default="CN", max_length=2, sa_column_kwargs={"server_default": "CN"})
    region: str | None = Field(default=None, max_length=10)
    portfolio: str | None = Field(default=None, max_length=64)
    status: str = Field(default="active", max_length=20, sa_column_kwargs={"server_default": "active"})
    #: The due date of the oldest instalment not fully paid (``None``: nothing owing), kept by
    #: the loan book on every change so that the scan finds candidates with one indexed query.
    oldest_unpaid_due_date: date | None = Field(default=None, index=True)
    updated_at: datetime | None = Field(default=None, sa_column=_utc_column(nullable=True))


class LoanInstalmentRecord(SQLModel, table=True):
    """One instalment of a loan's schedule (the servicing system's id, due date and amounts);
    ``cancelled_at`` once a schedule adjustment removed it. ``forwarded_to`` is the case (episode)
    it was sent to as ``instalment_due``, so the scan forwards it once."""

    __tablename__ = "loan_instalments"
    __table_args__ = (UniqueConstraint("loan_id", "instalment_id"),)
    id: int | None = Field(default=None, primary_key=True)
    loan_id: str = Field(foreign_key="loans.id", index=True, max_length=64)
    instalment_id: str = Field(max_length=64)
    due_date: date = Field(index=True)
    principal_minor: int = _minor_units(default=0)
    interest_minor: int = _minor_units(default=0)
    fees_minor: int = _minor_units(default=0)
    cancelled_at: datetime | None = Field(default=None, sa_column=_utc_column(nullable=True))
    forwarded_to: str | None = Field(default=None, max_length=100)
    updated_at: datetime = Field(sa_column=_utc_column())


class LoanPaymentRecord(SQLModel, table=True):
    """A payment of a loan as the servicing system (or the payment gateway) reported it, whether
    or not a case was running: ``paid_at`` is its value instant. ``reversed_at`` once it bounced
    or was charged back. ``case_episode_id``: the case it was sent to, if any."""

    __tablename__ = "loan_payments"
    __table_args__ = (UniqueConstraint("loan_id", "payment_id"),)
    id: int | None = Field(default=None, primary_key=True)
    loan_id: str = Field(foreign_key="loans.id", index=True, max_length=64)
    payment_id: str = Field(max_length=64)
    amount_minor: int = _minor_units()
    currency: str = Field(max_length=3)
    paid_at: datetime = Field(sa_column=_utc_column())
    received_at: datetime = Field(sa_column=_utc_column())
    reversed_at: datetime | None = Field(default=None, sa_column=_utc_column(nullable=True))
    reversal_id: str | None = Field(default=None, max_length=64)
    reversal_reason: str | None = Field(default=None, max_length=20)
    case_episode_id: str | None = Field(default=None, max_length=100)
    #: After a write-off, the payment is a recovery against the written-off amount.
    recovery: bool = False
    source: str | None = Field(default=None, max_length=20)


class CollectionCase(SQLModel, table=True):
    """One collections case: a workflow id and the due date it opened for. ``episode_id`` (the
    workflow's first run id) tells apart the cases of one loan (a loan is cured, falls behind
    again, or a reversal re-opens it); cases from before the loan ledger have none."""

    __tablename__ = "collection_cases"
    id: int | None = Field(default=None, primary_key=True)
    workflow_id: str = Field(index=True, max_length=80)
    loan_id: str = Field(index=True, max_length=64)
    borrower_id: str = Field(index=True, max_length=64)
    currency: str = Field(max_length=3)
    opening_overdue_minor: int = _minor_units()
    outstanding_minor: int = _minor_units()
    oldest_due_date: date
    timezone: str
    jurisdiction: str = Field(max_length=2)
    policy_version: str
    stage: str = "identified"
    outcome: str | None = None
    opened_at: datetime = Field(sa_column=_utc_column())
    closed_at: datetime | None = Field(default=None, sa_column=_utc_column(nullable=True))
    # Added with the loan ledger (issue 11).
    episode_id: str | None = Field(default=None, unique=True, max_length=100)
    opening_source: str | None = Field(default=None, max_length=20)
    opening_rule: str | None = Field(default=None, max_length=300)
    reopened_from: str | None = Field(default=None, max_length=100)
    portfolio: str | None = Field(default=None, max_length=64)
    region: str | None = Field(default=None, max_length=10)
    days_past_due: int | None = None
    max_days_past_due: int | None = None
    anchor_due_date: date | None = None
    principal_minor: int | None = _minor_units(default=None)
    interest_minor: int | None = _minor_units(default=None)
    fees_minor: int | None = _minor_units(default=None)
    penalty_minor: int | None = _minor_units(default=None)
    credit_minor: int | None = _minor_units(default=None)
    written_off_minor: int | None = _minor_units(default=None)
    waived_minor: int | None = _minor_units(default=None)
    # Added with the strategy (issue 13): what the case was assigned at opening (rules.strategy).
    propensity_bps: int | None = None
    score_band: str | None = Field(default=None, max_length=20)
    model_version: str | None = Field(default=None, max_length=40)
    treatment: str | None = Field(default=None, max_length=32)
    experiment_id: str | None = Field(default=None, max_length=40)
    strategy_arm: str | None = Field(default=None, max_length=20)


class StrategyAssignment(SQLModel, table=True):
    """The strategy a case was assigned at opening (``rules.strategy.assign``), written by the
    ``open_case`` activity once per episode: the propensity score (basis points of the probability
    of cure within 30 days) and the model that gave it, the band, the treatment path, and the
    experiment and arm (``none`` outside any). A retried opening reads it back, so the history and
    the database always agree."""

    __tablename__ = "strategy_assignments"
    id: int | None = Field(default=None, primary_key=True)
    episode_id: str = Field(unique=True, max_length=100)
    workflow_id: str = Field(index=True, max_length=80)
    loan_id: str = Field(index=True, max_length=64)
    propensity_bps: int | None = None
    model_version: str | None = Field(default=None, max_length=40)
    score_band: str | None = Field(default=None, max_length=20)
    treatment: str = Field(max_length=32)
    experiment_id: str | None = Field(default=None, max_length=40)
    arm: str = Field(max_length=20)
    policy_version: str = Field(max_length=64)
    assigned_at: datetime = Field(sa_column=_utc_column())


class LedgerEntryRecord(SQLModel, table=True):
    """A fact that entered a case's ledger (``store.records.LedgerEntryRecorded``): an instalment,
    a cancellation, an adjustment, a legal line, a relief. The audit trail of what was owed."""

    __tablename__ = "ledger_entries"
    id: int | None = Field(default=None, primary_key=True)
    record_key: str = Field(unique=True, max_length=200)
    workflow_id: str = Field(index=True, max_length=80)
    episode_id: str | None = Field(default=None, index=True, max_length=100)
    loan_id: str = Field(index=True, max_length=64)
    entry: str = Field(max_length=30)
    ref_id: str = Field(max_length=100)
    amount_minor: int = _minor_units(default=0)
    due_date: date | None = None
    detail: str | None = Field(default=None, max_length=500)
    principal_minor: int = _minor_units(default=0)
    interest_minor: int = _minor_units(default=0)
    fees_minor: int = _minor_units(default=0)
    penalty_minor: int = _minor_units(default=0)
    recorded_at: datetime = Field(sa_column=_utc_column())


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
    amount_minor: int = _minor_units()
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
    amount_minor: int = _minor_units()
    applied_minor: int = _minor_units()
    overpaid_minor: int = _minor_units(default=0)
    currency: str = Field(max_length=3)
    paid_at: datetime = Field(sa_column=_utc_column())
    applied_at: datetime = Field(sa_column=_utc_column())
    # Added with the loan ledger: its value instant, the case that applied it, its reversal.
    value_at: datetime | None = Field(default=None, sa_column=_utc_column(nullable=True))
    episode_id: str | None = Field(default=None, max_length=100)
    reversed_at: datetime | None = Field(default=None, sa_column=_utc_column(nullable=True))
    reversal_id: str | None = Field(default=None, max_length=64)
    reversal_reason: str | None = Field(default=None, max_length=20)


class PromiseRecord(SQLModel, table=True):
    """A promise to pay and how it ended (``open``, ``kept``, ``broken``)."""

    __tablename__ = "promises"
    __table_args__ = (UniqueConstraint("loan_id", "promise_id"),)
    id: int | None = Field(default=None, primary_key=True)
    promise_id: str = Field(max_length=64)
    workflow_id: str = Field(index=True, max_length=80)
    loan_id: str = Field(index=True, max_length=64)
    amount_minor: int = _minor_units()
    promised_date: date
    status: str = "open"
    paid_toward_minor: int = _minor_units(default=0)
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
    amount_minor: int = _minor_units()
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
    amount_minor: int = _minor_units()
    currency: str = Field(max_length=3)
    days_past_due: int
    jurisdiction: str = Field(max_length=2)
    filed_at: datetime = Field(sa_column=_utc_column())


class RepaymentPlan(SQLModel, table=True):
    """A negotiated repayment plan (``instalments``, ``deferral`` or ``waiver``) and how it ended
    (``active``, ``completed``, ``broken``, ``closed``). Amounts in minor units."""

    __tablename__ = "repayment_plans"
    __table_args__ = (UniqueConstraint("loan_id", "plan_id"),)
    id: int | None = Field(default=None, primary_key=True)
    plan_id: str = Field(max_length=64)
    workflow_id: str = Field(index=True, max_length=80)
    plan_workflow_id: str = Field(max_length=200)
    loan_id: str = Field(index=True, max_length=64)
    kind: str
    status: str = "active"
    total_minor: int = _minor_units()
    waived_minor: int = _minor_units(default=0)
    currency: str = Field(max_length=3)
    approver_id: str | None = None
    proposed_by: str | None = None
    reason: str | None = None
    accepted_at: datetime = Field(sa_column=_utc_column())
    ended_at: datetime | None = Field(default=None, sa_column=_utc_column(nullable=True))


class PlanInstalmentRecord(SQLModel, table=True):
    """One instalment of a plan: ``open``, ``paid`` or ``missed``."""

    __tablename__ = "plan_instalments"
    __table_args__ = (UniqueConstraint("loan_id", "plan_id", "seq"),)
    id: int | None = Field(default=None, primary_key=True)
    plan_id: str = Field(max_length=64)
    loan_id: str = Field(index=True, max_length=64)
    seq: int
    due_date: date
    amount_minor: int = _minor_units()
    status: str = "open"
    paid_toward_minor: int = _minor_units(default=0)
    updated_at: datetime = Field(sa_column=_utc_column())


class ContactOutcomeRecord(SQLModel, table=True):
    """What an agent task achieved, as reported (or ``missed`` at its deadline)."""

    __tablename__ = "contact_outcomes"
    id: int | None = Field(default=None, primary_key=True)
    record_key: str = Field(unique=True, max_length=200)
    workflow_id: str = Field(index=True, max_length=80)
    loan_id: str = Field(index=True, max_length=64)
    task_key: str = Field(index=True, max_length=200)
    action: str
    outcome: str
    agent_id: str | None = None
    promise_id: str | None = None
    dispute_id: str | None = None
    recorded_at: datetime = Field(sa_column=_utc_column())


class ContactNote(SQLModel, table=True):
    """An agent's free-text note on a task. Written by the CLI/API, never sent to the workflow
    (it may hold personal data, and workflow histories are stored in plaintext)."""

    __tablename__ = "contact_notes"
    id: int | None = Field(default=None, primary_key=True)
    loan_id: str = Field(index=True, max_length=64)
    task_key: str = Field(index=True, max_length=200)
    agent_id: str = Field(max_length=64)
    note: str
    written_at: datetime = Field(sa_column=_utc_column())


class CasePause(SQLModel, table=True):
    """A pause or stop of a case: ``dispute``, ``hardship``, ``cease_contact``, ``bankruptcy``,
    ``deceased``; ``ended_at`` and ``resolution`` once it ended."""

    __tablename__ = "case_pauses"
    __table_args__ = (UniqueConstraint("workflow_id", "kind", "pause_id"),)
    id: int | None = Field(default=None, primary_key=True)
    workflow_id: str = Field(index=True, max_length=80)
    loan_id: str = Field(index=True, max_length=64)
    kind: str
    pause_id: str = Field(max_length=64)
    started_at: datetime = Field(sa_column=_utc_column())
    until: datetime | None = Field(default=None, sa_column=_utc_column(nullable=True))
    ended_at: datetime | None = Field(default=None, sa_column=_utc_column(nullable=True))
    resolution: str | None = None


class WriteOff(SQLModel, table=True):
    """A case written off under the policy's ``write_off`` rule."""

    __tablename__ = "write_offs"
    id: int | None = Field(default=None, primary_key=True)
    record_key: str = Field(unique=True, max_length=200)
    workflow_id: str = Field(index=True, max_length=80)
    loan_id: str = Field(index=True, max_length=64)
    amount_minor: int = _minor_units()
    currency: str = Field(max_length=3)
    days_past_due: int
    last_payment_at: datetime | None = Field(default=None, sa_column=_utc_column(nullable=True))
    policy_version: str
    written_off_at: datetime = Field(sa_column=_utc_column())


class HandOffEventRecord(SQLModel, table=True):
    """A state of a placement or legal referral child workflow (placed, recalled, filed,
    lawyers_letter_sent, suit_filed, judgment, settled, withdrawn)."""

    __tablename__ = "hand_off_events"
    id: int | None = Field(default=None, primary_key=True)
    record_key: str = Field(unique=True, max_length=200)
    workflow_id: str = Field(index=True, max_length=80)
    child_workflow_id: str = Field(index=True, max_length=200)
    loan_id: str = Field(index=True, max_length=64)
    hand_off: str
    status: str
    reason: str | None = None
    occurred_on: date | None = None
    recorded_at: datetime = Field(sa_column=_utc_column())


class RejectedUpdate(SQLModel, table=True):
    """An update (``propose_plan``, ``record_contact_outcome``) the workflow's validator refused.
    Refused updates leave no trace in the workflow history, so the client helper records them."""

    __tablename__ = "rejected_updates"
    id: int | None = Field(default=None, primary_key=True)
    workflow_id: str = Field(index=True, max_length=80)
    loan_id: str = Field(index=True, max_length=64)
    update_name: str
    update_ref: str = Field(max_length=200)
    reason: str
    payload_json: str
    rejected_at: datetime = Field(sa_column=_utc_column())


class Attorney(SQLModel, table=True):
    """An attorney who represents borrowers: their professional contact details (letters to a
    represented borrower go here instead, Regulation F 12 CFR 1006.6(b)(2))."""

    __tablename__ = "attorneys"
    id: str = Field(primary_key=True, max_length=64)
    full_name: str
    firm: str | None = None
    postal_address: str | None = None
    email: str | None = None


class ContactPreferencesRecord(SQLModel, table=True):
    """A borrower's contact preferences and consents, read by the compliance gate before each step.

    Hours are local ``HH:MM``; media lists are comma-separated (``sms,email,call,visit,letter``);
    ``extra_time_zones`` are comma-separated IANA names of other places the borrower may be.
    """

    __tablename__ = "contact_preferences"
    borrower_id: str = Field(primary_key=True, max_length=64)
    preferred_opens: str | None = Field(default=None, max_length=5)
    preferred_closes: str | None = Field(default=None, max_length=5)
    agreed_opens: str | None = Field(default=None, max_length=5)
    agreed_closes: str | None = Field(default=None, max_length=5)
    opted_out_media: str = ""
    preferred_media: str = ""
    sms_consent: bool = False
    attorney_id: str | None = Field(default=None, max_length=64)
    extra_time_zones: str = ""
    ombudsman_complaint_open: bool = False
    updated_at: datetime = Field(sa_column=_utc_column())


class CallAttemptRecord(SQLModel, table=True):
    """One phone call attempt to a borrower by anyone: an agent (from ``record_contact_outcome``),
    an agency or the dialer. The compliance gate counts these for the call caps."""

    __tablename__ = "call_attempts"
    id: int | None = Field(default=None, primary_key=True)
    attempt_key: str = Field(unique=True, max_length=200)
    borrower_id: str = Field(index=True, max_length=64)
    loan_id: str = Field(index=True, max_length=64)
    attempted_at: datetime = Field(sa_column=_utc_column())
    connected: bool = False
    phone_number_id: str | None = Field(default=None, max_length=64)
    source: str = "agent"  # agent | agency | dialer
    task_key: str | None = Field(default=None, max_length=200)


class ContactDecisionRecord(SQLModel, table=True):
    """What the compliance gate decided for one action of a step, with its rule (the audit trail).

    ``decision``: allowed | deferred | rerouted | skipped; ``run_action`` and ``run_key`` (the
    contact's idempotency key in ``contact_attempts``) are set when something ran.
    """

    __tablename__ = "contact_decisions"
    id: int | None = Field(default=None, primary_key=True)
    record_key: str = Field(unique=True, max_length=200)
    workflow_id: str = Field(index=True, max_length=80)
    loan_id: str = Field(index=True, max_length=64)
    jurisdiction: str = Field(max_length=2)
    step: str
    action: str
    decision: str
    rule_id: str
    reason: str
    days_past_due: int
    run_action: str | None = None
    run_key: str | None = Field(default=None, max_length=200)
    deferred_until: datetime | None = Field(default=None, sa_column=_utc_column(nullable=True))
    send_by: datetime | None = Field(default=None, sa_column=_utc_column(nullable=True))
    requirements: str = ""
    decided_at: datetime = Field(sa_column=_utc_column())


class ApiKey(SQLModel, table=True):
    """A key of the HTTP API (``api/``). Only the SHA-256 of its secret is stored: the secret is
    256 random bits, shown once when the key is created, so a fast hash is safe against guessing.

    ``scopes``: space-separated, from ``read``, ``write``, ``admin`` (``admin`` grants all).
    """

    __tablename__ = "api_keys"
    id: str = Field(primary_key=True, max_length=32)
    name: str = Field(max_length=100)
    scopes: str = Field(max_length=100)
    secret_sha256: str = Field(max_length=64)
    created_at: datetime = Field(sa_column=_utc_column())
    revoked_at: datetime | None = Field(default=None, sa_column=_utc_column(nullable=True))


class IdempotentRequest(SQLModel, table=True):
    """One write to the HTTP API under a client's ``Idempotency-Key``: the first answer is kept
    and replayed for a repeat with the same body; ``status_code`` is empty while it runs."""

    __tablename__ = "idempotent_requests"
    __table_args__ = (UniqueConstraint("api_key_id", "idempotency_key"),)
    id: int | None = Field(default=None, primary_key=True)
    api_key_id: str = Field(max_length=32, index=True)
    idempotency_key: str = Field(max_length=255)
    method: str = Field(max_length=10)
    path: str = Field(max_length=300)
    request_sha256: str = Field(max_length=64)
    status_code: int | None = None
    response_json: str | None = None
    created_at: datetime = Field(sa_column=_utc_column())
    completed_at: datetime | None = Field(default=None, sa_column=_utc_column(nullable=True))


class UnmatchedPayment(SQLModel, table=True):
    """A payment posted for a loan with no running case (none opened, or already closed): kept
    for reconciliation, never lost. ``reason``: ``no_case`` | ``case_closed``; ``status``:
    ``held`` until someone reconciles it."""

    __tablename__ = "unmatched_payments"
    __table_args__ = (UniqueConstraint("loan_id", "payment_id"),)
    id: int | None = Field(default=None, primary_key=True)
    loan_id: str = Field(index=True, max_length=64)
    payment_id: str = Field(max_length=64)
    amount_minor: int = Field(sa_column=Column(BigInteger, nullable=False))
    currency: str = Field(max_length=3)
    paid_at: datetime = Field(sa_column=_utc_column())
    received_at: datetime = Field(sa_column=_utc_column())
    reason: str = Field(max_length=20)
    status: str = Field(default="held", max_length=20)
    api_key_id: str | None = Field(default=None, max_length=32)
