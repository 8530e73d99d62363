"""Writing a case's records to the database (``store.records`` events -> tables), once each.

``write_case_records`` applies a batch in one transaction; every event carries a key unique
within its case, and each writer skips what is already there, so a retried batch lands once.
One small writer per event kind. Money the case applied or reversed is mirrored into the loan
book (``loan_payments``) when the loan is in it, and a case that ends for good (written off,
settled, stopped) marks the loan so that the delinquency scan opens no new case for it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy.engine import Engine
from sqlalchemy.exc import DataError
from sqlmodel import Session, select

from collections_domain.ops.logs import get_logger
from collections_domain.rules.compliance import CONNECTED_OUTCOMES
from collections_domain.store.db import session
from collections_domain.store.models import (
    CallAttemptRecord,
    CasePause,
    CollectionCase,
    ContactDecisionRecord,
    ContactOutcomeRecord,
    LedgerEntryRecord,
    Loan,
    LoanPaymentRecord,
    Payment,
    PlanInstalmentRecord,
    PromiseRecord,
    RejectedSignalRecord,
    RepaymentPlan,
    StrategyAssignment,
    WriteOff,
)
from collections_domain.store.records import (
    CaseOpened,
    CaseProgress,
    CaseRecords,
    CaseWrittenOff,
    ContactDecisionRecorded,
    ContactOutcomeRecorded,
    LedgerEntryRecorded,
    PauseRecorded,
    PaymentApplied,
    PaymentReversedRecorded,
    PlanRecorded,
    PromiseOpened,
    PromiseResolved,
    SignalRejected,
)

log = get_logger("store")

#: The ``ContactDecision`` fields stored as they are in ``contact_decisions``.
DECISION_COLUMNS = {
    "step", "action", "decision", "rule_id", "reason", "days_past_due", "run_action", "deferred_until", "send_by", "decided_at",
}
#: The loan book status a case's outcome leaves the loan in (others leave it ``active``).
LOAN_STATUS_AFTER = {"written_off": "written_off", "settled": "settled", "closed_bankruptcy": "closed",
                     "closed_deceased": "closed"}


class RecordRefused(ValueError):
    """The database refused a record for good (a value out of its column's range): retrying
    cannot help. The message names the table and the record, never the values."""


class _Batch:
    """One batch being written: the session, the batch's case ids and the case's row."""

    def __init__(self, db: Session, records: CaseRecords):
        self.db = db
        self.records = records
        self.case = self._find_case()
        self.written = 0

    def _find_case(self) -> CollectionCase | None:
        records = self.records
        if records.episode_id is not None:
            query = select(CollectionCase).where(CollectionCase.episode_id == records.episode_id)
        else:  # a case from before the loan ledger
            query = select(CollectionCase).where(CollectionCase.workflow_id == records.workflow_id,
                                                 CollectionCase.oldest_due_date == records.oldest_due_date)
        return self.db.exec(query).first()

    def exists(self, model: Any, *conditions: Any) -> bool:
        return self.db.exec(select(model).where(*conditions)).first() is not None

    def add(self, row: Any) -> None:
        self.db.add(row)
        self.written += 1


def write_case_records(engine: Engine, records: CaseRecords) -> int:
    """Write ``records`` in one transaction, skipping events already written; returns how many
    were new.

    Raises:
        RecordRefused: the database refused a value for good (naming the table, not the value).
    """
    with session(engine) as db:
        batch = _Batch(db, records)
        for event in records.events:
            _WRITERS[type(event)](batch, event)
        try:
            db.commit()
        except DataError as err:
            db.rollback()
            kinds = ", ".join(sorted({event.kind for event in records.events}))
            raise RecordRefused(f"records ({kinds}) of {records.workflow_id}: the database refused a value "
                                f"({err.orig.__class__.__name__ if err.orig else 'DataError'})") from None
        except OverflowError:
            db.rollback()
            raise RecordRefused(f"records of {records.workflow_id}: a value is out of range for its column") from None
    return batch.written


def _case_opened(batch: _Batch, event: CaseOpened) -> None:
    if batch.case is not None:
        return
    records = batch.records
    batch.case = CollectionCase(
        workflow_id=records.workflow_id, loan_id=event.loan_id, borrower_id=event.borrower_id, currency=event.currency,
        opening_overdue_minor=event.opening_overdue_minor, outstanding_minor=event.opening_overdue_minor,
        oldest_due_date=event.oldest_due_date, timezone=event.timezone, jurisdiction=event.jurisdiction,
        policy_version=event.policy_version, opened_at=event.at, episode_id=event.episode_id,
        opening_source=event.opening_source, opening_rule=event.opening_rule, reopened_from=event.reopened_from,
        portfolio=event.portfolio, region=event.region, anchor_due_date=event.oldest_due_date,
        score_band=event.score_band, model_version=event.model_version, treatment=event.treatment,
        experiment_id=event.experiment_id, strategy_arm=event.strategy_arm,
    )
    if event.episode_id and event.treatment:
        assigned = batch.db.exec(select(StrategyAssignment).where(StrategyAssignment.episode_id == event.episode_id)).first()
        batch.case.propensity_bps = assigned.propensity_bps if assigned else None
    batch.add(batch.case)


def _case_progress(batch: _Batch, event: CaseProgress) -> None:
    case = batch.case
    if case is None:
        return
    case.stage = event.stage
    case.outstanding_minor = event.outstanding_minor
    for name in ("days_past_due", "max_days_past_due", "anchor_due_date", "principal_minor", "interest_minor", "fees_minor",
                 "penalty_minor", "credit_minor", "written_off_minor", "waived_minor"):
        value = getattr(event, name)
        if value is not None:
            setattr(case, name, value)
    if event.outcome is not None and case.outcome is None:
        case.outcome = event.outcome
        case.closed_at = event.at
        status = LOAN_STATUS_AFTER.get(event.outcome)
        loan = batch.db.get(Loan, case.loan_id)
        if status is not None and loan is not None:
            loan.status = status
            loan.updated_at = event.at
            batch.db.add(loan)
    batch.add(case)


def _payment_applied(batch: _Batch, event: PaymentApplied) -> None:
    records = batch.records
    if not batch.exists(Payment, Payment.loan_id == records.loan_id, Payment.payment_id == event.payment_id):
        batch.add(Payment(payment_id=event.payment_id, workflow_id=records.workflow_id, loan_id=records.loan_id,
                          amount_minor=event.amount_minor, applied_minor=event.applied_minor,
                          overpaid_minor=event.overpaid_minor, currency=event.currency, paid_at=event.paid_at,
                          applied_at=event.at, value_at=event.value_at, episode_id=records.episode_id))
    loan = batch.db.get(Loan, records.loan_id)
    if loan is not None and not batch.exists(LoanPaymentRecord, LoanPaymentRecord.loan_id == records.loan_id,
                                             LoanPaymentRecord.payment_id == event.payment_id):
        batch.db.add(LoanPaymentRecord(loan_id=records.loan_id, payment_id=event.payment_id, amount_minor=event.amount_minor,
                                       currency=event.currency, paid_at=event.value_at or event.paid_at, received_at=event.at,
                                       case_episode_id=records.episode_id, source="case"))


def _payment_reversed(batch: _Batch, event: PaymentReversedRecorded) -> None:
    records = batch.records
    for model in (Payment, LoanPaymentRecord):
        row = batch.db.exec(select(model).where(model.loan_id == records.loan_id, model.payment_id == event.payment_id)).first()
        if row is not None and row.reversed_at is None:
            row.reversed_at, row.reversal_id, row.reversal_reason = event.reversed_at, event.reversal_id, event.reason
            batch.add(row)


def _ledger_entry(batch: _Batch, event: LedgerEntryRecorded) -> None:
    if batch.exists(LedgerEntryRecord, LedgerEntryRecord.record_key == event.key):
        return
    records = batch.records
    batch.add(LedgerEntryRecord(record_key=event.key, workflow_id=records.workflow_id, episode_id=records.episode_id,
                                loan_id=records.loan_id, entry=event.entry, ref_id=event.ref_id,
                                amount_minor=event.amount_minor, due_date=event.due_date, detail=event.detail,
                                principal_minor=event.principal_minor, interest_minor=event.interest_minor,
                                fees_minor=event.fees_minor, penalty_minor=event.penalty_minor, recorded_at=event.at))


def _promise_opened(batch: _Batch, event: PromiseOpened) -> None:
    records = batch.records
    if not batch.exists(PromiseRecord, PromiseRecord.loan_id == records.loan_id, PromiseRecord.promise_id == event.promise_id):
        batch.add(PromiseRecord(promise_id=event.promise_id, workflow_id=records.workflow_id, loan_id=records.loan_id,
                                amount_minor=event.amount_minor, promised_date=event.promised_date, made_at=event.at))


def _promise_resolved(batch: _Batch, event: PromiseResolved) -> None:
    records = batch.records
    promise = batch.db.exec(select(PromiseRecord).where(PromiseRecord.loan_id == records.loan_id,
                                                        PromiseRecord.promise_id == event.promise_id)).first()
    if promise is not None and promise.status == "open":
        promise.status, promise.paid_toward_minor, promise.resolved_at = event.status, event.paid_toward_minor, event.at
        batch.add(promise)


def _signal_rejected(batch: _Batch, event: SignalRejected) -> None:
    if batch.exists(RejectedSignalRecord, RejectedSignalRecord.record_key == event.key):
        return
    records = batch.records
    batch.add(RejectedSignalRecord(record_key=event.key, workflow_id=records.workflow_id, loan_id=records.loan_id,
                                   kind=event.signal_kind, signal_id=event.signal_id, reason=event.reason,
                                   received_at=event.at))
    log.info("signal.rejected", workflow_id=records.workflow_id, kind=event.signal_kind, signal_id=event.signal_id,
             reason=event.reason)


def _plan_recorded(batch: _Batch, event: PlanRecorded) -> None:
    records, db = batch.records, batch.db
    plan = db.exec(select(RepaymentPlan).where(RepaymentPlan.loan_id == records.loan_id,
                                               RepaymentPlan.plan_id == event.plan_id)).first()
    if plan is None:
        plan = RepaymentPlan(plan_id=event.plan_id, workflow_id=records.workflow_id, plan_workflow_id=event.plan_workflow_id,
                             loan_id=records.loan_id, kind=event.plan_kind, total_minor=event.total_minor,
                             waived_minor=event.waived_minor, currency=event.currency, approver_id=event.approver_id,
                             proposed_by=event.proposed_by, accepted_at=event.at)
        for instalment in event.instalments:
            db.add(PlanInstalmentRecord(plan_id=event.plan_id, loan_id=records.loan_id, seq=instalment.seq,
                                        due_date=instalment.due_date, amount_minor=instalment.amount_minor,
                                        updated_at=event.at))
    elif plan.status != "active" or event.status == "active":
        return
    if event.status != "active":
        plan.status, plan.reason, plan.waived_minor, plan.ended_at = event.status, event.reason, event.waived_minor, event.at
    batch.add(plan)


def _contact_outcome(batch: _Batch, event: ContactOutcomeRecorded) -> None:
    if batch.exists(ContactOutcomeRecord, ContactOutcomeRecord.record_key == event.key):
        return
    records, case = batch.records, batch.case
    batch.add(ContactOutcomeRecord(record_key=event.key, workflow_id=records.workflow_id, loan_id=records.loan_id,
                                   task_key=event.task_key, action=event.action, outcome=event.outcome,
                                   agent_id=event.agent_id, promise_id=event.promise_id, dispute_id=event.dispute_id,
                                   recorded_at=event.at))
    if event.action == "agent_call" and event.outcome not in ("missed", "cancelled") and case:
        # The agent's call is a call attempt the compliance gate counts.
        batch.db.add(CallAttemptRecord(attempt_key=event.key, borrower_id=case.borrower_id, loan_id=records.loan_id,
                                       attempted_at=event.at, connected=event.outcome in CONNECTED_OUTCOMES,
                                       source="agent", task_key=event.task_key))


def _contact_decision(batch: _Batch, event: ContactDecisionRecorded) -> None:
    if batch.exists(ContactDecisionRecord, ContactDecisionRecord.record_key == event.key):
        return
    records, decision = batch.records, event.decision
    batch.add(ContactDecisionRecord(record_key=event.key, workflow_id=records.workflow_id, loan_id=records.loan_id,
                                    jurisdiction=event.jurisdiction, run_key=event.run_key,
                                    requirements=",".join(decision.requirements),
                                    **decision.model_dump(include=DECISION_COLUMNS)))


def _pause_recorded(batch: _Batch, event: PauseRecorded) -> None:
    records = batch.records
    pause = batch.db.exec(select(CasePause).where(CasePause.workflow_id == records.workflow_id,
                                                  CasePause.kind == event.pause_kind,
                                                  CasePause.pause_id == event.pause_id)).first()
    if pause is None:
        pause = CasePause(workflow_id=records.workflow_id, loan_id=records.loan_id, kind=event.pause_kind,
                          pause_id=event.pause_id, started_at=event.started_at, until=event.until)
    if event.ended_at is not None:
        pause.ended_at, pause.resolution = event.ended_at, event.resolution
    batch.add(pause)


def _written_off(batch: _Batch, event: CaseWrittenOff) -> None:
    if batch.exists(WriteOff, WriteOff.record_key == event.key):
        return
    records = batch.records
    batch.add(WriteOff(record_key=event.key, workflow_id=records.workflow_id, loan_id=records.loan_id,
                       amount_minor=event.amount_minor, currency=event.currency, days_past_due=event.days_past_due,
                       last_payment_at=event.last_payment_at, policy_version=event.policy_version, written_off_at=event.at))


_WRITERS: dict[type, Callable[[_Batch, Any], None]] = {
    CaseOpened: _case_opened,
    CaseProgress: _case_progress,
    PaymentApplied: _payment_applied,
    PaymentReversedRecorded: _payment_reversed,
    LedgerEntryRecorded: _ledger_entry,
    PromiseOpened: _promise_opened,
    PromiseResolved: _promise_resolved,
    SignalRejected: _signal_rejected,
    PlanRecorded: _plan_recorded,
    ContactOutcomeRecorded: _contact_outcome,
    ContactDecisionRecorded: _contact_decision,
    PauseRecorded: _pause_recorded,
    CaseWrittenOff: _written_off,
}

