"""``bench.paths.billable_actions``: Temporal Cloud's billing rules counted from a history (a
history built here event by event, and the naive ladder's run on the time-skipping server)."""

import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, timedelta

from temporalio.api.common.v1 import (
    Payload,
    Payloads,
    SearchAttributes,
    WorkflowExecution,
)
from temporalio.api.enums.v1 import EventType as E
from temporalio.api.history.v1 import (
    ActivityTaskStartedEventAttributes,
    HistoryEvent,
    MarkerRecordedEventAttributes,
    SignalExternalWorkflowExecutionInitiatedEventAttributes,
    UpsertWorkflowSearchAttributesEventAttributes,
    WorkflowExecutionSignaledEventAttributes,
)
from temporalio.client import WorkflowHistory
from temporalio.worker import Worker

from bench import naive
from bench.paths import billable_actions, history_bytes, signals_sent

CASE = "collection-L-1"
CHILD = "collection-L-1-plan-P-1"


def event(event_type: int, **attributes) -> HistoryEvent:
    return HistoryEvent(event_type=event_type, **attributes)


def upsert(*names: str) -> HistoryEvent:
    fields = {name: Payload(data=b'"x"') for name in names}
    return event(E.EVENT_TYPE_UPSERT_WORKFLOW_SEARCH_ATTRIBUTES,
                 upsert_workflow_search_attributes_event_attributes=UpsertWorkflowSearchAttributesEventAttributes(
                     search_attributes=SearchAttributes(indexed_fields=fields)))


def marker(name: str, task_completed: int = 0) -> HistoryEvent:
    return event(E.EVENT_TYPE_MARKER_RECORDED, marker_recorded_event_attributes=MarkerRecordedEventAttributes(
        marker_name=name, workflow_task_completed_event_id=task_completed,
        details={"data": Payloads(payloads=[Payload(data=b'{"activity_type": "open_case"}')])}))


def signaled(name: str, from_workflow: str = "") -> HistoryEvent:
    return event(E.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED,
                 workflow_execution_signaled_event_attributes=WorkflowExecutionSignaledEventAttributes(
                     signal_name=name, external_workflow_execution=WorkflowExecution(workflow_id=from_workflow)))


def task(completed_id: int) -> list[HistoryEvent]:
    return [event(E.EVENT_TYPE_WORKFLOW_TASK_SCHEDULED), event(E.EVENT_TYPE_WORKFLOW_TASK_STARTED),
            event(E.EVENT_TYPE_WORKFLOW_TASK_COMPLETED, event_id=completed_id)]


def case_history() -> list[HistoryEvent]:
    """A case's history: each rule once or more, with the events Cloud does not bill."""
    return [
        event(E.EVENT_TYPE_WORKFLOW_EXECUTION_STARTED),
        *task(4),
        marker("core_patch"),                      # a patch marker: not billed...
        upsert("TemporalChangeVersion"),           # ...nor the upsert it writes
        marker("core_local_activity", 4),          # two local activities in one workflow task: 1 action
        marker("core_local_activity", 4),
        event(E.EVENT_TYPE_TIMER_STARTED),
        event(E.EVENT_TYPE_TIMER_FIRED),
        *task(12),
        marker("core_local_activity"),             # no task id recorded: the task completed before it (12)
        marker("core_local_activity"),
        event(E.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED),
        event(E.EVENT_TYPE_ACTIVITY_TASK_STARTED,  # third attempt: 2 retries
              activity_task_started_event_attributes=ActivityTaskStartedEventAttributes(attempt=3)),
        event(E.EVENT_TYPE_ACTIVITY_TASK_COMPLETED),
        *task(20),
        upsert("CollectionStage"),
        upsert("CollectionStage", "TemporalChangeVersion"),  # anything besides the change version: billed
        signaled("payment_received"),                         # from a client
        signaled("child_closed", from_workflow=CHILD),        # from a workflow: billed at the sender
        signaled("plan_instalment_missed"),                   # from a workflow on a server that does not say so
        event(E.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED),
        event(E.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_COMPLETED),
        event(E.EVENT_TYPE_START_CHILD_WORKFLOW_EXECUTION_INITIATED),
        event(E.EVENT_TYPE_CHILD_WORKFLOW_EXECUTION_STARTED),
        event(E.EVENT_TYPE_SIGNAL_EXTERNAL_WORKFLOW_EXECUTION_INITIATED,
              signal_external_workflow_execution_initiated_event_attributes=SignalExternalWorkflowExecutionInitiatedEventAttributes(
                  signal_name="payment_applied", workflow_execution=WorkflowExecution(workflow_id=CHILD))),
        event(E.EVENT_TYPE_EXTERNAL_WORKFLOW_EXECUTION_SIGNALED),
        event(E.EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED),
    ]


def test_each_rule_counts_what_cloud_bills():
    actions = billable_actions(WorkflowHistory(CASE, case_history()), signals_from_workflows={"plan_instalment_missed": 1})
    assert actions == {
        "workflow_started": 1,
        "local_activities": 2,  # four markers in two workflow tasks
        "timer": 1,
        "activity": 1,
        "activity_retry": 2,
        "search_attribute_upsert": 2,  # not the TemporalChangeVersion-only one
        "signal_received": 1,  # not the two sent by workflows
        "update": 1,
        "child_workflow_started": 1,
        "signal_sent": 1,
    }


def test_a_signal_from_a_workflow_is_counted_once_per_signal_sent():
    events = case_history()
    # Without being told, a server that does not record the sender bills the signal here too.
    assert billable_actions(events)["signal_received"] == 2
    # Only as many as were sent are discounted: a second plan_instalment_missed is a client's.
    twice = [*events, signaled("plan_instalment_missed")]
    assert billable_actions(twice, signals_from_workflows={"plan_instalment_missed": 1})["signal_received"] == 2
    assert signals_sent([events]) == {CHILD: {"payment_applied": 1}}


def test_local_activities_of_one_task_are_one_action_and_of_separate_tasks_one_each():
    three_tasks = [event(E.EVENT_TYPE_WORKFLOW_EXECUTION_STARTED)]
    for completed in (4, 8, 12):
        three_tasks += [*task(completed), marker("core_local_activity")]
    assert billable_actions(three_tasks)["local_activities"] == 3
    one_task = [event(E.EVENT_TYPE_WORKFLOW_EXECUTION_STARTED), *task(4)] + [marker("core_local_activity")] * 5
    assert billable_actions(one_task)["local_activities"] == 1


def test_history_bytes_is_the_events_protobuf_size():
    events = case_history()
    assert history_bytes(events) == sum(len(e.SerializeToString()) for e in events) > 0


async def test_the_naive_ladder_without_payment_bills_start_timers_and_activities(time_env):
    """The naive ladder's real history: one start, a timer and an activity per rung (DPD 3, 7, 30, 180)."""
    queue = f"naive-{uuid.uuid4().hex[:8]}"
    now = (await time_env.get_current_time()).astimezone(UTC)
    case = naive.NaiveCase(loan_id="L-1", due_date=str((now - timedelta(days=1)).date()), amount_due_minor=300_000,
                           utc_offset_minutes=0)
    async with Worker(time_env.client, task_queue=queue, workflows=[naive.NaiveLadderWorkflow],
                      activities=naive.ACTIVITIES, activity_executor=ThreadPoolExecutor(2)):
        handle = await time_env.client.start_workflow(naive.NaiveLadderWorkflow.run, case, id=queue, task_queue=queue)
        assert await handle.result() == "written_off"
        history = await handle.fetch_history()
    assert billable_actions(history) == {"workflow_started": 1, "timer": 4, "activity": 4}
    assert len(history.events) == 49
