"""The HTTP API end to end: FastAPI app in process (httpx's ASGI transport), the real Temporal dev
server and a worker. Opening, paying to a cure, listing through visibility, payments with no case,
idempotency, keys and scopes, problem details, plans and contact outcomes."""

import uuid
from datetime import UTC, datetime, timedelta

import httpx
from prometheus_client import generate_latest
import pytest_asyncio
from sqlmodel import Session, select

from api import keys
from api.app import create_app
from collections_domain.rules import calendar
from collections_domain.store.models import ApiKey, ContactNote, IdempotentRequest, RejectedUpdate, UnmatchedPayment
from tests.e2e.conftest import eventually, zone_in_contact_window


class Api:
    """An in-process API on a harness's worker and database, with keys of each scope."""

    def __init__(self, harness):
        self.harness = harness
        self.app = create_app(harness.settings, client=harness.client, engine=harness.engine)
        self.http = httpx.AsyncClient(transport=httpx.ASGITransport(app=self.app), base_url="http://api")
        self.admin = keys.create_api_key(harness.engine, "test admin", ["admin"])[1]
        self.writer = keys.create_api_key(harness.engine, "payment gateway", ["read", "write"])[1]
        self.reader = keys.create_api_key(harness.engine, "dashboard", ["read"])[1]

    async def post(self, path: str, body, *, key: str | None = None, idem: str | None = None) -> httpx.Response:
        headers = {"Authorization": f"Bearer {key or self.writer}", "Idempotency-Key": idem or uuid.uuid4().hex}
        return await self.http.post(path, json=body, headers=headers)

    async def get(self, path: str, *, key: str | None = None, **params) -> httpx.Response:
        return await self.http.get(path, params=params, headers={"Authorization": f"Bearer {key or self.reader}"})


@pytest_asyncio.fixture(loop_scope="session")
async def api(local_env, harness_factory):
    harness = harness_factory(local_env)
    async with harness.worker:
        client = Api(harness)
        yield client
        await client.http.aclose()


def case_body(loan_id: str, *, dpd: int, amount_minor: int = 250_000, tz: str | None = None, **extra) -> dict:
    """A case for the API, in a portfolio that accrues nothing (so the amounts stay round)."""
    tz = tz or zone_in_contact_window()
    today = calendar.local_date(datetime.now(UTC), tz)
    return {"loan_id": loan_id, "borrower_id": "B-api", "principal_due_minor": amount_minor,
            "oldest_due_date": str(today - timedelta(days=dpd)), "timezone": tz, "portfolio": "no-accrual", **extra}


def loan(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"



async def test_open_pay_and_cure_over_http(api):
    loan_id = loan("API-CURE")
    opened = await api.post("/v1/cases", case_body(loan_id, dpd=5), idem=f"open-{loan_id}")
    # 201 once a worker took the case's first task, 202 ("pending") if none did within 3 s.
    assert opened.status_code in (201, 202), opened.text
    assert opened.json()["workflow_id"] == f"collection-{loan_id}" and opened.json()["created"] is True
    api.harness.handles.append(api.harness.client.get_workflow_handle(f"collection-{loan_id}"))

    async def readable():
        answer = await api.get(f"/v1/cases/{loan_id}")
        return answer if answer.status_code == 200 else None  # 503 while a loaded worker catches up

    status = await eventually(readable)
    assert status is not None and status.json()["outstanding_minor"] == 250_000, status and status.text
    assert status.json()["days_past_due"] == 5

    paid = await api.post(f"/v1/cases/{loan_id}/payments",
                          {"payment_id": "gw-1", "amount_minor": 250_000, "currency": "CNY",
                           "paid_at": datetime.now(UTC).isoformat()})
    assert paid.status_code == 202 and paid.json()["status"] == "delivered", paid.text

    async def cured():
        body = (await api.get(f"/v1/cases/{loan_id}")).json()
        return body if body.get("outcome") == "cured" else None

    final = await eventually(cured)
    assert final and final["outstanding_minor"] == 0 and final["paid_minor"] == 250_000

    async def listed():
        page = (await api.get("/v1/cases", outcome="cured", jurisdiction="CN")).json()
        # The outcome is upserted a moment before the run closes: wait for both.
        return [c for c in page["cases"] if c["loan_id"] == loan_id and c["execution_status"] == "completed"]

    found = await eventually(listed)
    assert found and found[0]["execution_status"] == "completed" and found[0]["outstanding_minor"] == 0

    contacts = (await api.get(f"/v1/cases/{loan_id}/contacts")).json()
    assert contacts["loan_id"] == loan_id and isinstance(contacts["contacts"], list)


async def test_a_repeated_write_gets_the_first_answer_and_a_reused_key_is_refused(api):
    loan_id = loan("API-IDEM")
    body = case_body(loan_id, dpd=2)
    first = await api.post("/v1/cases", body, idem="same-key")
    assert first.status_code in (201, 202), first.text
    api.harness.handles.append(api.harness.client.get_workflow_handle(f"collection-{loan_id}"))
    again = await api.post("/v1/cases", body, idem="same-key")
    assert first.status_code == again.status_code
    assert again.json() == first.json() and again.headers["Idempotent-Replayed"] == "true"

    other = await api.post("/v1/cases", {**body, "principal_due_minor": 1}, idem="same-key")
    assert other.status_code == 422
    assert other.json()["type"].endswith("idempotency-key-reused")

    # A new key for the same case: it is running, nothing changes, the differences are listed.
    rerun = await api.post("/v1/cases", {**body, "principal_due_minor": 1}, idem="another-key")
    assert rerun.status_code == 200 and rerun.json()["created"] is False
    assert any(d.startswith("principal_due_minor:") for d in rerun.json()["differences"])

    # The payment is applied once although posted twice under one key.
    payment = {"payment_id": "gw-9", "amount_minor": 1000, "currency": "CNY", "paid_at": datetime.now(UTC).isoformat()}
    for _ in range(2):
        assert (await api.post(f"/v1/cases/{loan_id}/payments", payment, idem="pay-once")).status_code == 202

    async def paid():
        body = (await api.get(f"/v1/cases/{loan_id}")).json()
        return body if body["paid_minor"] else None

    assert (await eventually(paid))["paid_minor"] == 1000


async def test_a_payment_without_a_running_case_is_held_for_reconciliation(api):
    unknown = loan("API-NOCASE")
    payment = {"payment_id": "gw-lost", "amount_minor": 5000, "currency": "CNY", "paid_at": datetime.now(UTC).isoformat()}
    answer = await api.post(f"/v1/cases/{unknown}/payments", payment)
    assert answer.status_code == 202
    assert answer.json()["status"] == "held_for_reconciliation" and answer.json()["reason"] == "no_case"
    assert unknown in answer.json()["detail"]

    held = (await api.get("/v1/reconciliation/payments", loan_id=unknown)).json()["payments"]
    assert [(p["payment_id"], p["amount_minor"], p["status"]) for p in held] == [("gw-lost", 5000, "held")]

    # A closed case: the payment is held too, with its reason.
    loan_id = loan("API-CLOSED")
    assert (await api.post("/v1/cases", case_body(loan_id, dpd=1, amount_minor=100))).status_code in (201, 202)
    await api.post(f"/v1/cases/{loan_id}/payments", {**payment, "payment_id": "gw-a", "amount_minor": 100})

    async def closed():
        return (await api.get(f"/v1/cases/{loan_id}")).json().get("outcome") == "cured"

    assert await eventually(closed)
    late = await api.post(f"/v1/cases/{loan_id}/payments", {**payment, "payment_id": "gw-late"})
    assert late.json()["status"] == "held_for_reconciliation" and late.json()["reason"] == "case_closed"
    with Session(api.harness.engine) as db:
        rows = db.exec(select(UnmatchedPayment).where(UnmatchedPayment.loan_id == loan_id)).all()
    assert [(r.payment_id, r.reason, r.amount_minor) for r in rows] == [("gw-late", "case_closed", 5000)]

    # A promise for a loan with no case is answered 404, naming the loan.
    promise = await api.post(f"/v1/cases/{unknown}/promises",
                             {"promise_id": "p1", "amount_minor": 10, "promised_date": "2030-01-01"})
    assert promise.status_code == 404 and promise.json()["errors"][0]["field"] == "loan_id"


async def test_keys_scopes_and_hashing(api):
    assert (await api.http.get("/v1/cases")).status_code == 401
    bad = await api.get("/v1/cases", key="lck_0123456789abcdef_" + "0" * 64)
    assert bad.status_code == 401 and bad.headers["WWW-Authenticate"].startswith("Bearer")
    refused = await api.post("/v1/cases", case_body(loan("API-RO"), dpd=1), key=api.reader)
    assert refused.status_code == 403 and "'write'" in refused.json()["detail"]
    assert (await api.get("/v1/api-keys", key=api.writer)).status_code == 403

    created = await api.post("/v1/api-keys", {"name": "agency portal", "scopes": ["read"]}, key=api.admin)
    assert created.status_code == 201
    new_key, new_id = created.json()["key"], created.json()["id"]
    assert (await api.get("/v1/cases", key=new_key, page_size=1)).status_code == 200
    with Session(api.harness.engine) as db:
        stored = db.get(ApiKey, new_id)
    assert stored.secret_sha256 not in new_key and new_key.split("_")[2] not in stored.model_dump_json()

    listed = (await api.get("/v1/api-keys", key=api.admin)).json()["keys"]
    assert new_id in [k["id"] for k in listed] and all("key" not in k for k in listed)
    revoked = await api.post(f"/v1/api-keys/{new_id}/revoke", None, key=api.admin)
    assert revoked.status_code == 200 and revoked.json()["revoked_at"]
    assert (await api.get("/v1/cases", key=new_key)).status_code == 401
    admin_id = api.admin.split("_")[1]
    itself = await api.post(f"/v1/api-keys/{admin_id}/revoke", None, key=api.admin)
    assert itself.status_code == 409


async def test_bad_input_is_a_problem_naming_the_field_and_the_rule(api):
    answer = await api.post("/v1/cases", {"loan_id": "bad id!", "borrower_id": "B", "principal_due_minor": -1,
                                          "oldest_due_date": "2026-13-01", "unknown": 1})
    assert answer.status_code == 422 and answer.headers["content-type"] == "application/problem+json"
    problem = answer.json()
    assert problem["status"] == 422 and problem["type"].endswith("invalid-input") and problem["instance"] == "/v1/cases"
    fields = {e["field"]: e["rule"] for e in problem["errors"]}
    assert fields["loan_id"].startswith("must be 1-64 characters")
    assert "greater than or equal to 0" in fields["principal_due_minor"]
    assert fields["oldest_due_date"] and fields["unknown"]

    # Domain rules the schema cannot say: the time zone, a due date in the future, the sum.
    tz_problem = await api.post("/v1/cases", {**case_body(loan("API-TZ"), dpd=1), "timezone": "Mars/Olympus"})
    assert tz_problem.status_code == 422 and tz_problem.json()["errors"][0]["field"] == "timezone"
    future = await api.post("/v1/cases", case_body(loan("API-FUT"), dpd=-3))
    assert future.status_code == 422 and future.json()["errors"][0]["field"] == "oldest_due_date"
    zero = await api.post("/v1/cases", case_body(loan("API-ZERO"), dpd=1, amount_minor=0))
    assert zero.status_code == 422

    missing_key = await api.http.post("/v1/cases", json=case_body(loan("API-NOIDEM"), dpd=1),
                                      headers={"Authorization": f"Bearer {api.writer}"})
    assert missing_key.status_code == 422 and missing_key.json()["errors"][0]["field"] == "header.Idempotency-Key"
    not_json = await api.http.post("/v1/cases", content=b"{nope", headers={
        "Authorization": f"Bearer {api.writer}", "Idempotency-Key": "x", "Content-Type": "application/json"})
    assert not_json.status_code == 422 and not_json.json()["type"].endswith("invalid-input")
    future_payment = await api.post("/v1/cases/L-1/payments", {
        "payment_id": "p", "amount_minor": 1, "currency": "CNY",
        "paid_at": (datetime.now(UTC) + timedelta(hours=1)).isoformat()})
    assert future_payment.status_code == 422 and future_payment.json()["errors"][0]["field"] == "paid_at"
    wrong_method = await api.http.delete("/v1/api-keys")
    assert wrong_method.status_code == 405 and wrong_method.headers["Allow"] == "GET, POST"


async def test_plans_outcomes_and_listing_by_stage_and_amount(api):
    tz = zone_in_contact_window()
    loan_id = loan("API-DEEP")
    opened = await api.post("/v1/cases", case_body(loan_id, dpd=8, amount_minor=1_200_000, tz=tz, region="CN-SH"))
    assert opened.status_code in (201, 202), opened.text
    api.harness.handles.append(api.harness.client.get_workflow_handle(f"collection-{loan_id}"))

    async def task_open():
        body = (await api.get(f"/v1/cases/{loan_id}")).json()
        return body if body.get("open_tasks") else None

    status = await eventually(task_open)
    assert status, "the DPD 7 agent call task should be open"
    task_key = status["open_tasks"][0]["task_key"]

    outcome = await api.post(f"/v1/cases/{loan_id}/contact-outcomes",
                             {"task_key": task_key, "outcome": "reached", "agent_id": "A-7", "note": "call after payday"})
    assert outcome.status_code == 200 and outcome.json()["outcome"] == "reached", outcome.text
    with Session(api.harness.engine) as db:
        assert [n.note for n in db.exec(select(ContactNote).where(ContactNote.loan_id == loan_id))] == ["call after payday"]

    today = calendar.local_date(datetime.now(UTC), tz)
    too_many = [str(today + timedelta(days=i + 1)) for i in range(13)]
    refused = await api.post(f"/v1/cases/{loan_id}/plans", {"plan_id": "PL-x", "kind": "instalments", "instalment_dates": too_many})
    assert refused.status_code == 422 and refused.json()["type"].endswith("rejected-by-case")
    assert refused.json()["errors"][0]["field"] == "instalment_dates"
    with Session(api.harness.engine) as db:
        assert db.exec(select(RejectedUpdate).where(RejectedUpdate.loan_id == loan_id)).first() is not None
    dates = [str(today + timedelta(days=d)) for d in (1, 15, 29)]
    plan = await api.post(f"/v1/cases/{loan_id}/plans", {"plan_id": "PL-1", "kind": "instalments", "instalment_dates": dates})
    assert plan.status_code == 200, plan.text
    assert [i["amount_minor"] for i in plan.json()["instalments"]] == [400_000, 400_000, 400_000]
    api.harness.child_ids.append(plan.json()["plan_workflow_id"])

    async def deep_listed():
        # "All cases in deep collection over 10,000 yuan in Shanghai."
        page = (await api.get("/v1/cases", stage="deep", region="CN-SH", min_outstanding_minor=1_000_001,
                              execution_status="running")).json()
        return [c for c in page["cases"] if c["loan_id"] == loan_id]

    listed = await eventually(deep_listed)
    assert listed and listed[0]["region"] == "CN-SH" and listed[0]["outstanding_minor"] == 1_200_000
    elsewhere = (await api.get("/v1/cases", stage="deep", region="CN-BJ")).json()["cases"]
    assert loan_id not in [c["loan_id"] for c in elsewhere]
    bad_region = await api.get("/v1/cases", region="Shanghai")
    assert bad_region.status_code == 422 and bad_region.json()["errors"][0]["field"] == "query.region"
    first = (await api.get("/v1/cases", page_size=1)).json()
    assert len(first["cases"]) == 1 and first["next_page_token"]
    second = (await api.get("/v1/cases", page_size=1, page_token=first["next_page_token"])).json()
    assert second["cases"][0]["workflow_id"] != first["cases"][0]["workflow_id"]
    other_filter = await api.get("/v1/cases", page_size=1, stage="deep", page_token=first["next_page_token"])
    assert other_filter.status_code == 422 and other_filter.json()["errors"][0]["field"] == "page_token"

    dispute = await api.post(f"/v1/cases/{loan_id}/signals/dispute_opened", {"dispute_id": "D-1", "reason_code": "amount"})
    assert dispute.status_code == 202 and dispute.json()["id"] == "D-1"
    bad_signal = await api.post(f"/v1/cases/{loan_id}/signals/dispute_opened", {"dispute": "D-1"})
    assert bad_signal.status_code == 422 and {e["field"] for e in bad_signal.json()["errors"]} >= {"dispute_id"}


async def test_health_readiness_and_metrics(api):
    assert (await api.http.get("/healthz")).json() == {"status": "ok", "checks": {}}
    ready = await api.http.get("/readyz")
    assert ready.status_code == 200 and ready.json() == {"status": "ok", "checks": {}}  # nothing more
    await api.get("/v1/cases", page_size=1)
    # Metrics are not on the public app (API_METRICS_BIND_ADDRESS serves them: tests/api/exposure_test.py).
    assert (await api.http.get("/metrics")).status_code == 404
    metrics = generate_latest(api.app.state.metrics.registry).decode()
    assert 'collections_api_requests_total{method="GET",route="/v1/cases",status="200"}' in metrics


async def test_what_the_newcomer_trial_broke(api):
    """Each of these once answered wrongly (found by trying the API as a newcomer would)."""
    # A new key's secret is never stored, not even for the replay of the request that made it.
    made = await api.post("/v1/api-keys", {"name": "gw", "scopes": ["write"]}, key=api.admin, idem="mk-1")
    secret = made.json()["key"]
    replay = await api.post("/v1/api-keys", {"name": "gw", "scopes": ["write"]}, key=api.admin, idem="mk-1")
    assert replay.status_code == 201 and replay.json()["key"] is None and replay.json()["id"] == made.json()["id"]
    with Session(api.harness.engine) as db:
        stored = " ".join(r.response_json or "" for r in db.exec(select(IdempotentRequest)))
    assert secret.split("_")[2] not in stored

    # A held payment id posted again with other values is refused, not silently dropped.
    unknown = loan("API-HELD")
    paid_at = datetime.now(UTC).isoformat()
    first = {"payment_id": "gw-u1", "amount_minor": 500, "currency": "CNY", "paid_at": paid_at}
    assert (await api.post(f"/v1/cases/{unknown}/payments", first)).json()["status"] == "held_for_reconciliation"
    assert (await api.post(f"/v1/cases/{unknown}/payments", first)).status_code == 202  # the same payment again
    clash = await api.post(f"/v1/cases/{unknown}/payments", {**first, "amount_minor": 777, "currency": "USD"})
    assert clash.status_code == 409 and clash.json()["errors"][0]["field"] == "payment_id"
    assert len((await api.get("/v1/reconciliation/payments", loan_id=unknown)).json()["payments"]) == 1

    # An Idempotency-Key left "in progress" by a process that died is taken up again.
    with Session(api.harness.engine) as db:
        key_id = api.writer.split("_")[1]
        db.add(IdempotentRequest(api_key_id=key_id, idempotency_key="orphan", method="POST", path="/v1/cases",
                                 request_sha256="x", created_at=datetime.now(UTC) - timedelta(minutes=10)))
        db.commit()
    retried = await api.post(f"/v1/cases/{loan('API-ORPHAN')}/payments", first, idem="orphan")
    assert retried.status_code == 202, retried.text

    # Reopening a case that ended is refused before anything starts; its result stays readable.
    loan_id = loan("API-REOPEN")
    body = case_body(loan_id, dpd=1, amount_minor=100)
    assert (await api.post("/v1/cases", body)).status_code in (201, 202)
    await api.post(f"/v1/cases/{loan_id}/payments", {**first, "payment_id": "p-all", "amount_minor": 100})

    async def cured():
        return (await api.get(f"/v1/cases/{loan_id}")).json().get("outcome") == "cured"

    assert await eventually(cured)

    async def recorded_closed():
        again = await api.post("/v1/cases", body)
        return again if again.status_code == 409 else None

    again = await eventually(recorded_closed)
    assert again is not None and again.json()["errors"][0]["field"] == "oldest_due_date"
    assert (await api.get(f"/v1/cases/{loan_id}")).json()["outcome"] == "cured"
    closed_plan = await api.post(f"/v1/cases/{loan_id}/plans", {"plan_id": "PL-9", "kind": "deferral",
                                                                "new_due_date": str(datetime.now(UTC).date() + timedelta(days=5))})
    assert closed_plan.status_code == 404 and "has closed" in closed_plan.json()["detail"]

    # Types are strict and amounts, dates and instants are bounded.
    strict = await api.post("/v1/cases", {**case_body(loan("API-STRICT"), dpd=1), "principal_due_minor": True})
    assert strict.status_code == 422 and strict.json()["errors"][0]["field"] == "principal_due_minor"
    text_amount = await api.post("/v1/cases", {**case_body(loan("API-STRICT"), dpd=1), "principal_due_minor": "100"})
    assert text_amount.status_code == 422
    ancient = await api.post("/v1/cases", {**case_body(loan("API-OLD"), dpd=1), "oldest_due_date": "0001-01-01"})
    assert ancient.status_code == 422 and ancient.json()["errors"][0]["field"] == "oldest_due_date"
    top = 9_007_199_254_740_991
    huge = await api.post("/v1/cases", {**case_body(loan("API-SUM"), dpd=1, amount_minor=top), "fees_due_minor": top})
    assert huge.status_code == 422 and "2^53-1" in huge.json()["detail"]
    old_payment = await api.post(f"/v1/cases/{unknown}/payments", {**first, "payment_id": "old", "paid_at": "1900-01-01T00:00:00Z"})
    assert old_payment.status_code == 422 and old_payment.json()["errors"][0]["field"] == "paid_at"

    # A misspelt or repeated filter is refused, not ignored (it would list the whole portfolio).
    typo = await api.get("/v1/cases", regoin="CN-SH")
    assert typo.status_code == 422 and typo.json()["errors"][0]["field"] == "query.regoin"
    twice = await api.http.get("/v1/cases?stage=deep&stage=legal", headers={"Authorization": f"Bearer {api.reader}"})
    assert twice.status_code == 422 and twice.json()["errors"][0]["field"] == "query.stage"

    # Bodies: JSON only, small, and a syntax error names the body, not a character position.
    headers = {"Authorization": f"Bearer {api.writer}", "Idempotency-Key": uuid.uuid4().hex}
    as_text = await api.http.post("/v1/cases", content=b"loan_id=1", headers={**headers, "Content-Type": "text/plain"})
    assert as_text.status_code == 415 and as_text.json()["errors"][0]["field"] == "header.Content-Type"
    large = await api.http.post("/v1/cases", content=b"{" + b" " * 100_000 + b"}",
                                headers={**headers, "Content-Type": "application/json"})
    assert large.status_code == 413
    broken = await api.http.post("/v1/cases", content=b'{"loan_id": ', headers={**headers, "Content-Type": "application/json"})
    assert broken.status_code == 422 and broken.json()["errors"][0]["field"] == "(body)"
    assert (await api.http.get("/v1/cases")).json()["errors"][0]["field"] == "header.Authorization"


async def test_a_case_no_worker_takes_is_answered_pending(api):
    """Opened on a task queue no worker polls: 202 with ``pending`` (the worker may still refuse
    it), never a 201 that claims the case opened."""
    settings = api.harness.settings.model_copy(update={"temporal_task_queue": f"idle-{uuid.uuid4().hex[:8]}"})
    idle = create_app(settings, client=api.harness.client, engine=api.harness.engine)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=idle), base_url="http://api") as http:
        loan_id = loan("API-IDLE")
        answer = await http.post("/v1/cases", json=case_body(loan_id, dpd=3),
                                 headers={"Authorization": f"Bearer {api.writer}", "Idempotency-Key": loan_id})
    handle = api.harness.client.get_workflow_handle(f"collection-{loan_id}")
    await handle.terminate(reason="test finished")
    assert answer.status_code == 202 and answer.json()["pending"] is True and answer.json()["created"] is True


async def test_what_the_second_trial_broke(api):
    """A chunked body past the limit, filters on the other lists, numbers for dates."""
    headers = {"Authorization": f"Bearer {api.writer}", "Idempotency-Key": uuid.uuid4().hex,
               "Content-Type": "application/json"}

    async def chunks():
        for _ in range(40):
            yield b" " * 4096  # 160 KB with no Content-Length

    chunked = await api.http.post("/v1/cases", content=chunks(), headers=headers)
    assert chunked.status_code == 413 and chunked.json()["errors"][0]["field"] == "(body)"
    typo = await api.get("/v1/reconciliation/payments", loan="x")
    assert typo.status_code == 422 and typo.json()["errors"][0]["field"] == "query.loan"
    assert (await api.get("/v1/api-keys", key=api.admin, x="1")).status_code == 422
    unix = await api.post("/v1/cases", {**case_body(loan("API-UNIX"), dpd=1), "oldest_due_date": 1795046400})
    assert unix.status_code == 422 and unix.json()["errors"][0]["field"] == "oldest_due_date"
    instant = await api.post("/v1/cases", {**case_body(loan("API-INST"), dpd=1), "oldest_due_date": "2026-11-20T00:00:00Z"})
    assert instant.status_code == 422
    paid_unix = await api.post(f"/v1/cases/{loan('API-PU')}/payments",
                               {"payment_id": "p", "amount_minor": 1, "currency": "CNY", "paid_at": 1795046400})
    assert paid_unix.status_code == 422 and paid_unix.json()["errors"][0]["field"] == "paid_at"


async def test_opening_a_running_case_with_new_arrears_forwards_them_and_the_loan_book_scans(api):
    """Issue 11: opening the same loan again with a second instalment due used to return the
    running case with the old amount. Now the instalment it lacks is sent to it (and listed);
    and a loan put in the book over HTTP is found by ``POST /v1/scans`` on its own."""
    loan_id = loan("API-GROW")
    tz = zone_in_contact_window()
    today = calendar.local_date(datetime.now(UTC), tz)
    first = {"instalment_id": "1", "due_date": str(today - timedelta(days=12)), "principal_minor": 250_000}
    second = {"instalment_id": "2", "due_date": str(today - timedelta(days=2)), "principal_minor": 350_000}
    body = case_body(loan_id, dpd=12, amount_minor=0, instalments=[first])
    opened = await api.post("/v1/cases", body, idem=f"open-{loan_id}")
    assert opened.status_code in (201, 202), opened.text
    api.harness.handles.append(api.harness.client.get_workflow_handle(f"collection-{loan_id}"))

    async def readable():
        answer = await api.get(f"/v1/cases/{loan_id}")
        return answer.json() if answer.status_code == 200 else None

    assert (await eventually(readable))["outstanding_minor"] == 250_000
    again = await api.post("/v1/cases", {**body, "instalments": [first, second]}, idem=f"open-again-{loan_id}")
    assert again.status_code == 200, again.text
    assert again.json()["created"] is False and again.json()["forwarded_instalments"] == ["2"]

    async def grown():
        st = await readable()
        return st if st and st["outstanding_minor"] == 600_000 else None

    st = await eventually(grown)
    assert st and st["days_past_due"] == 12 and [line["instalment_id"] for line in st["ledger"]["lines"]] == ["1", "2"]
    paid = await api.post(f"/v1/cases/{loan_id}/payments", {"payment_id": "gw-g1", "amount_minor": 250_000,
                                                            "currency": "CNY", "paid_at": datetime.now(UTC).isoformat()})
    assert paid.json()["status"] == "delivered"

    async def moved():
        st = await readable()
        return st if st and st["days_past_due"] == 2 else None

    assert (await eventually(moved))["outstanding_minor"] == 350_000

    # A loan of the book, overdue: the scan opens its case, with the reason.
    booked = loan("API-BOOK")
    made = await api.post("/v1/loans", {"loan_id": booked, "borrower_id": "B-api", "timezone": tz, "portfolio": "no-accrual",
                                        "instalments": [{**first}, {"instalment_id": "2", "due_date": str(today + timedelta(days=20)),
                                                                     "principal_minor": 250_000}]})
    assert made.status_code == 201, made.text
    assert made.json()["ledger"]["days_past_due"] == 12 and made.json()["ledger"]["not_yet_due_minor"] == 250_000
    scan = await api.post("/v1/scans", {"time_zone": tz})
    assert scan.status_code == 202, scan.text
    api.harness.handles.append(api.harness.client.get_workflow_handle(f"collection-{booked}"))

    async def found():
        answer = await api.get(f"/v1/cases/{booked}")
        return answer.json() if answer.status_code == 200 else None

    case = await eventually(found, timeout=30)
    assert case and case["opening_reason"]["source"] == "scan" and case["days_past_due"] == 12, case
    assert [line["instalment_id"] for line in case["ledger"]["lines"]] == ["1"]  # the second is not due yet


async def test_the_loan_book_over_http_refuses_what_every_entry_point_refuses(api):
    """From the newcomer trial of the loan book: these answered 500, or 201/202 and then left the
    loan or the money stuck or invisible. Each is now a 422 naming the field and the rule."""
    today = datetime.now(UTC).date()
    line = {"instalment_id": "1", "due_date": str(today - timedelta(days=3)), "principal_minor": 1_000}
    booked = loan("API-REF")
    cases = [
        ({"instalments": [{**line, "principal_minor": 9007199254740991, "interest_minor": 9007199254740991}]}, "2^53-1"),
        ({"instalments": [line, line]}, "each instalment_id once"),
        ({"instalments": [{**line, "penalty_minor": 100}]}, "penalty_minor: the loan book takes principal"),
        ({"currency": "XXX"}, "has no thresholds for XXX"),
    ]
    for extra, rule in cases:
        answer = await api.post("/v1/loans", {"loan_id": booked, "borrower_id": "B-api", "instalments": [line], **extra})
        assert answer.status_code == 422 and rule in answer.text, (extra, answer.status_code, answer.text)
    made = await api.post("/v1/loans", {"loan_id": booked, "borrower_id": "B-api", "instalments": [line]})
    assert made.status_code == 201, made.text
    usd = await api.post(f"/v1/loans/{booked}/payments", {"payment_id": "usd-1", "amount_minor": 500, "currency": "USD",
                                                          "paid_at": datetime.now(UTC).isoformat()})
    assert usd.status_code == 202 and usd.json()["status"] == "held_for_reconciliation", usd.text
    assert usd.json()["reason"] == "wrong_currency"
    future = await api.post(f"/v1/loans/{booked}/payments", {"payment_id": "f-1", "amount_minor": 500, "currency": "CNY",
                                                             "paid_at": (datetime.now(UTC) + timedelta(days=30)).isoformat()})
    assert future.status_code == 422 and "paid_at: must not be in the future" in future.text
    empty = await api.post(f"/v1/loans/{booked}/adjustments", {"adjustment_id": "A-0", "reason_code": "other"})
    assert empty.status_code == 422 and "an adjustment cancels or adds at least one instalment" in empty.text, empty.text
    mars = await api.post("/v1/scans", {"time_zone": "Mars/Base"})
    assert mars.status_code == 422 and "'Mars/Base' is not an IANA time zone name" in mars.text, mars.text
    for path in (f"/v1/loans/{booked}", f"/v1/cases/{booked}", f"/v1/cases/{booked}/contacts"):
        typo = await api.get(path, foo="1")
        assert typo.status_code == 422 and "query.foo: this resource takes no query parameters" in typo.text, (path, typo.text)
