"""Parallel identical ``POST /v1/cases``: exactly one is told ``created: true``. On the real dev
server with a worker. 20 at once, each with its own Idempotency-Key (the others: 200, the case
already running), and 20 at once with one Idempotency-Key (the others: 409 request in progress,
or the first answer replayed with ``Idempotent-Replayed: true``)."""

import asyncio
import uuid

import httpx
import pytest_asyncio

from api import keys
from api.app import create_app
from tests.e2e.api_test import case_body

PARALLEL = 20


@pytest_asyncio.fixture(loop_scope="session")
async def api(local_env, harness_factory):
    harness = harness_factory(local_env)
    writer = keys.create_api_key(harness.engine, "gateway", ["read", "write"])[1]
    app = create_app(harness.settings, client=harness.client, engine=harness.engine)
    async with harness.worker, httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api",
                                                 timeout=60) as http:
        yield harness, writer, http


async def open_all(http, writer: str, body: dict, idempotency_keys: list[str]) -> list[httpx.Response]:
    return await asyncio.gather(*(
        http.post("/v1/cases", json=body, headers={"Authorization": f"Bearer {writer}", "Idempotency-Key": key})
        for key in idempotency_keys))


def created(answers: list[httpx.Response]) -> list[httpx.Response]:
    """The answers that say this request opened the case (a replay repeats the first answer)."""
    return [a for a in answers if a.status_code in (201, 202) and a.json()["created"] is True
            and a.headers.get("idempotent-replayed") != "true"]


async def test_parallel_opens_with_their_own_keys_create_once(api):
    harness, writer, http = api
    loan_id = f"PAR-{uuid.uuid4().hex[:8]}"
    harness.handles.append(harness.client.get_workflow_handle(f"collection-{loan_id}"))
    answers = await open_all(http, writer, case_body(loan_id, dpd=5), [uuid.uuid4().hex for _ in range(PARALLEL)])
    assert len(created(answers)) == 1, [(a.status_code, a.text) for a in answers]
    others = [a for a in answers if a not in created(answers)]
    assert all(a.status_code == 200 and a.json()["created"] is False for a in others), [a.text for a in others]
    assert len({a.json()["run_id"] for a in answers}) == 1


async def test_parallel_opens_with_one_key_create_once(api):
    harness, writer, http = api
    loan_id = f"PAR-{uuid.uuid4().hex[:8]}"
    harness.handles.append(harness.client.get_workflow_handle(f"collection-{loan_id}"))
    answers = await open_all(http, writer, case_body(loan_id, dpd=5), [f"open-{loan_id}"] * PARALLEL)
    assert len(created(answers)) == 1, [(a.status_code, a.text) for a in answers]
    for answer in answers:
        if answer in created(answers):
            continue
        replayed = answer.headers.get("idempotent-replayed") == "true" and answer.status_code in (201, 202)
        in_progress = answer.status_code == 409 and answer.json()["type"].endswith(":request-in-progress")
        assert replayed or in_progress, answer.text
