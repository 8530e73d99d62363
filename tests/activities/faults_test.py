"""Faults cost time, not contacts: bookkeeping and delivery fail separately (issue 12, item 4).

Against a real SQLite file (locked by a second connection, or refusing an insert through a
trigger) and a real local HTTP provider: a database fault sends nothing and spends none of the
provider's tries; a send happens only once its attempt is committed; the provider's Retry-After
becomes the next attempt's delay; a database error leaves an activity as a code and a table.
"""

from __future__ import annotations

import asyncio
import dataclasses
import sqlite3
from datetime import UTC, date, datetime, timedelta

import pytest
from sqlalchemy import event, text
from sqlalchemy.exc import IntegrityError, OperationalError, SQLAlchemyError
from sqlmodel import select
from temporalio.common import RetryPolicy
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment
from temporalio.worker import ExecuteActivityInput

from activities.collection_activities import PROVIDER_ATTEMPTS, CollectionActivities
from activities.delivery import HttpDelivery, retry_after_of
from collections_domain.ops.observability import LogContextInterceptor
from collections_domain.rules.policy import PolicyRegistry
from collections_domain.store.db import make_engine, session
from collections_domain.store.faults import database_fault
from collections_domain.store.models import ContactAttempt
from collections_domain.store.records import ContactBatch, ContactRequest
from tests.helpers import seed_borrower
from tests.provider import FakeProvider

NAME = "Margaret Quayle-Oduya"


@pytest.fixture
def provider():
    server = FakeProvider()
    yield server
    server.close()


def activities_on(tmp_path, provider: FakeProvider) -> CollectionActivities:
    """The activities on a SQLite file whose connections wait at most 0.2 s for a lock."""
    path = tmp_path / "faults.db"
    engine = make_engine(f"sqlite:///{path}")
    event.listen(engine, "connect", lambda connection, _record: connection.execute("PRAGMA busy_timeout=200"))
    engine.dispose()
    seed_borrower(engine, "B-1", locale="en", full_name=NAME)
    return CollectionActivities(engine=engine, delivery=HttpDelivery(provider.url, None),
                                policies=PolicyRegistry.from_settings(None))


def sms(key: str = "collection-L-1:2026-12-01:initial:sms_reminder") -> ContactRequest:
    return ContactRequest(
        idempotency_key=key, workflow_id="collection-L-1", loan_id="L-1", borrower_id="B-1", step="initial",
        action="sms_reminder", days_past_due=3, outstanding_minor=123_456, paid_minor=0, currency="CNY",
        oldest_due_date=date(2026, 12, 1), jurisdiction="CN", policy_version="2026.12-compliance",
    )


def on_attempt(attempt: int, maximum_attempts: int | None = None) -> ActivityEnvironment:
    """An activity environment on ``attempt`` of a retry policy with ``maximum_attempts`` (None:
    no bound, like the case's contact policy)."""
    env = ActivityEnvironment()
    policy = RetryPolicy(maximum_attempts=maximum_attempts or 0)
    env.info = dataclasses.replace(env.info, attempt=attempt, retry_policy=policy)
    return env


def attempts_of(acts: CollectionActivities) -> list[ContactAttempt]:
    with session(acts.engine) as db:
        return list(db.exec(select(ContactAttempt)))


def test_a_locked_database_sends_nothing_and_spends_no_provider_attempt(tmp_path, provider):
    """Found by the trial: two minutes of database outage used 5 of the contact's 10 attempts, and
    30 minutes made every contact a manual review. Now the database's failures are retried apart:
    after 11 activity attempts failed on the database, the provider's first failure is its first
    try (retried), not the last one (a fallback)."""
    acts = activities_on(tmp_path, provider)
    lock = sqlite3.connect(tmp_path / "faults.db", timeout=0)
    lock.execute("BEGIN EXCLUSIVE")
    try:
        for attempt in range(1, 12):
            with pytest.raises(SQLAlchemyError):
                on_attempt(attempt).run(acts.run_step_contacts, ContactBatch(requests=[sms()]))
    finally:
        lock.rollback()
        lock.close()
    assert provider.keys() == [] and attempts_of(acts) == []
    provider.script = [(503, {})]
    with pytest.raises(ApplicationError) as failed:
        on_attempt(12).run(acts.run_step_contacts, ContactBatch(requests=[sms()]))
    assert failed.value.type == "DeliveryRetrying" and not failed.value.non_retryable
    [row] = attempts_of(acts)
    assert row.attempts == 1 and row.status == "retrying"
    [result] = on_attempt(13).run(acts.run_step_contacts, ContactBatch(requests=[sms()]))
    assert result.status == "sent" and len(provider.keys()) == 2 and len(set(provider.keys())) == 1


def test_the_fallback_comes_after_the_providers_last_try(tmp_path, provider):
    """The provider's tries are counted in ``contact_attempts.attempts``: its 10th failure queues
    the fallback, whatever the activity's attempt number."""
    acts = activities_on(tmp_path, provider)
    provider.script = [(503, {})] * PROVIDER_ATTEMPTS
    for attempt in range(1, PROVIDER_ATTEMPTS):
        with pytest.raises(ApplicationError, match="DeliveryRetrying|503"):
            on_attempt(attempt + 5).run(acts.run_step_contacts, ContactBatch(requests=[sms()]))
    [result] = on_attempt(99).run(acts.run_step_contacts, ContactBatch(requests=[sms()]))
    assert result.status == "failed" and "manual_review queued" in result.detail
    assert len(provider.keys()) == PROVIDER_ATTEMPTS


def test_a_bounded_policy_still_ends_in_the_fallback(tmp_path, provider):
    """Activities scheduled before this change (10 attempts at most) end in the fallback on their
    last attempt, never in a failed activity."""
    acts = activities_on(tmp_path, provider)
    provider.script = [(503, {})]
    [result] = on_attempt(10, maximum_attempts=10).run(acts.run_step_contacts, ContactBatch(requests=[sms()]))
    assert result.status == "failed"


def test_a_refused_pending_insert_sends_nothing(tmp_path, provider):
    """Found by the trial: a failed "pending" insert was swallowed and the message sent anyway,
    then sent again on each retry. Now nothing is sent without its committed attempt."""
    acts = activities_on(tmp_path, provider)
    with acts.engine.begin() as connection:
        connection.execute(text("CREATE TRIGGER refuse_attempts BEFORE INSERT ON contact_attempts "
                                "BEGIN SELECT RAISE(ABORT, 'injected fault'); END"))
    for attempt in (1, 2, 3):
        with pytest.raises(IntegrityError):
            on_attempt(attempt).run(acts.run_step_contacts, ContactBatch(requests=[sms()]))
    assert provider.keys() == []


def test_retry_after_is_the_next_attempts_delay(tmp_path, provider):
    """Found by the trial: a 429 with ``Retry-After: 60`` was retried at +14, +28 and +48 s."""
    acts = activities_on(tmp_path, provider)
    provider.script = [(429, {"Retry-After": "60"}), (503, {})]
    with pytest.raises(ApplicationError) as first:
        on_attempt(1).run(acts.run_step_contacts, ContactBatch(requests=[sms()]))
    assert first.value.type == "DeliveryRetrying" and first.value.next_retry_delay == timedelta(seconds=60)
    with pytest.raises(ApplicationError) as second:  # no Retry-After: the provider backoff, by its tries
        on_attempt(2).run(acts.run_step_contacts, ContactBatch(requests=[sms()]))
    assert second.value.next_retry_delay == timedelta(seconds=10)


def test_retry_after_forms():
    now = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
    assert retry_after_of("120", now) == timedelta(seconds=120)
    assert retry_after_of("Tue, 01 Dec 2026 09:05:00 GMT", now) == timedelta(minutes=5)
    assert retry_after_of("Tue, 01 Dec 2026 08:00:00 GMT", now) == timedelta(0)
    assert retry_after_of("999999999", now) == timedelta(hours=1)
    assert retry_after_of("soon", now) is None and retry_after_of(None, now) is None


def test_a_hand_off_send_ends_in_delivery_failed_after_the_providers_tries(tmp_path, provider):
    acts = activities_on(tmp_path, provider)
    provider.script = [(503, {})] * PROVIDER_ATTEMPTS
    for attempt in range(1, PROVIDER_ATTEMPTS):
        with pytest.raises(ApplicationError) as err:
            on_attempt(attempt).run(acts.send_sms, sms())
        assert err.value.type == "DeliveryRetrying"
    with pytest.raises(ApplicationError) as last:
        on_attempt(PROVIDER_ATTEMPTS).run(acts.send_sms, sms())
    assert last.value.type == "DeliveryFailed" and last.value.non_retryable


def refused_insert(tmp_path) -> SQLAlchemyError:
    """A real error from inserting a borrower (with a name) into a table that refuses it."""
    engine = make_engine(f"sqlite:///{tmp_path / 'refuse.db'}")
    with engine.begin() as connection:
        connection.execute(text("CREATE TRIGGER refuse BEFORE INSERT ON borrowers BEGIN SELECT RAISE(ABORT, 'no'); END"))
    try:
        seed_borrower(engine, "B-9", full_name=NAME)
    except SQLAlchemyError as err:
        return err
    raise AssertionError("the insert was not refused")


def test_database_errors_carry_no_values(tmp_path):
    """Found by the trial: an activity failure carried SQLAlchemy's bound parameters (a rendered
    message with the borrower's name) into the history and the log."""
    err = refused_insert(tmp_path)
    assert NAME not in str(err)  # hide_parameters
    fault = database_fault(err)
    assert fault.message == "database refused the statement (SQLITE_CONSTRAINT_TRIGGER) on table borrowers"
    assert NAME not in fault.message and "INSERT" not in fault.message and not fault.non_retryable
    locked = OperationalError("UPDATE contact_attempts SET status=?", ("x",), sqlite3.OperationalError("database is locked"))
    assert database_fault(locked, attempt=3).type == "DatabaseUnavailable"
    assert database_fault(locked, attempt=3).next_retry_delay == timedelta(seconds=8)
    assert database_fault(locked, attempt=30).next_retry_delay == timedelta(minutes=1)


def test_the_worker_rewrites_an_activitys_database_error(tmp_path):
    """The worker's activity interceptor turns any SQLAlchemy error into ``database_fault``."""
    err = refused_insert(tmp_path)

    class Raising:
        async def execute_activity(self, input):
            raise err

    interceptor = LogContextInterceptor().intercept_activity(Raising())

    async def run():
        return await interceptor.execute_activity(ExecuteActivityInput(fn=run, args=[], executor=None, headers={}))

    with pytest.raises(ApplicationError) as raised:
        asyncio.run(ActivityEnvironment().run(run))
    assert raised.value.type == "DatabaseError" and NAME not in str(raised.value)
    assert raised.value.__cause__ is None


def test_a_contact_past_its_window_waits_for_the_next_one_where_the_policy_says_so(tmp_path, provider):
    acts = activities_on(tmp_path, provider)
    closed = sms().model_copy(update={"send_by": datetime.now(UTC) - timedelta(minutes=1)})
    [result] = on_attempt(4).run(acts.run_step_contacts, ContactBatch(requests=[closed], defer_when_window_closes=True))
    assert result.status == "window_closed" and provider.keys() == []
    [row] = attempts_of(acts)
    assert row.status == "window_closed"
    reopened = sms().model_copy(update={"send_by": datetime.now(UTC) + timedelta(hours=1)})
    [result] = on_attempt(1).run(acts.run_step_contacts, ContactBatch(requests=[reopened]))
    [row] = attempts_of(acts)
    assert result.status == "sent" and row.attempts == 1 and len(provider.keys()) == 1
    [fallback] = on_attempt(1).run(acts.run_step_contacts, ContactBatch(requests=[closed.model_copy(
        update={"idempotency_key": "collection-L-1:2026-12-01:deep:sms_reminder"})]))
    assert fallback.status == "failed" and "manual_review queued" in fallback.detail
