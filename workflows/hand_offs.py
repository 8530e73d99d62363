"""Child workflows for the hand-offs of the DPD 30 rung: agency placements and legal referrals.

``AgencyPlacementWorkflow`` (id ``collection-<loan_id>-placement``) places the case with the
agency, then waits for signal ``recall`` (the parent sends it when the case is cured, settled,
stopped or written off) or for the policy's ``placement.term_days``; either way it recalls the
placement through an activity.

``LegalReferralWorkflow`` (id ``collection-<loan_id>-legal``) files the referral, records the
legal track's states from signal ``legal_status`` (lawyer's letter sent, suit filed, judgment,
settled; never backwards) and ends at ``settled`` or at signal ``withdraw``, which withdraws
the referral through an activity.

Both record every state in ``hand_off_events`` and reject (and record) bad signals.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    from pydantic import ValidationError

    from activities.collection_activities import CollectionActivities
    from collections_domain.rules import calendar
    from collections_domain.case.contract import LegalStatusChanged, describe_errors
    from collections_domain.case.children import (
        ChildClosed,
        LEGAL_STATES,
        LEGAL_WORKFLOW_TYPE,
        PLACEMENT_WORKFLOW_TYPE,
        HandOffResult,
        LegalStatusUpdate,
    )
    from collections_domain.store.records import CaseRecords, HandOffEvent, HandOffRequest, SignalRejected

#: Patch id of the change that passes judgments and settlements on to the case (the loan ledger).
PATCH_LEGAL_MONEY = "legal-money-to-case"
#: Placing and filing: retried without a bound on attempts; the activity ends with a non-retryable
#: ``DeliveryFailed`` once the provider's tries ran out (database faults are not counted).
CONTACT_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=5),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(minutes=10),
    non_retryable_error_types=["DeliveryRejected", "NoContactDetails", "DeliveryFailed"],
)
RECORD_RETRY = RetryPolicy(initial_interval=timedelta(seconds=1), maximum_interval=timedelta(minutes=1))
TIMEOUT = timedelta(seconds=60)
#: Placing and filing heartbeat before they send: a killed worker's hand-off is retried after this.
HEARTBEAT = timedelta(seconds=30)


def _event(hand_off: HandOffRequest, kind: str, status: str, reason: str | None = None, **extra: Any) -> HandOffEvent:
    request = hand_off.request
    info = workflow.info()
    return HandOffEvent(
        key=f"{info.workflow_id}:{status}",
        parent_workflow_id=hand_off.parent_workflow_id,
        child_workflow_id=info.workflow_id,
        loan_id=request.loan_id,
        hand_off=kind,  # type: ignore[arg-type]
        status=status,
        reason=reason,
        jurisdiction=request.jurisdiction,
        currency=request.currency,
        amount_minor=request.outstanding_minor,
        **extra,
    )


async def _tell_case(hand_off: HandOffRequest, result: HandOffResult) -> HandOffResult:
    """Signal ``child_closed`` to the case (it waits for it before completing), then return."""
    await workflow.wait_condition(workflow.all_handlers_finished)
    try:
        await workflow.get_external_workflow_handle(hand_off.parent_workflow_id).signal(
            "child_closed", ChildClosed(workflow_id=result.child_workflow_id, status=result.status, reason=result.reason)
        )
    except Exception as err:  # the case already ended
        workflow.logger.info("hand_off.case_gone", extra={"reason": str(err)})
    return result


async def _hand_off(hand_off: HandOffRequest, method: Any, label: str) -> str | None:
    """Run the placing/filing activity; on a permanent failure queue a manual review and return
    the reason (the hand-off then ends ``failed``)."""
    request = hand_off.request
    try:
        await workflow.execute_activity_method(
            method, request, start_to_close_timeout=TIMEOUT, heartbeat_timeout=HEARTBEAT, retry_policy=CONTACT_RETRY,
            summary=label
        )
        return None
    except ActivityError as err:
        reason = str(err.cause or err)
    await workflow.execute_activity_method(
        CollectionActivities.queue_manual_review,
        request.model_copy(
            update={
                "idempotency_key": f"{request.idempotency_key}:fallback",
                "action": "manual_review",
                "failed_key": request.idempotency_key,
            }
        ),
        start_to_close_timeout=TIMEOUT,
        retry_policy=RECORD_RETRY,
        summary=f"{label} failed: manual review queued",
    )
    return reason


@workflow.defn(name=PLACEMENT_WORKFLOW_TYPE, sandboxed=False)
class AgencyPlacementWorkflow:
    """A placement with a collection agency, from placing to recall (module docstring)."""

    @workflow.init
    def __init__(self, hand_off: HandOffRequest) -> None:
        self._hand_off = hand_off
        self._recall_reason: str | None = None
        self._states: list[str] = []

    @workflow.signal(name="recall")
    def recall(self, reason: str) -> None:
        """Recall the placement (the case was cured, settled, stopped or written off)."""
        if self._recall_reason is None:
            self._recall_reason = str(reason or "recalled by the case")[:200]

    @workflow.query(name="status")
    def status(self) -> HandOffResult:
        """The states so far (``placed``, ``recalled``)."""
        return HandOffResult(child_workflow_id=workflow.info().workflow_id, status=(self._states or ["placing"])[-1], states=self._states)

    @workflow.run
    async def run(self, hand_off: HandOffRequest) -> HandOffResult:
        """Place, wait for a recall or the term's end, recall."""
        failed = await _hand_off(hand_off, CollectionActivities.place_with_agency, "place with agency")
        if failed is not None:
            return HandOffResult(child_workflow_id=workflow.info().workflow_id, status="failed", reason=failed)
        self._states.append("placed")
        await workflow.execute_activity_method(
            CollectionActivities.record_hand_off_event,
            _event(hand_off, "placement", "placed"),
            start_to_close_timeout=TIMEOUT,
            retry_policy=RECORD_RETRY,
            summary="record placed",
        )
        term = timedelta(days=hand_off.term_days or 90)
        try:
            await workflow.wait_condition(
                lambda: self._recall_reason is not None,
                timeout=term,
                timeout_summary=f"placement term of {term.days} days",
            )
        except asyncio.TimeoutError:
            self._recall_reason = f"placement term of {term.days} days ended"
        reason = self._recall_reason or "recalled"
        await workflow.execute_activity_method(
            CollectionActivities.recall_placement,
            _event(hand_off, "placement", "recalled", reason),
            start_to_close_timeout=TIMEOUT,
            retry_policy=RetryPolicy(initial_interval=timedelta(seconds=5), maximum_interval=timedelta(minutes=10)),
            summary=f"recall placement: {reason}",
        )
        self._states.append("recalled")
        return await _tell_case(
            hand_off,
            HandOffResult(child_workflow_id=workflow.info().workflow_id, status="recalled", reason=reason, states=self._states),
        )


@workflow.defn(name=LEGAL_WORKFLOW_TYPE, sandboxed=False)
class LegalReferralWorkflow:
    """A referral to the legal team and the legal track's states (module docstring)."""

    @workflow.init
    def __init__(self, hand_off: HandOffRequest) -> None:
        self._hand_off = hand_off
        self._inbox: list[Any] = []
        self._withdraw_reason: str | None = None
        self._states: list[str] = []
        self._seen_event_ids: list[str] = []
        self._rejected: list[str] = []
        self._last_date: Any = None

    @workflow.signal(name="legal_status")
    def legal_status(self, update: Any = None) -> None:
        """Queue a legal-track state (``LegalStatusUpdate``); applied in order, or rejected."""
        self._inbox.append(update)

    @workflow.signal(name="withdraw")
    def withdraw(self, reason: str) -> None:
        """Withdraw the referral (the case was cured, settled, stopped or written off)."""
        if self._withdraw_reason is None:
            self._withdraw_reason = str(reason or "withdrawn by the case")[:200]

    @workflow.query(name="status")
    def status(self) -> HandOffResult:
        """The legal track so far, and the rejected signals with their reasons."""
        return HandOffResult(
            child_workflow_id=workflow.info().workflow_id,
            status=(self._states or ["filing"])[-1],
            states=self._states,
            rejected=self._rejected,
        )

    @workflow.run
    async def run(self, hand_off: HandOffRequest) -> HandOffResult:
        """File, record states until ``settled`` or a withdrawal."""
        failed = await _hand_off(hand_off, CollectionActivities.file_legal_referral, "file legal referral")
        if failed is not None:
            return HandOffResult(child_workflow_id=workflow.info().workflow_id, status="failed", reason=failed)
        await self._record("filed", None, None)
        while True:
            await workflow.wait_condition(lambda: bool(self._inbox) or self._withdraw_reason is not None)
            while self._inbox:
                await self._apply(self._inbox.pop(0))
            if self._states[-1] == "settled":
                break
            if self._withdraw_reason is not None:
                await workflow.execute_activity_method(
                    CollectionActivities.withdraw_legal_referral,
                    _event(hand_off, "legal_referral", "withdrawn", self._withdraw_reason),
                    start_to_close_timeout=TIMEOUT,
                    retry_policy=RetryPolicy(initial_interval=timedelta(seconds=5), maximum_interval=timedelta(minutes=10)),
                    summary=f"withdraw legal referral: {self._withdraw_reason}",
                )
                self._states.append("withdrawn")
                break
            if workflow.info().is_continue_as_new_suggested():
                break  # a legal track has a handful of states; never reached in practice
        return await _tell_case(
            hand_off,
            HandOffResult(
                child_workflow_id=workflow.info().workflow_id,
                status=self._states[-1],
                reason=self._withdraw_reason,
                states=self._states,
                rejected=self._rejected,
            ),
        )

    async def _apply(self, payload: Any) -> None:
        try:
            update = LegalStatusUpdate.model_validate(payload)
        except ValidationError as err:
            await self._reject(payload, "; ".join(describe_errors(err)))
            return
        if update.event_id in self._seen_event_ids:
            await self._reject(payload, "event_id: duplicate, this legal status was already recorded")
            return
        current = LEGAL_STATES.index(self._states[-1])
        wanted = LEGAL_STATES.index(update.status)
        if wanted <= current:
            await self._reject(
                payload, f"status: the legal track is at {self._states[-1]}; {update.status} cannot follow it"
            )
            return
        if update.occurred_on is not None:
            today = calendar.local_date(workflow.now(), self._hand_off.timezone)
            if update.occurred_on > today:
                await self._reject(payload, f"occurred_on: must not be after today ({today}, borrower's calendar)")
                return
            if self._last_date is not None and update.occurred_on < self._last_date:
                await self._reject(
                    payload, f"occurred_on: must not be before the previous state's date ({self._last_date})"
                )
                return
            self._last_date = update.occurred_on
        self._seen_event_ids.append(update.event_id)
        await self._record(update.status, None, update.occurred_on)
        if update.status in ("judgment", "settled") and workflow.patched(PATCH_LEGAL_MONEY):
            await self._tell_case_of_money(update)

    async def _tell_case_of_money(self, update: LegalStatusUpdate) -> None:
        """Pass a judgment (award, court costs) or a settlement on to the case's ledger."""
        try:
            await workflow.get_external_workflow_handle(self._hand_off.parent_workflow_id).signal(
                "legal_status_changed",
                LegalStatusChanged(event_id=update.event_id, status=update.status, occurred_on=update.occurred_on,
                                   awarded_minor=update.awarded_minor, court_costs_minor=update.court_costs_minor),
            )
        except Exception as err:  # the case already ended
            workflow.logger.info("legal.case_gone", extra={"reason": str(err)})

    async def _record(self, status: str, reason: str | None, occurred_on: Any) -> None:
        self._states.append(status)
        await workflow.execute_activity_method(
            CollectionActivities.record_hand_off_event,
            _event(self._hand_off, "legal_referral", status, reason, occurred_on=occurred_on),
            start_to_close_timeout=TIMEOUT,
            retry_policy=RECORD_RETRY,
            summary=f"legal track: {status.replace('_', ' ')}",
        )

    async def _reject(self, payload: Any, reason: str) -> None:
        raw = payload if isinstance(payload, dict) else {}
        event_id = str(raw.get("event_id", ""))[:64]
        self._rejected.append(f"{event_id or '(no id)'}: {reason}")
        request = self._hand_off.request
        info = workflow.info()
        await workflow.execute_local_activity_method(
            CollectionActivities.record_case_events,
            CaseRecords(
                workflow_id=info.workflow_id,
                loan_id=request.loan_id,
                oldest_due_date=request.oldest_due_date,
                events=[
                    SignalRejected(
                        key=f"{info.workflow_id}:rejected:{len(self._rejected)}",
                        at=workflow.now(),
                        signal_kind="legal_status",
                        signal_id=event_id,
                        reason=reason,
                    )
                ],
            ),
            start_to_close_timeout=timedelta(seconds=30),
            retry_policy=RECORD_RETRY,
            summary="record rejected legal_status",
        )
        workflow.logger.info("legal_status.rejected", extra={"event_id": event_id, "reason": reason})
