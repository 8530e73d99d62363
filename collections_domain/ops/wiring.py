"""Build a worker: the workflows, the activities with their clients, and the thread pool."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor

from temporalio.client import Client
from temporalio.worker import Worker

from activities.collection_activities import CollectionActivities
from activities.delivery import backend_from_settings
from collections_domain.store.db import make_engine
from collections_domain.store.assignments import check_models
from collections_domain.ops.observability import LogContextInterceptor
from collections_domain.rules.policy import PolicyRegistry, set_worker_policies
from collections_domain.ops.settings import Settings, contact_task_queue
from workflows.delinquency_scan import DelinquencyScanWorkflow
from workflows.hand_offs import AgencyPlacementWorkflow, LegalReferralWorkflow
from workflows.kpi_report import KpiReportWorkflow
from workflows.loan_collection import LoanCollectionWorkflow
from workflows.repayment_plan import RepaymentPlanWorkflow

#: Every workflow a collections worker runs: the case and its children.
WORKFLOWS = [LoanCollectionWorkflow, RepaymentPlanWorkflow, AgencyPlacementWorkflow, LegalReferralWorkflow,
             DelinquencyScanWorkflow, KpiReportWorkflow]


def load_policies(settings: Settings) -> PolicyRegistry:
    """The policies of ``settings`` (``COLLECTIONS_POLICY`` and the packaged files), each checked,
    with the propensity model every one that scores names.

    Raises:
        PolicyError: a policy file is invalid, or names a model this package lacks.
    """
    policies = PolicyRegistry.from_settings(settings.collections_policy)
    check_models(policies)
    return policies


def build_activities(settings: Settings, policies: PolicyRegistry | None = None) -> CollectionActivities:
    """The activities object for ``settings`` (database, delivery back-end, policies:
    ``load_policies`` unless given).

    Raises:
        PolicyError: the policy file is invalid. ValueError: the delivery settings are incomplete.
    """
    policies = policies or load_policies(settings)
    return CollectionActivities(
        engine=make_engine(settings.resolved_database_url),
        delivery=backend_from_settings(settings),
        policies=policies,
        reports_dir=settings.data_dir / "reports",
    )


def activity_list(activities: CollectionActivities) -> list:
    """Every activity method, bound to ``activities``."""
    return [
        activities.open_case,
        activities.hold_unapplied,
        activities.run_step_contacts,
        activities.resolve_case_policy,
        activities.record_case_events,
        activities.send_sms,
        activities.send_email,
        activities.create_agent_task,
        activities.issue_demand_letter,
        activities.place_with_agency,
        activities.file_legal_referral,
        activities.queue_manual_review,
        activities.record_plan_instalment,
        activities.record_hand_off_event,
        activities.recall_placement,
        activities.withdraw_legal_referral,
        activities.load_contact_profile,
        activities.scan_loans,
        activities.issue_notice_letter,
        activities.produce_kpi_report,
    ]


#: The share of a channel's ``CONTACT_RATE_LIMITS`` its task queue is dispatched at (above).
QUEUE_RATE_SHARE = 0.5


def build_worker(
    client: Client,
    settings: Settings,
    activities: CollectionActivities | None = None,
    *,
    max_activity_threads: int = 32,
    max_cached_workflows: int = 1000,
) -> "Worker | WorkerGroup":
    """A worker on ``settings.temporal_task_queue`` running the collections workflow (with
    ``CONTACT_RATE_LIMITS``, a ``WorkerGroup``: that worker and one per rate-limited channel).

    ``max_cached_workflows`` should exceed the number of cases this worker keeps busy at once:
    an evicted case is replayed from its history on its next activation.
    """
    activities = activities or build_activities(settings)
    # The delinquency scan starts and signals cases through this worker's client.
    activities.client = activities.client or client
    activities.task_queue = activities.task_queue or settings.temporal_task_queue
    # Workflow code reads each case's policy from here by version and digest (``worker_policy``).
    set_worker_policies(activities.policies)
    executor = ThreadPoolExecutor(max_workers=max_activity_threads)
    # Each activity's log lines carry its loan id, workflow id, activity type and attempt.
    interceptors = [LogContextInterceptor()]
    worker = Worker(
        client,
        task_queue=settings.temporal_task_queue,
        workflows=WORKFLOWS,
        activities=activity_list(activities),
        activity_executor=executor,
        max_concurrent_activities=max_activity_threads,
        max_concurrent_local_activities=max_activity_threads,
        max_cached_workflows=max_cached_workflows,
        interceptors=interceptors,
    )
    limits = settings.rate_limits
    if not limits:
        activities.contact_task_queues = {}
        return worker
    # One contacts queue per rate-limited channel; the server dispatches each to all the workers
    # polling it together, so the limit holds however many workers run. The server's token bucket
    # holds a second of tokens and starts full (after any lull too): at half the provider's limit,
    # a full bucket plus a second's refill stays within the limit in every sliding second.
    activities.contact_task_queues = {channel: contact_task_queue(settings.temporal_task_queue, channel)
                                      for channel in limits}
    contacts = [
        Worker(client, task_queue=queue, activities=[activities.run_step_contacts], activity_executor=executor,
               max_concurrent_activities=max_activity_threads,
               max_task_queue_activities_per_second=limits[channel] * QUEUE_RATE_SHARE, interceptors=interceptors)
        for channel, queue in activities.contact_task_queues.items()
    ]
    return WorkerGroup([worker, *contacts])


class WorkerGroup:
    """The case worker and the contacts workers of the rate-limited channels (``build_worker``
    with ``CONTACT_RATE_LIMITS``), run and shut down together; used like one ``Worker``."""

    def __init__(self, workers: list[Worker]):
        self.workers = workers

    @property
    def task_queue(self) -> str:
        """The cases' task queue (the first worker's)."""
        return self.workers[0].task_queue

    async def run(self) -> None:
        """Run every worker until one stops (then the others are shut down); re-raises its error."""
        tasks = [asyncio.ensure_future(worker.run()) for worker in self.workers]
        done, pending = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        for worker, task in zip(self.workers, tasks):
            if task in pending:
                await worker.shutdown()
        await asyncio.gather(*pending, return_exceptions=True)
        for task in done:
            task.result()

    async def shutdown(self) -> None:
        """Shut every worker down (in-flight activities finish first, as ``Worker.shutdown``)."""
        await asyncio.gather(*(worker.shutdown() for worker in self.workers))

    async def __aenter__(self) -> "WorkerGroup":
        for worker in self.workers:
            await worker.__aenter__()
        return self

    async def __aexit__(self, *exc_info) -> None:
        for worker in reversed(self.workers):
            await worker.__aexit__(*exc_info)
