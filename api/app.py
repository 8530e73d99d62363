"""The HTTP API: open a case, post payments, promises and other signals, propose a plan, record a
contact outcome, read a case's status and contact history, list cases through Temporal
visibility, and manage API keys. OpenAPI at ``/openapi.json``, docs at ``/docs``.

Every ``/v1`` path needs ``Authorization: Bearer <API key>`` with the scope it names (``read``,
``write``, ``admin``); every POST needs an ``Idempotency-Key`` header. Errors are RFC 9457 problem
details naming the field and the rule (``api.problems``).

Serve it with ``starter.py api`` (uvicorn); settings are the process's (``TEMPORAL_ADDRESS``,
``TEMPORAL_NAMESPACE``, ``TEMPORAL_TASK_QUEUE``, ``DATABASE_URL``).
"""


import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from sqlalchemy.engine import Engine
from starlette.exceptions import HTTPException as StarletteHTTPException
from temporalio.client import Client

from api.deps import Metrics
from api.middleware import BodyLimit, count_requests
from api.problems import ProblemError, handle_http, handle_problem, handle_validation, problem_responses
from api.routes import cases, loans, operations, reconciliation
from api.routes import keys as api_keys
from collections_domain.store.db import make_engine
from collections_domain.ops.settings import Settings, get_settings


def create_app(settings: Settings | None = None, *, client: Client | None = None, engine: Engine | None = None) -> FastAPI:
    """The API for ``settings`` (default: the process's). ``client`` and ``engine`` are for tests;
    without them the app connects to Temporal on first use and opens ``DATABASE_URL``."""
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.engine = engine or await asyncio.to_thread(make_engine, settings.resolved_database_url)
        yield

    app = FastAPI(
        title="loan-collections API",
        version="1",
        summary="Open and drive delinquent-loan collections cases running on Temporal.",
        description=__doc__,
        lifespan=lifespan,
        responses=problem_responses(400, 401, 413, 415, 422),
    )
    app.state.settings = settings
    app.state.client = client
    app.state.client_lock = asyncio.Lock()
    app.state.engine = engine
    app.state.metrics = Metrics()
    app.add_exception_handler(ProblemError, handle_problem)
    app.add_exception_handler(RequestValidationError, handle_validation)
    app.add_exception_handler(StarletteHTTPException, handle_http)
    app.add_middleware(BodyLimit)
    app.middleware("http")(count_requests)

    app.include_router(operations.router)
    app.include_router(cases.router)
    app.include_router(loans.router)
    app.include_router(reconciliation.router)
    app.include_router(api_keys.router)
    return app
