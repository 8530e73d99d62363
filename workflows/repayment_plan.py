"""RepaymentPlanWorkflow: the child workflow that watches a negotiated plan's instalments.

Started by ``LoanCollectionWorkflow`` when it accepts ``propose_plan``; id
``collection-<loan_id>-plan-<plan_id>``. The parent forwards every payment it applies
(``payment_applied``); each instalment is kept when the payments forwarded since the plan began
cover every instalment up to it by the end of its date plus the policy's grace. A missed
instalment breaks the plan: the child tells the parent (``plan_instalment_missed``) and ends.
All instalments paid: the child ends ``completed`` (the parent settles the case on the same
payment). Long plans continue as new every ``plans.instalments_per_run`` instalments.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from activities.collection_activities import CollectionActivities
    from collections_domain.rules import calendar
    from collections_domain.case.contract import PlanInstalmentMissed
    from collections_domain.case.children import PLAN_WORKFLOW_TYPE, ChildClosed, PlanPaymentForwarded, PlanResult, PlanRun
    from collections_domain.store.records import PlanInstalmentUpdate

RECORD_RETRY = RetryPolicy(initial_interval=timedelta(seconds=1), maximum_interval=timedelta(minutes=1))


@workflow.defn(name=PLAN_WORKFLOW_TYPE, sandboxed=False)
class RepaymentPlanWorkflow:
    """Watch a plan's instalments with durable timers; see the module docstring."""

    @workflow.init
    def __init__(self, run: PlanRun) -> None:
        self._run = run
        self._closed_reason: str | None = None

    @workflow.signal(name="payment_applied")
    def payment_applied(self, payment: PlanPaymentForwarded) -> None:
        """Count a payment the parent applied (once per ``payment_id``)."""
        if payment.payment_id in self._run.seen_payment_ids or payment.amount_minor <= 0:
            return
        self._run.seen_payment_ids.append(payment.payment_id)
        self._run.paid_toward_minor += payment.amount_minor

    @workflow.signal(name="close_plan")
    def close_plan(self, reason: str) -> None:
        """The case ended some other way (cured, stopped, ...): stop watching."""
        self._closed_reason = reason or "closed by the case"

    @workflow.query(name="status")
    def status(self) -> PlanRun:
        """The schedule, the payments counted so far and the next instalment watched."""
        return self._run

    @workflow.run
    async def run(self, run: PlanRun) -> PlanResult:
        """Watch instalments from ``run.next_seq`` until all are paid, one is missed, or closed."""
        plan = self._run
        watched_this_run = 0
        while plan.next_seq <= len(plan.instalments):
            if watched_this_run >= plan.instalments_per_run or workflow.info().is_continue_as_new_suggested():
                await workflow.wait_condition(workflow.all_handlers_finished)
                workflow.continue_as_new(plan)
            instalment = plan.instalments[plan.next_seq - 1]
            due_through = sum(i.amount_minor for i in plan.instalments[: plan.next_seq])
            deadline = plan.deadlines[plan.next_seq - 1]
            local_deadline = calendar.local_wall_time(deadline, plan.timezone)
            try:
                await workflow.wait_condition(
                    lambda: plan.paid_toward_minor >= due_through or self._closed_reason is not None,
                    timeout=max(deadline - workflow.now(), timedelta(0)),
                    timeout_summary=(
                        f"instalment {instalment.seq}: {instalment.amount_minor} {plan.currency} due "
                        f"{instalment.due_date}, missed at {calendar.local_date(deadline, plan.timezone)} "
                        f"{local_deadline:%H:%M} {plan.timezone}"
                    ),
                )
            except asyncio.TimeoutError:
                pass
            if self._closed_reason is not None:
                return await self._closed(
                    PlanResult(
                        plan_id=plan.plan_id, status="closed", paid_toward_minor=plan.paid_toward_minor, reason=self._closed_reason
                    )
                )
            paid = plan.paid_toward_minor >= due_through
            await workflow.execute_activity_method(
                CollectionActivities.record_plan_instalment,
                PlanInstalmentUpdate(
                    plan_id=plan.plan_id,
                    loan_id=plan.loan_id,
                    seq=instalment.seq,
                    status="paid" if paid else "missed",
                    paid_toward_minor=plan.paid_toward_minor,
                ),
                start_to_close_timeout=timedelta(seconds=30),
                retry_policy=RECORD_RETRY,
                summary=f"instalment {instalment.seq} {'paid' if paid else 'missed'}",
            )
            if not paid:
                try:
                    await workflow.get_external_workflow_handle(plan.parent_workflow_id).signal(
                        "plan_instalment_missed", PlanInstalmentMissed(plan_id=plan.plan_id, seq=instalment.seq)
                    )
                except Exception as err:  # the case already ended: nothing to break
                    workflow.logger.info("plan.parent_gone", extra={"reason": str(err)})
                return PlanResult(
                    plan_id=plan.plan_id,
                    status="broken",
                    paid_toward_minor=plan.paid_toward_minor,
                    missed_seq=instalment.seq,
                )
            plan.next_seq += 1
            watched_this_run += 1
        return await self._closed(
            PlanResult(plan_id=plan.plan_id, status="completed", paid_toward_minor=plan.paid_toward_minor)
        )

    async def _closed(self, result: PlanResult) -> PlanResult:
        """Tell the case this plan is closing (it waits for that before it completes)."""
        await workflow.wait_condition(workflow.all_handlers_finished)
        try:
            await workflow.get_external_workflow_handle(self._run.parent_workflow_id).signal(
                "child_closed",
                ChildClosed(workflow_id=workflow.info().workflow_id, status=result.status, reason=result.reason),
            )
        except Exception as err:  # the case already ended
            workflow.logger.info("plan.parent_gone", extra={"reason": str(err)})
        return result
