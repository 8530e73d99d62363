"""Contact sends heartbeat only when an attempt has run long enough to need it: on Temporal Cloud
every heartbeat that reaches the server is a billable action (issue 14)."""

import dataclasses
from datetime import UTC, datetime, timedelta

from temporalio.testing import ActivityEnvironment

from activities.delivery import RecordDelivery
from collections_domain.store.records import ContactBatch
from tests.activities.delivery_test import make_activities, request


def environment(started_ago: timedelta) -> tuple[ActivityEnvironment, list]:
    env = ActivityEnvironment()
    beats: list = []
    env.on_heartbeat = lambda *details: beats.append(details)
    env.info = dataclasses.replace(env.info, heartbeat_timeout=timedelta(seconds=30),
                                   started_time=datetime.now(UTC) - started_ago)
    return env, beats


def test_a_fresh_attempt_sends_its_contacts_without_a_heartbeat(tmp_path):
    acts = make_activities(tmp_path, RecordDelivery())
    env, beats = environment(timedelta(seconds=1))
    batch = ContactBatch(requests=[request("sms_reminder"), request("email_overdue_notice")])
    results = env.run(acts.run_step_contacts, batch)
    assert [r.status for r in results] == ["recorded", "recorded"]
    assert beats == []


def test_an_attempt_running_for_a_third_of_its_heartbeat_timeout_heartbeats_before_each_send(tmp_path):
    acts = make_activities(tmp_path, RecordDelivery())
    env, beats = environment(timedelta(seconds=11))
    batch = ContactBatch(requests=[request("sms_reminder"), request("email_overdue_notice")])
    env.run(acts.run_step_contacts, batch)
    assert [b[0] for b in beats] == [r.idempotency_key for r in batch.requests]
