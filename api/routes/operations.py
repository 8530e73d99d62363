"""Operations: liveness and readiness. The API's Prometheus metrics are not served here but on
a listener of their own (``API_METRICS_BIND_ADDRESS``, ``api.app.start_metrics_server``)."""

import asyncio
from datetime import timedelta

from fastapi import APIRouter, Request
from sqlalchemy import text
from sqlmodel import Session

from api.deps import client_of, engine_of
from api.problems import OUTAGE_RETRY_AFTER_SECONDS, ProblemError, problem_responses
from api.schemas import Health
from collections_domain.ops.logs import get_logger

log = get_logger("api")

router = APIRouter(tags=["operations"])


@router.get("/healthz", response_model=Health)
async def healthz() -> Health:
    """Liveness: the process answers."""
    return Health(status="ok")


async def _not_ready(request: Request) -> str | None:
    """What is not ready (``"database"``, ``"temporal"``) or ``None``; each check is bounded by
    the API's timeouts (``API_DATABASE_TIMEOUT_SECONDS``, ``API_TEMPORAL_TIMEOUT_SECONDS``)."""
    from temporalio.api.workflowservice.v1 import GetSystemInfoRequest

    def database_ok() -> None:
        with Session(engine_of(request)) as db:
            db.exec(text("SELECT 1"))

    try:
        await asyncio.to_thread(database_ok)
    except Exception as err:  # noqa: BLE001  (not ready, whatever the reason)
        log.warning("api.not_ready", check="database", error=type(err).__name__)
        return "database"
    timeout = timedelta(seconds=request.app.state.settings.api_temporal_timeout_seconds)
    try:
        client = await client_of(request)
        await client.workflow_service.get_system_info(GetSystemInfoRequest(), timeout=timeout)
    except Exception as err:  # noqa: BLE001  (not ready, whatever the reason)
        log.warning("api.not_ready", check="temporal", error=type(err).__name__)
        return "temporal"
    return None


@router.get("/readyz", response_model=Health, responses=problem_responses(503))
async def readyz(request: Request) -> Health:
    """Readiness: ``{"status": "ok"}`` when the database and Temporal both answer, else a 503
    ``not-ready`` problem with ``Retry-After``. It says no more (no addresses, versions or
    which check failed: the API's log says which)."""
    if await _not_ready(request):
        raise ProblemError(503, "not-ready", "not ready", headers={"Retry-After": str(OUTAGE_RETRY_AFTER_SECONDS)})
    return Health(status="ok")
