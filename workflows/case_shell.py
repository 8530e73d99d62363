"""The shell of ``LoanCollectionWorkflow``: the loop that sequences the case core.

It opens the case, hands every signal and update to the core (``collections_domain.case.core``),
asks it what is due, and does what the core cannot: wait on durable timers, run activities (the
compliance profile, contacts, database records), start children (plan, placement, legal
referral), upsert search attributes, set the details the UI shows, and continue as new. The loop
reads like the process:

    open the case
    loop: apply what arrived -> write what changed -> close what is due (tasks, pauses,
          promises, write-off) -> take the due step through the compliance gate, or sleep
    recall the children, wait for them, return the final status

This is workflow code (deterministic: ``workflow.*`` calls only, no I/O, no clock, no
randomness; ``tests/case/determinism_test.py`` checks its source), imported by
``workflows.loan_collection`` through ``imports_passed_through`` so that the sandbox loads it once
per worker instead of once per case; the workflow class there only declares the handlers.
"""


import asyncio
from datetime import timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError, WorkflowAlreadyStartedError
from temporalio.workflow import ParentClosePolicy

with workflow.unsafe.imports_passed_through():
    from activities.collection_activities import PROVIDER_ATTEMPTS, CollectionActivities
    from collections_domain.case import core
    from collections_domain.case import status as case_status
    from collections_domain.case.base import money
    from collections_domain.case.children import PLAN_WORKFLOW_TYPE, ChildClosed
    from collections_domain.case.contract import (
        ActionResult,
        CaseInput,
        CaseStatus,
        ContactOutcome,
        NextStep,
        PendingSignal,
        PlanAccepted,
    )
    from collections_domain.case.progress import Due
    from collections_domain.case.state import CaseCore, ChildEnding, Count, Log, Record, SignalWorkflow, Step
    from collections_domain.ops import metrics
    from collections_domain.rules.policy import ACTIONS, CollectionPolicy, worker_policy
    from collections_domain.rules.validation import due_date_problem
    from collections_domain.store.records import (
        CaseRecords,
        ContactBatch,
        OpenCaseRequest,
        ProfileRequest,
    )

#: Written on the first task of a case whose input has no ``instalments`` (the contract's
#: original shape): from then on it runs on the case core. Inputs with instalments (every client
#: of this project) need no marker; histories without either replay on the legacy engine.
CORE_PATCH = "case-core-ledger"
#: Database bookkeeping must not be lost: retried until it succeeds, unless a record is refused.
BOOKKEEPING_RETRY = RetryPolicy(initial_interval=timedelta(seconds=1), maximum_interval=timedelta(minutes=1),
                                non_retryable_error_types=["RecordRejected"])
BOOKKEEPING_TIMEOUT = timedelta(seconds=30)
#: Contacts: retried without a bound on attempts, each retry's delay set by the activity (the
#: provider's Retry-After or its own backoff; a database fault's short delay). The activity counts
#: the provider's tries itself (``contact_attempts.attempts``: a database fault is not one) and turns
#: the last one's failure into the fallback (``policy.delivery.fallback_action``): no contact is lost.
CONTACT_ATTEMPTS = PROVIDER_ATTEMPTS
CONTACT_RETRY = RetryPolicy(initial_interval=timedelta(seconds=5), backoff_coefficient=2.0,
                            maximum_interval=timedelta(minutes=10))
CONTACT_TIMEOUT = timedelta(seconds=120)
#: The activity heartbeats before each send: a worker killed mid-step has its contacts retried on
#: another after this, not after the whole CONTACT_TIMEOUT (longer than one send's HTTP timeout).
CONTACT_HEARTBEAT = timedelta(seconds=30)
#: Continue-as-new at this many history events when the server gives no suggestion.
MAX_HISTORY_EVENTS = 8_000
#: How long a closing case waits for its children to confirm they closed.
CHILD_CLOSE_WAIT = timedelta(hours=1)
CHILD_COMPLETION_GRACE = timedelta(seconds=10)
#: The signals of a case, each handed to the core in arrival order.
SIGNALS = ("payment_received", "payment_reversed", "instalment_due", "schedule_adjusted", "promise_to_pay",
           "dispute_opened", "dispute_resolved", "cease_contact", "hardship", "bankruptcy", "deceased",
           "breathing_space", "plan_instalment_missed", "legal_status_changed")


def runs_legacy(case: CaseInput) -> bool:
    """Whether this run is a case started before the loan ledger (module docstring)."""
    if case.resume is not None:
        return True  # a legacy run that continued as new
    if case.core is not None or case.instalments:
        return False
    return not workflow.patched(CORE_PATCH)


class CaseShell:
    """One collections case, from the first missed due date until it ends (the workflow class
    ``LoanCollectionWorkflow`` forwards its handlers here).

    Input ``CaseInput``; signals (``SIGNALS``) ``payment_received``, ``payment_reversed``,
    ``instalment_due``, ``schedule_adjusted``, ``promise_to_pay``, ``dispute_opened``,
    ``dispute_resolved``, ``cease_contact``, ``hardship``, ``breathing_space``, ``bankruptcy``,
    ``deceased``, and from its children ``plan_instalment_missed``, ``legal_status_changed``,
    ``child_closed``; updates ``propose_plan`` (``PlanProposal`` -> ``PlanAccepted``) and
    ``record_contact_outcome`` (``ContactOutcomeReport``); query ``status`` (``CaseStatus``),
    which is also the result. Raises a non-retryable ``ApplicationError`` (type
    ``InvalidCaseInput``) for an input that breaks CONTRACT.md's rules, after holding any money
    that came with it (``unmatched_payments``), before anything is sent.
    """

    def __init__(self, case: CaseInput) -> None:
        self._input = case
        self._core: CaseCore | None = None
        self._policy: CollectionPolicy | None = None
        if case.core is not None and not case.input_problems:
            self._core = CaseCore.model_validate(case.core)
        self._inbox: list[PendingSignal] = list(self._core.inbox) if self._core else []
        self._effects: list[Any] = []
        self._next_step: NextStep | None = None
        self._woken = False
        self._timer: tuple[Any, asyncio.Future] | None = None
        #: The rate-limited channels' task queues, from the step's profile (empty: one queue).
        self._task_queues: dict[str, str] = {}
        #: Children told to end, children that said they closed, and handles of those started here.
        self._children_ending: list[str] = []
        self._children_closed: list[str] = []
        self._child_handles: dict[str, Any] = {}

    # -- messages ----------------------------------------------------------------------------

    def receive(self, kind: str, payload: Any) -> None:
        """Queue a signal of ``kind`` (``SIGNALS``); the main loop hands it to the core in order."""
        self._inbox.append(PendingSignal(kind=kind, payload=payload, received_at=workflow.now()))  # type: ignore[arg-type]

    def child_closed(self, closed: ChildClosed) -> None:
        """A child (plan, placement, legal referral) is about to complete."""
        self._children_closed.append(closed.workflow_id)
        if self._core is not None:
            core.child_closed(self._core, self._step(), closed)

    async def propose_plan(self, proposal: Any) -> PlanAccepted:
        """Accept a repayment plan (``PlanProposal``) and return its schedule; the validator
        refuses, naming the field and the rule, what breaks the policy's ``plans.*`` limits or
        comes while the case is closed, on another plan, waiting on a promise or under dispute."""
        await workflow.wait_condition(lambda: self._core is not None)
        self._apply_inbox()  # signals that arrived with the update count first
        case = self._require_core()
        retried = core.plan.retried_plan(case, proposal)
        if retried is not None:
            return retried
        parsed, problem = core.plan.plan_check(case, self._step(), proposal)
        if problem or parsed is None:
            raise ApplicationError(problem or "invalid proposal", type="PlanRejected", non_retryable=True)
        step = self._step()
        accepted = core.plan.accept_plan(case, step, parsed)
        self._take(step)
        return accepted

    def validate_plan(self, proposal: Any) -> None:
        """Refuse (``PlanRejected``) a proposal that breaks a rule; a retry of the accepted one passes."""
        if core.plan.retried_plan(self._core, proposal) is not None:
            return
        _, problem = core.plan.plan_check(self._core, self._step() if self._core else None, proposal)
        if problem:
            metrics.count_in_workflow(metrics.UPDATES_REJECTED, update="propose_plan", field=metrics.rejected_field(problem))
            raise ApplicationError(problem, type="PlanRejected", non_retryable=True)

    async def record_contact_outcome(self, report: Any) -> ContactOutcome:
        """Record what an open agent task achieved (``ContactOutcomeReport``); free-text notes go to
        the database through the CLI/API, never into the history."""
        await workflow.wait_condition(lambda: self._core is not None)
        self._apply_inbox()
        case = self._require_core()
        retried = core.agents.retried_outcome(case, report)
        if retried is not None:
            return retried
        step = self._step()
        parsed, problem = core.agents.outcome_check(case, step, report)
        if problem or parsed is None:
            raise ApplicationError(problem or "invalid report", type="OutcomeRejected", non_retryable=True)
        recorded = core.agents.apply_outcome(case, step, parsed)
        self._take(step)
        return recorded

    def validate_outcome(self, report: Any) -> None:
        """Refuse (``OutcomeRejected``) a report that breaks a rule; a retry of a recorded one passes."""
        if core.agents.retried_outcome(self._core, report) is not None:
            return
        _, problem = core.agents.outcome_check(self._core, self._step() if self._core else None, report)
        if problem:
            metrics.count_in_workflow(metrics.UPDATES_REJECTED, update="record_contact_outcome",
                                      field=metrics.rejected_field(problem))
            raise ApplicationError(problem, type="OutcomeRejected", non_retryable=True)

    def status(self) -> CaseStatus:
        """The case as CONTRACT.md's ``status`` shape (amounts in minor units)."""
        if self._core is None:
            return case_status.opening_status(self._input, workflow.now())
        return case_status.status(self._core, self._policy_now(), workflow.now(), self._next_step)

    # -- the case ----------------------------------------------------------------------------

    async def run(self, case: CaseInput) -> CaseStatus:
        """Run the case until it ends; returns the final ``status``."""
        problems = list(case.input_problems)
        if not problems and workflow.info().workflow_id != case.workflow_id:
            problems.append(f"workflow id: must be {case.workflow_id!r} (collection-<loan_id>), "
                            f"got {workflow.info().workflow_id!r}")
        if problems:
            await self._refuse("invalid case input: " + "; ".join(problems))
        if self._core is None:
            await self._open_case()
        self._policy = self._policy or self._case_policy()
        self._sync()
        while True:
            self._apply_inbox()
            if self._effects and not self._records_can_wait():
                await self._perform_effects()
                continue
            case_core = self._require_core()
            if case_core.outcome is not None:
                break
            step = self._step()
            if core.housekeeping(case_core, step):
                self._take(step)
                continue
            if case_core.plan is not None and not case_core.plan.started:
                await self._start_plan()
                continue
            if self._should_continue_as_new():
                if self._effects:  # records waiting for a step are written before the run ends
                    await self._perform_effects()
                    continue
                await workflow.wait_condition(workflow.all_handlers_finished)
                case_core.inbox = list(self._inbox)
                workflow.continue_as_new(self._input.model_copy(update={"core": case_core, "resume": None}))
            move = core.next_move(case_core, step)
            self._take(step)
            if self._effects and not self._records_can_wait():
                continue
            if isinstance(move, Due):
                await self._take_step(move)
                continue
            if self._effects:  # records that waited for a step: written before the case sleeps
                await self._perform_effects()
                continue
            self._next_step = move.next_step
            await self._sleep(move.until, move.summary)
        await self._close()
        return self.status()

    async def _refuse(self, message: str) -> None:
        """Fail the run as ``InvalidCaseInput`` after holding the money that came with it."""
        money_signals = [s for s in self._inbox if s.kind in ("payment_received", "payment_reversed")]
        if money_signals:
            loan_id = workflow.info().workflow_id.removeprefix("collection-")[:64]
            held = await workflow.execute_local_activity_method(
                CollectionActivities.hold_unapplied,
                OpenCaseRequest(case=self._input.model_copy(update={"core": None}), now=workflow.now(),
                                workflow_id=workflow.info().workflow_id, episode_id=workflow.info().first_execution_run_id,
                                signals=money_signals, loan_id=loan_id),
                start_to_close_timeout=BOOKKEEPING_TIMEOUT, retry_policy=BOOKKEEPING_RETRY,
                summary="hold the payments that came with a refused case",
            )
            message += f"; {held}"
        raise ApplicationError(message, type="InvalidCaseInput", non_retryable=True)

    async def _open_case(self) -> None:
        info = workflow.info()
        request = OpenCaseRequest(case=self._input.model_copy(update={"core": None}), now=workflow.now(),
                                  workflow_id=info.workflow_id, episode_id=info.first_execution_run_id,
                                  signals=[s for s in self._inbox if s.kind in ("payment_received", "payment_reversed")])
        try:
            setup = await workflow.execute_local_activity_method(
                CollectionActivities.open_case, request, start_to_close_timeout=BOOKKEEPING_TIMEOUT,
                retry_policy=RetryPolicy(initial_interval=timedelta(seconds=1), maximum_interval=timedelta(minutes=1),
                                         non_retryable_error_types=["InvalidCaseInput"]),
                summary="check the case, load its policy, score it and assign its treatment",
            )
        except ActivityError as err:
            raise ApplicationError(_failure_message(err), type="InvalidCaseInput", non_retryable=True) from err
        # A reversal re-opens the ended case it came from: start from that case's ledger.
        self._input = core.opening_input(self._input, setup.reopen)
        # Revision 2 opens at the instant the activity opened it with (the same, unless a slow
        # activity spanned workflow tasks), so that both compute the same opening records.
        now = request.now if setup.history_revision >= 2 else workflow.now()
        problem = due_date_problem(self._input, now)  # against the workflow's own clock
        if problem:
            await self._refuse("invalid case input: " + problem)
        strategy = setup.strategy
        self._policy = worker_policy(setup.policy_version, setup.policy_digest, strategy.treatment if strategy else None)
        step = Step(self._policy, now)
        self._core = core.open_case(self._input, step, workflow_id=info.workflow_id, episode_id=info.first_execution_run_id,
                                    currency_exponent=setup.currency_exponent, strategy=strategy,
                                    history_revision=setup.history_revision)
        if setup.opening_recorded:  # written by the activity: the rest of the effects stay
            step.effects = [effect for effect in step.effects if not isinstance(effect, Record)]
        self._take(step)

    def _case_policy(self) -> CollectionPolicy:
        case_core = self._require_core()
        strategy = case_core.strategy
        return worker_policy(case_core.policy_version, case_core.policy_digest, strategy.treatment if strategy else None)

    # -- a ladder step -----------------------------------------------------------------------

    async def _take_step(self, due: Due) -> None:
        """Ask the compliance gate about ``due``'s step and run what it allows (contacts in one
        activity, hand-offs as children), or keep the deferral it asks for."""
        case_core = self._require_core()
        profile = await self._load_profile(due)
        self._task_queues = profile.task_queues
        step = self._step()
        answer = core.gate(case_core, step, due, profile)
        if answer.deferred_until is not None:
            core.defer(case_core, step, due, answer.decisions, answer.deferred_until)
            self._take(step)
            return
        core.record_decisions(case_core, step, due, answer.decisions)
        self._take(step)
        decisions = answer.decisions
        results: list[ActionResult | None] = [None] * len(decisions)
        contacts = []
        for index, decision in enumerate(decisions):
            if decision.run_action is None:
                results[index] = core.not_run(decision)
            elif decision.run_action in core.HAND_OFF_KINDS:
                results[index] = await self._start_hand_off(due, decision)
            else:
                contacts.append((index, core.contact_request(case_core, step, due, decision.run_action, decision), decision))
        if contacts:
            ran = await self._run_contacts(due, [request for _, request, _ in contacts])
            for (index, _, decision), result in zip(contacts, ran):
                if decision.decision == "rerouted":
                    note = f"rerouted from {decision.action} ({decision.rule_id})"
                    result.detail = f"{note}; {result.detail}" if result.detail else note
                results[index] = result
        step = self._step()
        core.step_taken(case_core, step, due, decisions, [r for r in results if r is not None])
        self._take(step)

    async def _load_profile(self, due: Due) -> Any:
        """The borrower's contact profile for the gate (a local activity). Revision 2: the records
        that waited for this step are written by the same activity; if the database refuses one
        for good, that is reported (``bookkeeping_failed``) and the profile is asked for alone."""
        case_core = self._require_core()
        records = self._take_records() if case_core.history_revision >= 2 else None
        request = ProfileRequest(borrower_id=case_core.borrower_id, loan_id=case_core.loan_id, as_of=workflow.now(),
                                 records=records)
        summary = f"DPD {due.days_past_due} {due.position.step.name}: the borrower's contact preferences and call log"  # type: ignore[union-attr]
        try:
            return await workflow.execute_local_activity_method(
                CollectionActivities.load_contact_profile, request, start_to_close_timeout=BOOKKEEPING_TIMEOUT,
                retry_policy=BOOKKEEPING_RETRY, summary=summary)
        except ActivityError as err:
            if records is None:
                raise
            self._bookkeeping_failed(err)
        return await workflow.execute_local_activity_method(
            CollectionActivities.load_contact_profile, request.model_copy(update={"records": None}),
            start_to_close_timeout=BOOKKEEPING_TIMEOUT, retry_policy=BOOKKEEPING_RETRY, summary=summary)

    async def _run_contacts(self, due: Due, requests: list) -> list[ActionResult]:
        """Run the step's contacts in one activity, with the records written so far. A regular
        activity, not a local one: sends to providers retry for many minutes, and operators see
        the step and its channels as the activity's summary in the Temporal UI. Contacts on a
        rate-limited channel (the profile's ``task_queues``) run in an activity of their own on
        that channel's queue, at the same time as the rest; results come back in ``requests`` order."""
        if not requests:
            records = self._take_records()
            return await self._contacts_activity(due, [], records, None) if records else []
        groups = core.contact_groups(requests, self._task_queues)
        records = self._take_records()  # with the first group: written before anything is sent
        runs = [self._contacts_activity(due, [requests[i] for i in indexes], records if n == 0 else None, queue)
                for n, (queue, indexes) in enumerate(groups)]
        ran = [await runs[0]] if len(runs) == 1 else await asyncio.gather(*runs)
        results: list[ActionResult | None] = [None] * len(requests)
        for (_, indexes), group_results in zip(groups, ran):
            for index, result in zip(indexes, group_results):
                results[index] = result
        return [result for result in results if result is not None]

    async def _contacts_activity(self, due: Due, requests: list, records: Any, task_queue: str | None) -> list[ActionResult]:
        labels = ", ".join(ACTIONS[r.action].label for r in requests) or "records"
        return await workflow.execute_activity_method(
            CollectionActivities.run_step_contacts,
            ContactBatch(requests=requests, records=records, fallback_action=self._policy_now().delivery.fallback_action,
                         max_attempts=CONTACT_ATTEMPTS,
                         defer_when_window_closes=core.defer_when_window_closes(
                             self._require_core(), self._step(), due.position.step.name)),  # type: ignore[union-attr]
            task_queue=task_queue,
            start_to_close_timeout=CONTACT_TIMEOUT, heartbeat_timeout=CONTACT_HEARTBEAT, retry_policy=CONTACT_RETRY,
            summary=f"DPD {due.days_past_due} {due.position.step.name}: {labels}",  # type: ignore[union-attr]
        )

    async def _start_hand_off(self, due: Due, decision: Any) -> ActionResult:
        """Start the placement or legal-referral child (abandoned on continue-as-new: the case
        signals it by id when it ends)."""
        case_core = self._require_core()
        step = self._step()
        request = core.contact_request(case_core, step, due, decision.run_action, decision)
        child_type, child_id, hand_off = core.hand_off_request(case_core, step, due, request)
        label = ACTIONS[decision.run_action].label
        try:
            self._child_handles[child_id] = await workflow.start_child_workflow(
                child_type, hand_off, id=child_id, parent_close_policy=ParentClosePolicy.ABANDON,
                static_summary=(f"DPD {due.days_past_due} {due.position.step.name}: {label} · loan {case_core.loan_id} · "  # type: ignore[union-attr]
                                f"{money(case_core, request.outstanding_minor)} outstanding"),
            )
        except WorkflowAlreadyStartedError:
            fallback = request.model_copy(update={"idempotency_key": f"{request.idempotency_key}:fallback",
                                                  "action": self._policy_now().delivery.fallback_action,
                                                  "failed_key": request.idempotency_key})
            await self._run_contacts(due, [fallback])
            return ActionResult(action=decision.run_action, status="failed", idempotency_key=request.idempotency_key,
                                detail=f"a hand-off workflow {child_id} already exists; manual review queued")
        result = core.hand_off_started(case_core, step, decision.run_action, child_id)
        self._take(step)
        return result

    async def _start_plan(self) -> None:
        case_core = self._require_core()
        active = case_core.plan
        assert active is not None
        active.started = True
        self._child_handles[active.plan_workflow_id] = await workflow.start_child_workflow(
            PLAN_WORKFLOW_TYPE, core.plan.plan_run(case_core, self._step()), id=active.plan_workflow_id,
            parent_close_policy=ParentClosePolicy.ABANDON,
            static_summary=(f"{active.kind} plan {active.plan_id} · loan {case_core.loan_id} · stage {case_core.stage} · "
                            f"{len(active.instalments)} instalment(s), {money(case_core, active.total_minor)}"),
        )

    # -- effects, timers, search attributes --------------------------------------------------

    def _step(self) -> Step:
        return Step(self._policy_now(), workflow.now())

    def _policy_now(self) -> CollectionPolicy:
        if self._policy is None:
            self._policy = self._case_policy()
        return self._policy

    def _take(self, step: Step) -> None:
        """Keep the effects a core transition asked for; the main loop performs them."""
        self._effects += step.effects
        self._woken = True

    def _apply_inbox(self) -> None:
        case_core = self._core
        if case_core is None:
            return  # still opening: applied once the case is open
        while self._inbox:
            step = self._step()
            core.apply_signal(case_core, step, self._inbox.pop(0))
            self._take(step)

    def _take_records(self) -> CaseRecords | None:
        """The records asked for so far, as one batch (the other effects stay queued)."""
        records = [e.event for e in self._effects if isinstance(e, Record)]
        if not records:
            return None
        self._effects = [e for e in self._effects if not isinstance(e, Record)]
        return core.case_records(self._require_core(), records)

    def _records_can_wait(self) -> bool:
        """Revision 2: when only records (and log lines and counts, done now) are asked for, they
        wait for the case's next activity: the step about to be taken, or the write before it
        sleeps (the main loop), instead of a local activity of their own."""
        case_core = self._core
        if case_core is None or case_core.history_revision < 2:
            return False
        if not all(isinstance(effect, (Record, Log, Count)) for effect in self._effects):
            return False
        _log_and_count(self._effects)
        self._effects = [effect for effect in self._effects if isinstance(effect, Record)]
        return True

    async def _perform_effects(self) -> None:
        """Write the records (one local activity), log, count, and signal the children, in order."""
        records = self._take_records()
        effects, self._effects = self._effects, []
        _log_and_count(effects)
        if records is not None:
            await self._write(records)
        for effect in effects:
            if isinstance(effect, SignalWorkflow):
                await self._signal_child(effect)
            elif isinstance(effect, ChildEnding) and effect.workflow_id not in self._children_ending:
                self._children_ending.append(effect.workflow_id)
        self._sync()

    async def _write(self, records: CaseRecords) -> None:
        try:
            await workflow.execute_local_activity_method(
                CollectionActivities.record_case_events, records, start_to_close_timeout=BOOKKEEPING_TIMEOUT,
                retry_policy=BOOKKEEPING_RETRY, summary="record " + ", ".join(sorted({e.kind for e in records.events})),
            )
        except ActivityError as err:
            self._bookkeeping_failed(err)

    def _bookkeeping_failed(self, err: ActivityError) -> None:
        """The database refused a batch of records for good: on the case's record, and logged."""
        step = self._step()
        core.bookkeeping_failed(self._require_core(), step, _failure_message(err))
        self._effects += [e for e in step.effects if not isinstance(e, Record)]

    async def _signal_child(self, effect: SignalWorkflow) -> None:
        if effect.ends_child and effect.workflow_id not in self._children_ending:
            self._children_ending.append(effect.workflow_id)
        try:
            await workflow.get_external_workflow_handle(effect.workflow_id).signal(effect.signal, effect.argument)
        except Exception as err:  # the child already ended (a placement's term ran out)
            self._children_closed.append(effect.workflow_id)
            workflow.logger.info("child.signal_not_delivered",
                                 extra={"child": effect.workflow_id, "signal": effect.signal, "reason": str(err)})

    def _sync(self) -> None:
        """Upsert the search attributes whose values changed; refresh the current details."""
        case_core = self._require_core()
        now = workflow.now()
        wanted = case_status.search_attribute_pairs(case_core, case_core.view(self._policy_now(), now))
        current = workflow.info().typed_search_attributes
        changed = [pair for pair in wanted if current.get(pair.key) != pair.value]
        if changed:
            workflow.upsert_search_attributes([pair.key.value_set(pair.value) for pair in changed])
        workflow.set_current_details(case_status.details(case_core, self._policy_now(), now, self._next_step))

    async def _sleep(self, until: Any, summary: str | None) -> None:
        """Wait for a message, or until ``until`` (one durable timer, kept across wake-ups while
        the instant it waits for stays the same)."""
        self._sync()
        self._woken = False
        woken = asyncio.ensure_future(workflow.wait_condition(self._has_work))
        if until is None:
            await woken
            return
        if self._timer is not None and self._timer[0] != until:
            self._timer[1].cancel()
            self._timer = None
        if self._timer is None:
            delay = until - workflow.now()
            if delay <= timedelta(0):
                woken.cancel()
                return
            self._timer = (until, asyncio.ensure_future(workflow.sleep(delay, summary=summary)))
        timer = self._timer[1]
        await workflow.wait([timer, woken], return_when=asyncio.FIRST_COMPLETED)
        if timer.done():
            self._timer = None
        if not woken.done():
            woken.cancel()

    def _has_work(self) -> bool:
        return bool(self._inbox) or self._woken or bool(self._effects)

    def _should_continue_as_new(self) -> bool:
        info = workflow.info()
        return info.is_continue_as_new_suggested() or info.get_current_history_length() >= MAX_HISTORY_EVENTS

    def _require_core(self) -> CaseCore:
        if self._core is None:
            raise ApplicationError("case state used before the case was opened", non_retryable=True)
        return self._core

    # -- the end -----------------------------------------------------------------------------

    async def _close(self) -> None:
        """The case ended: perform what ending asked for (recall, withdraw, close the plan), keep
        applying what still arrives (money is recorded, the rest refused on the record), and
        wait (bounded) until each child said it closed, so none outlives the case unreported."""
        if self._timer is not None:
            self._timer = None  # left to the server: completing drops it without an event
        self._apply_inbox()
        while self._effects:
            await self._perform_effects()
            self._apply_inbox()
        if self._children_ending:
            try:
                await workflow.wait_condition(self._children_ended, timeout=CHILD_CLOSE_WAIT,
                                              timeout_summary="waiting for the children to close")
            except asyncio.TimeoutError:
                workflow.logger.warning("children.not_confirmed", extra={"children": self._children_ending})
            if any(child not in self._child_handles for child in self._children_ending):
                await workflow.sleep(CHILD_COMPLETION_GRACE, summary="let the children complete")
        await workflow.wait_condition(workflow.all_handlers_finished)
        self._apply_inbox()
        while self._effects:
            await self._perform_effects()
            self._apply_inbox()

    def _children_ended(self) -> bool:
        for child in self._children_ending:
            handle = self._child_handles.get(child)
            if handle is not None:
                if not handle.done():
                    return False
            elif child not in self._children_closed:
                return False
        return True


def _log_and_count(effects: list[Any]) -> None:
    """Write the ``Log`` effects' lines and increment the ``Count`` effects' counters, in order."""
    for effect in effects:
        if isinstance(effect, Log):
            log = workflow.logger.warning if effect.level == "warning" else workflow.logger.info
            log(effect.name, extra=effect.fields)
        elif isinstance(effect, Count):
            metrics.count_in_workflow(effect.metric, **effect.labels)


def _failure_message(err: BaseException) -> str:
    """The innermost failure's message of an activity error (the rule or the provider's answer)."""
    cause: BaseException | None = err
    message = str(err)
    while cause is not None:
        if str(cause):
            message = str(cause)
        cause = cause.__cause__
    return message
