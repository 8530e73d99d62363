"""Failed authentication is throttled per client address and per key id: past
``API_AUTH_FAILURES_PER_MINUTE`` failures in a minute, 429 problem+json with ``Retry-After``;
others' failures on another address and another key do not throttle anyone else."""

import httpx
import pytest

from api import keys
from api.app import create_app
from api.throttle import FailureThrottle
from collections_domain.store.db import make_engine
from tests.api.conftest import api_settings

LIMIT = 5
PATH = "/v1/reconciliation/payments"  # database only: no Temporal needed


@pytest.fixture
def app_and_keys(tmp_path):
    settings = api_settings(tmp_path, api_auth_failures_per_minute=LIMIT)
    engine = make_engine(settings.resolved_database_url)
    reader = keys.create_api_key(engine, "dashboard", ["read"])[1]
    other = keys.create_api_key(engine, "gateway", ["read"])[1]
    return create_app(settings, engine=engine), reader, other


def from_address(app, address: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app, client=(address, 40000)), base_url="http://api")


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def assert_throttled(answer: httpx.Response) -> None:
    assert answer.status_code == 429, answer.text
    assert answer.headers["content-type"] == "application/problem+json"
    assert 1 <= int(answer.headers["retry-after"]) <= 60
    assert answer.json()["errors"][0]["field"] == "header.Authorization"


async def test_wrong_keys_from_one_address_are_throttled_there_only(app_and_keys):
    app, reader, _ = app_and_keys
    async with from_address(app, "10.0.0.1") as attacker, from_address(app, "10.0.0.2") as neighbour:
        for n in range(LIMIT):
            made_up = f"lck_{n:016x}_{'0' * 64}"
            assert (await attacker.get(PATH, headers=bearer(made_up))).status_code == 401
        assert_throttled(await attacker.get(PATH, headers=bearer("lck_ffffffffffffffff_" + "0" * 64)))
        assert_throttled(await attacker.get(PATH, headers=bearer("not-a-key")))
        # Blocked means blocked, right key or not (a 429 only for wrong ones would tell which were right).
        assert_throttled(await attacker.get(PATH, headers=bearer(reader)))
        # Another address with a good key is not affected.
        assert (await neighbour.get(PATH, headers=bearer(reader))).status_code == 200


async def test_wrong_secrets_for_one_key_id_throttle_that_key_id_only(app_and_keys):
    app, reader, other = app_and_keys
    key_id = reader.split("_")[1]
    for n in range(LIMIT):  # a distributed guesser: each try from a new address
        async with from_address(app, f"10.1.0.{n}") as guesser:
            wrong = f"lck_{key_id}_{n:064x}"
            assert (await guesser.get(PATH, headers=bearer(wrong))).status_code == 401
    async with from_address(app, "10.2.0.1") as owner:
        assert_throttled(await owner.get(PATH, headers=bearer(reader)))
        assert (await owner.get(PATH, headers=bearer(other))).status_code == 200


async def test_good_requests_do_not_count(app_and_keys):
    app, reader, _ = app_and_keys
    async with from_address(app, "10.3.0.1") as client:
        for _ in range(LIMIT * 3):
            assert (await client.get(PATH, headers=bearer(reader))).status_code == 200
        assert (await client.get(PATH)).status_code == 401  # no key at all: not a guess, not counted
        assert (await client.get(PATH, headers=bearer(reader))).status_code == 200


def test_failures_leave_the_window():
    now = [1000.0]
    throttle = FailureThrottle(limit=3, window=60, clock=lambda: now[0])
    for _ in range(3):
        throttle.fail("addr:a")
        now[0] += 10
    assert throttle.retry_after("addr:a") == 30  # the oldest failure leaves the window at 1060
    assert throttle.retry_after("addr:b") is None
    now[0] += 30
    assert throttle.retry_after("addr:a") is None


def test_tracked_names_are_bounded():
    throttle = FailureThrottle(limit=1, max_tracked=100)
    for n in range(1000):
        throttle.fail(f"key:{n:016x}")
    assert len(throttle._failures) == 100 and throttle.retry_after("key:" + f"{999:016x}") is not None
