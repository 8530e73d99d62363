"""Operations: liveness, readiness and the API's Prometheus metrics."""

import asyncio

from fastapi import APIRouter, Request
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import text
from sqlmodel import Session
from temporalio.service import RPCError

from api.deps import RPC_TIMEOUT, client_of, engine_of, rpc_problem
from api.problems import ProblemError, problem_responses
from api.schemas import Health

router = APIRouter(tags=["operations"])


@router.get("/healthz", response_model=Health)
async def healthz() -> Health:
    """Liveness: the process answers."""
    return Health(status="ok")


@router.get("/readyz", response_model=Health, responses=problem_responses(503))
async def readyz(request: Request) -> Health:
    """Readiness: the database and Temporal both answer (503 otherwise)."""

    def database_ok() -> None:
        with Session(engine_of(request)) as db:
            db.exec(text("SELECT 1"))

    try:
        await asyncio.to_thread(database_ok)
    except Exception as err:
        raise ProblemError(503, "temporal-unavailable", f"database: {err.__class__.__name__}") from err
    client = await client_of(request)
    try:
        from temporalio.api.workflowservice.v1 import GetSystemInfoRequest

        await client.workflow_service.get_system_info(GetSystemInfoRequest(), timeout=RPC_TIMEOUT)
    except RPCError as err:
        raise rpc_problem(err, "") from err
    return Health(status="ok", checks={"database": "ok", "temporal": request.app.state.settings.temporal_address})


@router.get("/metrics", response_class=Response,
            responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}}}})
async def metrics(request: Request) -> Response:
    """The API's Prometheus counters (requests by route and status, payments held)."""
    return Response(generate_latest(request.app.state.metrics.registry), media_type=CONTENT_TYPE_LATEST)
