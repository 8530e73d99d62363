"""Case events the workflow asks an activity to write to the database (ids and amounts only).

Each event carries a ``key`` unique within its workflow, so a retried write is applied once.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Literal

from pydantic import BaseModel, Field

from collections_domain.case.contract import CaseInput, Instalment, LoanInstalment, OpeningPayment, PendingSignal
from collections_domain.rules.compliance import ContactDecision
from collections_domain.rules.policy import CollectionPolicy
from collections_domain.rules.strategy import CaseStrategy


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
    # Added with the loan ledger (issue 11): the case's first run id, why it opened, what it re-opens.
    episode_id: str | None = None
    opening_source: str | None = None
    opening_rule: str | None = None
    reopened_from: str | None = None
    portfolio: str | None = None
    region: str | None = None
    # Added with the strategy (issue 13): what the case was assigned at opening (rules.strategy).
    score_band: str | None = None
    model_version: str | None = None
    treatment: str | None = None
    experiment_id: str | None = None
    strategy_arm: str | None = None


class CaseProgress(BaseModel):
    """The case's stage, outstanding amount and (when closed) outcome changed."""

    kind: Literal["case_progress"] = "case_progress"
    key: str
    at: datetime
    stage: str
    outstanding_minor: int
    outcome: str | None = None
    # Added with the loan ledger: DPD from the oldest instalment owing, and the amounts by component.
    days_past_due: int | None = None
    max_days_past_due: int | None = None
    anchor_due_date: date | None = None
    principal_minor: int | None = None
    interest_minor: int | None = None
    fees_minor: int | None = None
    penalty_minor: int | None = None
    credit_minor: int | None = None
    written_off_minor: int | None = None
    waived_minor: int | None = None


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
    #: Added with the loan ledger: the instant the payment is applied as of (its value date).
    value_at: datetime | None = None


class PaymentReversedRecorded(BaseModel):
    """A payment applied earlier was reversed (bounced, charged back): it counts as never made."""

    kind: Literal["payment_reversed"] = "payment_reversed"
    key: str
    at: datetime
    payment_id: str
    reversal_id: str
    reason: str
    reversed_at: datetime


class LedgerEntryRecorded(BaseModel):
    """A fact entered the case's ledger: an instalment (``instalment``), a cancelled one
    (``instalment_cancelled``), a schedule adjustment, a legal line (court costs, a judgment) or
    a relief (waiver, write-down, settlement). ``ref_id`` is the instalment, adjustment or relief
    id; amounts in minor units."""

    kind: Literal["ledger_entry"] = "ledger_entry"
    key: str
    at: datetime
    entry: Literal["instalment", "instalment_cancelled", "adjustment", "legal_costs", "judgment", "waiver",
                   "write_down", "settlement"]
    ref_id: str
    amount_minor: int = 0
    due_date: date | None = None
    detail: str | None = None
    #: For lines (instalments, legal lines): the amounts by component.
    principal_minor: int = 0
    interest_minor: int = 0
    fees_minor: int = 0
    penalty_minor: int = 0


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


class PlanRecorded(BaseModel):
    """A repayment plan was accepted (``status`` ``active``, with its instalments) or ended
    (``completed``, ``broken``, ``closed``)."""

    kind: Literal["plan_recorded"] = "plan_recorded"
    key: str
    at: datetime
    plan_id: str
    plan_kind: str
    status: Literal["active", "completed", "broken", "closed"]
    total_minor: int
    waived_minor: int = 0
    currency: str
    approver_id: str | None = None
    proposed_by: str | None = None
    plan_workflow_id: str
    instalments: list[Instalment] = []
    reason: str | None = None


class ContactOutcomeRecorded(BaseModel):
    """An agent task's outcome (``missed`` when nobody reported it by its deadline)."""

    kind: Literal["contact_outcome"] = "contact_outcome"
    key: str
    at: datetime
    task_key: str
    action: str
    outcome: str
    agent_id: str | None = None
    promise_id: str | None = None
    dispute_id: str | None = None


class PauseRecorded(BaseModel):
    """A pause or stop started (``ended_at`` unset) or ended (with its ``resolution``)."""

    kind: Literal["pause_recorded"] = "pause_recorded"
    key: str
    at: datetime
    pause_kind: str
    pause_id: str
    started_at: datetime
    until: datetime | None = None
    ended_at: datetime | None = None
    resolution: str | None = None


class CaseWrittenOff(BaseModel):
    """The case was written off: ``amount_minor`` outstanding at ``days_past_due``."""

    kind: Literal["case_written_off"] = "case_written_off"
    key: str
    at: datetime
    amount_minor: int
    currency: str
    days_past_due: int
    last_payment_at: datetime | None = None
    policy_version: str


class ContactDecisionRecorded(BaseModel):
    """A compliance gate decision and the idempotency key (``run_key``) of the contact it ran."""

    kind: Literal["contact_decision"] = "contact_decision"
    key: str
    at: datetime
    jurisdiction: str
    decision: ContactDecision
    run_key: str | None = None


CaseEvent = Annotated[
    CaseOpened
    | CaseProgress
    | PaymentApplied
    | PromiseOpened
    | PromiseResolved
    | SignalRejected
    | PlanRecorded
    | ContactOutcomeRecorded
    | PauseRecorded
    | CaseWrittenOff
    | ContactDecisionRecorded
    | PaymentReversedRecorded
    | LedgerEntryRecorded,
    Field(discriminator="kind"),
]


class CaseRecords(BaseModel):
    """A batch of events of one case, written in one transaction. ``episode_id`` (the case's
    first run id) finds the case's row; without it (cases before the loan ledger), the workflow id
    and ``oldest_due_date`` do."""

    workflow_id: str
    loan_id: str
    oldest_due_date: date
    events: list[CaseEvent]
    episode_id: str | None = None


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
    #: What the compliance gate requires of the contact (``collectors:2`` for a CN field visit).
    requirements: list[str] = []
    #: The instant the permitted hours close (UTC): the activity refuses to deliver after it.
    send_by: datetime | None = None


class ContactResult(BaseModel):
    """What a contact activity did: ``sent`` (http), ``recorded`` (record back-end), or
    ``already_done`` when an earlier run with the same key had succeeded."""

    idempotency_key: str
    status: str
    channel: str
    backend: str
    provider_reference: str | None = None


class ProfileRequest(BaseModel):
    """Ask for a borrower's contact profile (``compliance.ContactProfile``) as of ``as_of``
    (the workflow's clock, UTC); ``loan_id`` is the asking case's loan."""

    borrower_id: str
    loan_id: str
    as_of: datetime
    #: The case's records asked for since the last write, written first (history revision 2: they
    #: ride with the step instead of a local activity of their own).
    records: CaseRecords | None = None


class OpenCaseRequest(BaseModel):
    """Open a case (activity ``open_case``): its ``case`` input (without a continued state),
    ``now`` (the workflow's clock), its workflow and first run (``episode_id``) ids, and the
    payments and reversals that came with it (signal-with-start), which the activity holds for
    reconciliation if the case cannot open. ``loan_id``: the loan the workflow id names, for a
    refused input whose own ``loan_id`` is unusable."""

    case: CaseInput
    now: datetime
    workflow_id: str
    episode_id: str
    signals: list[PendingSignal] = []
    loan_id: str | None = None


class ReopenedFacts(BaseModel):
    """What a re-opened case starts from: the ledger of the ended case ``reopened_from`` (its
    first run id) whose payment a reversal now undoes: its instalments and its payments, and
    ``rule`` saying why (for the opening reason)."""

    reopened_from: str
    outcome: str
    instalments: list[LoanInstalment]
    payments: list[OpeningPayment]
    rule: str


class OpenedCase(BaseModel):
    """What a case needs from outside before its first step: the policy it runs under (version and
    the SHA-256 of its file; the workflow reads the policy from its worker by these) and its
    currency's number of minor-unit digits (CNY 2, JPY 0), for display; ``reopen`` when a reversal
    re-opens an ended case. Small on purpose: a local activity's result is kept in the history."""

    policy_version: str
    policy_digest: str
    currency_exponent: int
    reopen: ReopenedFacts | None = None
    #: The treatment and arm assigned at opening (``store.assignments``): the band and the model
    #: version, never the score's inputs. ``None`` from workers before the strategy.
    strategy: CaseStrategy | None = None
    #: The shape of history the case writes (``CaseCore.history_revision``): 1 from workers
    #: before issue 14 (and so in every history they wrote), 2 now (``case.core.HISTORY_REVISION``).
    history_revision: int = 1
    #: True when this activity wrote the case's opening records itself (``core.open_case``'s, at
    #: the request's ``now``), so the workflow does not write them again in a second local activity.
    opening_recorded: bool = False


class ContactBatch(BaseModel):
    """The contacts of one ladder step (activity ``run_step_contacts``), run in order, with the
    case's ``records`` written first (the step's compliance decisions). A contact that fails for
    good, or still fails on provider try ``max_attempts``, gets ``fallback_action`` instead."""

    requests: list[ContactRequest]
    records: CaseRecords | None = None
    fallback_action: str = "manual_review"
    max_attempts: int = 10
    #: True: a contact whose permitted hours closed before the provider took it is reported
    #: ``window_closed`` (the case takes the step again at the next window) instead of falling back
    #: (policy ``delivery.when_window_closes = "next_window"``).
    defer_when_window_closes: bool = False


class CaseSetup(BaseModel):
    """What a case needs from outside before its first step: the policy it runs under and its
    currency's number of minor-unit digits (CNY 2, JPY 0), for display."""

    policy: CollectionPolicy
    currency_exponent: int


class HandOffRequest(BaseModel):
    """Input of the placement and legal-referral child workflows: the contact request of the
    DPD step that placed or referred the case, and the case facts the child needs."""

    request: ContactRequest
    parent_workflow_id: str
    timezone: str
    term_days: int | None = None


class HandOffEvent(BaseModel):
    """A state of a placement (``placed``, ``recalled``) or a legal referral (``filed``,
    ``lawyers_letter_sent``, ``suit_filed``, ``judgment``, ``settled``, ``withdrawn``), written by
    the child workflow's activities (``hand_off_events``). ``key`` is unique."""

    key: str
    parent_workflow_id: str
    child_workflow_id: str
    loan_id: str
    hand_off: Literal["placement", "legal_referral"]
    status: str
    reason: str | None = None
    occurred_on: date | None = None
    jurisdiction: str
    currency: str
    amount_minor: int


class PlanInstalmentUpdate(BaseModel):
    """An instalment of a plan was paid or missed (``plan_instalments`` row), from the plan's
    child workflow."""

    plan_id: str
    loan_id: str
    seq: int
    status: Literal["paid", "missed"]
    paid_toward_minor: int
