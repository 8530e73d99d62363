"""``GET /v1/reports/kpis``: the KPI report of the filters as JSON (``KpiReport``, the same figures
as ``compute_kpis``), with scope ``read``; unknown, repeated and malformed query parameters are
422 problems naming the parameter; its OpenAPI names every filter and the answer's schema."""

from __future__ import annotations

from datetime import date

import httpx
import pytest

from api import keys
from api.app import create_app
from collections_domain.analytics.figures import Filters, KpiReport
from collections_domain.analytics.kpis import compute_kpis
from collections_domain.rules.policy import PolicyRegistry
from collections_domain.store.db import make_engine
from tests.analytics.fixture import kpi_policy, write_portfolio
from tests.api.conftest import api_settings
from tests.databases import fresh_database_url

PATH = "/v1/reports/kpis"


@pytest.fixture
def served(tmp_path):
    """The app on a database holding the analytics fixture's portfolio, a read key and a write key."""
    engine = make_engine(fresh_database_url(tmp_path))
    write_portfolio(engine, kpi_policy())
    app = create_app(api_settings(tmp_path), engine=engine)
    reader = keys.create_api_key(engine, "reader", ["read"])[1]
    writer = keys.create_api_key(engine, "writer", ["write"])[1]
    yield app, engine, {"Authorization": f"Bearer {reader}"}, {"Authorization": f"Bearer {writer}"}
    engine.dispose()


def http(app) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api")


def without_instant(report: dict) -> dict:
    return {name: value for name, value in report.items() if name != "generated_at"}


async def test_the_report_is_the_kpis_of_the_filters(served):
    app, engine, reader, _ = served
    query = {"strategy_arm": "exp1:b", "opened_from": "2026-01-01", "opened_to": "2026-03-31", "jurisdiction": "CN"}
    async with http(app) as client:
        answer = await client.get(PATH, params=query, headers=reader)
        everything = await client.get(PATH, headers=reader)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    KpiReport.model_validate(body)
    filters = Filters(strategy_arm="exp1:b", opened_from=date(2026, 1, 1), opened_to=date(2026, 3, 31), jurisdiction="CN")
    assert body["filters"] == filters.model_dump(mode="json")
    assert body["cases"] == 1  # C2: exp1:b in CN, opened 01-06
    # The API's policy is the packaged one (its unit costs): the same figures as compute_kpis with it.
    policy = PolicyRegistry.from_settings(None).current
    assert without_instant(body) == without_instant(compute_kpis(engine, policy, filters).model_dump(mode="json"))
    assert everything.status_code == 200 and everything.json()["cases"] == 7


async def test_it_needs_a_key_with_scope_read(served):
    app, _, _, writer = served
    async with http(app) as client:
        anonymous = await client.get(PATH)
        written = await client.get(PATH, headers=writer)
    assert anonymous.status_code == 401 and anonymous.headers["content-type"] == "application/problem+json"
    assert written.status_code == 403 and "needs 'read'" in written.json()["detail"]


@pytest.mark.parametrize(("query", "field", "rule"), [
    ({"arm": "exp1:b"}, "query.arm", "not a filter of this list"),
    ([("jurisdiction", "CN"), ("jurisdiction", "UK")], "query.jurisdiction", "given more than once"),
    ({"opened_from": "2026-13-01"}, "query.opened_from", "valid date"),
    ({"opened_from": "1767225600"}, "query.opened_from", "YYYY-MM-DD"),
    ({"opened_to": "2026-02-30"}, "query.opened_to", "valid date"),
    ({"opened_from": "2026-03-01", "opened_to": "2026-02-01"}, "query.opened_to", "must not be before opened_from"),
    ({"jurisdiction": "FR"}, "query.jurisdiction", "Input should be"),
    ({"channel": "fax"}, "query.channel", "Input should be"),
    ({"strategy_arm": "exp1 b"}, "query.strategy_arm", "pattern"),
])
async def test_a_bad_query_is_refused_naming_the_parameter(served, query, field, rule):
    app, _, reader, _ = served
    async with http(app) as client:
        answer = await client.get(PATH, params=query, headers=reader)
    assert answer.status_code == 422, answer.text
    assert answer.headers["content-type"] == "application/problem+json"
    [problem] = answer.json()["errors"]
    assert problem["field"] == field and rule in problem["rule"]


def test_the_openapi_names_every_filter_and_the_report(served):
    app = served[0]
    operation = app.openapi()["paths"][PATH]["get"]
    assert [p["name"] for p in operation["parameters"]] == list(Filters.model_fields)
    assert all(p["in"] == "query" and not p["required"] for p in operation["parameters"])
    assert operation["responses"]["200"]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/KpiReport"}
    assert {"401", "403", "422", "503"} <= set(operation["responses"])
