"""The codec server (``/codec``): decrypted payloads only for a ``decode`` key, by bearer or by
the cookie ``/codec/login`` sets; CORS only for the UI's origins (issue 12, item 2)."""

from __future__ import annotations

import base64

import pytest
from fastapi.testclient import TestClient
from temporalio.api.common.v1 import Payload

from api.app import create_app
from api.keys import create_api_key
from collections_domain.ops.codec import KeyRing, data_converter
from collections_domain.ops.settings import Settings
from collections_domain.store.db import make_engine
from tests.databases import fresh_database_url
from tests.keys import TEST_CONVERTER, TEST_PAYLOAD_KEYS

UI = "http://localhost:8233"


@pytest.fixture
def api(tmp_path):
    engine = make_engine(fresh_database_url(tmp_path, "codec"))
    settings = Settings(data_dir=tmp_path, payload_keys=TEST_PAYLOAD_KEYS, database_url=str(engine.url))
    keys = {scopes: create_api_key(engine, "k-" + scopes.replace(",", "-"), scopes.split(","))[1]
            for scopes in ("read,write", "decode", "admin")}
    with TestClient(create_app(settings, engine=engine)) as http:
        yield http, keys
    engine.dispose()


def wire(payload: Payload) -> dict:
    return {"metadata": {k: base64.b64encode(v).decode() for k, v in payload.metadata.items()},
            "data": base64.b64encode(payload.data).decode()}


async def encrypted(value) -> dict:
    [payload] = await TEST_CONVERTER.encode([value])
    assert payload.metadata["encoding"] == b"binary/encrypted"
    return wire(payload)


async def test_a_decode_key_sees_the_payload_and_others_do_not(api):
    http, keys = api
    body = {"payloads": [await encrypted({"loan_id": "L-1", "amount_minor": 250000})]}
    assert http.post("/codec/decode", json=body).status_code == 401
    assert http.post("/codec/decode", json=body, headers={"Authorization": "Bearer " + keys["read,write"]}).status_code == 403
    answer = http.post("/codec/decode", json=body, headers={"Authorization": "Bearer " + keys["decode"]})
    assert answer.status_code == 200 and answer.headers["cache-control"] == "no-store"
    [decoded] = answer.json()["payloads"]
    assert base64.b64decode(decoded["metadata"]["encoding"]) == b"json/plain"
    assert base64.b64decode(decoded["data"]) == b'{"loan_id":"L-1","amount_minor":250000}'


async def test_the_browser_logs_in_once_and_the_ui_origin_may_call(api):
    http, keys = api
    body = {"payloads": [await encrypted("hello")]}
    assert http.post("/codec/login", json={"key": keys["read,write"]}).status_code == 403
    login = http.post("/codec/login", json={"key": keys["decode"]})
    assert login.status_code == 200
    cookie = login.headers["set-cookie"]
    assert "HttpOnly" in cookie and "Path=/codec" in cookie and "SameSite=lax" in cookie
    answer = http.post("/codec/decode", json=body, headers={"Origin": UI})
    assert answer.status_code == 200 and answer.headers["access-control-allow-origin"] == UI
    assert answer.headers["access-control-allow-credentials"] == "true"
    preflight = http.options("/codec/decode", headers={"Origin": UI, "Access-Control-Request-Method": "POST"})
    assert preflight.status_code == 204 and "x-namespace" in preflight.headers["access-control-allow-headers"]
    other = http.options("/codec/decode", headers={"Origin": "https://evil.example"})
    assert "access-control-allow-origin" not in other.headers
    assert http.post("/codec/logout").status_code == 204
    http.cookies.clear()
    assert http.post("/codec/decode", json=body).status_code == 401


async def test_encode_decode_and_what_cannot_be_decoded(api):
    http, keys = api
    auth = {"Authorization": "Bearer " + keys["decode"]}
    [plain] = TEST_CONVERTER.payload_converter.to_payloads(["clear"])
    sealed = http.post("/codec/encode", json={"payloads": [wire(plain)]}, headers=auth).json()["payloads"]
    assert base64.b64decode(sealed[0]["metadata"]["encoding"]) == b"binary/encrypted"
    back = http.post("/codec/decode", json={"payloads": sealed}, headers=auth).json()["payloads"]
    assert base64.b64decode(back[0]["data"]) == b'"clear"'
    [other_ring] = await data_converter(KeyRing.generate("other-9")).encode(["x"])
    unknown = http.post("/codec/decode", json={"payloads": [wire(other_ring)]}, headers=auth)
    assert unknown.status_code == 422 and "other-9" in unknown.json()["detail"]
    tampered = dict(sealed[0], data=base64.b64encode(b"\0" * 40).decode())
    assert http.post("/codec/decode", json={"payloads": [tampered]}, headers=auth).status_code == 422
    bad = http.post("/codec/decode", json={"payloads": "no"}, headers=auth)
    assert bad.status_code == 422 and bad.json()["errors"][0]["field"] == "payloads"


async def test_an_admin_creates_a_decode_key_over_http(api):
    """Found by a newcomer trial: the key API refused the scope the codec server needs."""
    http, keys = api
    made = http.post("/v1/api-keys", json={"name": "ops-ana", "scopes": ["decode"]},
                     headers={"Authorization": "Bearer " + keys["admin"], "Idempotency-Key": "k-ops-ana"})
    assert made.status_code == 201, made.text
    body = {"payloads": [await encrypted("hello")]}
    answer = http.post("/codec/decode", json=body, headers={"Authorization": "Bearer " + made.json()["key"]})
    assert answer.status_code == 200
    assert http.get("/v1/cases", headers={"Authorization": "Bearer " + made.json()["key"]}).status_code == 403
