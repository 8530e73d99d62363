"""The case engine before the loan ledger (kept, unchanged in behaviour, for running cases).

``LoanCollectionWorkflow`` (``workflows.loan_collection``) runs every case started before the
loan ledger with this class: its histories (``tests/replay/histories/v1`` to ``v3``) replay on
it, and a running case keeps it until it ends, continue-as-new included. Nothing new starts on
it. It is the former workflow class with its Temporal decorators removed: the workflow class
forwards each signal, update, query and the run to it. Delete it once no case started before
the ledger is running (``LegacyCase`` in the replay test names the histories that need it).

One durable collections case per delinquent loan: the case sleeps on a durable timer until its
next ladder step, and any signal wakes it early. Signal handlers only queue; the main loop
applies signals in arrival order, writes what changed to the database through activities, and
takes the step the ladder puts it in.
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError, ChildWorkflowError, WorkflowAlreadyStartedError
from temporalio.workflow import ParentClosePolicy

with workflow.unsafe.imports_passed_through():
    from pydantic import ValidationError

    from activities.collection_activities import CollectionActivities
    from collections_domain.rules import calendar
    from collections_domain.rules import compliance
    from collections_domain.rules import ladder
    from collections_domain.ops import metrics
    from collections_domain.rules import plans
    from collections_domain.case import search_attributes as sa
    from collections_domain.case.contract import (
        SIGNAL_ID_FIELD,
        ActionResult,
        ActivePlan,
        AgentTask,
        BreathingSpace,
        CaseInput,
        CaseState,
        CaseStatus,
        CaseStop,
        CeaseContact,
        ContactOutcome,
        ContactOutcomeReport,
        DeferredStep,
        DisputeOpened,
        DisputeResolved,
        EndedPlan,
        HandOff,
        Hardship,
        NextStep,
        OpenPromise,
        Pause,
        PaymentReceived,
        PendingSignal,
        PlanAccepted,
        PlanInstalmentMissed,
        PlanProposal,
        PromiseToPay,
        RejectedSignal,
        SkippedStep,
        StepRecord,
        describe_errors,
    )
    from collections_domain.case.children import (
        LEGAL_WORKFLOW_TYPE,
        PLACEMENT_WORKFLOW_TYPE,
        PLAN_WORKFLOW_TYPE,
        ChildClosed,
        PlanPaymentForwarded,
        PlanRun,
        legal_workflow_id,
        placement_workflow_id,
        plan_workflow_id,
    )
    from collections_domain.rules.policy import ACTIONS, LadderStep
    from collections_domain.rules.validation import due_date_problem
    from collections_domain.store.records import (
        CaseOpened,
        CaseProgress,
        CaseRecords,
        CaseWrittenOff,
        ContactDecisionRecorded,
        ContactOutcomeRecorded,
        ContactRequest,
        HandOffRequest,
        PauseRecorded,
        PaymentApplied,
        PlanRecorded,
        ProfileRequest,
        PromiseOpened,
        PromiseResolved,
        SignalRejected,
    )

#: The signals this engine applies (its handler methods); ``child_closed`` is dispatched apart.
LEGACY_SIGNALS = frozenset({
    "payment_received", "promise_to_pay", "dispute_opened", "dispute_resolved", "cease_contact",
    "hardship", "bankruptcy", "deceased", "breathing_space", "plan_instalment_missed",
})

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
    "validation_notice": CollectionActivities.issue_notice_letter,
    "attorney_notice": CollectionActivities.issue_notice_letter,
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
#: Patch id of the change that added agent-task deadlines, placement/legal child workflows and
#: write-off. Histories recorded before it replay the old commands (``workflow.patched``).
PATCH_CHILDREN_AND_WRITE_OFF = "hand-off-children-task-deadlines-write-off"
#: Patch id of the compliance gate: before each step the case loads the borrower's contact
#: profile, asks ``compliance.decide_step`` and records every decision; steps wait for the
#: jurisdiction's hours instead of the ladder's contact window.
PATCH_COMPLIANCE_GATE = "compliance-gate"
#: Hand-off actions run as child workflows (after the patch above).
HAND_OFF_WORKFLOWS = {"agency_placement": "placement", "legal_referral": "legal_referral"}
#: How long a closing case waits for its children to confirm they closed.
CHILD_CLOSE_WAIT = timedelta(hours=1)
CHILD_COMPLETION_GRACE = timedelta(seconds=10)
#: Pauses that stop the ladder (and shift its later steps); ``cease_contact`` filters actions instead.
LADDER_PAUSES = ("dispute", "hardship", "breathing_space")


class LegacyLoanCollection:
    """One collections case, from the first missed due date until it ends (the engine before the
    loan ledger; ``LoanCollectionWorkflow`` forwards to it for cases started on it).

    Input ``CaseInput``; signals ``payment_received`` (``PaymentReceived``),
    ``promise_to_pay`` (``PromiseToPay``), ``dispute_opened``/``dispute_resolved``,
    ``cease_contact``, ``hardship``, ``bankruptcy``, ``deceased`` and (from the plan's child)
    ``plan_instalment_missed``; updates ``propose_plan`` (``PlanProposal`` -> ``PlanAccepted``)
    and ``record_contact_outcome`` (``ContactOutcomeReport``); query ``status`` (``CaseStatus``),
    which is also the result. Raises a non-retryable ``ApplicationError`` (type
    ``InvalidCaseInput``) at once for an input that breaks CONTRACT.md's rules, before anything
    is sent.
    """

    def __init__(self, case: CaseInput) -> None:
        self._case = case
        resume = case.resume if not case.input_problems else None
        self._state: CaseState | None = resume
        self._inbox: list[PendingSignal] = list(resume.inbox) if resume else []
        self._pending: list[Any] = []
        self._next_step: NextStep | None = None
        #: Signals to other workflows (children), sent by the main loop in order.
        self._outbox: list[tuple[str, str, Any]] = []
        #: Set by update handlers so the main loop wakes to write what they changed.
        self._woken = False
        #: Whether this run records the commands added by PATCH_CHILDREN_AND_WRITE_OFF.
        self._patched = False
        #: Whether this run asks the compliance gate before each step (PATCH_COMPLIANCE_GATE).
        self._gated = False
        #: Children told to end when the case ended, and children that said they closed.
        self._children_ending: list[str] = []
        self._children_closed: list[str] = []
        #: Handles of the children this run started (awaited when the case ends).
        self._child_handles: dict[str, Any] = {}

    # -- signals and query -------------------------------------------------------------------

    def payment_received(self, payment: Any = None) -> None:
        """Queue a payment; it is validated and applied (or rejected and recorded) in order."""
        self._inbox.append(PendingSignal(kind="payment_received", payload=payment, received_at=workflow.now()))

    def promise_to_pay(self, promise: Any = None) -> None:
        """Queue a promise to pay; it is validated and opened (or rejected and recorded) in order."""
        self._inbox.append(PendingSignal(kind="promise_to_pay", payload=promise, received_at=workflow.now()))

    def dispute_opened(self, dispute: Any = None) -> None:
        """Queue a dispute (``DisputeOpened``): no collection contact while it is open."""
        self._queue("dispute_opened", dispute)

    def dispute_resolved(self, resolution: Any = None) -> None:
        """Queue a dispute's resolution (``DisputeResolved``): upheld corrects the amount."""
        self._queue("dispute_resolved", resolution)

    def cease_contact(self, request: Any = None) -> None:
        """Queue a cease-contact request (``CeaseContact``)."""
        self._queue("cease_contact", request)

    def hardship(self, hardship: Any = None) -> None:
        """Queue a hardship pause (``Hardship``) of the policy's ``pauses.hardship_days``."""
        self._queue("hardship", hardship)

    def bankruptcy(self, notice: Any = None) -> None:
        """Queue a bankruptcy notice (``CaseStop``): the case ends ``closed_bankruptcy``."""
        self._queue("bankruptcy", notice)

    def deceased(self, notice: Any = None) -> None:
        """Queue a notice of death (``CaseStop``): the case ends ``closed_deceased``."""
        self._queue("deceased", notice)

    def breathing_space(self, breathing_space: Any = None) -> None:
        """Queue a breathing space (``BreathingSpace``, UK): the ladder pauses for the policy's
        ``compliance.UK.breathing_space_days``."""
        self._queue("breathing_space", breathing_space)

    def plan_instalment_missed(self, missed: Any = None) -> None:
        """From the plan's child workflow (``PlanInstalmentMissed``): the plan is broken."""
        self._queue("plan_instalment_missed", missed)

    def child_closed(self, closed: ChildClosed) -> None:
        """A child (plan, placement, legal referral) is about to complete."""
        self._children_closed.append(closed.workflow_id)
        state = self._state
        if state is not None:
            for hand_off in state.hand_offs:
                if hand_off.workflow_id == closed.workflow_id and hand_off.status == "active":
                    hand_off.status = "recalled" if hand_off.kind == "placement" else "withdrawn"
                    hand_off.ended_at = workflow.now()
                    hand_off.reason = closed.reason

    def _queue(self, kind: str, payload: Any) -> None:
        self._inbox.append(PendingSignal(kind=kind, payload=payload, received_at=workflow.now()))  # type: ignore[arg-type]

    # -- updates -----------------------------------------------------------------------------

    async def propose_plan(self, proposal: Any) -> PlanAccepted:
        """Accept a repayment plan (``PlanProposal``) and return its schedule (``PlanAccepted``).

        The validator refuses, naming the field and the rule, a proposal that breaks the policy's
        ``plans.*`` limits or comes while the case is closed, on another plan, waiting on a
        promise or under dispute; a refused proposal leaves no trace in the history.
        """
        await workflow.wait_condition(lambda: self._state is not None)  # a case still opening
        self._apply_inbox()  # signals that arrived with the update count first
        retried = self._retried_plan(proposal)
        if retried is not None:
            return retried
        parsed, problem = self._plan_check(proposal)
        if problem or parsed is None:
            raise ApplicationError(problem or "invalid proposal", type="PlanRejected", non_retryable=True)
        return self._accept_plan(parsed)

    def _validate_plan(self, proposal: Any) -> None:
        if self._retried_plan(proposal) is not None:
            return  # a retry of the accepted proposal: answered with the same schedule
        _, problem = self._plan_check(proposal)
        if problem:
            metrics.count_in_workflow(metrics.UPDATES_REJECTED, update="propose_plan", field=metrics.rejected_field(problem))
            raise ApplicationError(problem, type="PlanRejected", non_retryable=True)

    async def record_contact_outcome(self, report: Any) -> ContactOutcome:
        """Record what an open agent task achieved (``ContactOutcomeReport``).

        ``promise_made`` opens the promise it carries; ``dispute_raised`` opens a dispute. The
        validator refuses unknown or already closed tasks, and any free-text ``note`` (notes go
        to the database through the CLI/API, never into the history).
        """
        await workflow.wait_condition(lambda: self._state is not None)
        self._apply_inbox()
        retried = self._retried_outcome(report)
        if retried is not None:
            return retried
        parsed, problem = self._outcome_check(report)
        if problem or parsed is None:
            raise ApplicationError(problem or "invalid report", type="OutcomeRejected", non_retryable=True)
        return self._apply_outcome(parsed)

    def _validate_outcome(self, report: Any) -> None:
        if self._retried_outcome(report) is not None:
            return  # a retry of a recorded report: answered with the same record
        _, problem = self._outcome_check(report)
        if problem:
            metrics.count_in_workflow(
                metrics.UPDATES_REJECTED, update="record_contact_outcome", field=metrics.rejected_field(problem)
            )
            raise ApplicationError(problem, type="OutcomeRejected", non_retryable=True)

    def status(self) -> CaseStatus:
        """The case as CONTRACT.md's ``status`` shape (amounts in minor units)."""
        return self._status()

    # -- main loop ---------------------------------------------------------------------------

    async def run(self, case: CaseInput) -> CaseStatus:
        """Run the case until it ends; returns the final ``status``."""
        self._patched = workflow.patched(PATCH_CHILDREN_AND_WRITE_OFF)
        self._gated = workflow.patched(PATCH_COMPLIANCE_GATE)
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
        # A case whose policy predates the compliance rules (carried through continue-as-new)
        # keeps the ladder's contact window: its policy has no rules to gate with.
        self._gated = self._gated and case.jurisdiction in self._require_state().policy.compliance
        self._sync_search_attributes()

        while True:
            self._woken = False
            self._apply_inbox()
            if self._pending:
                await self._flush_records()
                continue
            if self._outbox:
                await self._send_outbox()
                continue
            state = self._require_state()
            if state.outcome is not None:
                break
            if self._housekeeping():
                continue
            if self._judge_promise():
                continue
            if state.plan is not None and not state.plan.started:
                await self._start_plan()
                continue
            if self._should_continue_as_new():
                await workflow.wait_condition(workflow.all_handlers_finished)
                state.inbox = list(self._inbox)
                workflow.continue_as_new(self._case.model_copy(update={"resume": state}))
            wake_at, summary, due = self._plan()
            if due is not None:
                if not self._gated:
                    await self._take_step(due)
                    continue
                gate = await self._ask_gate(due)
                if gate is not None and not self._inbox:
                    await self._take_step(due, gate)
                continue
            await self._sleep_until(wake_at, summary)

        # The case ended: recall the placement, withdraw the referral, close the plan, and wait
        # (bounded) until each child says it closed, so none outlives the case unreported.
        self._close_children(f"case {self._require_state().outcome}")
        while self._outbox or self._pending:
            if self._outbox:
                await self._send_outbox()
            if self._pending:
                await self._flush_records()
        if self._children_ending:
            # Wait (bounded) until each child has ended: a child this run started is awaited to
            # completion; one started before a continue-as-new confirms with `child_closed`, and
            # then gets a moment to complete. (Temporal's time-skipping test server stops skipping
            # time when a child completes after its abandoned parent closed.)
            try:
                await workflow.wait_condition(self._children_ended, timeout=CHILD_CLOSE_WAIT,
                                              timeout_summary="waiting for the children to close")
            except asyncio.TimeoutError:
                workflow.logger.warning("children.not_confirmed", extra={"children": self._children_ending})
            if any(child not in self._child_handles for child in self._children_ending):
                await workflow.sleep(CHILD_COMPLETION_GRACE, summary="let the children complete")
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
            interest_fees_outstanding_minor=case.interest_due_minor + case.fees_due_minor,
            opened_at=workflow.now(),
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
        metrics.count_in_workflow(metrics.CASES_OPENED, jurisdiction=case.jurisdiction, currency=case.currency)
        workflow.logger.info("case.opened")

    def _plan(self) -> tuple[datetime | None, str | None, ladder.LadderPosition | None]:
        """What to do next: take the due step of a position now, or sleep until the earliest
        instant something is due (``None``: until a signal or update) with a summary for the timer.

        The ladder does not move while a plan is active, a promise is open or a dispute or
        hardship pause holds; agent-task deadlines, the promise's judgement and the hardship's
        end still wake the case.
        """
        state = self._require_state()
        case = self._case
        now = workflow.now()
        wakes: list[tuple[datetime, str]] = []
        for task in state.open_tasks:
            wakes.append((task.report_by, f"outcome of {ACTIONS[task.action].label} due by {self._local(task.report_by)}"))
        for pause in state.pauses:
            if pause.until is not None:
                wakes.append((pause.until, f"{pause.kind} {pause.id} ends at {self._local(pause.until)}"))
        self._next_step = None
        if state.plan is not None:
            pass  # the plan's child workflow watches the instalments
        elif state.open_promise is not None:
            deadline = state.open_promise.deadline
            if deadline is not None:
                wakes.append((deadline, f"promise {state.open_promise.promise_id}: judged at {self._local(deadline)}"))
        elif not self._ladder_paused():
            pos = self._position()
            deferred = state.deferred_step
            if pos.due is not None and pos.step is not None and self._gated:
                # The compliance gate decides when contact is lawful; a deferred step waits.
                if deferred is None or deferred.step != pos.step.name or deferred.until <= now:
                    return None, None, pos
                self._next_step = NextStep(step=pos.step.name, at=deferred.until)
                wakes.append((deferred.until, f"{pos.step.name}: deferred ({deferred.rule_id}) until {self._local(deferred.until)}"))
            elif pos.due is not None and pos.step is not None:
                contact_at = ladder.next_contact_instant(now, case.timezone, state.policy)
                if contact_at <= now:
                    return None, None, pos
                self._next_step = NextStep(step=pos.step.name, at=contact_at)
                wakes.append((contact_at, f"{pos.step.name}: waiting for the contact window, {self._local(contact_at)}"))
            elif pos.upcoming is not None and pos.upcoming_at is not None:
                step = pos.upcoming.step_for(state.outstanding_minor, state.policy, case.currency)
                name = step.name if step else pos.upcoming.label
                self._next_step = NextStep(step=name, at=pos.upcoming_at)
                wakes.append(
                    (pos.upcoming_at, f"until DPD {pos.upcoming.days_past_due} {name} at {self._local(pos.upcoming_at)}")
                )
            if self._patched:
                write_off_at = self._write_off_at()
                if self._next_step is None:
                    self._next_step = NextStep(step="write_off", at=write_off_at)
                wakes.append((write_off_at, f"write-off at {self._local(write_off_at)} unless paid"))
        if not wakes:
            return None, None, None
        wake_at, summary = min(wakes, key=lambda wake: wake[0])
        return wake_at, summary, None

    async def _sleep_until(self, wake_at: datetime | None, summary: str | None) -> None:
        """Wait for a signal or update, or until ``wake_at`` (a durable timer either cancels)."""
        self._set_details()
        if wake_at is None:
            await workflow.wait_condition(self._has_work)
            return
        delay = wake_at - workflow.now()
        if delay <= timedelta(0):
            return
        try:
            await workflow.wait_condition(self._has_work, timeout=delay, timeout_summary=summary)
        except asyncio.TimeoutError:
            pass  # the timer fired: the loop takes whatever is now due

    def _has_work(self) -> bool:
        return bool(self._inbox) or self._woken or bool(self._pending) or bool(self._outbox)

    def _housekeeping(self) -> bool:
        """Close what is due without a step: agent tasks past their report deadline (recorded
        ``missed``), hardship pauses at their end, and the write-off. True when it changed state."""
        state = self._require_state()
        now = workflow.now()
        changed = False
        for task in [t for t in state.open_tasks if t.report_by <= now]:
            state.open_tasks.remove(task)
            self._add_outcome(task, "missed", None)
            workflow.logger.info("contact_outcome.missed", extra={"task_key": task.task_key})
            changed = True
        for pause in [p for p in state.pauses if p.until is not None and p.until <= now]:
            self._end_pause(pause, "expired")
            changed = True
        if (
            self._patched
            and state.plan is None
            and state.open_promise is None
            and not self._ladder_paused()
            and self._write_off_at() <= now
        ):
            self._write_off()
            changed = True
        return changed

    # -- ladder steps ------------------------------------------------------------------------

    async def _ask_gate(self, pos: ladder.LadderPosition) -> list[compliance.ContactDecision] | None:
        """Ask the compliance gate about ``pos``'s due step: load the borrower's contact profile
        (an activity: preferences, consents, the call log), decide every action, and return the
        decisions; or, when the step must wait (the hour, a notice period), record the deferral,
        keep it in ``state.deferred_step`` and return ``None``."""
        state = self._require_state()
        case = self._case
        step = pos.step
        assert step is not None
        now = workflow.now()
        dpd = calendar.days_past_due(case.oldest_due_date, now, case.timezone)
        profile = await workflow.execute_activity_method(
            CollectionActivities.load_contact_profile,
            ProfileRequest(borrower_id=case.borrower_id, loan_id=case.loan_id, as_of=now),
            start_to_close_timeout=BOOKKEEPING_TIMEOUT,
            retry_policy=BOOKKEEPING_RETRY,
            summary=f"DPD {dpd} {step.name}: load the borrower's contact preferences and call log",
        )
        answer = compliance.decide_step(
            step=step.name,
            actions=step.actions,
            rules=state.policy.compliance_rules(case.jurisdiction),
            facts=self._case_facts(),
            profile=profile,
            now=workflow.now(),
            days_past_due=dpd,
        )
        if answer.deferred_until is None:
            state.deferred_step = None
            return answer.decisions
        first = answer.decisions[0]
        again = state.deferred_step
        state.deferred_step = DeferredStep(step=step.name, until=answer.deferred_until, rule_id=first.rule_id)
        if again is None or again.step != step.name or again.until != answer.deferred_until:
            for decision in answer.decisions:
                self._record_decision(decision, None)
            workflow.logger.info(
                "contact.deferred", extra={"step": step.name, "rule_id": first.rule_id, "until": answer.deferred_until.isoformat()}
            )
        return None

    def _case_facts(self) -> compliance.CaseFacts:
        state = self._require_state()
        case = self._case
        notices = [
            record.at
            for record in state.steps_done
            for result in record.results
            if result.action == compliance.DEFAULT_NOTICE_ACTION and result.status in ("sent", "recorded", "already_done")
        ]
        return compliance.CaseFacts(
            jurisdiction=case.jurisdiction,
            timezone=case.timezone,
            loan_id=case.loan_id,
            oldest_due_date=case.oldest_due_date,
            cease_contact=state.cease_contact,
            permitted_after_cease=state.policy.pauses.permitted_after_cease(case.jurisdiction),
            default_notice_at=max(notices) if notices else None,
            validation_notice_sent=any(
                d.run_action == compliance.VALIDATION_ACTION for d in state.contact_decisions
            ),
        )

    def _record_decision(self, decision: compliance.ContactDecision, run_key: str | None) -> None:
        state = self._require_state()
        state.contact_decisions.append(decision)
        self._record(
            ContactDecisionRecorded(
                key=self._next_key(), at=decision.decided_at, jurisdiction=self._case.jurisdiction,
                decision=decision, run_key=run_key,
            )
        )

    async def _take_step(self, pos: ladder.LadderPosition, gate: list[compliance.ContactDecision] | None = None) -> None:
        """Take ``pos``'s due step now, recording the stale rungs before it as skipped. With the
        compliance gate's ``gate`` decisions, run what they allow or reroute to, and record each."""
        state = self._require_state()
        case = self._case
        rung, step = pos.due, pos.step
        assert rung is not None and step is not None
        now = workflow.now()
        dpd = calendar.days_past_due(case.oldest_due_date, now, case.timezone)
        for stale in pos.stale:
            self._skip(stale, f"superseded: at DPD {dpd} the case went straight to {step.name}")
        if gate is None or not any(d.repeat_step for d in gate):
            state.last_rung_days = rung.days_past_due
        if gate is None:
            results = await asyncio.gather(*(self._run_action(step, action, dpd) for action in step.actions))
        else:
            for decision in gate:
                run_key = self._contact_request(step.name, decision.run_action, dpd).idempotency_key if decision.run_action else None
                self._record_decision(decision, run_key)
            results = await asyncio.gather(*(self._run_decision(step, decision, dpd) for decision in gate))
        state.steps_done.append(
            StepRecord(step=step.name, days_past_due=dpd, at=now, actions=list(step.actions), results=list(results))
        )
        state.stage = step.name
        self._record_progress()
        self._sync_search_attributes()
        decisions = [d.decision for d in gate] if gate is not None else ["ungated"] * len(results)
        for result, decision in zip(results, decisions):
            spec = ACTIONS.get(result.action)
            metrics.count_in_workflow(
                metrics.STEPS_TAKEN,
                step=step.name,
                action=result.action,
                channel=spec.channel.value if spec else "unknown",
                decision=decision,
                status=result.status,
                jurisdiction=case.jurisdiction,
            )
        workflow.logger.info("case.step_taken", extra={"step": step.name, "days_past_due": dpd})

    async def _run_decision(self, step: LadderStep, decision: compliance.ContactDecision, dpd: int) -> ActionResult:
        """Run what the gate's ``decision`` allows (the action, or its reroute), or record why not."""
        if decision.run_action is None:
            return ActionResult(
                action=decision.action,
                status=decision.decision,
                idempotency_key="",
                detail=f"{decision.rule_id}: {decision.reason}",
            )
        result = await self._run_action(step, decision.run_action, dpd, decision)
        if decision.decision == "rerouted":
            note = f"rerouted from {decision.action} ({decision.rule_id})"
            result.detail = f"{note}; {result.detail}" if result.detail else note
        return result

    async def _run_action(
        self, step: LadderStep, action: str, dpd: int, decision: compliance.ContactDecision | None = None
    ) -> ActionResult:
        """Run one action of a step; on a permanent failure, record it and queue the fallback.

        After a cease-contact request only the policy's ``pauses.after_cease_contact`` actions
        run; the others are recorded ``skipped``. Hand-offs (placement, legal referral) start
        their child workflow; agent calls and visits open a task awaiting its outcome.
        """
        state = self._require_state()
        request = self._contact_request(step.name, action, dpd)
        if decision is not None:
            request = request.model_copy(update={"requirements": list(decision.requirements), "send_by": decision.send_by})
        label = ACTIONS[action].label
        if decision is None and state.cease_contact and action not in state.policy.pauses.permitted_after_cease(self._case.jurisdiction):
            return ActionResult(
                action=action,
                status="skipped",
                idempotency_key=request.idempotency_key,
                detail=(
                    "cease_contact: the borrower asked that contact stop "
                    f"(policy pauses.after_cease_contact.{self._case.jurisdiction})"
                ),
            )
        try:
            if self._patched and action in HAND_OFF_WORKFLOWS:
                return await self._start_hand_off(action, request, f"DPD {dpd} {step.name}: {label}")
            result = await workflow.execute_activity_method(
                ACTIVITY_FOR_ACTION[action],
                request,
                start_to_close_timeout=CONTACT_TIMEOUT,
                retry_policy=CONTACT_RETRY,
                summary=f"DPD {dpd} {step.name}: {label}",
            )
            if self._patched and ACTIONS[action].task_kind in ("call", "visit"):
                self._open_task(action, request.idempotency_key)
            return ActionResult(action=action, status=result.status, idempotency_key=request.idempotency_key)
        except (ActivityError, ChildWorkflowError) as err:
            reason = _failure_message(err)
            workflow.logger.warning("contact.failed", extra={"action": action, "reason": reason})
        except WorkflowAlreadyStartedError:
            reason = "a hand-off workflow with this id already exists"
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

    async def _start_hand_off(self, action: str, request: ContactRequest, summary: str) -> ActionResult:
        """Start the placement or legal-referral child workflow (abandoned on continue-as-new:
        the case signals it by id when it ends)."""
        state = self._require_state()
        case = self._case
        kind = HAND_OFF_WORKFLOWS[action]
        if kind == "placement":
            child_id = placement_workflow_id(case.workflow_id, case.oldest_due_date)
            child_type = PLACEMENT_WORKFLOW_TYPE
        else:
            child_id = legal_workflow_id(case.workflow_id, case.oldest_due_date)
            child_type = LEGAL_WORKFLOW_TYPE
        self._child_handles[child_id] = await workflow.start_child_workflow(
            child_type,
            HandOffRequest(
                request=request,
                parent_workflow_id=case.workflow_id,
                timezone=case.timezone,
                term_days=state.policy.placement.term_days if kind == "placement" else None,
            ),
            id=child_id,
            parent_close_policy=ParentClosePolicy.ABANDON,
            static_summary=f"{summary} · loan {case.loan_id} · {self._money(request.outstanding_minor)} outstanding",
        )
        state.hand_offs.append(HandOff(kind=kind, workflow_id=child_id, started_at=workflow.now()))  # type: ignore[arg-type]
        return ActionResult(
            action=action, status="started", idempotency_key=request.idempotency_key, detail=f"child workflow {child_id}"
        )

    def _open_task(self, action: str, task_key: str) -> None:
        state = self._require_state()
        rules = state.policy.contact_outcomes
        hours = rules.visit_report_hours if ACTIONS[action].task_kind == "visit" else rules.call_report_hours
        now = workflow.now()
        state.open_tasks.append(
            AgentTask(task_key=task_key, action=action, created_at=now, report_by=now + timedelta(hours=hours))
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
        """Where the case stands on its ladder now (``ladder.position``), its later steps moved by
        the days the ladder was paused."""
        state = self._require_state()
        case = self._case
        return ladder.position(
            state.policy,
            currency=case.currency,
            oldest_due_date=case.oldest_due_date + timedelta(days=state.ladder_shift_days),
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
        if self._state is None:
            return  # the case is still opening: the main loop applies them once it is open
        appliers = {
            "payment_received": self._apply_payment,
            "promise_to_pay": self._apply_promise,
            "dispute_opened": self._apply_dispute_opened,
            "dispute_resolved": self._apply_dispute_resolved,
            "cease_contact": self._apply_cease_contact,
            "hardship": self._apply_hardship,
            "bankruptcy": self._apply_stop,
            "deceased": self._apply_stop,
            "plan_instalment_missed": self._apply_instalment_missed,
            "breathing_space": self._apply_breathing_space,
        }
        while self._inbox:
            signal = self._inbox.pop(0)
            appliers[signal.kind](signal)

    def _parse(self, signal: PendingSignal, model: type[Any], id_field: str, seen: list[str], verb: str) -> Any:
        """The signal's payload as ``model``, or ``None`` after recording why it was rejected
        (a broken field rule, or an id already ``verb`` once)."""
        try:
            parsed = model.model_validate(signal.payload)
        except ValidationError as err:
            self._reject(signal, "; ".join(describe_errors(err)))
            return None
        if getattr(parsed, id_field) in seen:
            kind = "breathing space" if signal.kind == "breathing_space" else signal.kind.split("_")[0]
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
        # Payments go to interest and fees first, then principal (what a waiver may forgive).
        state.interest_fees_outstanding_minor = max(0, self._interest_fees_outstanding() - applied)
        state.last_payment_at = workflow.now()
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
        plan = state.plan
        if plan is not None and applied:
            plan.paid_toward_minor += applied
            self._mark_instalments(plan)
            if plan.started:
                self._outbox.append(
                    (
                        plan.plan_workflow_id,
                        "payment_applied",
                        PlanPaymentForwarded(payment_id=payment.payment_id, amount_minor=applied),
                    )
                )
            if plan.paid_toward_minor >= plan.total_minor and state.outcome is None:
                self._settle()
                return
        if state.outstanding_minor == 0 and state.outcome is None:
            now = workflow.now()
            state.cured_at = now
            state.cured_days_past_due = calendar.days_past_due(case.oldest_due_date, now, case.timezone)
            self._end_case("cured")
            workflow.logger.info("case.cured", extra={"days_past_due": state.cured_days_past_due})
        elif applied:
            self._record_progress()
            self._sync_search_attributes()

    def _apply_promise(self, signal: PendingSignal) -> None:
        state = self._require_state()
        promise = self._parse(signal, PromiseToPay, "promise_id", state.seen_promise_ids, "accepted")
        if promise is None:
            return
        problem = self._promise_problem(promise)
        if problem:
            self._reject(signal, problem)
            return
        self._open_promise(promise)

    def _promise_problem(self, promise: PromiseToPay) -> str | None:
        state = self._require_state()
        if state.outcome is not None:
            return f"promise_id: the case is closed ({state.outcome})"
        if promise.promise_id in state.seen_promise_ids:
            return "promise_id: duplicate, this promise was already accepted"
        if state.plan is not None:
            return f"promise_id: plan {state.plan.plan_id} is active; payments count toward its instalments"
        return ladder.promise_problem(
            promise,
            policy=state.policy,
            tz_name=self._case.timezone,
            outstanding_minor=state.outstanding_minor,
            open_promise=state.open_promise,
            promises_broken=state.promises_broken,
            now=workflow.now(),
        )

    def _open_promise(self, promise: PromiseToPay) -> None:
        state = self._require_state()
        now = workflow.now()
        state.seen_promise_ids.append(promise.promise_id)
        state.open_promise = OpenPromise(
            promise_id=promise.promise_id,
            amount_minor=promise.amount_minor,
            promised_date=promise.promised_date,
            made_at=now,
            deadline=ladder.promise_deadline(promise.promised_date, self._case.timezone, state.policy),
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

    # -- pauses and stops --------------------------------------------------------------------

    def _closed_problem(self, field: str) -> str | None:
        state = self._require_state()
        return f"{field}: the case is closed ({state.outcome})" if state.outcome is not None else None

    def _apply_dispute_opened(self, signal: PendingSignal) -> None:
        state = self._require_state()
        dispute = self._parse(signal, DisputeOpened, "dispute_id", self._seen("dispute"), "opened")
        if dispute is None:
            return
        problem = self._closed_problem("dispute_id")
        if problem:
            self._reject(signal, problem)
            return
        self._start_pause("dispute", dispute.dispute_id, None)
        workflow.logger.info("dispute.opened", extra={"dispute_id": dispute.dispute_id})
        del state

    def _apply_dispute_resolved(self, signal: PendingSignal) -> None:
        state = self._require_state()
        try:
            resolved = DisputeResolved.model_validate(signal.payload)
        except ValidationError as err:
            self._reject(signal, "; ".join(describe_errors(err)))
            return
        open_dispute = next((p for p in state.pauses if p.kind == "dispute" and p.id == resolved.dispute_id), None)
        if open_dispute is None:
            open_ids = [p.id for p in state.pauses if p.kind == "dispute"]
            self._reject(signal, f"dispute_id: no open dispute {resolved.dispute_id!r}; open: {open_ids or 'none'}")
            return
        corrected = resolved.corrected_outstanding_minor
        if resolved.resolution == "upheld":
            if corrected is None:
                self._reject(signal, "corrected_outstanding_minor: required when the dispute is upheld")
                return
            if not 0 <= corrected <= state.outstanding_minor:
                self._reject(
                    signal,
                    f"corrected_outstanding_minor: must be from 0 to the outstanding amount "
                    f"{state.outstanding_minor}, got {corrected}",
                )
                return
        elif corrected is not None:
            self._reject(signal, "corrected_outstanding_minor: only for a dispute that is upheld")
            return
        self._end_pause(open_dispute, resolved.resolution)
        workflow.logger.info("dispute.resolved", extra={"dispute_id": resolved.dispute_id, "resolution": resolved.resolution})
        if resolved.resolution == "upheld" and corrected is not None and corrected != state.outstanding_minor:
            state.outstanding_minor = corrected
            state.interest_fees_outstanding_minor = min(self._interest_fees_outstanding(), corrected)
            if state.plan is not None:
                self._end_plan("closed", f"amount corrected by dispute {resolved.dispute_id}")
            if corrected == 0:
                self._end_case("closed_dispute_upheld")
            else:
                self._record_progress()
                self._sync_search_attributes()

    def _apply_cease_contact(self, signal: PendingSignal) -> None:
        state = self._require_state()
        request = self._parse(signal, CeaseContact, "request_id", self._seen("cease_contact"), "recorded")
        if request is None:
            return
        problem = self._closed_problem("request_id")
        if not problem and state.cease_contact:
            first = next(p.id for p in state.pauses if p.kind == "cease_contact")
            problem = f"request_id: contact already ceased by request {first}"
        if problem:
            self._reject(signal, problem)
            return
        state.cease_contact = True
        self._start_pause("cease_contact", request.request_id, None)
        # An agency is a debt collector too: the placement is recalled.
        self._close_children("cease_contact", plans_too=False, legal_too=False)
        workflow.logger.info("contact.ceased", extra={"request_id": request.request_id})

    def _apply_hardship(self, signal: PendingSignal) -> None:
        state = self._require_state()
        hardship = self._parse(signal, Hardship, "hardship_id", self._seen("hardship"), "recorded")
        if hardship is None:
            return
        problem = self._closed_problem("hardship_id")
        active = next((p for p in state.pauses if p.kind == "hardship"), None)
        if not problem and active is not None:
            problem = f"hardship_id: hardship {active.id} is already active until {self._local(active.until)}"
        if problem:
            self._reject(signal, problem)
            return
        until = workflow.now() + timedelta(days=state.policy.pauses.hardship_days)
        self._start_pause("hardship", hardship.hardship_id, until)
        workflow.logger.info("hardship.started", extra={"hardship_id": hardship.hardship_id})

    def _apply_breathing_space(self, signal: PendingSignal) -> None:
        state = self._require_state()
        case = self._case
        space = self._parse(signal, BreathingSpace, "breathing_space_id", self._seen("breathing_space"), "recorded")
        if space is None:
            return
        problem = self._closed_problem("breathing_space_id")
        rules = state.policy.compliance.get(case.jurisdiction)
        days = rules.breathing_space_days if rules is not None else None
        if not problem and days is None:
            problem = (
                f"breathing_space_id: no breathing space scheme in jurisdiction {case.jurisdiction} "
                f"(policy compliance.{case.jurisdiction}.breathing_space_days is not set)"
            )
        active = next((p for p in state.pauses if p.kind == "breathing_space"), None)
        if not problem and active is not None:
            problem = f"breathing_space_id: breathing space {active.id} is already active until {self._local(active.until)}"
        if problem:
            self._reject(signal, problem)
            return
        assert days is not None
        self._start_pause("breathing_space", space.breathing_space_id, workflow.now() + timedelta(days=days))
        workflow.logger.info("breathing_space.started", extra={"breathing_space_id": space.breathing_space_id})

    def _apply_stop(self, signal: PendingSignal) -> None:
        stop = self._parse(signal, CaseStop, "notice_id", self._seen(signal.kind), "recorded")
        if stop is None:
            return
        problem = self._closed_problem("notice_id")
        if problem:
            self._reject(signal, problem)
            return
        self._start_pause(signal.kind, stop.notice_id, None)
        self._end_case("closed_bankruptcy" if signal.kind == "bankruptcy" else "closed_deceased")
        workflow.logger.info("case.stopped", extra={"kind": signal.kind, "notice_id": stop.notice_id})

    def _seen(self, kind: str) -> list[str]:
        prefix = f"{kind}:"
        return [key[len(prefix):] for key in self._require_state().seen_pause_ids if key.startswith(prefix)]

    def _ladder_paused(self) -> bool:
        return any(p.kind in LADDER_PAUSES for p in self._require_state().pauses)

    def _start_pause(self, kind: str, pause_id: str, until: datetime | None) -> None:
        state = self._require_state()
        now = workflow.now()
        if kind in LADDER_PAUSES and not self._ladder_paused():
            state.paused_since = now
        pause = Pause(kind=kind, id=pause_id, started_at=now, until=until)
        state.seen_pause_ids.append(f"{kind}:{pause_id}")
        state.pauses.append(pause)
        self._record(
            PauseRecorded(
                key=self._next_key(), at=now, pause_kind=kind, pause_id=pause_id, started_at=now, until=until
            )
        )

    def _end_pause(self, pause: Pause, resolution: str) -> None:
        """End ``pause``; when no ladder pause remains, move the ladder's later steps by the
        local days it was paused (``ladder.paused_days``)."""
        state = self._require_state()
        now = workflow.now()
        state.pauses.remove(pause)
        pause.ended_at = now
        pause.resolution = resolution
        state.pauses_ended.append(pause)
        if pause.kind in LADDER_PAUSES and not self._ladder_paused() and state.paused_since is not None:
            state.ladder_shift_days += ladder.paused_days(state.paused_since, now, self._case.timezone)
            state.paused_since = None
        self._record(
            PauseRecorded(
                key=self._next_key(),
                at=now,
                pause_kind=pause.kind,
                pause_id=pause.id,
                started_at=pause.started_at,
                until=pause.until,
                ended_at=now,
                resolution=resolution,
            )
        )

    # -- endings -----------------------------------------------------------------------------

    def _end_case(self, outcome: str) -> None:
        """Close the case with ``outcome``; the main loop then recalls its children."""
        state = self._require_state()
        # Agent tasks still waiting for an outcome are closed with the case (same database write).
        for task in list(state.open_tasks):
            state.open_tasks.remove(task)
            self._add_outcome(task, "cancelled", None)
        state.outcome = outcome  # type: ignore[assignment]
        state.closed_at = workflow.now()
        metrics.count_in_workflow(metrics.CASES_CLOSED, outcome=outcome, jurisdiction=self._case.jurisdiction)
        self._next_step = None
        self._record_progress()
        self._sync_search_attributes()

    def _write_off_at(self) -> datetime:
        state = self._require_state()
        reference = state.last_payment_at or state.opened_at or workflow.info().start_time
        return ladder.write_off_instant(
            state.policy,
            oldest_due_date=self._case.oldest_due_date,
            tz_name=self._case.timezone,
            last_activity_at=reference,
        )

    def _write_off(self) -> None:
        state = self._require_state()
        case = self._case
        now = workflow.now()
        dpd = calendar.days_past_due(case.oldest_due_date, now, case.timezone)
        state.written_off_minor = state.outstanding_minor
        self._record(
            CaseWrittenOff(
                key=self._next_key(),
                at=now,
                amount_minor=state.outstanding_minor,
                currency=case.currency,
                days_past_due=dpd,
                last_payment_at=state.last_payment_at,
                policy_version=state.policy.version,
            )
        )
        self._end_case("written_off")
        workflow.logger.info("case.written_off", extra={"days_past_due": dpd, "amount_minor": state.outstanding_minor})

    def _close_children(self, reason: str, *, plans_too: bool = True, legal_too: bool = True) -> None:
        """Queue the signals that end the case's children: ``recall`` to an active placement,
        ``withdraw`` to an active legal referral, ``close_plan`` to an active plan."""
        state = self._require_state()
        now = workflow.now()
        for hand_off in state.hand_offs:
            if hand_off.status != "active" or (hand_off.kind == "legal_referral" and not legal_too):
                continue
            if hand_off.kind == "placement":
                self._outbox.append((hand_off.workflow_id, "recall", reason))
                hand_off.status = "recalled"
            else:
                self._outbox.append((hand_off.workflow_id, "withdraw", reason))
                hand_off.status = "withdrawn"
            hand_off.ended_at = now
            hand_off.reason = reason
        if plans_too and state.plan is not None:
            self._end_plan("closed", reason)

    def _children_ended(self) -> bool:
        for child in self._children_ending:
            handle = self._child_handles.get(child)
            if handle is not None:
                if not handle.done():
                    return False
            elif child not in self._children_closed:
                return False
        return True

    async def _send_outbox(self) -> None:
        messages, self._outbox = self._outbox, []
        for workflow_id, signal_name, argument in messages:
            ending = signal_name in ("recall", "withdraw", "close_plan")
            if ending and workflow_id not in self._children_ending:
                self._children_ending.append(workflow_id)
            try:
                await workflow.get_external_workflow_handle(workflow_id).signal(signal_name, argument)
            except Exception as err:  # the child already ended (a placement's term ran out)
                self._children_closed.append(workflow_id)
                workflow.logger.info(
                    "child.signal_not_delivered", extra={"child": workflow_id, "signal": signal_name, "reason": str(err)}
                )

    # -- repayment plans ---------------------------------------------------------------------

    def _interest_fees_outstanding(self) -> int:
        """Interest and fees still outstanding (what a waiver may forgive). Pure: update
        validators call it, and validators must not change state."""
        state = self._require_state()
        tracked = state.interest_fees_outstanding_minor
        if tracked is None:
            # A state saved before components were tracked: payments went to interest and fees first.
            case = self._case
            tracked = max(0, case.interest_due_minor + case.fees_due_minor - state.paid_minor)
        return min(tracked, state.outstanding_minor)

    def _retried_plan(self, payload: Any) -> PlanAccepted | None:
        """The active plan when ``payload`` proposes it again (same ``plan_id``): a client retry."""
        state = self._state
        plan_id = payload.get("plan_id") if isinstance(payload, dict) else getattr(payload, "plan_id", None)
        if state is None or state.plan is None or plan_id != state.plan.plan_id:
            return None
        return PlanAccepted.model_validate(state.plan.model_dump(include=set(PlanAccepted.model_fields)))

    def _retried_outcome(self, payload: Any) -> ContactOutcome | None:
        """The recorded outcome when ``payload`` reports the same task, outcome and agent again."""
        state = self._state
        if state is None or not isinstance(payload, dict) or "note" in payload:
            return None
        for recorded in state.contact_outcomes:
            if (recorded.task_key, recorded.outcome, recorded.agent_id) == (
                payload.get("task_key"), payload.get("outcome"), payload.get("agent_id")
            ):
                return recorded
        return None

    def _plan_check(self, payload: Any) -> tuple[PlanProposal | None, str | None]:
        """The proposal, or the reason it is refused (``"field: rule"``)."""
        state = self._state
        try:
            proposal = PlanProposal.model_validate(payload)
        except ValidationError as err:
            return None, "; ".join(describe_errors(err))
        if state is None:
            return proposal, None  # the case is still opening: the handler waits and checks again
        if state.outcome is not None:
            return None, f"plan_id: the case is closed ({state.outcome})"
        if proposal.plan_id in state.seen_plan_ids:
            return None, "plan_id: duplicate, a plan with this id was already accepted"
        if state.plan is not None:
            return None, f"plan_id: plan {state.plan.plan_id} is active; it must end first"
        if state.open_promise is not None:
            return None, f"plan_id: promise {state.open_promise.promise_id} is open; a plan can follow once it is kept or broken"
        dispute = next((p for p in state.pauses if p.kind == "dispute"), None)
        if dispute is not None:
            return None, f"plan_id: dispute {dispute.id} is open; no collection while it is"
        problem = plans.plan_problem(
            proposal,
            policy=state.policy,
            tz_name=self._case.timezone,
            now=workflow.now(),
            outstanding_minor=state.outstanding_minor,
            interest_fees_outstanding_minor=self._interest_fees_outstanding(),
        )
        return (None, problem) if problem else (proposal, None)

    def _accept_plan(self, proposal: PlanProposal) -> PlanAccepted:
        state = self._require_state()
        case = self._case
        now = workflow.now()
        instalments, waived = plans.build_schedule(
            proposal, policy=state.policy, tz_name=case.timezone, now=now, outstanding_minor=state.outstanding_minor
        )
        plan = ActivePlan(
            plan_id=proposal.plan_id,
            kind=proposal.kind,
            instalments=instalments,
            total_minor=sum(i.amount_minor for i in instalments),
            waived_minor=waived,
            currency=case.currency,
            plan_workflow_id=plan_workflow_id(case.workflow_id, proposal.plan_id),
            approver_id=proposal.approver_id,
            accepted_at=now,
        )
        state.plan = plan
        state.seen_plan_ids.append(plan.plan_id)
        self._record(
            PlanRecorded(
                key=self._next_key(),
                at=now,
                plan_id=plan.plan_id,
                plan_kind=plan.kind,
                status="active",
                total_minor=plan.total_minor,
                waived_minor=plan.waived_minor,
                currency=plan.currency,
                approver_id=plan.approver_id,
                proposed_by=proposal.proposed_by,
                plan_workflow_id=plan.plan_workflow_id,
                instalments=plan.instalments,
            )
        )
        self._woken = True
        workflow.logger.info("plan.accepted", extra={"plan_id": plan.plan_id, "kind": plan.kind})
        return PlanAccepted.model_validate(plan.model_dump(include=set(PlanAccepted.model_fields)))

    async def _start_plan(self) -> None:
        state = self._require_state()
        case = self._case
        plan = state.plan
        assert plan is not None
        plan.started = True
        self._child_handles[plan.plan_workflow_id] = await workflow.start_child_workflow(
            PLAN_WORKFLOW_TYPE,
            PlanRun(
                plan_id=plan.plan_id,
                parent_workflow_id=case.workflow_id,
                loan_id=case.loan_id,
                currency=case.currency,
                timezone=case.timezone,
                instalments=plan.instalments,
                deadlines=[plans.instalment_deadline(i.due_date, case.timezone, state.policy) for i in plan.instalments],
                instalments_per_run=state.policy.plans.instalments_per_run,
                paid_toward_minor=plan.paid_toward_minor,
            ),
            id=plan.plan_workflow_id,
            parent_close_policy=ParentClosePolicy.ABANDON,
            static_summary=(
                f"{plan.kind} plan {plan.plan_id} · loan {case.loan_id} · stage {state.stage} · "
                f"{len(plan.instalments)} instalment(s), {self._money(plan.total_minor)}"
            ),
        )

    def _mark_instalments(self, plan: ActivePlan) -> None:
        covered = 0
        for instalment in plan.instalments:
            covered += instalment.amount_minor
            if instalment.status == "open" and plan.paid_toward_minor >= covered:
                instalment.status = "paid"

    def _apply_instalment_missed(self, signal: PendingSignal) -> None:
        state = self._require_state()
        try:
            missed = PlanInstalmentMissed.model_validate(signal.payload)
        except ValidationError as err:
            self._reject(signal, "; ".join(describe_errors(err)))
            return
        if state.plan is None or state.plan.plan_id != missed.plan_id:
            active = state.plan.plan_id if state.plan else "none"
            self._reject(signal, f"plan_id: {missed.plan_id!r} is not the active plan (active: {active})")
            return
        for instalment in state.plan.instalments:
            if instalment.seq == missed.seq:
                instalment.status = "missed"
        self._end_plan("broken", f"instalment {missed.seq} missed")
        workflow.logger.info("plan.broken", extra={"plan_id": missed.plan_id, "seq": missed.seq})

    def _end_plan(self, status: str, reason: str) -> None:
        """End the active plan; ``closed`` also tells its child workflow to stop watching."""
        state = self._require_state()
        plan = state.plan
        assert plan is not None
        now = workflow.now()
        state.plan = None
        if status == "closed" and plan.started:
            self._outbox.append((plan.plan_workflow_id, "close_plan", reason))
        state.plans_ended.append(
            EndedPlan(plan_id=plan.plan_id, kind=plan.kind, status=status, ended_at=now, reason=reason)  # type: ignore[arg-type]
        )
        self._record(
            PlanRecorded(
                key=self._next_key(),
                at=now,
                plan_id=plan.plan_id,
                plan_kind=plan.kind,
                status=status,  # type: ignore[arg-type]
                total_minor=plan.total_minor,
                waived_minor=plan.waived_minor if status == "completed" else 0,
                currency=plan.currency,
                approver_id=plan.approver_id,
                plan_workflow_id=plan.plan_workflow_id,
                reason=reason,
            )
        )

    def _settle(self) -> None:
        """The plan's payments reached its total: forgive what remains (at most the waiver) and
        end the case ``settled``."""
        state = self._require_state()
        plan = state.plan
        assert plan is not None
        waived = state.outstanding_minor
        plan.waived_minor = waived
        if plan.started:
            self._children_ending.append(plan.plan_workflow_id)
        state.waived_minor += waived
        state.outstanding_minor = 0
        state.interest_fees_outstanding_minor = max(0, self._interest_fees_outstanding() - waived)
        self._end_plan("completed", f"all {len(plan.instalments)} instalment(s) paid")
        self._end_case("settled")
        workflow.logger.info("case.settled", extra={"plan_id": plan.plan_id, "waived_minor": waived})

    # -- contact outcomes --------------------------------------------------------------------

    def _outcome_check(self, payload: Any) -> tuple[ContactOutcomeReport | None, str | None]:
        """The report, or the reason it is refused (``"field: rule"``)."""
        state = self._state
        if isinstance(payload, dict) and "note" in payload:
            return None, (
                "note: free text never goes to the workflow (its history is stored in plaintext); "
                "give it to `starter.py record-outcome --note` or the API, which store it in the database"
            )
        try:
            report = ContactOutcomeReport.model_validate(payload)
        except ValidationError as err:
            return None, "; ".join(describe_errors(err))
        if state is None:
            return report, None  # the case is still opening: the handler waits and checks again
        if state.outcome is not None:
            return None, f"task_key: the case is closed ({state.outcome})"
        task = next((t for t in state.open_tasks if t.task_key == report.task_key), None)
        if task is None:
            done = next((o for o in state.contact_outcomes if o.task_key == report.task_key), None)
            if done is not None:
                return None, f"task_key: this task's outcome was already recorded ({done.outcome} at {done.recorded_at.isoformat()})"
            open_keys = [t.task_key for t in state.open_tasks]
            return None, f"task_key: no open agent task with this key; open tasks: {open_keys or 'none'}"
        if report.outcome == "promise_made":
            if report.promise is None:
                return None, "promise: required when the outcome is promise_made"
            problem = self._promise_problem(report.promise)
            if problem:
                return None, "promise." + problem
        elif report.promise is not None:
            return None, "promise: only with the outcome promise_made"
        if report.outcome == "dispute_raised":
            if report.dispute_id is None:
                return None, "dispute_id: required when the outcome is dispute_raised"
            if report.dispute_id in self._seen("dispute"):
                return None, "dispute_id: duplicate, this dispute was already opened"
        elif report.dispute_id is not None:
            return None, "dispute_id: only with the outcome dispute_raised"
        return report, None

    def _apply_outcome(self, report: ContactOutcomeReport) -> ContactOutcome:
        state = self._require_state()
        task = next(t for t in state.open_tasks if t.task_key == report.task_key)
        state.open_tasks.remove(task)
        if report.outcome == "promise_made" and report.promise is not None:
            self._open_promise(report.promise)
        if report.outcome == "dispute_raised" and report.dispute_id is not None:
            self._start_pause("dispute", report.dispute_id, None)
        outcome = self._add_outcome(task, report.outcome, report)
        self._woken = True
        workflow.logger.info("contact_outcome.recorded", extra={"task_key": task.task_key, "outcome": report.outcome})
        return outcome

    def _add_outcome(self, task: AgentTask, outcome: str, report: ContactOutcomeReport | None) -> ContactOutcome:
        state = self._require_state()
        now = workflow.now()
        recorded = ContactOutcome(
            task_key=task.task_key,
            action=task.action,
            outcome=outcome,
            recorded_at=now,
            agent_id=report.agent_id if report else None,
            promise_id=report.promise.promise_id if report and report.promise else None,
            dispute_id=report.dispute_id if report else None,
        )
        state.contact_outcomes.append(recorded)
        self._record(
            ContactOutcomeRecorded(
                key=self._next_key(),
                at=now,
                task_key=task.task_key,
                action=task.action,
                outcome=outcome,
                agent_id=recorded.agent_id,
                promise_id=recorded.promise_id,
                dispute_id=recorded.dispute_id,
            )
        )
        return recorded

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
        metrics.count_in_workflow(
            metrics.PROMISES_KEPT if outcome == "kept" else metrics.PROMISES_BROKEN, jurisdiction=self._case.jurisdiction
        )
        workflow.logger.info(f"promise.{outcome}", extra={"promise_id": promise.promise_id})

    def _reject(self, signal: PendingSignal, reason: str) -> None:
        state = self._require_state()
        raw = signal.payload if isinstance(signal.payload, dict) else {}
        id_field = SIGNAL_ID_FIELD.get(signal.kind, "id")
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
        metrics.count_in_workflow(metrics.SIGNALS_REJECTED, signal=signal.kind, field=metrics.rejected_field(reason))
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
            f"**DPD** {calendar.days_past_due(case.oldest_due_date, workflow.now(), case.timezone)} "
            f"(due {case.oldest_due_date}, {case.timezone})",
            f"**Outstanding** {self._money(state.outstanding_minor)} · **Paid** {self._money(state.paid_minor)}"
            + (f" · **Overpaid** {self._money(state.overpaid_minor)}" if state.overpaid_minor else ""),
        ]
        if self._next_step is not None and state.outcome is None:
            lines.append(f"**Next** {self._next_step.step} at {self._local(self._next_step.at)}")
        if state.last_payment_at is not None:
            lines.append(f"**Last payment** {self._local(state.last_payment_at)}")
        if state.steps_done:
            last_step = state.steps_done[-1]
            actions = ", ".join(ACTIONS[a].label if a in ACTIONS else a for a in last_step.actions)
            lines.append(f"**Last step** DPD {last_step.days_past_due} {last_step.step} at {self._local(last_step.at)}: {actions}")
        if state.open_promise is not None:
            p = state.open_promise
            lines.append(
                f"**Promise** {p.promise_id}: {self._money(p.amount_minor)} by {p.promised_date}, "
                f"paid toward {self._money(p.paid_toward_minor)}"
            )
        if state.plan is not None:
            plan = state.plan
            paid = sum(1 for i in plan.instalments if i.status == "paid")
            lines.append(
                f"**Plan** {plan.plan_id} ({plan.kind}): {paid}/{len(plan.instalments)} instalments paid, "
                f"{self._money(plan.paid_toward_minor)} of {self._money(plan.total_minor)}"
                + (f", {self._money(plan.waived_minor)} waived when paid" if plan.waived_minor else "")
            )
        for pause in state.pauses:
            until = f" until {self._local(pause.until)}" if pause.until else ""
            lines.append(f"**Paused** {pause.kind} {pause.id}{until}")
        for hand_off in state.hand_offs:
            lines.append(f"**{hand_off.kind.replace('_', ' ').capitalize()}** {hand_off.workflow_id}: {hand_off.status}")
        for task in state.open_tasks:
            lines.append(f"**Open task** {ACTIONS[task.action].label}: outcome due by {self._local(task.report_by)}")
        if state.deferred_step is not None and state.outcome is None:
            d = state.deferred_step
            lines.append(f"**Deferred** {d.step} until {self._local(d.until)} ({d.rule_id})")
        if state.contact_decisions:
            last = state.contact_decisions[-1]
            lines.append(f"**Last compliance decision** {last.step}/{last.action}: {last.decision} ({last.rule_id})")
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
            # Before the policy is loaded (or for an input that could not be opened): what the
            # input says, so a client reading status at once sees the amount and DPD it opened with.
            days_past_due, outstanding_minor = 0, 0
            if case is not None and not case.input_problems:
                outstanding_minor = case.overdue_minor
                try:
                    days_past_due = calendar.days_past_due(case.oldest_due_date, now, case.timezone)
                except calendar.UnknownTimeZoneError:
                    pass
            return CaseStatus(
                loan_id=getattr(case, "loan_id", ""),
                stage="identified",
                days_past_due=days_past_due,
                currency=getattr(case, "currency", ""),
                outstanding_minor=outstanding_minor,
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
            plan=state.plan,
            plans_ended=state.plans_ended,
            pauses=state.pauses,
            pauses_ended=state.pauses_ended,
            cease_contact=state.cease_contact,
            ladder_shift_days=state.ladder_shift_days,
            open_tasks=state.open_tasks,
            contact_outcomes=state.contact_outcomes,
            hand_offs=state.hand_offs,
            waived_minor=state.waived_minor,
            closed_at=state.closed_at,
            written_off_minor=state.written_off_minor,
            contact_decisions=state.contact_decisions,
            deferred_step=state.deferred_step if state.outcome is None else None,
        )


def _failure_message(err: BaseException) -> str:
    """The innermost failure's message of an activity error (the rule or the provider's answer)."""
    cause: BaseException | None = err
    message = str(err)
    while cause is not None:
        if str(cause):
            message = str(cause)
        cause = cause.__cause__
    return message
