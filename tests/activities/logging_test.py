"""JSON logs of real activity calls: one JSON object a line, with the loan, workflow and activity,
and none of the borrower's personal data at INFO (nor in the SDK's own records)."""

from __future__ import annotations

import dataclasses
import io
import json
import logging

import pytest
import structlog
from temporalio import activity, workflow
from temporalio.testing import ActivityEnvironment
from temporalio.exceptions import ApplicationError

from activities.collection_activities import CollectionActivities
from activities.delivery import HttpDelivery, RecordDelivery
from collections_domain.store.db import make_engine
from collections_domain.ops.logs import configure_logging, get_logger, mask_text, redact_personal_data
from collections_domain.rules.policy import PolicyRegistry
from collections_domain.store.records import ContactRequest
from tests.databases import fresh_database_url
from tests.helpers import seed_borrower
from tests.provider import FakeProvider

BORROWER = dict(
    full_name="Margaret Q. Example",
    phone="+44 7700 900123",
    email="margaret.example@example.org",
    postal_address="221B Example Street, London",
)
PERSONAL = [*BORROWER.values(), "7700 900123", "Margaret", "221B"]


@pytest.fixture
def json_logs():
    """``configure_logging(json=True)`` into a buffer; the previous configuration is restored."""
    buffer = io.StringIO()
    was_configured = structlog.is_configured()
    saved = structlog.get_config()
    root = logging.getLogger()
    saved_handlers, saved_level = list(root.handlers), root.level
    saved_flags = (workflow.logger.workflow_info_on_message, activity.logger.activity_info_on_message)
    configure_logging("INFO", json=True, stream=buffer)
    try:
        yield buffer
    finally:
        root.handlers = saved_handlers
        root.setLevel(saved_level)
        workflow.logger.workflow_info_on_message, activity.logger.activity_info_on_message = saved_flags
        if was_configured:
            structlog.configure(**saved)
        else:
            structlog.reset_defaults()


def lines(buffer: io.StringIO) -> list[dict]:
    text = buffer.getvalue()
    assert text, "nothing was logged"
    return [json.loads(line) for line in text.splitlines()]  # every line is one JSON object


def make_activities(tmp_path, delivery):
    engine = make_engine(fresh_database_url(tmp_path, "logs"))
    seed_borrower(engine, "B-7", locale="en", tz="Europe/London", **BORROWER)
    return CollectionActivities(engine=engine, delivery=delivery, policies=PolicyRegistry.from_settings(None))


def request(action: str) -> ContactRequest:
    from datetime import date

    return ContactRequest(
        idempotency_key=f"collection-L-77:2026-12-01:initial:{action}",
        workflow_id="collection-L-77",
        loan_id="L-77",
        borrower_id="B-7",
        step="initial",
        action=action,
        days_past_due=3,
        outstanding_minor=12_345,
        paid_minor=0,
        currency="GBP",
        oldest_due_date=date(2026, 12, 1),
        jurisdiction="UK",
        policy_version="2026.12-compliance",
    )


def environment(activity_type: str) -> ActivityEnvironment:
    env = ActivityEnvironment()
    env.info = dataclasses.replace(
        env.info,
        activity_type=activity_type,
        workflow_id="collection-L-77",
        workflow_run_id="run-1",
        workflow_type="LoanCollectionWorkflow",
        attempt=2,
    )
    return env


def assert_no_personal_data(text: str) -> None:
    for value in PERSONAL:
        assert value not in text, f"{value!r} leaked into the logs"


@pytest.mark.parametrize("action", ["sms_reminder", "email_overdue_notice", "demand_letter"])
def test_activity_json_lines_carry_the_case_and_no_personal_data(tmp_path, json_logs, action):
    acts = make_activities(tmp_path, RecordDelivery())
    method = {"sms_reminder": acts.send_sms, "email_overdue_notice": acts.send_email, "demand_letter": acts.issue_demand_letter}[action]
    env = environment(method.__name__)
    result = env.run(method, request(action))
    assert result.status == "recorded"
    # Also a stdlib record from the SDK's activity logger, with personal data in its extras.
    env.run(lambda: activity.logger.info("sdk record", extra={"phone": BORROWER["phone"]}))
    records = lines(json_logs)
    done = [r for r in records if r["event"] == "contact.done"]
    assert len(done) == 1 and done[0]["level"] == "info"
    for record in [r for r in records if r["event"] in ("contact.done", "delivery.recorded", "sdk record")]:
        assert record["loan_id"] == "L-77"
        assert record["workflow_id"] == "collection-L-77" and record["run_id"] == "run-1"
        assert record["activity"] == method.__name__
        assert record["attempt"] == 2
        assert record["timestamp"].endswith("Z")
    sdk = next(r for r in records if r["event"] == "sdk record")
    assert sdk["phone"] == "[redacted]" and sdk["logger"] == "temporalio.activity"
    assert_no_personal_data(json_logs.getvalue())


def test_failed_delivery_warning_masks_contact_details(tmp_path, json_logs):
    provider = FakeProvider(script=[503])
    try:
        acts = make_activities(tmp_path, HttpDelivery(provider.url, "token"))
        env = environment("send_sms")
        with pytest.raises(ApplicationError, match="503"):
            env.run(acts.send_sms, request("sms_reminder"))
        assert provider.requests[0].body["to"] == BORROWER["phone"]  # the provider got it
    finally:
        provider.close()
    # A line whose text carries contact details (as a provider's error message could).
    get_logger("activities").warning("contact.failed", error=f"rejected {BORROWER['phone']} / {BORROWER['email']}", to=BORROWER["phone"])
    records = lines(json_logs)
    failed = [r for r in records if r["event"] == "contact.failed"]
    assert failed[0]["level"] == "warning" and failed[0]["loan_id"] == "L-77" and failed[0]["activity"] == "send_sms"
    assert failed[-1]["error"] == "rejected [phone] / [email]" and failed[-1]["to"] == "[redacted]"
    assert_no_personal_data(json_logs.getvalue())


def test_redaction_rules():
    info = redact_personal_data(
        None,
        "info",
        {
            "level": "info",
            "event": "x",
            "full_name": "Margaret",
            "payload": {"body": "Dear Margaret", "to": "+86 138 0000 0000", "loan_id": "L-1"},
            "detail": "call 13800000000, (415) 555-0100, 07700 900123 or a.b@c.co.uk",
            "idempotency_key": "collection-L-1:2026-12-01:initial:sms_reminder",
            "paid_at": "2026-12-01T09:00:00+08:00",
            "amount_minor": 12345678901,
            "temporal_address": "localhost:7233",
        },
    )
    assert info["full_name"] == "[redacted]"
    assert info["payload"] == {"body": "[redacted]", "to": "[redacted]", "loan_id": "L-1"}
    assert info["detail"] == "call [phone], [phone], [phone] or [email]"
    # Ids, dates, amounts and technical addresses are left alone.
    assert info["idempotency_key"] == "collection-L-1:2026-12-01:initial:sms_reminder"
    assert info["paid_at"] == "2026-12-01T09:00:00+08:00" and info["amount_minor"] == 12345678901
    assert info["temporal_address"] == "localhost:7233"
    # DEBUG keeps the rendered message (contact.rendered carries it on purpose).
    debug = redact_personal_data(None, "debug", {"level": "debug", "event": "contact.rendered", "body": "Dear Margaret"})
    assert debug["body"] == "Dear Margaret"
    assert mask_text("+1 415 555 0100") == "[phone]"


def test_an_expected_activity_failure_is_one_line_without_a_traceback():
    """The SDK logs every failed activity with its traceback; a business outcome the workflow
    handles (no contact details: a manual-review task follows) is one line instead."""
    import io
    import logging

    from temporalio.exceptions import ApplicationError

    from collections_domain.ops.logs import configure_logging

    stream = io.StringIO()
    configure_logging("INFO", json=True, stream=stream)
    try:
        raise ApplicationError("borrower B-1 has no phone on file", type="NoContactDetails", non_retryable=True)
    except ApplicationError:
        logging.getLogger("temporalio.activity").warning("Completing activity as failed", exc_info=True)
    try:
        raise RuntimeError("a real bug")
    except RuntimeError:
        logging.getLogger("temporalio.activity").warning("Completing activity as failed", exc_info=True)
    expected, bug = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert "exception" not in expected and "NoContactDetails: borrower B-1 has no phone on file" in expected["event"]
    assert "Traceback" in bug["exception"] and "a real bug" in bug["exception"]
