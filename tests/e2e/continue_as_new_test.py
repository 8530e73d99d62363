"""Long life: when the server suggests it, a case continues as new carrying its whole state
(payments applied, ids seen, rejections, the open promise) and keeps working. Needs the real dev
server: the time-skipping server never suggests continue-as-new."""

import asyncio
from datetime import UTC, datetime, timedelta

import pytest_asyncio
from temporalio.api.enums.v1 import EventType

from collections_domain.rules import calendar
from collections_domain.client import propose_plan
from tests.e2e.conftest import start_dev_server
from tests.personal_data import collect_histories
from tests.helpers import open_case, payment, promise, status

TZ = "Asia/Shanghai"


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def small_history_env():
    env = await start_dev_server("--dynamic-config-value", "limit.historyCount.suggestContinueAsNew=40")
    try:
        yield env
    finally:
        await collect_histories(env.client, "continue-as-new dev server")
        await env.shutdown()


async def test_case_continues_as_new_with_its_state(small_history_env, harness_factory):
    h = harness_factory(small_history_env)
    today = calendar.local_date(datetime.now(UTC), TZ)
    async with h.worker:
        case, handle = await open_case(h, due=today - timedelta(days=1), amount_minor=500_000)
        first_run = handle.result_run_id
        now = datetime.now(UTC)
        await handle.signal("payment_received", payment(1_000, now, payment_id="pay-first"))
        await handle.signal("promise_to_pay", promise(50_000, today + timedelta(days=3), promise_id="ptp-open"))
        for i in range(20):
            await handle.signal("payment_received", {"payment_id": f"bad-{i}", "amount_minor": 0, "currency": "CNY", "paid_at": now.isoformat()})
            await asyncio.sleep(0.05)

        async def continued() -> bool:
            description = await h.client.get_workflow_handle(case.workflow_id).describe()
            return description.run_id != first_run

        for _ in range(100):
            if await continued():
                break
            await asyncio.sleep(0.2)
        assert await continued(), "the case never continued as new"
        latest = h.client.get_workflow_handle(case.workflow_id)
        await latest.signal("payment_received", payment(1_000, now, payment_id="pay-first"))
        await latest.signal("payment_received", payment(2_000, now, payment_id="pay-second"))
        for _ in range(50):
            st = await status(latest)
            if st.paid_minor == 3_000 and len(st.rejected_signals) == 21:
                break
            await asyncio.sleep(0.2)
    first_history = await h.client.get_workflow_handle(case.workflow_id, run_id=first_run).fetch_history()
    assert first_history.events[-1].event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CONTINUED_AS_NEW
    assert st.paid_minor == 3_000 and st.outstanding_minor == 497_000
    assert st.open_promise is not None and st.open_promise.promise_id == "ptp-open"
    assert st.open_promise.paid_toward_minor == 2_000
    assert len(st.rejected_signals) == 21
    assert st.rejected_signals[-1].id == "pay-first" and "duplicate" in st.rejected_signals[-1].reason
    h.handles.append(latest)


async def test_case_on_a_plan_continues_as_new_and_still_settles(small_history_env, harness_factory):
    """The plan's child is abandoned by the continue-as-new on purpose: the new run still
    forwards payments to it by id, and settles when they cover the plan."""
    h = harness_factory(small_history_env)
    today = calendar.local_date(datetime.now(UTC), TZ)
    async with h.worker:
        case, handle = await open_case(h, due=today - timedelta(days=1), amount_minor=100_000)
        first_run = handle.result_run_id
        accepted = await propose_plan(h.client, case.loan_id, {
            "plan_id": "PL-CAN", "kind": "instalments",
            "instalment_dates": [str(today + timedelta(days=1)), str(today + timedelta(days=10))],
        })
        h.child_ids.append(accepted.plan_workflow_id)
        now = datetime.now(UTC)
        await handle.signal("hardship", {"hardship_id": "HS-CAN"})
        for i in range(20):
            await handle.signal("payment_received", {"payment_id": f"bad-{i}", "amount_minor": 0, "currency": "CNY", "paid_at": now.isoformat()})
            await asyncio.sleep(0.05)
        for _ in range(100):
            if (await h.client.get_workflow_handle(case.workflow_id).describe()).run_id != first_run:
                break
            await asyncio.sleep(0.2)
        latest = h.client.get_workflow_handle(case.workflow_id)
        carried = await status(latest)
        await latest.signal("payment_received", payment(100_000, now, payment_id="pay-all"))
        final = await asyncio.wait_for(latest.result(), timeout=60)
        plan_child = await h.client.get_workflow_handle(accepted.plan_workflow_id).describe()
    assert (await h.client.get_workflow_handle(case.workflow_id).describe()).run_id != first_run
    assert carried.plan is not None and carried.plan.plan_id == "PL-CAN" and carried.plan.started
    assert [p.kind for p in carried.pauses] == ["hardship"]
    assert final["outcome"] == "settled" and final["outstanding_minor"] == 0
    assert plan_child.status.name == "COMPLETED"
    h.handles.append(latest)
