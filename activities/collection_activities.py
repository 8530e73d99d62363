"""The collections activities: database writes and every contact the ladder makes.

Registered as bound methods of ``CollectionActivities`` (it holds the engine, the delivery
back-end and the policies). All methods are synchronous and run in the worker's thread pool.
Each is idempotent: contacts by ``ContactRequest.idempotency_key`` (unique column, and the
``Idempotency-Key`` header over HTTP), case events by their per-workflow ``key``.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from babel.numbers import get_currency_precision
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import select
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.delivery import Delivery, DeliveryBackend, RecordDelivery
from collections_domain.case.contract import CaseInput
from collections_domain.store.db import session
from collections_domain.ops.logs import get_logger
from collections_domain.ops.metrics import CONTACT_DELIVERIES, count_in_activity
from collections_domain.rules.compliance import (
    CALL_LOOKBACK,
    CONNECTED_OUTCOMES,
    CallAttempt,
    ContactProfile,
)
from collections_domain.store.models import (
    Attorney,
    Borrower,
    CallAttemptRecord,
    ContactDecisionRecord,
    ContactPreferencesRecord,
    CasePause,
    CollectionCase,
    ContactAttempt,
    ContactOutcomeRecord,
    HandOffEventRecord,
    LegalReferral,
    Payment,
    Placement,
    PlanInstalmentRecord,
    PromiseRecord,
    RejectedSignalRecord,
    RepaymentPlan,
    WriteOff,
    utcnow,
)
from collections_domain.rules.policy import ACTIONS, Channel, PolicyRegistry
from collections_domain.store.preferences import preferences_of
from collections_domain.store.records import (
    CaseSetup,
    CaseOpened,
    CaseProgress,
    CaseRecords,
    ContactRequest,
    ContactResult,
    CaseWrittenOff,
    ContactDecisionRecorded,
    ContactOutcomeRecorded,
    HandOffEvent,
    ProfileRequest,
    PauseRecorded,
    PaymentApplied,
    PlanInstalmentUpdate,
    PlanRecorded,
    PromiseOpened,
    PromiseResolved,
    SignalRejected,
)
from collections_domain.rules.templates import render
from collections_domain.rules.validation import case_input_problems, ended_case_problem

log = get_logger("activities")

#: Which borrower field a channel needs; channels not listed are internal work items.
DESTINATION_FIELD = {Channel.SMS: "phone", Channel.EMAIL: "email", Channel.LETTER: "postal_address"}
DEFAULT_AGENCY = "default-agency"
#: The ``ContactDecision`` fields stored as they are in ``contact_decisions``.
DECISION_COLUMNS = {
    "step", "action", "decision", "rule_id", "reason", "days_past_due", "run_action", "deferred_until", "send_by", "decided_at",
}
_RECORD = RecordDelivery()


def _aware(instant: datetime) -> datetime:
    """SQLite returns naive datetimes for UTC columns; make them aware again."""
    return instant if instant.tzinfo is not None else instant.replace(tzinfo=UTC)


def _attempt(db: Any, idempotency_key: str) -> ContactAttempt | None:
    """The contact attempt with ``idempotency_key``, if one was written."""
    return db.exec(select(ContactAttempt).where(ContactAttempt.idempotency_key == idempotency_key)).first()


class CollectionActivities:
    """Activities with their clients: a database engine, a delivery back-end and the policies."""

    def __init__(self, engine: Engine, delivery: DeliveryBackend, policies: PolicyRegistry):
        self.engine = engine
        self.delivery = delivery
        self.policies = policies

    # -- case bookkeeping (run as local activities: cheap, retried by the worker) -------------

    @activity.defn(name="resolve_case_policy")
    def resolve_case_policy(self, case: CaseInput) -> CaseSetup:
        """Check ``case`` and return the policy it runs under, with its currency's precision.

        Raises:
            ApplicationError: non-retryable, type ``InvalidCaseInput``, naming every broken
                field and rule (``validation.case_input_problems``), or when a case of the same
                loan and due date already ended.
        """
        problems = case_input_problems(case, self.policies)
        if not problems:
            ended = ended_case_problem(self.engine, case)
            if ended:
                problems.append(ended)
        if problems:
            raise ApplicationError(
                "invalid case input: " + "; ".join(problems), type="InvalidCaseInput", non_retryable=True
            )
        return CaseSetup(
            policy=self.policies.get(case.policy_version),
            currency_exponent=get_currency_precision(case.currency),
        )

    @activity.defn(name="record_case_events")
    def record_case_events(self, records: CaseRecords) -> int:
        """Write a batch of case events in one transaction; events already written are skipped.

        Returns:
            How many events were new.
        """
        written = 0
        with session(self.engine) as db:
            case = db.exec(
                select(CollectionCase).where(
                    CollectionCase.workflow_id == records.workflow_id,
                    CollectionCase.oldest_due_date == records.oldest_due_date,
                )
            ).first()
            for event in records.events:
                if isinstance(event, CaseOpened):
                    if case is None:
                        case = CollectionCase(
                            workflow_id=records.workflow_id,
                            loan_id=event.loan_id,
                            borrower_id=event.borrower_id,
                            currency=event.currency,
                            opening_overdue_minor=event.opening_overdue_minor,
                            outstanding_minor=event.opening_overdue_minor,
                            oldest_due_date=event.oldest_due_date,
                            timezone=event.timezone,
                            jurisdiction=event.jurisdiction,
                            policy_version=event.policy_version,
                            opened_at=event.at,
                        )
                        db.add(case)
                        written += 1
                elif isinstance(event, CaseProgress):
                    if case is not None:
                        case.stage = event.stage
                        case.outstanding_minor = event.outstanding_minor
                        if event.outcome is not None:
                            case.outcome = event.outcome
                            case.closed_at = event.at
                        db.add(case)
                        written += 1
                elif isinstance(event, PaymentApplied):
                    if db.exec(select(Payment).where(Payment.loan_id == records.loan_id, Payment.payment_id == event.payment_id)).first() is None:
                        db.add(
                            Payment(
                                payment_id=event.payment_id,
                                workflow_id=records.workflow_id,
                                loan_id=records.loan_id,
                                amount_minor=event.amount_minor,
                                applied_minor=event.applied_minor,
                                overpaid_minor=event.overpaid_minor,
                                currency=event.currency,
                                paid_at=event.paid_at,
                                applied_at=event.at,
                            )
                        )
                        written += 1
                elif isinstance(event, PromiseOpened):
                    if db.exec(select(PromiseRecord).where(PromiseRecord.loan_id == records.loan_id, PromiseRecord.promise_id == event.promise_id)).first() is None:
                        db.add(
                            PromiseRecord(
                                promise_id=event.promise_id,
                                workflow_id=records.workflow_id,
                                loan_id=records.loan_id,
                                amount_minor=event.amount_minor,
                                promised_date=event.promised_date,
                                made_at=event.at,
                            )
                        )
                        written += 1
                elif isinstance(event, PromiseResolved):
                    promise = db.exec(select(PromiseRecord).where(PromiseRecord.loan_id == records.loan_id, PromiseRecord.promise_id == event.promise_id)).first()
                    if promise is not None and promise.status == "open":
                        promise.status = event.status
                        promise.paid_toward_minor = event.paid_toward_minor
                        promise.resolved_at = event.at
                        db.add(promise)
                        written += 1
                elif isinstance(event, SignalRejected):
                    exists = db.exec(
                        select(RejectedSignalRecord).where(RejectedSignalRecord.record_key == event.key)
                    ).first()
                    if exists is None:
                        db.add(
                            RejectedSignalRecord(
                                record_key=event.key,
                                workflow_id=records.workflow_id,
                                loan_id=records.loan_id,
                                kind=event.signal_kind,
                                signal_id=event.signal_id,
                                reason=event.reason,
                                received_at=event.at,
                            )
                        )
                        written += 1
                        log.info(
                            "signal.rejected",
                            workflow_id=records.workflow_id,
                            kind=event.signal_kind,
                            signal_id=event.signal_id,
                            reason=event.reason,
                        )
                elif isinstance(event, PlanRecorded):
                    written += self._write_plan(db, records, event)
                elif isinstance(event, ContactOutcomeRecorded):
                    exists = db.exec(
                        select(ContactOutcomeRecord).where(ContactOutcomeRecord.record_key == event.key)
                    ).first()
                    if exists is None:
                        db.add(
                            ContactOutcomeRecord(
                                record_key=event.key,
                                workflow_id=records.workflow_id,
                                loan_id=records.loan_id,
                                task_key=event.task_key,
                                action=event.action,
                                outcome=event.outcome,
                                agent_id=event.agent_id,
                                promise_id=event.promise_id,
                                dispute_id=event.dispute_id,
                                recorded_at=event.at,
                            )
                        )
                        written += 1
                        if event.action == "agent_call" and event.outcome not in ("missed", "cancelled") and case:
                            # The agent's call is a call attempt the compliance gate counts.
                            db.add(
                                CallAttemptRecord(
                                    attempt_key=event.key,
                                    borrower_id=case.borrower_id,
                                    loan_id=records.loan_id,
                                    attempted_at=event.at,
                                    connected=event.outcome in CONNECTED_OUTCOMES,
                                    source="agent",
                                    task_key=event.task_key,
                                )
                            )
                elif isinstance(event, ContactDecisionRecorded):
                    exists = db.exec(
                        select(ContactDecisionRecord).where(ContactDecisionRecord.record_key == event.key)
                    ).first()
                    if exists is None:
                        decision = event.decision
                        db.add(
                            ContactDecisionRecord(
                                record_key=event.key,
                                workflow_id=records.workflow_id,
                                loan_id=records.loan_id,
                                jurisdiction=event.jurisdiction,
                                run_key=event.run_key,
                                requirements=",".join(decision.requirements),
                                **decision.model_dump(include=DECISION_COLUMNS),
                            )
                        )
                        written += 1
                elif isinstance(event, PauseRecorded):
                    pause = db.exec(
                        select(CasePause).where(
                            CasePause.workflow_id == records.workflow_id,
                            CasePause.kind == event.pause_kind,
                            CasePause.pause_id == event.pause_id,
                        )
                    ).first()
                    if pause is None:
                        pause = CasePause(
                            workflow_id=records.workflow_id,
                            loan_id=records.loan_id,
                            kind=event.pause_kind,
                            pause_id=event.pause_id,
                            started_at=event.started_at,
                            until=event.until,
                        )
                    if event.ended_at is not None:
                        pause.ended_at = event.ended_at
                        pause.resolution = event.resolution
                    db.add(pause)
                    written += 1
                elif isinstance(event, CaseWrittenOff):
                    if db.exec(select(WriteOff).where(WriteOff.record_key == event.key)).first() is None:
                        db.add(
                            WriteOff(
                                record_key=event.key,
                                workflow_id=records.workflow_id,
                                loan_id=records.loan_id,
                                amount_minor=event.amount_minor,
                                currency=event.currency,
                                days_past_due=event.days_past_due,
                                last_payment_at=event.last_payment_at,
                                policy_version=event.policy_version,
                                written_off_at=event.at,
                            )
                        )
                        written += 1
            db.commit()
        return written

    @staticmethod
    def _write_plan(db: Any, records: CaseRecords, event: PlanRecorded) -> int:
        plan = db.exec(
            select(RepaymentPlan).where(RepaymentPlan.loan_id == records.loan_id, RepaymentPlan.plan_id == event.plan_id)
        ).first()
        if plan is None:
            plan = RepaymentPlan(
                plan_id=event.plan_id,
                workflow_id=records.workflow_id,
                plan_workflow_id=event.plan_workflow_id,
                loan_id=records.loan_id,
                kind=event.plan_kind,
                total_minor=event.total_minor,
                waived_minor=event.waived_minor,
                currency=event.currency,
                approver_id=event.approver_id,
                proposed_by=event.proposed_by,
                accepted_at=event.at,
            )
            for instalment in event.instalments:
                db.add(
                    PlanInstalmentRecord(
                        plan_id=event.plan_id,
                        loan_id=records.loan_id,
                        seq=instalment.seq,
                        due_date=instalment.due_date,
                        amount_minor=instalment.amount_minor,
                        updated_at=event.at,
                    )
                )
        elif plan.status != "active" or event.status == "active":
            return 0
        if event.status != "active":
            plan.status = event.status
            plan.reason = event.reason
            plan.waived_minor = event.waived_minor
            plan.ended_at = event.at
        db.add(plan)
        return 1

    # -- compliance ----------------------------------------------------------------------------

    @activity.defn(name="load_contact_profile")
    def load_contact_profile(self, request: ProfileRequest) -> ContactProfile:
        """The borrower's contact preferences and call log as of ``request.as_of`` (UTC), for the
        compliance gate. Ids and flags only (``ContactProfile``); no personal data.

        The call log covers ``CALL_LOOKBACK`` before ``as_of`` over every loan of the borrower:
        logged attempts (``call_attempts``: agents, agencies, the dialer) and agent call tasks the
        gate allowed that have no logged attempt yet (counted as planned calls).
        """
        since = request.as_of - CALL_LOOKBACK
        with session(self.engine) as db:
            row = db.get(ContactPreferencesRecord, request.borrower_id)
            preferences = preferences_of(row)
            logged = db.exec(
                select(CallAttemptRecord).where(
                    CallAttemptRecord.borrower_id == request.borrower_id,
                    CallAttemptRecord.attempted_at > since,
                    CallAttemptRecord.attempted_at <= request.as_of,
                )
            ).all()
            loans = set(
                db.exec(select(CollectionCase.loan_id).where(CollectionCase.borrower_id == request.borrower_id)).all()
            ) | {request.loan_id}
            tasks = db.exec(
                select(ContactDecisionRecord).where(
                    ContactDecisionRecord.loan_id.in_(sorted(loans)),  # type: ignore[attr-defined]
                    ContactDecisionRecord.run_action == "agent_call",
                    ContactDecisionRecord.decided_at > since,
                    ContactDecisionRecord.decided_at <= request.as_of,
                )
            ).all()
        reported = {a.task_key for a in logged if a.task_key}
        attempts = [
            CallAttempt(at=_aware(a.attempted_at), loan_id=a.loan_id, connected=a.connected, phone_number_id=a.phone_number_id)
            for a in logged
        ] + [
            CallAttempt(at=_aware(t.decided_at), loan_id=t.loan_id, planned=True)
            for t in tasks
            if t.run_key not in reported
        ]
        return ContactProfile(
            borrower_id=request.borrower_id,
            as_of=request.as_of,
            preferences=preferences,
            call_attempts=sorted(attempts, key=lambda a: a.at),
        )

    # -- contacts: one activity type per channel, so histories read like the process ---------

    @activity.defn(name="send_sms")
    def send_sms(self, request: ContactRequest) -> ContactResult:
        """Send the step's SMS reminder to the borrower's phone."""
        return self._contact(request)

    @activity.defn(name="send_email")
    def send_email(self, request: ContactRequest) -> ContactResult:
        """Email the borrower the overdue details (amount, due date, DPD, how to pay)."""
        return self._contact(request)

    @activity.defn(name="create_agent_task")
    def create_agent_task(self, request: ContactRequest) -> ContactResult:
        """Queue a task for an agent: a phone call or a field visit (``ActionSpec.task_kind``)."""
        return self._contact(request)

    @activity.defn(name="issue_demand_letter")
    def issue_demand_letter(self, request: ContactRequest) -> ContactResult:
        """Issue a formal demand letter to the borrower's postal address."""
        return self._contact(request)

    @activity.defn(name="issue_notice_letter")
    def issue_notice_letter(self, request: ContactRequest) -> ContactResult:
        """Post a notice the compliance gate adds: the validation notice (US, 12 CFR 1006.34) to the
        borrower, or a letter to the attorney of a represented borrower (``attorney_notice``)."""
        return self._contact(request)

    @activity.defn(name="place_with_agency")
    def place_with_agency(self, request: ContactRequest) -> ContactResult:
        """Place the case with a third-party collection agency (a ``placements`` row)."""
        return self._contact(request)

    @activity.defn(name="file_legal_referral")
    def file_legal_referral(self, request: ContactRequest) -> ContactResult:
        """File the case with the legal team (a ``legal_referrals`` row)."""
        return self._contact(request)

    @activity.defn(name="queue_manual_review")
    def queue_manual_review(self, request: ContactRequest) -> ContactResult:
        """The fallback when a delivery failed for good: mark it failed and queue a manual task.

        Always written to the database only (never through the delivery back-end), so the
        fallback cannot fail the way the delivery did.
        """
        if request.failed_key:
            with session(self.engine) as db:
                failed = _attempt(db, request.failed_key)
                if failed is not None and failed.status not in ("sent", "recorded"):
                    failed.status = "failed"
                    failed.updated_at = utcnow()
                    db.add(failed)
                    db.commit()
        return self._contact(request, internal=True)

    # -- children: plans, placements, legal referrals ---------------------------------------

    @activity.defn(name="record_plan_instalment")
    def record_plan_instalment(self, update: PlanInstalmentUpdate) -> None:
        """Mark instalment ``update.seq`` of a plan ``paid`` or ``missed`` (``plan_instalments``)."""
        with session(self.engine) as db:
            row = db.exec(
                select(PlanInstalmentRecord).where(
                    PlanInstalmentRecord.loan_id == update.loan_id,
                    PlanInstalmentRecord.plan_id == update.plan_id,
                    PlanInstalmentRecord.seq == update.seq,
                )
            ).first()
            if row is None:
                # The parent's record of the plan has not landed yet: retried by Temporal.
                raise ApplicationError(f"plan {update.plan_id} instalment {update.seq} is not recorded yet")
            row.status = update.status
            row.paid_toward_minor = update.paid_toward_minor
            row.updated_at = utcnow()
            db.add(row)
            db.commit()

    @activity.defn(name="record_hand_off_event")
    def record_hand_off_event(self, event: HandOffEvent) -> None:
        """Write a placement's or legal referral's state change (``hand_off_events``), once per key."""
        self._write_hand_off_event(event)

    @activity.defn(name="recall_placement")
    def recall_placement(self, event: HandOffEvent) -> ContactResult:
        """Tell the agency the case is recalled (channel ``agency``) and record ``recalled``."""
        return self._notify_hand_off(event, Channel.AGENCY)

    @activity.defn(name="withdraw_legal_referral")
    def withdraw_legal_referral(self, event: HandOffEvent) -> ContactResult:
        """Tell the legal team the referral is withdrawn (channel ``legal``) and record it."""
        return self._notify_hand_off(event, Channel.LEGAL)

    def _notify_hand_off(self, event: HandOffEvent, channel: Channel) -> ContactResult:
        receipt = self.delivery.deliver(
            Delivery(
                event.key,
                channel.value,
                {
                    "idempotency_key": event.key,
                    "loan_id": event.loan_id,
                    "action": f"{event.hand_off}_{event.status}",
                    "reason": event.reason,
                    "amount_minor": event.amount_minor,
                    "currency": event.currency,
                },
            )
        )
        self._write_hand_off_event(event)
        log.info("hand_off." + event.status, loan_id=event.loan_id, child_workflow_id=event.child_workflow_id)
        return ContactResult(
            idempotency_key=event.key,
            status=receipt.status,
            channel=channel.value,
            backend=self.delivery.name,
            provider_reference=receipt.provider_reference,
        )

    def _write_hand_off_event(self, event: HandOffEvent) -> None:
        with session(self.engine) as db:
            if db.exec(select(HandOffEventRecord).where(HandOffEventRecord.record_key == event.key)).first() is None:
                db.add(
                    HandOffEventRecord(
                        record_key=event.key,
                        workflow_id=event.parent_workflow_id,
                        child_workflow_id=event.child_workflow_id,
                        loan_id=event.loan_id,
                        hand_off=event.hand_off,
                        status=event.status,
                        reason=event.reason,
                        occurred_on=event.occurred_on,
                        recorded_at=utcnow(),
                    )
                )
                self._save(db, None)

    def _contact(self, request: ContactRequest, internal: bool = False) -> ContactResult:
        spec = ACTIONS[request.action]
        backend_name = "record" if internal else self.delivery.name
        with session(self.engine) as db:
            attempt = _attempt(db, request.idempotency_key)
            if attempt is not None and attempt.status in ("sent", "recorded"):
                log.info("contact.already_done", idempotency_key=request.idempotency_key)
                self._count_delivery(request, spec.channel, attempt.backend, "already_done")
                return ContactResult(
                    idempotency_key=request.idempotency_key,
                    status="already_done",
                    channel=spec.channel.value,
                    backend=attempt.backend,
                    provider_reference=attempt.provider_reference,
                )
            borrower = db.get(Borrower, request.borrower_id)
            # Without a borrower row, write in the jurisdiction's language.
            locale = borrower.locale if borrower else ("zh-CN" if request.jurisdiction == "CN" else "en")
            recipient: Any = borrower
            if request.action == "attorney_notice":
                preferences = db.get(ContactPreferencesRecord, request.borrower_id)
                attorney_id = preferences.attorney_id if preferences else None
                recipient = db.get(Attorney, attorney_id) if attorney_id else None
            message = render(
                spec.template,
                locale=locale,
                name=(recipient.full_name if recipient else request.borrower_id),
                loan_id=request.loan_id,
                outstanding_minor=request.outstanding_minor,
                paid_minor=request.paid_minor,
                currency=request.currency,
                oldest_due_date=request.oldest_due_date,
                days_past_due=request.days_past_due,
                step=request.step,
            )
            now = utcnow()
            if attempt is None:
                attempt = ContactAttempt(
                    idempotency_key=request.idempotency_key,
                    workflow_id=request.workflow_id,
                    loan_id=request.loan_id,
                    step=request.step,
                    action=request.action,
                    channel=spec.channel.value,
                    backend=backend_name,
                    status="pending",
                    days_past_due=request.days_past_due,
                    amount_minor=request.outstanding_minor,
                    currency=request.currency,
                    created_at=now,
                    updated_at=now,
                )
            attempt.attempts += 1
            attempt.locale = locale
            attempt.rendered = message.body if message.subject is None else f"{message.subject}\n\n{message.body}"
            attempt.updated_at = now
            destination_field = DESTINATION_FIELD.get(spec.channel)
            destination = getattr(recipient, destination_field, None) if (recipient and destination_field) else None
            if destination_field and not destination and not internal:
                attempt.status = "failed"
                who = "the attorney of borrower" if request.action == "attorney_notice" else "borrower"
                attempt.last_error = f"{who} {request.borrower_id} has no {destination_field} on file"
                self._save(db, attempt)
                self._count_delivery(request, spec.channel, backend_name, "no_contact_details")
                raise ApplicationError(attempt.last_error, type="NoContactDetails", non_retryable=True)
            if request.send_by is not None and now > request.send_by and not internal:
                # Retries ran past the permitted hours: never deliver late; the workflow falls back.
                attempt.status = "failed"
                attempt.last_error = f"send_by: the permitted contact hours closed at {request.send_by.isoformat()}"
                self._save(db, attempt)
                self._count_delivery(request, spec.channel, backend_name, "window_closed")
                raise ApplicationError(attempt.last_error, type="ContactWindowClosed", non_retryable=True)
            self._save(db, attempt)

        payload: dict[str, Any] = {
            "idempotency_key": request.idempotency_key,
            "loan_id": request.loan_id,
            "borrower_id": request.borrower_id,
            "step": request.step,
            "action": request.action,
            "days_past_due": request.days_past_due,
            "amount_minor": request.outstanding_minor,
            "currency": request.currency,
            "subject": message.subject,
            "body": message.body,
        }
        if spec.task_kind:
            payload["task_kind"] = spec.task_kind
        if request.requirements:
            payload["requirements"] = list(request.requirements)
        if destination_field:
            payload["to"] = destination
        backend = _RECORD if internal else self.delivery
        try:
            receipt = backend.deliver(Delivery(request.idempotency_key, spec.channel.value, payload))
        except Exception as err:
            with session(self.engine) as db:
                attempt = _attempt(db, request.idempotency_key)
                permanent = isinstance(err, ApplicationError) and err.non_retryable
                attempt.status = "failed" if permanent else "retrying"
                attempt.last_error = str(err)[:500]
                attempt.updated_at = utcnow()
                self._save(db, attempt)
            self._count_delivery(request, spec.channel, backend_name, "failed" if permanent else "retrying")
            log.warning(
                "contact.failed",
                idempotency_key=request.idempotency_key,
                channel=spec.channel.value,
                attempt=activity.info().attempt,
                error=str(err)[:200],
            )
            raise

        with session(self.engine) as db:
            attempt = _attempt(db, request.idempotency_key)
            attempt.status = receipt.status
            attempt.provider_reference = receipt.provider_reference
            attempt.last_error = None
            attempt.updated_at = utcnow()
            db.add(attempt)
            self._record_hand_off(db, request, spec.channel)
            db.commit()
        log.info(
            "contact.done",
            workflow_id=request.workflow_id,
            loan_id=request.loan_id,
            step=request.step,
            action=request.action,
            status=receipt.status,
        )
        self._count_delivery(request, spec.channel, backend_name, receipt.status)
        log.debug("contact.rendered", idempotency_key=request.idempotency_key, body=message.body)
        return ContactResult(
            idempotency_key=request.idempotency_key,
            status=receipt.status,
            channel=spec.channel.value,
            backend=backend_name,
            provider_reference=receipt.provider_reference,
        )

    @staticmethod
    def _count_delivery(request: ContactRequest, channel: Channel, backend: str, result: str) -> None:
        count_in_activity(CONTACT_DELIVERIES, action=request.action, channel=channel.value, backend=backend, result=result)

    @staticmethod
    def _save(db: Any, row: Any) -> None:
        if row is not None:
            db.add(row)
        try:
            db.commit()
        except IntegrityError:
            # A concurrent run of the same activity wrote the row first: keep theirs.
            db.rollback()

    @staticmethod
    def _record_hand_off(db: Any, request: ContactRequest, channel: Channel) -> None:
        now = datetime.now(UTC)
        if channel is Channel.AGENCY:
            if db.exec(select(Placement).where(Placement.idempotency_key == request.idempotency_key)).first() is None:
                db.add(
                    Placement(
                        idempotency_key=request.idempotency_key,
                        workflow_id=request.workflow_id,
                        loan_id=request.loan_id,
                        agency=DEFAULT_AGENCY,
                        amount_minor=request.outstanding_minor,
                        currency=request.currency,
                        days_past_due=request.days_past_due,
                        placed_at=now,
                    )
                )
        elif channel is Channel.LEGAL:
            exists = db.exec(
                select(LegalReferral).where(LegalReferral.idempotency_key == request.idempotency_key)
            ).first()
            if exists is None:
                db.add(
                    LegalReferral(
                        idempotency_key=request.idempotency_key,
                        workflow_id=request.workflow_id,
                        loan_id=request.loan_id,
                        amount_minor=request.outstanding_minor,
                        currency=request.currency,
                        days_past_due=request.days_past_due,
                        jurisdiction=request.jurisdiction,
                        filed_at=now,
                    )
                )

