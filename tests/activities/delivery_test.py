"""Contact activities: idempotent (one row, one HTTP request) and the http back-end's answers
to 2xx, 4xx and 5xx, against a real local HTTP server."""

from datetime import date

import pytest
from sqlmodel import select
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities.collection_activities import CollectionActivities
from activities.delivery import HttpDelivery, RecordDelivery
from collections_domain.store.db import make_engine, session
from collections_domain.store.models import ContactAttempt, LegalReferral
from collections_domain.rules.policy import PolicyRegistry
from collections_domain.store.records import ContactRequest
from tests.helpers import seed_borrower
from tests.provider import FakeProvider
from tests.databases import fresh_database_url


@pytest.fixture
def provider():
    server = FakeProvider()
    yield server
    server.close()


def make_activities(tmp_path, delivery):
    engine = make_engine(fresh_database_url(tmp_path, "a"))
    seed_borrower(engine, "B-1", locale="en")
    return CollectionActivities(engine=engine, delivery=delivery, policies=PolicyRegistry.from_settings(None))


def request(action: str = "sms_reminder", step: str = "initial") -> ContactRequest:
    return ContactRequest(
        idempotency_key=f"collection-L-1:2026-12-01:{step}:{action}",
        workflow_id="collection-L-1",
        loan_id="L-1",
        borrower_id="B-1",
        step=step,
        action=action,
        days_past_due=3,
        outstanding_minor=123_456,
        paid_minor=0,
        currency="CNY",
        oldest_due_date=date(2026, 12, 1),
        jurisdiction="CN",
        policy_version="2026.12-compliance",
    )


def rows(engine) -> list[ContactAttempt]:
    with session(engine) as db:
        return list(db.exec(select(ContactAttempt)))


def test_record_backend_run_twice_writes_one_row(tmp_path):
    acts = make_activities(tmp_path, RecordDelivery())
    env = ActivityEnvironment()
    first = env.run(acts.send_sms, request())
    second = env.run(acts.send_sms, request())
    assert first.status == "recorded" and second.status == "already_done"
    [row] = rows(acts.engine)
    assert row.status == "recorded" and row.attempts == 1 and "¥1,234.56" in row.rendered


def test_legal_referral_run_twice_files_once(tmp_path):
    acts = make_activities(tmp_path, RecordDelivery())
    env = ActivityEnvironment()
    for _ in range(2):
        env.run(acts.file_legal_referral, request("legal_referral", "legal"))
    with session(acts.engine) as db:
        assert len(db.exec(select(LegalReferral)).all()) == 1


def test_http_2xx_sends_once_with_the_idempotency_key_and_token(tmp_path, provider):
    acts = make_activities(tmp_path, HttpDelivery(provider.url, "secret-token"))
    env = ActivityEnvironment()
    first = env.run(acts.send_sms, request())
    second = env.run(acts.send_sms, request())
    assert first.status == "sent" and first.provider_reference == "prov-1"
    assert second.status == "already_done"
    [sent] = provider.requests
    assert sent.path == "/sms"
    assert sent.headers["idempotency-key"] == request().idempotency_key
    assert sent.headers["authorization"] == "Bearer secret-token"
    assert sent.body["to"] == "+86 138 0000 0000" and "¥1,234.56" in sent.body["body"]
    [row] = rows(acts.engine)
    assert row.status == "sent" and row.backend == "http" and row.provider_reference == "prov-1"


def test_http_4xx_is_permanent(tmp_path, provider):
    provider.script = [422]
    acts = make_activities(tmp_path, HttpDelivery(provider.url, None))
    with pytest.raises(ApplicationError) as err:
        ActivityEnvironment().run(acts.send_email, request("email_overdue_notice"))
    assert err.value.non_retryable and err.value.type == "DeliveryRejected" and "422" in err.value.message
    [row] = rows(acts.engine)
    assert row.status == "failed" and "422" in row.last_error


def test_a_provider_echoing_the_recipient_never_puts_it_in_the_error(tmp_path, provider):
    """The error message ends up in the workflow history: only the status and a plain error code."""
    provider.script = [400]
    provider.error_body = {"code": "invalid_number", "message": "bad number +86 138 0000 0000 for Wang Fang"}
    acts = make_activities(tmp_path, HttpDelivery(provider.url, None))
    with pytest.raises(ApplicationError) as err:
        ActivityEnvironment().run(acts.send_sms, request())
    assert err.value.message == "sms: provider rejected the request with 400 (invalid_number)"
    [row] = rows(acts.engine)
    assert "138" not in row.last_error and "Wang" not in row.last_error


def test_http_5xx_is_retryable_then_2xx_sends_with_the_same_key(tmp_path, provider):
    provider.script = [503, 500]
    acts = make_activities(tmp_path, HttpDelivery(provider.url, None))
    env = ActivityEnvironment()
    for _ in range(2):
        with pytest.raises(ApplicationError, match="50") as err:
            env.run(acts.issue_demand_letter, request("demand_letter", "deep"))
        assert err.value.type == "DeliveryRetrying" and not err.value.non_retryable
        assert rows(acts.engine)[0].status == "retrying"
    result = env.run(acts.issue_demand_letter, request("demand_letter", "deep"))
    assert result.status == "sent"
    assert len(set(provider.keys())) == 1 and len(provider.requests) == 3
    [row] = rows(acts.engine)
    assert row.attempts == 3 and row.status == "sent" and row.last_error is None


def test_unreachable_provider_is_retryable(tmp_path):
    acts = make_activities(tmp_path, HttpDelivery("http://127.0.0.1:9", None, timeout_seconds=2))
    with pytest.raises(ApplicationError, match="unreachable") as err:
        ActivityEnvironment().run(acts.send_sms, request())
    assert err.value.type == "DeliveryRetrying"


def test_missing_contact_details_fail_permanently(tmp_path):
    acts = make_activities(tmp_path, RecordDelivery())
    seed_borrower(acts.engine, "B-2", phone=None)
    with pytest.raises(ApplicationError, match="no phone on file") as err:
        ActivityEnvironment().run(acts.send_sms, request().model_copy(update={"borrower_id": "B-2"}))
    assert err.value.non_retryable
