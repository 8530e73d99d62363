"""The metrics endpoint: a worker whose client runs on ``configure_runtime``'s runtime serves the
SDK's Prometheus metrics and the product's ``collections_*`` counters on one ``/metrics``.

A time-skipping server of its own (its client must use the Prometheus runtime); one case opens,
takes two steps, breaks a promise, keeps one, has a payment rejected and is cured. The JSON logs
of that run carry the case's ids on activity and workflow lines.
"""

from __future__ import annotations

import re
import socket
from datetime import time, timedelta

import httpx
import pytest_asyncio
from temporalio.api.operatorservice.v1 import AddSearchAttributesRequest
from temporalio.testing import WorkflowEnvironment

from collections_domain.ops.binaries import find_binary
from collections_domain.ops.observability import configure_runtime, metrics_url
from collections_domain.case.search_attributes import CLI_TYPES
from collections_domain.ops.settings import Settings
from tests.activities.logging_test import json_logs, lines  # noqa: F401 (fixture)
from tests.conftest import INDEXED_TYPES
from tests.helpers import advance_to, open_case, payment, promise, server_now
from tests.workflows.ladder_test import at_local, due_days_ago
from tests.keys import TEST_CONVERTER

_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)$")
_LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def parse(text: str) -> list[tuple[str, dict[str, str], float]]:
    """Prometheus text exposition as ``(name, labels, value)`` samples."""
    samples = []
    for line in text.splitlines():
        match = _SAMPLE.match(line.strip())
        if match and not line.startswith("#"):
            samples.append((match[1], dict(_LABEL.findall(match[2] or "")), float(match[3])))
    return samples


def total(samples, name: str, **labels: str) -> float:
    return sum(v for n, l, v in samples if n == name and all(l.get(k) == want for k, want in labels.items()))


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def metrics_env():
    """A time-skipping server whose client runs on a Prometheus runtime bound to a free port."""
    address = f"127.0.0.1:{free_port()}"
    # log_json: the runtime also forwards the SDK core's own log lines to stdlib logging.
    runtime = configure_runtime(Settings(metrics_bind_address=address, log_json=True))
    env = await WorkflowEnvironment.start_time_skipping(
        test_server_existing_path=find_binary("temporal-test-server"),
        data_converter=TEST_CONVERTER,
        runtime=runtime,
    )
    await env.client.operator_service.add_search_attributes(
        AddSearchAttributesRequest(
            namespace=env.client.namespace,
            search_attributes={name: INDEXED_TYPES[kind] for name, kind in CLI_TYPES.items()},
        )
    )
    try:
        yield env, address
    finally:
        await env.shutdown()


def test_configure_runtime_is_off_when_empty_and_one_per_address():
    assert configure_runtime(Settings(metrics_bind_address="")) is None
    address = f"127.0.0.1:{free_port()}"
    settings = Settings(metrics_bind_address=address)
    assert configure_runtime(settings) is configure_runtime(settings)
    assert metrics_url("0.0.0.0:9464") == "http://127.0.0.1:9464/metrics"


async def test_sdk_and_product_metrics_on_one_endpoint(metrics_env, harness_factory, json_logs):  # noqa: F811
    env, address = metrics_env
    h = harness_factory(env)
    async with h.worker:
        due = await due_days_ago(env, 1)
        case, handle = await open_case(h, due=due, amount_minor=300_000)
        # DPD 4: the initial step (SMS and email) ran at DPD 3. A promise for DPD 5 is broken at
        # the end of DPD 7; the deep step (agent call, demand letter) is taken at 08:00 on DPD 8.
        await advance_to(env, at_local(due, 4))
        await handle.signal("promise_to_pay", promise(50_000, due + timedelta(days=5), promise_id="ptp-broken"))
        await advance_to(env, at_local(due, 8, time(10)))
        await handle.signal("promise_to_pay", promise(100_000, due + timedelta(days=10), promise_id="ptp-kept"))
        now = await server_now(env)
        await handle.signal("payment_received", payment(100_000, now))  # keeps the promise
        await handle.signal("payment_received", {"payment_id": "neg", "amount_minor": -5, "currency": "CNY", "paid_at": now.isoformat()})
        await handle.signal("payment_received", payment(200_000, now))  # cures the case
        result = await handle.result()
    assert result.outcome == "cured" and result.promises_kept == 1 and result.promises_broken == 1
    assert [s.step for s in result.steps_done] == ["initial", "deep"]

    async with httpx.AsyncClient() as http:
        response = await http.get(metrics_url(address))
    assert response.status_code == 200
    samples = parse(response.text)
    queue = {"task_queue": h.task_queue}

    # The SDK's own metrics (names as the Rust core exports them, without a _total suffix).
    assert total(samples, "temporal_workflow_completed", workflow_type="LoanCollectionWorkflow", **queue) == 1
    # A ladder step's contacts run in one activity (two steps: two runs).
    assert total(samples, "temporal_activity_execution_latency_count", activity_type="run_step_contacts", **queue) == 2
    assert total(samples, "temporal_workflow_task_execution_latency_count", **queue) > 0
    assert total(samples, "temporal_request", operation="StartWorkflowExecution") >= 1

    # The product's counters, with their labels.
    assert total(samples, "collections_cases_opened", jurisdiction="CN", currency="CNY", workflow_type="LoanCollectionWorkflow", **queue) == 1
    steps = {(l["step"], l["action"], l["channel"], l["decision"], l["status"]): v for n, l, v in samples if n == "collections_steps_taken" and l.get("task_queue") == h.task_queue}
    assert steps == {
        ("initial", "sms_reminder", "sms", "allowed", "recorded"): 1,
        ("initial", "email_overdue_notice", "email", "allowed", "recorded"): 1,
        ("deep", "agent_call", "agent_task", "allowed", "recorded"): 1,
        ("deep", "demand_letter", "letter", "allowed", "recorded"): 1,
    }
    assert total(samples, "collections_promises_kept", jurisdiction="CN", **queue) == 1
    assert total(samples, "collections_promises_broken", jurisdiction="CN", **queue) == 1
    assert total(samples, "collections_signals_rejected", signal="payment_received", field="amount_minor", **queue) == 1
    assert total(samples, "collections_cases_closed", outcome="cured", jurisdiction="CN", **queue) == 1
    assert total(samples, "collections_contact_deliveries", action="sms_reminder", channel="sms", backend="record", result="recorded", activity_type="run_step_contacts", **queue) == 1
    # No ids in labels: nothing names the loan.
    assert case.loan_id not in response.text

    # The worker's JSON logs: activity lines carry the loan (from the activity's input) and the
    # workflow's lines (workflow.logger) its ids; no borrower contact details.
    records = lines(json_logs)
    contact = [r for r in records if r["event"] == "contact.done" and r.get("loan_id") == case.loan_id]
    assert {r["action"] for r in contact} == {"sms_reminder", "email_overdue_notice", "agent_call", "demand_letter"}
    assert {r["activity"] for r in contact} == {"run_step_contacts"}
    assert all(r["workflow_id"] == case.workflow_id and r["run_id"] and r["attempt"] == 1 for r in contact)
    opened = [r for r in records if r["event"] == "case.opened" and r.get("workflow_id") == case.workflow_id]
    assert opened and opened[0]["loan_id"] == case.loan_id and opened[0]["logger"] == "temporalio.workflow"
    rejected = [r for r in records if r["event"] == "signal.rejected" and r.get("workflow_id") == case.workflow_id]
    assert rejected and rejected[0]["kind"] == "payment_received" and rejected[0]["loan_id"] == case.loan_id
    # The SDK core's own warnings (Rust) come through stdlib logging as JSON too.
    core = [r for r in records if r.get("logger", "").startswith("temporalio.core")]
    assert core and all(r["level"] in ("warning", "error") for r in core), sorted({r.get("logger") for r in records})
    text = json_logs.getvalue()
    assert "+86 138 0000 0000" not in text and "borrower@example.com" not in text and "测试 借款人" not in text
