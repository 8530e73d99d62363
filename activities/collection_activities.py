"""The collections activities: database writes and every contact the ladder makes.

Registered as bound methods of ``CollectionActivities`` (it holds the engine, the delivery
back-end and the policies). All methods are synchronous and run in the worker's thread pool.
Each is idempotent: contacts by ``ContactRequest.idempotency_key`` (unique column, and the
``Idempotency-Key`` header over HTTP), case events by their per-workflow ``key``.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from babel.numbers import get_currency_precision
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlmodel import select
from temporalio import activity
from temporalio.client import Client
from temporalio.exceptions import ApplicationError

from activities.delivery import Delivery, DeliveryBackend, DeliveryRetryableError, RecordDelivery
from collections_domain.case import core
from collections_domain.case.contract import CaseInput
from collections_domain.case.state import Record, Step
from collections_domain.portfolio.scan import ScanPage, ScanRequest, scan_page
from collections_domain.store.db import session
from collections_domain.analytics.produce import KpiReportProduced, KpiReportRequest, produce
from collections_domain.store.assignments import assign_case_strategy
from collections_domain.ops.logs import get_logger
from collections_domain.ops.metrics import CONTACT_DELIVERIES, count_in_activity
from collections_domain.rules.compliance import (
    CALL_LOOKBACK,
    CallAttempt,
    ContactProfile,
)
from collections_domain.store.models import (
    Attorney,
    Borrower,
    CallAttemptRecord,
    ContactDecisionRecord,
    ContactPreferencesRecord,
    CollectionCase,
    ContactAttempt,
    HandOffEventRecord,
    LegalReferral,
    Placement,
    PlanInstalmentRecord,
    utcnow,
)
from collections_domain.rules.policy import ACTIONS, Channel, CollectionPolicy, PolicyRegistry
from collections_domain.store.preferences import preferences_of
from collections_domain.case.contract import ActionResult
from collections_domain.store.records import (
    CaseSetup,
    ContactBatch,
    OpenCaseRequest,
    OpenedCase,
    CaseRecords,
    ContactRequest,
    ContactResult,
    HandOffEvent,
    ProfileRequest,
    PlanInstalmentUpdate,
)
from collections_domain.rules.templates import render
from collections_domain.rules.validation import case_input_problems, due_date_problem
from collections_domain.store.reconciliation import ended_case_problem, hold_signals, reopen_facts
from collections_domain.store.writer import RecordRefused, write_case_records

log = get_logger("activities")

#: Which borrower field a channel needs; channels not listed are internal work items.
DESTINATION_FIELD = {Channel.SMS: "phone", Channel.EMAIL: "email", Channel.LETTER: "postal_address"}
DEFAULT_AGENCY = "default-agency"
#: The ``ContactDecision`` fields stored as they are in ``contact_decisions``.
DECISION_COLUMNS = {
    "step", "action", "decision", "rule_id", "reason", "days_past_due", "run_action", "deferred_until", "send_by", "decided_at",
}
_RECORD = RecordDelivery()
#: How many times a contact is tried at the provider before its fallback runs (database faults,
#: which send nothing, are not counted: ``contact_attempts.attempts`` is the count).
PROVIDER_ATTEMPTS = 10
PROVIDER_BACKOFF = timedelta(seconds=5)
PROVIDER_MAX_BACKOFF = timedelta(minutes=10)


def _aware(instant: datetime) -> datetime:
    """SQLite returns naive datetimes for UTC columns; make them aware again."""
    return instant if instant.tzinfo is not None else instant.replace(tzinfo=UTC)


def _attempt(db: Any, idempotency_key: str) -> ContactAttempt | None:
    """The contact attempt with ``idempotency_key``, if one was written."""
    return db.exec(select(ContactAttempt).where(ContactAttempt.idempotency_key == idempotency_key)).first()


class ProviderFailure(Exception):
    """A send the provider failed (``cause``: ``DeliveryRetryableError``, or a non-retryable
    ``ApplicationError`` when it refused for good) after ``provider_attempts`` tries in all."""

    def __init__(self, cause: Exception, provider_attempts: int):
        super().__init__(str(cause))
        self.cause = cause
        self.provider_attempts = provider_attempts
        self.permanent = isinstance(cause, ApplicationError) and cause.non_retryable
        self.reason = (cause.message if isinstance(cause, ApplicationError) else str(cause))[:300]

    def retry(self) -> ApplicationError:
        """The retryable activity error (``DeliveryRetrying``) for a transient failure, as
        ``next_retry_delay``: the provider's ``Retry-After`` when it sent one, else 5 s doubled per
        provider try up to 10 min (counted in provider tries, so database faults do not stretch it)."""
        retry_after = getattr(self.cause, "retry_after", None)
        backoff = min(PROVIDER_BACKOFF * 2 ** max(self.provider_attempts - 1, 0), PROVIDER_MAX_BACKOFF)
        return ApplicationError(f"{self.reason} (provider attempt {self.provider_attempts})", type="DeliveryRetrying",
                                next_retry_delay=retry_after if retry_after is not None else backoff)


def _keep_alive(detail: str) -> None:
    """Heartbeat before a send once a third of the heartbeat timeout has passed in this attempt.

    A heartbeat that reaches the server is a billable action on Temporal Cloud, and the first
    sends of an attempt need none: the timeout runs from the attempt's start, and a send takes at
    most ``DELIVERY_HTTP_TIMEOUT_SECONDS`` (10 s; keep it under half of ``CONTACT_HEARTBEAT``,
    30 s). Later sends heartbeat as before (the SDK throttles them), so a worker killed mid-step
    still has its contacts retried elsewhere after the heartbeat timeout.
    """
    info = activity.info()
    timeout = info.heartbeat_timeout
    if timeout is None or not timeout:
        return
    if datetime.now(UTC) - info.started_time >= timeout / 3:
        activity.heartbeat(detail)


def _retries_exhausted() -> bool:
    """True on the last attempt a bounded retry policy allows (histories from before the contact
    policy retried without a bound: their activities still end in the fallback, not a failure)."""
    info = activity.info()
    policy = info.retry_policy
    return bool(policy and policy.maximum_attempts and info.attempt >= policy.maximum_attempts)


class CollectionActivities:
    """Activities with their clients: a database engine, a delivery back-end, the policies, and
    (for the delinquency scan, which starts cases) a Temporal client and the cases' task queue."""

    def __init__(self, engine: Engine, delivery: DeliveryBackend, policies: PolicyRegistry,
                 client: Client | None = None, task_queue: str | None = None, reports_dir: Path | None = None):
        self.engine = engine
        self.delivery = delivery
        self.policies = policies
        self.client = client
        self.task_queue = task_queue
        #: ``{channel: task queue}`` of the rate-limited channels (``ops.wiring.build_worker`` sets
        #: it from ``CONTACT_RATE_LIMITS``); given to each case with the borrower's profile.
        self.contact_task_queues: dict[str, str] = {}
        #: Where the scheduled KPI report is written (``DATA_DIR/reports``).
        self.reports_dir = reports_dir or Path("data") / "reports"

    # -- the KPI report (started daily by its Schedule) ---------------------------------------

    @activity.defn(name="produce_kpi_report")
    def produce_kpi_report(self, request: KpiReportRequest) -> KpiReportProduced:
        """Compute the collection KPIs under the current policy and write the HTML report and its
        JSON into ``reports_dir`` (``analytics.produce``); returns where, and how many cases."""
        _, produced = produce(self.engine, self.policies.current, request, self.reports_dir)
        return produced

    # -- the delinquency scan (an async activity: it starts and signals cases) -----------------

    @activity.defn(name="scan_loans")
    async def scan_loans(self, request: ScanRequest) -> ScanPage:
        """Scan one page of the loan book (``portfolio.scan.scan_page``): open the cases of overdue
        loans and forward to running cases what the book learned. Idempotent, so a retried page
        opens nothing twice.

        Raises:
            ApplicationError: non-retryable, type ``ScanNotConfigured``, on a worker built without
                a Temporal client.
        """
        if self.client is None:
            raise ApplicationError("scan_loans: this worker has no Temporal client", type="ScanNotConfigured",
                                   non_retryable=True)
        return await scan_page(self.engine, self.client, self.policies.current, request,
                               task_queue=request.task_queue or self.task_queue or "collections")

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
        """Write a batch of case events in one transaction (``store.writer``); events already
        written are skipped.

        Returns:
            How many events were new.

        Raises:
            ApplicationError: non-retryable, type ``RecordRejected``, when the database refuses a
                value for good (its message names the table and the record, never the values).
        """
        try:
            return write_case_records(self.engine, records)
        except RecordRefused as err:
            raise ApplicationError(str(err), type="RecordRejected", non_retryable=True) from None

    @activity.defn(name="open_case")
    def open_case(self, request: OpenCaseRequest) -> OpenedCase:
        """Check a new case (``rules.validation``; a loan whose case ended for that due date, or
        that was written off, does not open again) and return the policy it runs under, with the
        strategy it is assigned (``store.assignments``: scored, banded, put in an experiment's arm).

        Raises:
            ApplicationError: non-retryable, type ``InvalidCaseInput``, naming every broken field
                and rule; the payments and reversals that came with the case are held first
                (``unmatched_payments``, or recoveries of a written-off loan), and the message
                says so.
        """
        case = request.case
        problems = case_input_problems(case, self.policies)
        reopen = None
        if not problems:
            ended = ended_case_problem(self.engine, case)
            reopen = reopen_facts(self.engine, case, request.signals) if ended else None
            if ended and reopen is None:
                problems.append(ended)
        if problems:
            message = "invalid case input: " + "; ".join(problems)
            held = hold_signals(self.engine, request)
            raise ApplicationError(message + (f"; {held}" if held else ""), type="InvalidCaseInput", non_retryable=True)
        policy = self.policies.get(case.policy_version)
        strategy = assign_case_strategy(self.engine, policy, case, workflow_id=request.workflow_id,
                                        episode_id=request.episode_id, now=request.now)
        opened = OpenedCase(policy_version=policy.version, policy_digest=policy.digest,
                            currency_exponent=get_currency_precision(case.currency), reopen=reopen, strategy=strategy,
                            history_revision=core.HISTORY_REVISION)
        opened.opening_recorded = self._record_opening(request, opened, policy)
        return opened

    def _record_opening(self, request: OpenCaseRequest, opened: OpenedCase, policy: CollectionPolicy) -> bool:
        """Write the opening records the workflow's ``core.open_case`` asks for (the same pure
        function, at ``request.now``), so that it needs no second local activity; False (the
        workflow writes them, or refuses the case) when the due date fails at ``now`` or the
        database refuses a record for good (the workflow's own write reports it)."""
        opening = core.opening_input(request.case, opened.reopen)
        if due_date_problem(opening, request.now):
            return False
        strategy = opened.strategy
        step = Step(policy.for_treatment(strategy.treatment if strategy else None), request.now)
        case = core.open_case(opening, step, workflow_id=request.workflow_id, episode_id=request.episode_id,
                              currency_exponent=opened.currency_exponent, strategy=strategy,
                              history_revision=opened.history_revision)
        events = [effect.event for effect in step.effects if isinstance(effect, Record)]
        try:
            self.record_case_events(core.case_records(case, events))
        except ApplicationError as err:
            if err.type != "RecordRejected":
                raise
            return False
        return True

    @activity.defn(name="hold_unapplied")
    def hold_unapplied(self, request: OpenCaseRequest) -> str:
        """Hold the payments and reversals of a case that cannot open (``store.reconciliation``);
        returns what was done, for the failure message."""
        return hold_signals(self.engine, request) or "no money came with it"

    @activity.defn(name="run_step_contacts")
    def run_step_contacts(self, batch: ContactBatch) -> list[ActionResult]:
        """Write the step's records, then run each contact of a ladder step, in order.

        Bookkeeping and delivery fail separately. A database fault raises (the worker turns it into
        a retryable ``DatabaseUnavailable``, ``store.faults``) before anything is sent and without
        spending a provider attempt: a send happens only once its attempt is committed in
        ``contact_attempts``, whose ``attempts`` counts the provider's tries. A transient provider
        failure raises a retryable ``DeliveryRetrying`` after the provider's ``Retry-After`` (as
        ``next_retry_delay``) until ``batch.max_attempts`` provider tries failed. A contact the
        provider refuses for good (4xx, no contact details, past the permitted hours), or whose
        provider tries ran out, gets the fallback action (a manual review, database only) and is
        reported ``failed``; with ``batch.defer_when_window_closes``, one whose permitted hours closed
        is reported ``window_closed`` instead (the case takes the step again at the next window, with
        a fresh set of provider tries). A retried batch does not send again what it sent.
        """
        if batch.records is not None:
            self.record_case_events(batch.records)
        results = []
        for request in batch.requests:
            try:
                done = self._run_one(request)
                results.append(ActionResult(action=request.action, status=done.status,
                                            idempotency_key=request.idempotency_key))
            except ProviderFailure as failure:
                if not failure.permanent and failure.provider_attempts < batch.max_attempts and not _retries_exhausted():
                    raise failure.retry() from None
                results.append(self._fall_back(request, batch.fallback_action, failure.reason))
            except ApplicationError as err:
                if not err.non_retryable:
                    raise
                if err.type == "ContactWindowClosed" and batch.defer_when_window_closes:
                    results.append(ActionResult(action=request.action, status="window_closed",
                                                idempotency_key=request.idempotency_key, detail=err.message))
                    continue
                results.append(self._fall_back(request, batch.fallback_action, err.message or str(err)))
            except SQLAlchemyError:
                raise  # bookkeeping: retried by Temporal, nothing sent, no provider attempt spent
            except Exception as err:  # not the provider's, not the database's: retried, then the fallback
                if activity.info().attempt < batch.max_attempts and not _retries_exhausted():
                    raise
                results.append(self._fall_back(request, batch.fallback_action, f"{err.__class__.__name__}: {err}"[:300]))
        return results

    def _run_one(self, request: ContactRequest) -> ContactResult:
        if request.action == "manual_review":
            return self.queue_manual_review(request)
        return self._contact(request)

    def _send_alone(self, request: ContactRequest) -> ContactResult:
        """One contact as its own activity (the step activities of older histories, hand-offs):
        retried while the provider has tries left, then a non-retryable ``DeliveryFailed``."""
        try:
            return self._contact(request)
        except ProviderFailure as failure:
            if failure.permanent:
                raise failure.cause from None
            if failure.provider_attempts < PROVIDER_ATTEMPTS and not _retries_exhausted():
                raise failure.retry() from None
            raise ApplicationError(failure.reason, type="DeliveryFailed", non_retryable=True) from None

    def _fall_back(self, request: ContactRequest, fallback: str, reason: str) -> ActionResult:
        """Queue ``fallback`` (database only) for a contact that failed for good."""
        log.warning("contact.failed", idempotency_key=request.idempotency_key, action=request.action, reason=reason[:200])
        self.queue_manual_review(request.model_copy(update={"idempotency_key": f"{request.idempotency_key}:fallback",
                                                           "action": fallback, "failed_key": request.idempotency_key}))
        return ActionResult(action=request.action, status="failed", idempotency_key=request.idempotency_key,
                            detail=f"{reason[:300]}; fallback {fallback} queued")

    # -- compliance ----------------------------------------------------------------------------

    @activity.defn(name="load_contact_profile")
    def load_contact_profile(self, request: ProfileRequest) -> ContactProfile:
        """The borrower's contact preferences and call log as of ``request.as_of`` (UTC), for the
        compliance gate. Ids and flags only (``ContactProfile``); no personal data.

        The call log covers ``CALL_LOOKBACK`` before ``as_of`` over every loan of the borrower:
        logged attempts (``call_attempts``: agents, agencies, the dialer) and agent call tasks the
        gate allowed that have no logged attempt yet (counted as planned calls). The case's
        ``request.records`` (history revision 2) are written first, in their own transaction.

        Raises:
            ApplicationError: non-retryable ``RecordRejected`` (``record_case_events``).
        """
        if request.records is not None:
            self.record_case_events(request.records)
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
            task_queues=self.contact_task_queues,
        )

    # -- contacts: one activity type per channel, so histories read like the process ---------

    @activity.defn(name="send_sms")
    def send_sms(self, request: ContactRequest) -> ContactResult:
        """Send the step's SMS reminder to the borrower's phone."""
        return self._send_alone(request)

    @activity.defn(name="send_email")
    def send_email(self, request: ContactRequest) -> ContactResult:
        """Email the borrower the overdue details (amount, due date, DPD, how to pay)."""
        return self._send_alone(request)

    @activity.defn(name="create_agent_task")
    def create_agent_task(self, request: ContactRequest) -> ContactResult:
        """Queue a task for an agent: a phone call or a field visit (``ActionSpec.task_kind``)."""
        return self._send_alone(request)

    @activity.defn(name="issue_demand_letter")
    def issue_demand_letter(self, request: ContactRequest) -> ContactResult:
        """Issue a formal demand letter to the borrower's postal address."""
        return self._send_alone(request)

    @activity.defn(name="issue_notice_letter")
    def issue_notice_letter(self, request: ContactRequest) -> ContactResult:
        """Post a notice the compliance gate adds: the validation notice (US, 12 CFR 1006.34) to the
        borrower, or a letter to the attorney of a represented borrower (``attorney_notice``)."""
        return self._send_alone(request)

    @activity.defn(name="place_with_agency")
    def place_with_agency(self, request: ContactRequest) -> ContactResult:
        """Place the case with a third-party collection agency (a ``placements`` row)."""
        return self._send_alone(request)

    @activity.defn(name="file_legal_referral")
    def file_legal_referral(self, request: ContactRequest) -> ContactResult:
        """File the case with the legal team (a ``legal_referrals`` row)."""
        return self._send_alone(request)

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
        payload = {"idempotency_key": event.key, "loan_id": event.loan_id, "action": f"{event.hand_off}_{event.status}",
                   "reason": event.reason, "amount_minor": event.amount_minor, "currency": event.currency}
        try:
            receipt = self.delivery.deliver(Delivery(event.key, channel.value, payload))
        except DeliveryRetryableError as err:
            raise ApplicationError(str(err), type="DeliveryRetrying", next_retry_delay=err.retry_after) from None
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
        """Run one contact: commit its attempt (``pending``, one more provider try), then send it,
        then record the receipt (and the placement or referral row).

        Raises:
            ProviderFailure: the provider failed this try (``retrying``) or refused for good.
            ApplicationError: non-retryable ``NoContactDetails`` / ``ContactWindowClosed``;
                retryable ``ContactInProgress`` when another run of the same key holds it.
            SQLAlchemyError: the database failed before the send (nothing sent) or after it (the
                retry sends again under the same idempotency key, which the provider dedupes).
        """
        spec = ACTIONS[request.action]
        backend_name = "record" if internal else self.delivery.name
        prepared = self._prepare(request, spec, backend_name, internal)
        if isinstance(prepared, ContactResult):
            return prepared
        backend = _RECORD if internal else self.delivery
        _keep_alive(request.idempotency_key)  # a killed worker's send is retried soon
        try:
            receipt = backend.deliver(Delivery(request.idempotency_key, spec.channel.value, prepared))
        except (DeliveryRetryableError, ApplicationError) as err:
            raise self._delivery_failed(request, spec.channel, backend_name, err) from None
        with session(self.engine) as db:
            attempt = _attempt(db, request.idempotency_key)
            attempt.status = receipt.status
            attempt.provider_reference = receipt.provider_reference
            attempt.last_error = None
            attempt.updated_at = utcnow()
            db.add(attempt)
            self._record_hand_off(db, request, spec.channel)
            db.commit()
        log.info("contact.done", workflow_id=request.workflow_id, loan_id=request.loan_id, step=request.step,
                 action=request.action, status=receipt.status)
        self._count_delivery(request, spec.channel, backend_name, receipt.status)
        return ContactResult(idempotency_key=request.idempotency_key, status=receipt.status, channel=spec.channel.value,
                             backend=backend_name, provider_reference=receipt.provider_reference)

    def _prepare(self, request: ContactRequest, spec: Any, backend_name: str, internal: bool) -> dict[str, Any] | ContactResult:
        """Render the message and commit the attempt before anything is sent: the payload to
        deliver, or the earlier result when the key was already delivered."""
        with session(self.engine) as db:
            attempt = _attempt(db, request.idempotency_key)
            if attempt is not None and attempt.status in ("sent", "recorded"):
                return self._already_done(request, spec.channel, attempt)
            recipient, locale = self._recipient(db, request)
            message = render(
                spec.template, locale=locale, name=(recipient.full_name if recipient else request.borrower_id),
                loan_id=request.loan_id, outstanding_minor=request.outstanding_minor, paid_minor=request.paid_minor,
                currency=request.currency, oldest_due_date=request.oldest_due_date,
                days_past_due=request.days_past_due, step=request.step,
            )
            now = utcnow()
            if attempt is not None and attempt.status == "window_closed":
                attempt.attempts = 0  # a new window: a fresh set of provider tries
            if attempt is None:
                attempt = ContactAttempt(
                    idempotency_key=request.idempotency_key, workflow_id=request.workflow_id, loan_id=request.loan_id,
                    step=request.step, action=request.action, channel=spec.channel.value, backend=backend_name,
                    status="pending", days_past_due=request.days_past_due, amount_minor=request.outstanding_minor,
                    currency=request.currency, created_at=now, updated_at=now,
                )
            attempt.attempts += 1
            attempt.locale = locale
            attempt.rendered = message.body if message.subject is None else f"{message.subject}\n\n{message.body}"
            attempt.updated_at = now
            destination_field = DESTINATION_FIELD.get(spec.channel)
            destination = getattr(recipient, destination_field, None) if (recipient and destination_field) else None
            if not internal:
                self._refuse_undeliverable(db, request, spec, backend_name, attempt, destination_field, destination, now)
            done = self._commit_pending(db, request, spec.channel, attempt)
            if done is not None:
                return done
        log.debug("contact.rendered", idempotency_key=request.idempotency_key, body=message.body)
        payload: dict[str, Any] = {
            "idempotency_key": request.idempotency_key, "loan_id": request.loan_id, "borrower_id": request.borrower_id,
            "step": request.step, "action": request.action, "days_past_due": request.days_past_due,
            "amount_minor": request.outstanding_minor, "currency": request.currency,
            "subject": message.subject, "body": message.body,
        }
        if spec.task_kind:
            payload["task_kind"] = spec.task_kind
        if request.requirements:
            payload["requirements"] = list(request.requirements)
        if destination_field:
            payload["to"] = destination
        return payload

    @staticmethod
    def _recipient(db: Any, request: ContactRequest) -> tuple[Any, str]:
        """The borrower (or, for ``attorney_notice``, their attorney) and the message's locale;
        without a borrower row, the jurisdiction's language."""
        borrower = db.get(Borrower, request.borrower_id)
        locale = borrower.locale if borrower else ("zh-CN" if request.jurisdiction == "CN" else "en")
        if request.action != "attorney_notice":
            return borrower, locale
        preferences = db.get(ContactPreferencesRecord, request.borrower_id)
        attorney_id = preferences.attorney_id if preferences else None
        return (db.get(Attorney, attorney_id) if attorney_id else None), locale

    def _refuse_undeliverable(self, db: Any, request: ContactRequest, spec: Any, backend_name: str, attempt: Any,
                              destination_field: str | None, destination: Any, now: datetime) -> None:
        """Record and raise (non-retryable) a contact that cannot go: no contact details on file, or
        retries that ran past the permitted contact hours (``send_by``: never deliver late)."""
        if destination_field and not destination:
            who = "the attorney of borrower" if request.action == "attorney_notice" else "borrower"
            error, kind, result = f"{who} {request.borrower_id} has no {destination_field} on file", "NoContactDetails", "no_contact_details"
        elif request.send_by is not None and now > request.send_by:
            error = f"send_by: the permitted contact hours closed at {request.send_by.isoformat()}"
            kind, result = "ContactWindowClosed", "window_closed"
        else:
            return
        attempt.status, attempt.last_error = ("window_closed" if kind == "ContactWindowClosed" else "failed"), error
        db.add(attempt)
        db.commit()
        self._count_delivery(request, spec.channel, backend_name, result)
        raise ApplicationError(error, type=kind, non_retryable=True)

    def _commit_pending(self, db: Any, request: ContactRequest, channel: Channel, attempt: Any) -> ContactResult | None:
        """Commit the attempt before the send. When another run of the key committed first, its
        outcome wins: done, or ``ContactInProgress`` (retryable); when the insert was refused
        outright, the error is raised: nothing is sent without its record."""
        db.add(attempt)
        try:
            db.commit()
            return None
        except IntegrityError:
            db.rollback()
            other = _attempt(db, request.idempotency_key)
            if other is None:
                raise
            if other.status in ("sent", "recorded"):
                return self._already_done(request, channel, other)
            raise ApplicationError(f"contact {request.idempotency_key} is being sent by another attempt",
                                   type="ContactInProgress", next_retry_delay=timedelta(seconds=10)) from None

    def _already_done(self, request: ContactRequest, channel: Channel, attempt: Any) -> ContactResult:
        log.info("contact.already_done", idempotency_key=request.idempotency_key)
        self._count_delivery(request, channel, attempt.backend, "already_done")
        return ContactResult(idempotency_key=request.idempotency_key, status="already_done", channel=channel.value,
                             backend=attempt.backend, provider_reference=attempt.provider_reference)

    def _delivery_failed(self, request: ContactRequest, channel: Channel, backend_name: str,
                         err: Exception) -> ProviderFailure:
        """Record a failed send (``retrying``, or ``failed`` when refused for good) and say so."""
        permanent = isinstance(err, ApplicationError) and err.non_retryable
        with session(self.engine) as db:
            attempt = _attempt(db, request.idempotency_key)
            attempt.status = "failed" if permanent else "retrying"
            attempt.last_error = str(err)[:500]
            attempt.updated_at = utcnow()
            tries = attempt.attempts
            db.add(attempt)
            db.commit()
        self._count_delivery(request, channel, backend_name, "failed" if permanent else "retrying")
        log.warning("contact.failed", idempotency_key=request.idempotency_key, channel=channel.value,
                    provider_attempts=tries, error=str(err)[:200])
        return ProviderFailure(err, tries)

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

