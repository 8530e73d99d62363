"""The HTTP API: open a case, post payments, promises and other signals, propose a plan, record a
contact outcome, read a case's status and contact history, list cases through Temporal
visibility, and manage API keys. OpenAPI at ``/openapi.json``, docs at ``/docs`` and ``/redoc``
when ``API_DOCS_ENABLED=true`` (off by default); Prometheus metrics on their own listener at
``API_METRICS_BIND_ADDRESS`` (off when empty), never on the public app.

Every ``/v1`` path needs ``Authorization: Bearer <API key>`` with the scope it names (``read``,
``write``, ``admin``); every POST needs an ``Idempotency-Key`` header. Errors are RFC 9457 problem
details naming the field and the rule (``api.problems``).

Serve it with ``starter.py api`` (uvicorn); settings are the process's (``TEMPORAL_ADDRESS``,
``TEMPORAL_NAMESPACE``, ``TEMPORAL_TASK_QUEUE``, ``DATABASE_URL``, ``API_*``).

Under faults: a database lock or outage answers 503 ``database-unavailable`` within about
``API_DATABASE_TIMEOUT_SECONDS`` (2 s) a statement, Temporal unreachable 503
``temporal-unavailable`` within about ``API_TEMPORAL_TIMEOUT_SECONDS`` (3 s) a call, both
problem+json with ``Retry-After``. Under attack: ambiguous framing is a 400 and the connection is
closed; failed authentication is throttled (429, ``API_AUTH_FAILURES_PER_MINUTE``).
"""


import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from prometheus_client import start_http_server
from fastapi.exceptions import RequestValidationError
from sqlalchemy.engine import Engine
from starlette.exceptions import HTTPException as StarletteHTTPException
from temporalio.client import Client

from api.database import make_api_engine
from api.deps import Metrics
from api.middleware import BodyLimit, RefuseAmbiguousFraming, count_requests
from api.problems import (
    OUTAGE_ERRORS,
    ProblemError,
    handle_http,
    handle_outage,
    handle_problem,
    handle_validation,
    problem_responses,
)
from api.throttle import FailureThrottle
from api.routes import cases, codec, loans, operations, reconciliation, reports
from api.routes import keys as api_keys
from collections_domain.ops.settings import Settings, get_settings


def uvicorn_options(settings: Settings) -> dict:
    """How uvicorn serves the API: ``X-Forwarded-For`` is believed only from
    ``API_FORWARDED_ALLOW_IPS`` (uvicorn alone would believe it from 127.0.0.1, so any local
    client could name its own address and slip the per-address throttle: found by a trial)."""
    proxies = settings.api_forwarded_allow_ips.strip()
    return {"proxy_headers": bool(proxies), "forwarded_allow_ips": proxies or None}


def create_app(settings: Settings | None = None, *, client: Client | None = None, engine: Engine | None = None) -> FastAPI:
    """The API for ``settings`` (default: the process's). ``client`` and ``engine`` are for tests;
    without them the app connects to Temporal on first use and opens ``DATABASE_URL`` with the
    API's timeouts (``api.database.make_api_engine``). ``client`` is used on a connection of its
    own with the API's retry budget (``deps.bounded_client``)."""
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.engine = engine or await asyncio.to_thread(make_api_engine, settings)
        metrics_server = start_metrics_server(settings.api_metrics_bind_address, app.state.metrics)
        try:
            yield
        finally:
            if metrics_server is not None:
                metrics_server.shutdown()
                metrics_server.server_close()

    docs = settings.api_docs_enabled
    app = FastAPI(
        title="loan-collections API",
        version="1",
        summary="Open and drive delinquent-loan collections cases running on Temporal.",
        description=__doc__,
        lifespan=lifespan,
        responses=problem_responses(400, 401, 413, 415, 422, 429),
        docs_url="/docs" if docs else None,
        redoc_url="/redoc" if docs else None,
        openapi_url="/openapi.json" if docs else None,
    )
    app.state.settings = settings
    app.state.given_client = client
    app.state.client = None
    app.state.auth_throttle = FailureThrottle(settings.api_auth_failures_per_minute)
    app.state.client_lock = asyncio.Lock()
    app.state.engine = engine
    app.state.metrics = Metrics()
    app.add_exception_handler(ProblemError, handle_problem)
    app.add_exception_handler(RequestValidationError, handle_validation)
    app.add_exception_handler(StarletteHTTPException, handle_http)
    for error in OUTAGE_ERRORS:
        app.add_exception_handler(error, handle_outage)
    app.add_middleware(BodyLimit)
    app.middleware("http")(count_requests)
    app.add_middleware(RefuseAmbiguousFraming)  # added last: runs first

    app.include_router(operations.router)
    app.include_router(cases.router)
    app.include_router(loans.router)
    app.include_router(reconciliation.router)
    app.include_router(reports.router)
    app.include_router(api_keys.router)
    app.include_router(codec.router)
    return app


def start_metrics_server(bind_address: str, metrics: Metrics):
    """Serve ``metrics`` at ``http://<bind_address>/metrics`` on a listener of its own
    (``prometheus_client``'s, in a daemon thread); ``None`` when ``bind_address`` is empty.
    Returns the server (``shutdown()`` and ``server_close()`` stop it).

    Raises:
        ValueError: ``bind_address`` is not ``host:port``.
        OSError: the port is taken.
    """
    if not bind_address:
        return None
    host, sep, port = bind_address.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(f"API_METRICS_BIND_ADDRESS: must be host:port, got {bind_address!r}")
    server, _thread = start_http_server(int(port), addr=host.strip("[]") or "127.0.0.1", registry=metrics.registry)
    return server
