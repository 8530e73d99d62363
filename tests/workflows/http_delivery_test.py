"""The http back-end inside the workflow: 5xx then 2xx is retried by Temporal and sent once;
a 4xx is recorded as failed, a manual review is queued, and the ladder goes on."""

from datetime import time, timedelta

import pytest

from activities.delivery import HttpDelivery
from collections_domain.rules import calendar
from tests.helpers import advance_to, contact_rows, open_case, server_now, status
from tests.provider import FakeProvider

TZ = "Asia/Shanghai"


@pytest.fixture
def provider():
    server = FakeProvider()
    yield server
    server.close()


async def _run_initial_step(time_env, h):
    due = calendar.local_date(await server_now(time_env), TZ) - timedelta(days=1)
    case, handle = await open_case(h, due=due, amount_minor=300_000)
    await advance_to(time_env, calendar.local_instant(due + timedelta(days=3), time(12), TZ))
    return case, handle, due


async def test_5xx_then_2xx_is_retried_and_sent_once(time_env, harness_factory, provider):
    provider.script = [503, 502]  # the first two requests fail, whatever their channel
    h = harness_factory(time_env, HttpDelivery(provider.url, "t"))
    async with h.worker:
        case, handle, _ = await _run_initial_step(time_env, h)
        st = await status(handle)
    [step] = st.steps_done
    assert {r.action: r.status for r in step.results} == {"sms_reminder": "sent", "email_overdue_notice": "sent"}
    keys = provider.keys()
    assert len(keys) == 4 and len(set(keys)) == 2  # two failures retried, one success per key
    assert all(row.status == "sent" for row in contact_rows(h.engine, case.loan_id))


async def test_4xx_is_recorded_and_falls_back_to_manual_review(time_env, harness_factory, provider):
    provider.script = [400, 400]
    h = harness_factory(time_env, HttpDelivery(provider.url, "t"))
    async with h.worker:
        case, handle, due = await _run_initial_step(time_env, h)
        await advance_to(time_env, calendar.local_instant(due + timedelta(days=8), time(12), TZ))
        st = await status(handle)
    initial, deep = st.steps_done
    assert [r.status for r in initial.results] == ["failed", "failed"]
    assert all("400" in r.detail and "manual_review queued" in r.detail for r in initial.results)
    assert [r.status for r in deep.results] == ["sent", "sent"]  # the ladder went on
    rows = {row.idempotency_key: row for row in contact_rows(h.engine, case.loan_id)}
    for result in initial.results:
        key = result.idempotency_key
        assert key.startswith(f"{case.workflow_id}:") and key.endswith(f":{due}:initial:{result.action}")
        assert rows[key].status == "failed" and "400" in rows[key].last_error
        fallback = rows[f"{key}:fallback"]
        assert (fallback.action, fallback.backend, fallback.status) == ("manual_review", "record", "recorded")
    assert len(provider.requests) == 4  # two rejected, two deep-step sends; no retries of a 4xx
