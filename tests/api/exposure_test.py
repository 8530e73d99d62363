"""What the public app shows: no ``/docs``, ``/redoc``, ``/openapi.json`` unless
``API_DOCS_ENABLED``; no ``/metrics`` (served on ``API_METRICS_BIND_ADDRESS`` only); ``/healthz``;
``/readyz`` says ready or not ready and nothing more."""

import httpx

from api.app import create_app
from collections_domain.store.db import make_engine
from tests.api.conftest import api_settings, free_port

DOC_PATHS = ("/docs", "/redoc", "/openapi.json", "/docs/oauth2-redirect")


def http(app) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api")


async def test_docs_and_metrics_are_not_on_the_public_app_by_default(tmp_path):
    settings = api_settings(tmp_path)
    app = create_app(settings, engine=make_engine(settings.resolved_database_url))
    async with http(app) as client:
        for path in (*DOC_PATHS, "/metrics"):
            answer = await client.get(path)
            assert answer.status_code == 404, (path, answer.text)
            assert answer.headers["content-type"] == "application/problem+json"
        assert (await client.get("/healthz")).json() == {"status": "ok", "checks": {}}
    assert app.openapi()["paths"]["/v1/cases"]  # still built in process (the Schemathesis test uses it)


async def test_docs_when_enabled(tmp_path):
    settings = api_settings(tmp_path, api_docs_enabled=True)
    async with http(create_app(settings, engine=make_engine(settings.resolved_database_url))) as client:
        for path in ("/docs", "/redoc", "/openapi.json"):
            assert (await client.get(path)).status_code == 200, path
        assert "/metrics" not in (await client.get("/openapi.json")).json()["paths"]


async def test_metrics_on_their_own_listener_only(tmp_path):
    port = free_port()
    settings = api_settings(tmp_path, api_metrics_bind_address=f"127.0.0.1:{port}")
    app = create_app(settings, engine=make_engine(settings.resolved_database_url))
    async with app.router.lifespan_context(app), http(app) as client:
        await client.get("/healthz")
        assert (await client.get("/metrics")).status_code == 404
        async with httpx.AsyncClient() as scraper:
            scraped = await scraper.get(f"http://127.0.0.1:{port}/metrics")
        assert scraped.status_code == 200
        assert 'collections_api_requests_total{method="GET",route="/healthz",status="200"}' in scraped.text
    async with httpx.AsyncClient() as scraper:  # stopped with the app
        try:
            await scraper.get(f"http://127.0.0.1:{port}/metrics", timeout=2)
            raise AssertionError("the metrics listener outlived the app")
        except httpx.TransportError:
            pass


async def test_readyz_says_not_ready_and_nothing_more(tmp_path):
    settings = api_settings(tmp_path)  # Temporal: a closed port
    port = settings.temporal_address.rpartition(":")[2]
    async with http(create_app(settings, engine=make_engine(settings.resolved_database_url))) as client:
        answer = await client.get("/readyz")
    assert answer.status_code == 503 and answer.headers["content-type"] == "application/problem+json"
    assert answer.headers["retry-after"]
    assert answer.json()["detail"] == "not ready" and answer.json()["errors"] == []
    assert port not in answer.text and "temporal" not in answer.text.lower() and "database" not in answer.text.lower()
