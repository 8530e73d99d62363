"""Outages answer 503 problem+json with ``Retry-After`` in bounded time: a SQLite database locked
by another connection (``BEGIN EXCLUSIVE``) within about ``API_DATABASE_TIMEOUT_SECONDS`` (2 s),
Temporal gone or unreachable within about ``API_TEMPORAL_TIMEOUT_SECONDS`` (3 s); never with the
SQL statement or its parameters in the answer or the log."""

import logging
import sqlite3
import time
import uuid
from datetime import UTC, datetime

import httpx
from temporalio.client import Client

from api import keys
from api.app import create_app
from collections_domain.store.db import make_engine
from tests.api.conftest import api_settings
from tests.e2e.conftest import start_dev_server

#: The bounds under test: the defaults of ``API_DATABASE_TIMEOUT_SECONDS`` and
#: ``API_TEMPORAL_TIMEOUT_SECONDS``, and what the tests allow over them (a shared 2-core machine).
DATABASE_BOUND_SECONDS = 2.0
TEMPORAL_BOUND_SECONDS = 3.0
SLACK_SECONDS = 2.5


def http(app, timeout: float = 15) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api", timeout=timeout)


def assert_outage(answer: httpx.Response, slug: str) -> None:
    assert answer.status_code == 503, answer.text
    assert answer.headers["content-type"] == "application/problem+json"
    assert int(answer.headers["retry-after"]) >= 1
    assert answer.json()["type"] == f"urn:loan-collections:problem:{slug}", answer.text


def payment(payment_id: str) -> dict:
    return {"payment_id": payment_id, "amount_minor": 1000, "currency": "CNY", "paid_at": datetime.now(UTC).isoformat()}


async def test_a_locked_database_answers_503_within_the_bound(tmp_path, caplog, capsys):
    settings = api_settings(tmp_path)
    writer = keys.create_api_key(make_engine(settings.resolved_database_url), "gateway", ["read", "write"])[1]
    app = create_app(settings)  # the app opens its own engine, as in production
    locker = sqlite3.connect(tmp_path / "collections.db", isolation_level=None)
    caplog.set_level(logging.DEBUG)
    async with app.router.lifespan_context(app), http(app) as client:
        locker.execute("BEGIN EXCLUSIVE")
        try:
            started = time.monotonic()
            answer = await client.post("/v1/cases/L-LOCK-1/payments", json=payment("gw-secret-77"),
                                       headers={"Authorization": f"Bearer {writer}", "Idempotency-Key": "pay-lock-1"})
            elapsed = time.monotonic() - started
        finally:
            locker.execute("ROLLBACK")
            locker.close()
        assert_outage(answer, "database-unavailable")
        assert elapsed < DATABASE_BOUND_SECONDS + SLACK_SECONDS, elapsed
        logged = caplog.text + capsys.readouterr().out
        for leak in ("INSERT", "idempotent_requests", "pay-lock-1", "[parameters"):
            assert leak not in answer.text and leak not in logged, leak
        # The key was released: once the lock is gone the same request goes through.
        retried = await client.post("/v1/cases/L-LOCK-1/payments", json=payment("gw-secret-77"),
                                    headers={"Authorization": f"Bearer {writer}", "Idempotency-Key": "pay-lock-1"})
        assert retried.status_code != 409, retried.text


async def test_temporal_gone_after_connecting_answers_503_within_the_bound(tmp_path):
    settings = api_settings(tmp_path)
    engine = make_engine(settings.resolved_database_url)
    writer = keys.create_api_key(engine, "gateway", ["read", "write"])[1]
    env = await start_dev_server()
    app = create_app(settings, client=env.client, engine=engine)
    auth = {"Authorization": f"Bearer {writer}"}
    async with http(app) as client:
        assert (await client.get("/v1/cases/L-GONE-1", headers=auth)).status_code == 404  # connected
        await env.shutdown()
        for method, path, body in (("GET", "/v1/cases/L-GONE-1", None),
                                   ("POST", "/v1/cases/L-GONE-1/payments", payment("gw-gone-1"))):
            started = time.monotonic()
            answer = await client.request(method, path, json=body, headers={**auth, "Idempotency-Key": uuid.uuid4().hex})
            elapsed = time.monotonic() - started
            assert_outage(answer, "temporal-unavailable")
            assert elapsed < TEMPORAL_BOUND_SECONDS + SLACK_SECONDS, (path, elapsed)


async def test_temporal_unreachable_answers_503(tmp_path):
    """Connecting on first use (a closed port), and a lazily connected client whose first call
    fails inside the SDK (``RuntimeError: Failed client connect``)."""
    settings = api_settings(tmp_path)
    engine = make_engine(settings.resolved_database_url)
    reader = keys.create_api_key(engine, "dashboard", ["read"])[1]
    lazy = await Client.connect(settings.temporal_address, lazy=True)
    for app in (create_app(settings, engine=engine), create_app(settings, client=lazy, engine=engine)):
        async with http(app) as client:
            started = time.monotonic()
            answer = await client.get("/v1/cases", headers={"Authorization": f"Bearer {reader}"})
            assert_outage(answer, "temporal-unavailable")
            assert time.monotonic() - started < TEMPORAL_BOUND_SECONDS + SLACK_SECONDS
