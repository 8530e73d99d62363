"""LoanCollectionWorkflow: one durable collections case per delinquent loan (CONTRACT.md).

The case sleeps on a durable timer until its next ladder step (the contact window's opening on
the local day ``oldest_due_date + N``), and any signal wakes it early. Signal handlers only
queue; the main loop applies signals in arrival order, writes what changed to the database
through activities, and takes the step the ladder puts it in. Rules live in
``collections_domain.ladder``; this module only sequences them.
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from pydantic import ValidationError

    from activities.collection_activities import CollectionActivities
    from collections_domain import calendar, ladder
    from collections_domain import search_attributes as sa
    from collections_domain.case import (
        WORKFLOW_TYPE,
        ActionResult,
        CaseInput,
        CaseState,
        CaseStatus,
        NextStep,
        OpenPromise,
        PaymentReceived,
        PendingSignal,
        PromiseToPay,
        RejectedSignal,
        SkippedStep,
        StepRecord,
        describe_errors,
    )
    from collections_domain.policy import ACTIONS, LadderStep
    from collections_domain.validation import due_date_problem
    from collections_domain.records import (
        CaseOpened,
        CaseProgress,
        CaseRecords,
        ContactRequest,
        PaymentApplied,
        PromiseOpened,
        PromiseResolved,
        SignalRejected,
    )

#: The activity each policy action runs (one activity type per channel, for readable histories).
ACTIVITY_FOR_ACTION = {
    "sms_reminder": CollectionActivities.send_sms,
    "email_overdue_notice": CollectionActivities.send_email,
    "agent_call": CollectionActivities.create_agent_task,
    "field_visit": CollectionActivities.create_agent_task,
    "demand_letter": CollectionActivities.issue_demand_letter,
    "agency_placement": CollectionActivities.place_with_agency,
    "legal_referral": CollectionActivities.file_legal_referral,
    "manual_review": CollectionActivities.queue_manual_review,
}

#: Contacts: 5xx and timeouts retried with backoff for about an hour, then the fallback.
CONTACT_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=5),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(minutes=10),
    maximum_attempts=10,
    non_retryable_error_types=["DeliveryRejected", "NoContactDetails"],
)
CONTACT_TIMEOUT = timedelta(seconds=60)
#: Database bookkeeping must not be lost: retried until it succeeds.
BOOKKEEPING_RETRY = RetryPolicy(initial_interval=timedelta(seconds=1), maximum_interval=timedelta(minutes=1))
BOOKKEEPING_TIMEOUT = timedelta(seconds=30)
#: Continue-as-new at this many history events when the server gives no suggestion.
MAX_HISTORY_EVENTS = 8_000


@workflow.defn(name=WORKFLOW_TYPE)
class LoanCollectionWorkflow:
    """One collections case, from the first missed due date until it ends.

    Input ``CaseInput``; signals ``payment_received`` (``PaymentReceived``) and
    ``promise_to_pay`` (``PromiseToPay``); query ``status`` (``CaseStatus``), which is also the
    result. Raises a non-retryable ``ApplicationError`` (type ``InvalidCaseInput``) at once for
    an input that breaks CONTRACT.md's rules, before anything is sent.
    """

    @workflow.init
    def __init__(self, case: CaseInput) -> None:
        self._case = case
        resume = case.resume if not case.input_problems else None
        self._state: CaseState | None = resume
        self._inbox: list[PendingSignal] = list(resume.inbox) if resume else []
        self._pending: list[Any] = []
        self._next_step: NextStep | None = None

    # -- signals and query -------------------------------------------------------------------

    @workflow.signal(name="payment_received")
    def payment_received(self, payment: Any = None) -> None:
        """Queue a payment; it is validated and applied (or rejected and recorded) in order."""
        self._inbox.append(PendingSignal(kind="payment_received", payload=payment, received_at=workflow.now()))

    @workflow.signal(name="promise_to_pay")
    def promise_to_pay(self, promise: Any = None) -> None:
        """Queue a promise to pay; it is validated and opened (or rejected and recorded) in order."""
        self._inbox.append(PendingSignal(kind="promise_to_pay", payload=promise, received_at=workflow.now()))

    @workflow.query(name="status")
    def status(self) -> CaseStatus:
        """The case as CONTRACT.md's ``status`` shape (amounts in minor units)."""
        return self._status()

    # -- main loop ---------------------------------------------------------------------------

    @workflow.run
    async def run(self, case: CaseInput) -> CaseStatus:
        """Run the case until it ends; returns the final ``status``."""
        problems = case.input_problems
        if problems:
            raise ApplicationError(
                "invalid case input: " + "; ".join(problems), type="InvalidCaseInput", non_retryable=True
            )
        if workflow.info().workflow_id != case.workflow_id:
            raise ApplicationError(
                f"workflow id: must be {case.workflow_id!r} (collection-<loan_id>), "
                f"got {workflow.info().workflow_id!r}",
                type="InvalidCaseInput",
                non_retryable=True,
            )
        if self._state is None:
            await self._open_case()
        self._sync_search_attributes()

        while True:
            self._apply_inbox()
            if self._pending:
                await self._flush_records()
                continue
            state = self._require_state()
            if state.outcome is not None:
                break
            if self._judge_promise():
                continue
            if self._should_continue_as_new():
                await workflow.wait_condition(workflow.all_handlers_finished)
                state.inbox = list(self._inbox)
                workflow.continue_as_new(self._case.model_copy(update={"resume": state}))
            wake_at, summary, due = self._plan()
            if due is not None:
                await self._take_step(due)
                continue
            await self._sleep_until(wake_at, summary)

        await workflow.wait_condition(workflow.all_handlers_finished)
        return self._status()

    async def _open_case(self) -> None:
        case = self._case
        try:
            setup = await workflow.execute_local_activity_method(
                CollectionActivities.resolve_case_policy,
                case,
                start_to_close_timeout=BOOKKEEPING_TIMEOUT,
                # Transient failures (a locked database) are retried; only a broken rule ends the case.
                retry_policy=RetryPolicy(
                    initial_interval=timedelta(seconds=1),
                    maximum_interval=timedelta(minutes=1),
                    non_retryable_error_types=["InvalidCaseInput"],
                ),
                summary="check the case and load its policy",
            )
        except ActivityError as err:
            raise ApplicationError(
                _failure_message(err), type="InvalidCaseInput", non_retryable=True
            ) from err
        # Checked here, after the time zone is known to be valid, against the workflow's clock.
        problem = due_date_problem(case, workflow.now())
        if problem:
            raise ApplicationError("invalid case input: " + problem, type="InvalidCaseInput", non_retryable=True)
        self._state = CaseState(
            policy=setup.policy,
            currency_exponent=setup.currency_exponent,
            opening_overdue_minor=case.overdue_minor,
            outstanding_minor=case.overdue_minor,
        )
        self._record(
            CaseOpened(
                key=self._next_key(),
                at=workflow.now(),
                loan_id=case.loan_id,
                borrower_id=case.borrower_id,
                currency=case.currency,
                opening_overdue_minor=case.overdue_minor,
                oldest_due_date=case.oldest_due_date,
                timezone=case.timezone,
                jurisdiction=case.jurisdiction,
                policy_version=setup.policy.version,
            )
        )
        workflow.logger.info("case.opened")

    def _plan(self) -> tuple[datetime | None, str | None, ladder.LadderPosition | None]:
        """What to do next: take the due step of a position now, or sleep until an instant
        (``None``: until a signal) with a summary for the timer."""
        state = self._require_state()
        case = self._case
        now = workflow.now()
        if state.open_promise is not None:
            deadline = state.open_promise.deadline
            self._next_step = None
            return deadline, f"promise {state.open_promise.promise_id}: judged at {self._local(deadline)}", None
        pos = self._position()
        if pos.due is not None and pos.step is not None:
            contact_at = ladder.next_contact_instant(now, case.timezone, state.policy)
            if contact_at <= now:
                return None, None, pos
            self._next_step = NextStep(step=pos.step.name, at=contact_at)
            return contact_at, f"{pos.step.name}: waiting for the contact window, {self._local(contact_at)}", None
        if pos.upcoming is not None and pos.upcoming_at is not None:
            step = pos.upcoming.step_for(state.outstanding_minor, state.policy, case.currency)
            name = step.name if step else pos.upcoming.label
            self._next_step = NextStep(step=name, at=pos.upcoming_at)
            return (
                pos.upcoming_at,
                f"until DPD {pos.upcoming.days_past_due} {name} at {self._local(pos.upcoming_at)}",
                None,
            )
        self._next_step = None
        return None, None, None

    async def _sleep_until(self, wake_at: datetime | None, summary: str | None) -> None:
        """Wait for a signal, or until ``wake_at`` (a durable timer that any signal cancels)."""
        self._set_details()
        if wake_at is None:
            await workflow.wait_condition(lambda: bool(self._inbox))
            return
        delay = wake_at - workflow.now()
        if delay <= timedelta(0):
            return
        try:
            await workflow.wait_condition(lambda: bool(self._inbox), timeout=delay, timeout_summary=summary)
        except asyncio.TimeoutError:
            pass  # the timer fired: the loop takes whatever is now due

    # -- ladder steps ------------------------------------------------------------------------

    async def _take_step(self, pos: ladder.LadderPosition) -> None:
        """Take ``pos``'s due step now, recording the stale rungs before it as skipped."""
        state = self._require_state()
        case = self._case
        rung, step = pos.due, pos.step
        assert rung is not None and step is not None
        now = workflow.now()
        dpd = calendar.days_past_due(case.oldest_due_date, now, case.timezone)
        for stale in pos.stale:
            self._skip(stale, f"superseded: at DPD {dpd} the case went straight to {step.name}")
        state.last_rung_days = rung.days_past_due
        results = await asyncio.gather(*(self._run_action(step, action, dpd) for action in step.actions))
        state.steps_done.append(
            StepRecord(step=step.name, days_past_due=dpd, at=now, actions=list(step.actions), results=list(results))
        )
        state.stage = step.name
        self._record_progress()
        self._sync_search_attributes()
        workflow.logger.info("case.step_taken", extra={"step": step.name, "days_past_due": dpd})

    async def _run_action(self, step: LadderStep, action: str, dpd: int) -> ActionResult:
        """Run one action of a step; on a permanent failure, record it and queue the fallback."""
        state = self._require_state()
        request = self._contact_request(step.name, action, dpd)
        label = ACTIONS[action].label
        try:
            result = await workflow.execute_activity_method(
                ACTIVITY_FOR_ACTION[action],
                request,
                start_to_close_timeout=CONTACT_TIMEOUT,
                retry_policy=CONTACT_RETRY,
                summary=f"DPD {dpd} {step.name}: {label}",
            )
            return ActionResult(action=action, status=result.status, idempotency_key=request.idempotency_key)
        except ActivityError as err:
            reason = _failure_message(err)
            workflow.logger.warning("contact.failed", extra={"action": action, "reason": reason})
        fallback = state.policy.delivery.fallback_action
        fallback_request = request.model_copy(
            update={
                "idempotency_key": f"{request.idempotency_key}:fallback",
                "action": fallback,
                "failed_key": request.idempotency_key,
            }
        )
        await workflow.execute_activity_method(
            CollectionActivities.queue_manual_review,
            fallback_request,
            start_to_close_timeout=CONTACT_TIMEOUT,
            retry_policy=BOOKKEEPING_RETRY,
            summary=f"DPD {dpd} {step.name}: {label} failed, {ACTIONS[fallback].label} queued",
        )
        return ActionResult(
            action=action,
            status="failed",
            idempotency_key=request.idempotency_key,
            detail=f"{reason}; fallback {fallback} queued",
        )

    def _contact_request(self, step: str, action: str, dpd: int) -> ContactRequest:
        state = self._require_state()
        case = self._case
        return ContactRequest(
            idempotency_key=f"{case.workflow_id}:{case.oldest_due_date.isoformat()}:{step}:{action}",
            workflow_id=case.workflow_id,
            loan_id=case.loan_id,
            borrower_id=case.borrower_id,
            step=step,
            action=action,
            days_past_due=dpd,
            outstanding_minor=state.outstanding_minor,
            paid_minor=state.paid_minor,
            currency=case.currency,
            oldest_due_date=case.oldest_due_date,
            jurisdiction=case.jurisdiction,
            policy_version=state.policy.version,
        )

    def _position(self) -> ladder.LadderPosition:
        """Where the case stands on its ladder now (``ladder.position``)."""
        state = self._require_state()
        case = self._case
        return ladder.position(
            state.policy,
            currency=case.currency,
            oldest_due_date=case.oldest_due_date,
            tz_name=case.timezone,
            last_rung_days=state.last_rung_days,
            outstanding_minor=state.outstanding_minor,
            now=workflow.now(),
        )

    def _skip(self, rung: ladder.Rung, reason: str) -> None:
        state = self._require_state()
        step = rung.step_for(state.outstanding_minor, state.policy, self._case.currency)
        state.steps_skipped.append(
            SkippedStep(
                step=step.name if step else rung.label,
                days_past_due=rung.days_past_due,
                at=workflow.now(),
                reason=reason,
            )
        )
        state.last_rung_days = max(state.last_rung_days, rung.days_past_due)

    # -- signals, applied in order by the main loop ------------------------------------------

    def _apply_inbox(self) -> None:
        while self._inbox:
            signal = self._inbox.pop(0)
            if signal.kind == "payment_received":
                self._apply_payment(signal)
            else:
                self._apply_promise(signal)

    def _parse(self, signal: PendingSignal, model: type[Any], id_field: str, seen: list[str], verb: str) -> Any:
        """The signal's payload as ``model``, or ``None`` after recording why it was rejected
        (a broken field rule, or an id already ``verb`` once)."""
        try:
            parsed = model.model_validate(signal.payload)
        except ValidationError as err:
            self._reject(signal, "; ".join(describe_errors(err)))
            return None
        if getattr(parsed, id_field) in seen:
            kind = signal.kind.split("_")[0]
            self._reject(signal, f"{id_field}: duplicate, this {kind} was already {verb}")
            return None
        return parsed

    def _apply_payment(self, signal: PendingSignal) -> None:
        state = self._require_state()
        case = self._case
        payment = self._parse(signal, PaymentReceived, "payment_id", state.applied_payment_ids, "applied")
        if payment is None:
            return
        problem = ladder.payment_problem(payment, currency=case.currency, now=workflow.now())
        if problem:
            self._reject(signal, problem)
            return
        applied = min(payment.amount_minor, state.outstanding_minor)
        overpaid = payment.amount_minor - applied
        state.applied_payment_ids.append(payment.payment_id)
        state.outstanding_minor -= applied
        state.paid_minor += applied
        state.overpaid_minor += overpaid
        self._record(
            PaymentApplied(
                key=self._next_key(),
                at=workflow.now(),
                payment_id=payment.payment_id,
                amount_minor=payment.amount_minor,
                applied_minor=applied,
                overpaid_minor=overpaid,
                currency=payment.currency,
                paid_at=payment.paid_at,
            )
        )
        workflow.logger.info("payment.applied", extra={"payment_id": payment.payment_id, "applied_minor": applied})
        promise = state.open_promise
        if promise is not None:
            promise.paid_toward_minor += payment.amount_minor
            if promise.paid_toward_minor >= promise.amount_minor:
                self._resolve_promise("kept")
        if state.outstanding_minor == 0 and state.outcome is None:
            now = workflow.now()
            state.outcome = "cured"
            state.cured_at = now
            state.cured_days_past_due = calendar.days_past_due(case.oldest_due_date, now, case.timezone)
            self._next_step = None
            self._record_progress()
            self._sync_search_attributes()
            workflow.logger.info("case.cured", extra={"days_past_due": state.cured_days_past_due})
        elif applied:
            self._record_progress()
            self._sync_search_attributes()

    def _apply_promise(self, signal: PendingSignal) -> None:
        state = self._require_state()
        case = self._case
        promise = self._parse(signal, PromiseToPay, "promise_id", state.seen_promise_ids, "accepted")
        if promise is None:
            return
        if state.outcome is not None:
            self._reject(signal, f"promise_id: the case is closed ({state.outcome})")
            return
        now = workflow.now()
        problem = ladder.promise_problem(
            promise,
            policy=state.policy,
            tz_name=case.timezone,
            outstanding_minor=state.outstanding_minor,
            open_promise=state.open_promise,
            promises_broken=state.promises_broken,
            now=now,
        )
        if problem:
            self._reject(signal, problem)
            return
        state.seen_promise_ids.append(promise.promise_id)
        state.open_promise = OpenPromise(
            promise_id=promise.promise_id,
            amount_minor=promise.amount_minor,
            promised_date=promise.promised_date,
            made_at=now,
            deadline=ladder.promise_deadline(promise.promised_date, case.timezone, state.policy),
        )
        self._record(
            PromiseOpened(
                key=self._next_key(),
                at=now,
                promise_id=promise.promise_id,
                amount_minor=promise.amount_minor,
                promised_date=promise.promised_date,
            )
        )
        workflow.logger.info("promise.opened", extra={"promise_id": promise.promise_id})

    def _judge_promise(self) -> bool:
        """Break the open promise if its deadline has passed unpaid; True when it did."""
        state = self._require_state()
        promise = state.open_promise
        if promise is None or promise.deadline is None or workflow.now() < promise.deadline:
            return False
        self._resolve_promise("broken")
        return True

    def _resolve_promise(self, outcome: str) -> None:
        state = self._require_state()
        promise = state.open_promise
        assert promise is not None
        state.open_promise = None
        if outcome == "kept":
            state.promises_kept += 1
            # Steps whose time came while the borrower kept their word are not sent late.
            pos = self._position()
            for rung in (*pos.stale, *((pos.due,) if pos.due else ())):
                self._skip(rung, f"promise {promise.promise_id} kept")
        else:
            state.promises_broken += 1
        self._record(
            PromiseResolved(
                key=self._next_key(),
                at=workflow.now(),
                promise_id=promise.promise_id,
                status="kept" if outcome == "kept" else "broken",
                paid_toward_minor=promise.paid_toward_minor,
            )
        )
        workflow.logger.info(f"promise.{outcome}", extra={"promise_id": promise.promise_id})

    def _reject(self, signal: PendingSignal, reason: str) -> None:
        state = self._require_state()
        raw = signal.payload if isinstance(signal.payload, dict) else {}
        id_field = "payment_id" if signal.kind == "payment_received" else "promise_id"
        signal_id = str(raw.get(id_field, ""))[:64]
        state.rejected_signals.append(
            RejectedSignal(kind=signal.kind, id=signal_id, reason=reason, received_at=signal.received_at)
        )
        self._record(
            SignalRejected(
                key=self._next_key(),
                at=signal.received_at,
                signal_kind=signal.kind,
                signal_id=signal_id,
                reason=reason,
            )
        )
        workflow.logger.info("signal.rejected", extra={"kind": signal.kind, "signal_id": signal_id, "reason": reason})

    # -- records, search attributes, details -------------------------------------------------

    def _next_key(self) -> str:
        state = self._state
        seq = 0
        if state is not None:
            state.record_seq += 1
            seq = state.record_seq
        return f"{workflow.info().first_execution_run_id}:{seq}"

    def _record(self, event: Any) -> None:
        self._pending.append(event)

    def _record_progress(self) -> None:
        state = self._require_state()
        self._record(
            CaseProgress(
                key=self._next_key(),
                at=workflow.now(),
                stage=state.stage,
                outstanding_minor=state.outstanding_minor,
                outcome=state.outcome,
            )
        )

    async def _flush_records(self) -> None:
        events, self._pending = self._pending, []
        case = self._case
        await workflow.execute_local_activity_method(
            CollectionActivities.record_case_events,
            CaseRecords(
                workflow_id=case.workflow_id,
                loan_id=case.loan_id,
                oldest_due_date=case.oldest_due_date,
                events=events,
            ),
            start_to_close_timeout=BOOKKEEPING_TIMEOUT,
            retry_policy=BOOKKEEPING_RETRY,
            summary="record " + ", ".join(sorted({e.kind for e in events})),
        )

    def _sync_search_attributes(self) -> None:
        """Upsert the search attributes whose values changed (none when the starter set them)."""
        state = self._require_state()
        case = self._case
        wanted = sa.case_pairs(
            loan_id=case.loan_id,
            stage=state.stage,
            overdue_since=calendar.overdue_since(case.oldest_due_date, case.timezone),
            outstanding_minor=state.outstanding_minor,
            jurisdiction=case.jurisdiction,
            outcome=state.outcome,
        )
        current = workflow.info().typed_search_attributes
        changed = [pair for pair in wanted if current.get(pair.key) != pair.value]
        if changed:
            workflow.upsert_search_attributes([pair.key.value_set(pair.value) for pair in changed])
        self._set_details()

    def _set_details(self) -> None:
        state = self._state
        if state is None:
            return
        case = self._case
        lines = [
            f"**Loan** {case.loan_id} · **Stage** {state.stage} · "
            f"**DPD** {calendar.days_past_due(case.oldest_due_date, workflow.now(), case.timezone)}",
            f"**Outstanding** {self._money(state.outstanding_minor)} · **Paid** {self._money(state.paid_minor)}"
            + (f" · **Overpaid** {self._money(state.overpaid_minor)}" if state.overpaid_minor else ""),
        ]
        if state.open_promise is not None:
            p = state.open_promise
            lines.append(
                f"**Promise** {p.promise_id}: {self._money(p.amount_minor)} by {p.promised_date}, "
                f"paid toward {self._money(p.paid_toward_minor)}"
            )
        if self._next_step is not None and state.outcome is None:
            lines.append(f"**Next** {self._next_step.step} at {self._local(self._next_step.at)}")
        if state.outcome is not None:
            lines.append(f"**Outcome** {state.outcome}")
        lines.append(f"Policy {state.policy.version} · promises kept {state.promises_kept}, broken {state.promises_broken}")
        workflow.set_current_details("\n\n".join(lines))

    def _money(self, amount_minor: int) -> str:
        state = self._require_state()
        exponent = state.currency_exponent
        sign = "-" if amount_minor < 0 else ""
        whole, frac = divmod(abs(amount_minor), 10**exponent) if exponent else (abs(amount_minor), 0)
        text = f"{whole:,}" + (f".{frac:0{exponent}d}" if exponent else "")
        return f"{self._case.currency} {sign}{text}"

    def _local(self, instant: datetime | None) -> str:
        if instant is None:
            return "-"
        tz = self._case.timezone
        return f"{calendar.local_date(instant, tz)} {calendar.local_wall_time(instant, tz):%H:%M} {tz}"

    def _should_continue_as_new(self) -> bool:
        info = workflow.info()
        return info.is_continue_as_new_suggested() or info.get_current_history_length() >= MAX_HISTORY_EVENTS

    def _require_state(self) -> CaseState:
        if self._state is None:
            raise ApplicationError("case state used before the case was opened", non_retryable=True)
        return self._state

    def _status(self) -> CaseStatus:
        case = self._case
        state = self._state
        now = workflow.now()
        if state is None:
            # Before the policy is loaded (or for an input that could not be opened).
            return CaseStatus(
                loan_id=getattr(case, "loan_id", ""),
                stage="identified",
                days_past_due=0,
                currency=getattr(case, "currency", ""),
                outstanding_minor=0,
                paid_minor=0,
                overpaid_minor=0,
                open_promise=None,
                promises_kept=0,
                promises_broken=0,
                steps_done=[],
                next_step=None,
                rejected_signals=[],
                outcome=None,
                as_of=now,
                oldest_due_date=getattr(case, "oldest_due_date", now.date()),
                timezone=getattr(case, "timezone", ""),
                jurisdiction=getattr(case, "jurisdiction", ""),
                policy_version="",
            )
        return CaseStatus(
            loan_id=case.loan_id,
            stage=state.stage,
            days_past_due=calendar.days_past_due(case.oldest_due_date, now, case.timezone),
            currency=case.currency,
            outstanding_minor=state.outstanding_minor,
            paid_minor=state.paid_minor,
            overpaid_minor=state.overpaid_minor,
            open_promise=state.open_promise,
            promises_kept=state.promises_kept,
            promises_broken=state.promises_broken,
            steps_done=state.steps_done,
            next_step=self._next_step if state.outcome is None else None,
            rejected_signals=state.rejected_signals,
            outcome=state.outcome,
            as_of=now,
            oldest_due_date=case.oldest_due_date,
            timezone=case.timezone,
            jurisdiction=case.jurisdiction,
            policy_version=state.policy.version,
            steps_skipped=state.steps_skipped,
            cured_at=state.cured_at,
            cured_days_past_due=state.cured_days_past_due,
        )


def _failure_message(err: ActivityError) -> str:
    """The innermost failure's message of an activity error (the rule or the provider's answer)."""
    cause: BaseException | None = err
    message = str(err)
    while cause is not None:
        if str(cause):
            message = str(cause)
        cause = cause.__cause__
    return message
