"""Providers' rate limits (``CONTACT_RATE_LIMITS``): a step's contacts on a limited channel run on
that channel's task queue, which the server dispatches at the channel's rate; the rest stay on
the case's queue. The routing is kept in the history (with the step's contact profile), so a
case replays the queues it ran on whatever the setting says now."""

from datetime import time, timedelta

from temporalio.api.enums.v1 import EventType
from temporalio.worker import Replayer

from collections_domain.case.contract import CaseStatus
from collections_domain.ops.settings import contact_task_queue
from collections_domain.ops.wiring import WORKFLOWS, WorkerGroup, build_worker
from collections_domain.rules import calendar
from tests.helpers import advance_to, contact_rows, open_case, server_now
from tests.keys import TEST_CONVERTER

TZ = "Asia/Shanghai"


def contact_queues(history) -> list[str]:
    return [e.activity_task_scheduled_event_attributes.task_queue.name for e in history.events
            if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED
            and e.activity_task_scheduled_event_attributes.activity_type.name == "run_step_contacts"]


async def test_a_limited_channel_runs_on_its_own_queue_and_the_case_replays_without_the_setting(time_env, harness_factory):
    h = harness_factory(time_env)
    h.task_queue += "-limited"  # a queue of its own: the harness's worker holds the first one
    h.settings = h.settings.model_copy(update={"contact_rate_limits": "sms=5", "temporal_task_queue": h.task_queue})
    h.worker = build_worker(h.client, h.settings, h.activities)
    assert isinstance(h.worker, WorkerGroup)
    async with h.worker:
        due = calendar.local_date(await server_now(time_env), TZ) - timedelta(days=1)
        case, handle = await open_case(h, due=due, amount_minor=300_000)
        await advance_to(time_env, calendar.local_instant(due + timedelta(days=4), time(12), TZ))
        status = await handle.query("status", result_type=CaseStatus)
        history = await handle.fetch_history()
    # DPD 3 sends an SMS (limited: its own queue) and an email (the case's queue), in parallel.
    assert sorted(contact_queues(history)) == sorted([contact_task_queue(h.task_queue, "sms"), h.task_queue])
    assert sorted(row.action for row in contact_rows(h.engine, case.loan_id)) == ["email_overdue_notice", "sms_reminder"]
    assert [a.status for s in status.steps_done for a in s.results] == ["recorded", "recorded"]
    assert [a.action for s in status.steps_done for a in s.results] == ["sms_reminder", "email_overdue_notice"]
    # A worker without the setting (or with another) replays the case as it ran.
    await Replayer(workflows=WORKFLOWS, data_converter=TEST_CONVERTER).replay_workflow(history)


async def test_without_limits_a_step_is_one_activity_on_the_case_queue(time_env, harness_factory):
    h = harness_factory(time_env)
    async with h.worker:
        due = calendar.local_date(await server_now(time_env), TZ) - timedelta(days=1)
        _, handle = await open_case(h, due=due, amount_minor=300_000)
        await advance_to(time_env, calendar.local_instant(due + timedelta(days=4), time(12), TZ))
        history = await handle.fetch_history()
    assert contact_queues(history) == [h.task_queue]
