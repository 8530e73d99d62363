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
import base64
import binascii
import hashlib
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

from fastapi import Depends, FastAPI, Header, HTTPException, Path, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from pydantic import ValidationError
from sqlalchemy import text
from sqlalchemy.engine import Engine
from sqlmodel import Session
from starlette.exceptions import HTTPException as StarletteHTTPException
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.service import RPCError, RPCStatusCode

from api import keys
from api.idempotency import run_idempotent
from api.problems import (
    FieldProblem,
    ProblemError,
    problem_response,
    field_problems,
    handle_http,
    handle_problem,
    handle_validation,
    invalid_input,
    problem_responses,
)
from api.schemas import (
    ApiKeyCreated,
    ApiKeyList,
    ApiKeyOut,
    ApiKeyRequest,
    CaseList,
    CaseOpenRequest,
    CaseRef,
    CaseSummary,
    ContactHistory,
    ContactOutcomeRequest,
    ContactRow,
    Health,
    PaymentRequest,
    PlanRequest,
    PromiseRequest,
    SignalAccepted,
    UnmatchedPaymentOut,
    UnmatchedPayments,
)
from collections_domain.case import search_attributes as sa
from collections_domain.case.contract import (
    ID_PATTERN,
    REGION_PATTERN,
    SIGNAL_ID_FIELD,
    WORKFLOW_TYPE,
    CaseInput,
    CaseStatus,
    ContactOutcome,
    Outcome,
    PaymentReceived,
    PlanAccepted,
    PromiseToPay,
    describe_errors,
)
from collections_domain.client import (
    CASE_SIGNALS,
    UpdateRejected,
    case_handle,
    connect,
    contact_history,
    failure_of,
    input_differences,
    propose_plan,
    record_contact_outcome,
    send_case_signal,
    start_case,
)
from collections_domain.store.db import make_engine
from collections_domain.ops.logs import get_logger
from collections_domain.rules.policy import PolicyRegistry
from collections_domain.store.reconciliation import PaymentConflict, held_payments, hold_payment
from collections_domain.ops.settings import Settings, get_settings
from collections_domain.rules.validation import case_input_problems, due_date_problem
from collections_domain.store.reconciliation import ended_case_problem

log = get_logger("api")

#: How long a call to Temporal may take before the API answers 503.
RPC_TIMEOUT = timedelta(seconds=10)
#: How long ``POST /v1/cases`` waits for the worker's first answer (a refused input fails the run).
OPEN_CHECK_SECONDS = 3.0
#: A payment's ``paid_at`` may be this far ahead of the API's clock (clock skew between systems).
PAID_AT_SKEW = timedelta(minutes=5)

LoanPath = Annotated[str, Path(pattern=ID_PATTERN, description="The loan id (1-64 letters, digits, '-', '_' or '.').")]
IdempotencyKey = Annotated[
    str,
    Header(
        alias="Idempotency-Key",
        min_length=1,
        max_length=255,
        pattern=r"^[\x21-\x7e]+$",
        description="A client-chosen key, unique per write (printable ASCII, 1-255 characters). "
        "A repeat with the same key and body gets the first answer again.",
    ),
]
SignalName = Literal["dispute_opened", "dispute_resolved", "cease_contact", "hardship", "bankruptcy", "deceased", "breathing_space"]

bearer = HTTPBearer(auto_error=False, description="An API key: `Authorization: Bearer lck_<id>_<secret>`.")


# -- plumbing -------------------------------------------------------------------------------


class Metrics:
    """The API's own Prometheus counters, in a registry of their own (one per app)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "collections_api_requests", "HTTP requests by route template, method and status.",
            ["method", "route", "status"], registry=self.registry,
        )
        self.latency = Histogram(
            "collections_api_request_seconds", "HTTP request latency by route template.",
            ["method", "route"], registry=self.registry,
        )
        self.payments_held = Counter(
            "collections_api_payments_held", "Payments held for reconciliation (no running case).",
            ["reason"], registry=self.registry,
        )


def _engine(request: Request) -> Engine:
    return request.app.state.engine


def _policies(request: Request) -> PolicyRegistry:
    """The policies this API checks inputs against (``COLLECTIONS_POLICY``, loaded once)."""
    state = request.app.state
    if getattr(state, "policies", None) is None:
        state.policies = PolicyRegistry.from_settings(state.settings.collections_policy)
    return state.policies


async def _client(request: Request) -> Client:
    """The app's Temporal client, connecting on first use; 503 when Temporal does not answer."""
    state = request.app.state
    if state.client is None:
        async with state.client_lock:
            if state.client is None:
                try:
                    state.client = await asyncio.wait_for(connect(state.settings), RPC_TIMEOUT.total_seconds())
                except Exception as err:
                    raise ProblemError(503, "temporal-unavailable",
                                       f"cannot reach Temporal at {state.settings.temporal_address}: {err}",
                                       headers={"Retry-After": "5"}) from err
    return state.client


def require(scope: str):
    """A dependency: the caller's ``keys.Principal``, which must hold ``scope``.

    Raises:
        ProblemError: 401 no key, a malformed, unknown or revoked key; 403 the key lacks ``scope``.
    """

    async def principal(
        request: Request,
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
    ) -> keys.Principal:
        challenge = {"WWW-Authenticate": 'Bearer realm="loan-collections"'}
        if credentials is None:
            raise ProblemError(401, "unauthenticated", "Authorization: send 'Bearer <API key>'",
                               [FieldProblem(field="header.Authorization", rule="required: 'Bearer <API key>'")],
                               headers=challenge)
        found = await asyncio.to_thread(keys.authenticate, _engine(request), credentials.credentials)
        if found is None:
            raise ProblemError(401, "unauthenticated", "Authorization: the API key is unknown, malformed or revoked",
                               [FieldProblem(field="header.Authorization", rule="the API key is unknown, malformed or revoked")],
                               headers=challenge)
        if not found.allows(scope):
            rule = f"key {found.key_id} has scopes {' '.join(sorted(found.scopes))}; this needs {scope!r}"
            raise ProblemError(403, "forbidden", f"Authorization: {rule}",
                               [FieldProblem(field="header.Authorization", rule=rule)])
        request.state.key_id = found.key_id
        return found

    return principal


def _rpc_problem(err: RPCError, loan_id: str) -> ProblemError:
    if err.status == RPCStatusCode.NOT_FOUND:
        return ProblemError(404, "not-found", f"loan_id: no collections case for loan {loan_id!r}",
                            field_problems([f"loan_id: no collections case for loan {loan_id!r}"]))
    if err.status in (RPCStatusCode.UNAVAILABLE, RPCStatusCode.DEADLINE_EXCEEDED, RPCStatusCode.CANCELLED):
        return ProblemError(503, "temporal-unavailable", f"Temporal did not answer: {err.message}",
                            headers={"Retry-After": "5"})
    if err.status == RPCStatusCode.INVALID_ARGUMENT:
        return ProblemError(422, "invalid-input", err.message)
    return ProblemError(503, "temporal-unavailable", f"Temporal answered {err.status.name}: {err.message}",
                        headers={"Retry-After": "5"})


def _status_url(loan_id: str) -> str:
    return f"/v1/cases/{loan_id}"


def _rejection(err: UpdateRejected) -> ProblemError:
    message = str(err)
    return ProblemError(422, "rejected-by-case", message, field_problems([message]))


# -- the app --------------------------------------------------------------------------------


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

    @app.middleware("http")
    async def count_requests(request: Request, call_next):
        started = time.perf_counter()
        refused = _body_problem(request)
        response = problem_response(refused, request.url.path) if refused else await call_next(request)
        route = request.scope.get("route")
        template = getattr(route, "path", "unmatched")
        metrics: Metrics = request.app.state.metrics
        metrics.requests.labels(request.method, template, str(response.status_code)).inc()
        metrics.latency.labels(request.method, template).observe(time.perf_counter() - started)
        if response.status_code >= 500:
            log.error("api.request.failed", method=request.method, route=template, status=response.status_code)
        return response

    _add_operations(app)
    _add_cases(app)
    _add_writes(app)
    _add_admin(app)
    return app


#: The largest request body the API reads (every body here is a few hundred bytes).
MAX_BODY_BYTES = 64 * 1024


class BodyLimit:
    """ASGI middleware: stop reading a request body past ``MAX_BODY_BYTES`` (chunked bodies
    included, which carry no Content-Length) and answer 413 through the problem handler."""

    def __init__(self, app, limit: int = MAX_BODY_BYTES):
        self.app = app
        self.limit = limit

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        received = 0

        async def limited_receive():
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.limit:
                    raise HTTPException(413, detail=f"body: at most {self.limit} bytes")
            return message

        await self.app(scope, limited_receive, send)


def _body_problem(request: Request) -> ProblemError | None:
    """413 for a body over ``MAX_BODY_BYTES`` (by its Content-Length), 415 for a POST body that
    is not JSON; ``None`` when the request may go on."""
    if request.method not in ("POST", "PUT", "PATCH"):
        return None
    length = request.headers.get("content-length", "")
    size = int(length) if length.isdigit() else None
    if size is not None and size > MAX_BODY_BYTES:
        rule = f"at most {MAX_BODY_BYTES} bytes"
        return ProblemError(413, "payload-too-large", f"body: {rule}, got {size}", [FieldProblem(field="(body)", rule=rule)])
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    has_body = (size or 0) > 0 or "transfer-encoding" in request.headers
    if has_body and media and media != "application/json" and not media.endswith("+json"):
        rule = "must be application/json"
        return ProblemError(415, "unsupported-media-type", f"header.Content-Type: {rule}, got {media!r}",
                            [FieldProblem(field="header.Content-Type", rule=rule)])
    return None


def _add_operations(app: FastAPI) -> None:
    @app.get("/healthz", response_model=Health, tags=["operations"])
    async def healthz() -> Health:
        """Liveness: the process answers."""
        return Health(status="ok")

    @app.get("/readyz", response_model=Health, tags=["operations"], responses=problem_responses(503))
    async def readyz(request: Request) -> Health:
        """Readiness: the database and Temporal both answer (503 otherwise)."""

        def database_ok() -> None:
            with Session(_engine(request)) as db:
                db.exec(text("SELECT 1"))

        try:
            await asyncio.to_thread(database_ok)
        except Exception as err:
            raise ProblemError(503, "temporal-unavailable", f"database: {err.__class__.__name__}") from err
        client = await _client(request)
        try:
            from temporalio.api.workflowservice.v1 import GetSystemInfoRequest

            await client.workflow_service.get_system_info(GetSystemInfoRequest(), timeout=RPC_TIMEOUT)
        except RPCError as err:
            raise _rpc_problem(err, "") from err
        return Health(status="ok", checks={"database": "ok", "temporal": request.app.state.settings.temporal_address})

    @app.get("/metrics", tags=["operations"], response_class=Response,
             responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}}}})
    async def metrics(request: Request) -> Response:
        """The API's Prometheus counters (requests by route and status, payments held)."""
        return Response(generate_latest(request.app.state.metrics.registry), media_type=CONTENT_TYPE_LATEST)


def _visibility_query(stage, outcome, jurisdiction, region, min_outstanding_minor, max_outstanding_minor, execution_status) -> str:
    """A Temporal list filter from checked parameters (every value matched a pattern or an enum)."""
    clauses = [f'WorkflowType="{WORKFLOW_TYPE}"']
    if stage:
        clauses.append(f'{sa.COLLECTION_STAGE.name}="{stage}"')
    if outcome:
        clauses.append(f'{sa.COLLECTION_OUTCOME.name}="{outcome}"')
    if jurisdiction:
        clauses.append(f'{sa.JURISDICTION.name}="{jurisdiction}"')
    if region:
        clauses.append(f'{sa.REGION.name}="{region}"')
    if min_outstanding_minor is not None:
        clauses.append(f"{sa.OUTSTANDING_MINOR.name} >= {min_outstanding_minor}")
    if max_outstanding_minor is not None:
        clauses.append(f"{sa.OUTSTANDING_MINOR.name} <= {max_outstanding_minor}")
    if execution_status == "running":
        clauses.append('ExecutionStatus="Running"')
    elif execution_status == "closed":
        clauses.append('ExecutionStatus!="Running"')
    return " AND ".join(clauses)


LIST_PARAMETERS = ("stage", "outcome", "jurisdiction", "region", "min_outstanding_minor", "max_outstanding_minor",
                   "execution_status", "page_size", "page_token")


def _check_list_parameters(request: Request, allowed: tuple[str, ...] = LIST_PARAMETERS) -> None:
    """Refuse unknown or repeated query parameters: a misspelt filter must not list everything.

    Raises:
        ProblemError: 422 naming each such parameter.
    """
    names = [name for name, _ in request.query_params.multi_items()]
    known = ", ".join(allowed) or "none"
    problems = [f"query.{name}: not a filter of this list; filters: {known}"
                for name in dict.fromkeys(names) if name not in allowed]
    problems += [f"query.{name}: given more than once; give each filter once"
                 for name in dict.fromkeys(names) if name in allowed and names.count(name) > 1]
    if problems:
        raise invalid_input(problems)


PAGE_TOKEN_RULE = "page_token: must be a next_page_token this API returned for the same filters"


def _page_token(raw: bytes, query: str) -> str:
    """Temporal's page token, tied to ``query`` by a digest so that a token from another filter
    or a made-up one is refused here (422) instead of reaching the server."""
    digest = hashlib.sha256(query.encode() + b"\0" + raw).digest()[:12]
    return base64.urlsafe_b64encode(digest + raw).decode().rstrip("=")


def _read_page_token(token: str, query: str) -> bytes:
    """The Temporal page token inside ``token``. Raises ProblemError (422) when it is not one of ours."""
    try:
        blob = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
    except (binascii.Error, ValueError) as err:
        raise invalid_input([PAGE_TOKEN_RULE]) from err
    digest, raw = blob[:12], blob[12:]
    if not raw or hashlib.sha256(query.encode() + b"\0" + raw).digest()[:12] != digest:
        raise invalid_input([PAGE_TOKEN_RULE])
    return raw


def _summary(execution) -> CaseSummary:
    attrs = execution.typed_search_attributes
    return CaseSummary(
        loan_id=attrs.get(sa.LOAN_ID),
        workflow_id=execution.id,
        run_id=execution.run_id,
        execution_status=execution.status.name.lower() if execution.status else "unknown",
        stage=attrs.get(sa.COLLECTION_STAGE),
        outstanding_minor=attrs.get(sa.OUTSTANDING_MINOR),
        jurisdiction=attrs.get(sa.JURISDICTION),
        region=attrs.get(sa.REGION),
        outcome=attrs.get(sa.COLLECTION_OUTCOME),
        overdue_since=attrs.get(sa.OVERDUE_SINCE),
        started_at=execution.start_time,
        closed_at=execution.close_time,
    )


def _add_cases(app: FastAPI) -> None:
    read = Depends(require("read"))

    @app.get("/v1/cases", response_model=CaseList, tags=["cases"], responses=problem_responses(403, 503))
    async def list_cases(
        request: Request,
        _: Annotated[keys.Principal, read],
        stage: Annotated[str | None, Query(pattern=r"^[a-z_]{1,40}$", description="CollectionStage, e.g. deep, legal.")] = None,
        outcome: Annotated[Outcome | None, Query(description="CollectionOutcome of closed cases.")] = None,
        jurisdiction: Annotated[Literal["CN", "US", "UK"] | None, Query()] = None,
        region: Annotated[str | None, Query(pattern=REGION_PATTERN, description="Region (ISO 3166-2), e.g. CN-SH.")] = None,
        min_outstanding_minor: Annotated[int | None, Query(ge=0, le=9_007_199_254_740_991)] = None,
        max_outstanding_minor: Annotated[int | None, Query(ge=0, le=9_007_199_254_740_991)] = None,
        execution_status: Annotated[Literal["running", "closed", "all"], Query()] = "all",
        page_size: Annotated[int, Query(ge=1, le=100)] = 50,
        page_token: Annotated[str | None, Query(max_length=4000, pattern=r"^[A-Za-z0-9_-]+$",
                                                description="next_page_token of the previous page.")] = None,
    ) -> CaseList:
        """Cases by stage, outcome, jurisdiction, region and outstanding amount, from Temporal
        visibility (search attributes; newest first). "Deep collection over 10,000 yuan in
        Shanghai": ``?stage=deep&region=CN-SH&min_outstanding_minor=1000001``. Needs scope ``read``."""
        _check_list_parameters(request)
        query = _visibility_query(stage, outcome, jurisdiction, region, min_outstanding_minor, max_outstanding_minor,
                                  execution_status)
        token = _read_page_token(page_token, query) if page_token else None
        client = await _client(request)
        iterator = client.list_workflows(query, page_size=page_size, next_page_token=token, rpc_timeout=RPC_TIMEOUT)
        try:
            await iterator.fetch_next_page(page_size=page_size)
        except RPCError as err:
            if token and err.status in (RPCStatusCode.INVALID_ARGUMENT, RPCStatusCode.UNKNOWN):
                raise invalid_input([PAGE_TOKEN_RULE]) from err
            raise _rpc_problem(err, "") from err
        cases = [_summary(execution) for execution in iterator.current_page or []]
        next_token = iterator.next_page_token
        return CaseList(query=query, cases=cases, next_page_token=_page_token(next_token, query) if next_token else None)

    @app.get("/v1/cases/{loan_id}", response_model=CaseStatus, tags=["cases"], responses=problem_responses(403, 404, 503))
    async def get_case(request: Request, loan_id: LoanPath, _: Annotated[keys.Principal, read]) -> CaseStatus:
        """The case's status (CONTRACT.md "Query status"): stage, DPD, outstanding, promises,
        steps, next step, rejected signals, plans, pauses, hand-offs, compliance decisions.
        A closed case answers with its result. Needs scope ``read``."""
        client = await _client(request)
        handle = case_handle(client, loan_id)
        try:
            described = await handle.describe(rpc_timeout=RPC_TIMEOUT)
            if described.status == WorkflowExecutionStatus.COMPLETED:
                return await handle.result(rpc_timeout=RPC_TIMEOUT)
            if described.status != WorkflowExecutionStatus.RUNNING:
                # A refused reopen (or a terminated run) must not hide the case's last result.
                async for execution in client.list_workflows(
                    f'WorkflowId="{handle.id}" AND ExecutionStatus="Completed"', limit=1, rpc_timeout=RPC_TIMEOUT
                ):
                    return await client.get_workflow_handle(handle.id, run_id=execution.run_id,
                                                            result_type=CaseStatus).result(rpc_timeout=RPC_TIMEOUT)
                raise ProblemError(404, "not-found",
                                   f"loan_id: the last case of loan {loan_id!r} {described.status.name.lower()}: "
                                   f"{await failure_of(handle)}")
            return await handle.query("status", result_type=CaseStatus, rpc_timeout=RPC_TIMEOUT)
        except RPCError as err:
            if err.status in (RPCStatusCode.DEADLINE_EXCEEDED, RPCStatusCode.CANCELLED) or "Timeout" in err.message:
                raise ProblemError(503, "temporal-unavailable",
                                   f"no worker answered the status query within {RPC_TIMEOUT.seconds} s: the workers "
                                   "are busy (e.g. catching up after a start) or not running; retry shortly",
                                   headers={"Retry-After": "5"}) from err
            raise _rpc_problem(err, loan_id) from err

    @app.get("/v1/cases/{loan_id}/contacts", response_model=ContactHistory, tags=["cases"],
             responses=problem_responses(403))
    async def get_contacts(request: Request, loan_id: LoanPath, _: Annotated[keys.Principal, read]) -> ContactHistory:
        """Every contact of the loan from the database, oldest first: SMS, email, agent tasks,
        letters, hand-offs, agents' outcomes with their notes, logged calls (empty for a loan
        nobody contacted yet). Needs scope ``read``."""
        rows = await asyncio.to_thread(contact_history, _engine(request), loan_id)
        return ContactHistory(loan_id=loan_id, contacts=[ContactRow(**row) for row in rows])

    @app.get("/v1/reconciliation/payments", response_model=UnmatchedPayments, tags=["payments"],
             responses=problem_responses(403))
    async def unmatched_payments(
        request: Request,
        _: Annotated[keys.Principal, read],
        loan_id: Annotated[str | None, Query(pattern=ID_PATTERN)] = None,
    ) -> UnmatchedPayments:
        """Payments held for reconciliation because no case was running for their loan."""

        _check_list_parameters(request, ("loan_id",))
        found = await asyncio.to_thread(held_payments, _engine(request), loan_id)
        return UnmatchedPayments(payments=[UnmatchedPaymentOut(**row.model_dump()) for row in found])


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


async def _running_status(client: Client, loan_id: str) -> WorkflowExecutionStatus | None:
    """The status of the loan's latest case run, ``None`` if there never was one."""
    try:
        return (await case_handle(client, loan_id).describe(rpc_timeout=RPC_TIMEOUT)).status
    except RPCError as err:
        if err.status == RPCStatusCode.NOT_FOUND:
            return None
        raise


def _add_writes(app: FastAPI) -> None:
    write = Depends(require("write"))

    @app.post("/v1/cases", status_code=201, response_model=CaseRef, tags=["cases"],
              responses={200: {"model": CaseRef, "description": "The loan's case was already running; nothing changed."},
                         202: {"model": CaseRef, "description": "Started; no worker has taken it yet (pending)."},
                         **problem_responses(403, 409, 503)})
    async def open_case(request: Request, body: CaseOpenRequest, idempotency_key: IdempotencyKey,
                        principal: Annotated[keys.Principal, write]) -> JSONResponse:
        """Open a collections case (workflow ``collection-<loan_id>``). 201 when it opened, 200
        when it was already running (nothing changes; ``differences`` lists given values that
        differ), 202 when no worker has taken it yet (``pending``; the worker still checks it),
        409 when the case of that loan and due date already ended or the worker refused it,
        422 naming the field and rule an input breaks. Needs scope ``write``."""

        async def produce():
            case = CaseInput.model_validate(body.model_dump())
            problems = case_input_problems(case, _policies(request))
            if not problems:
                problems = [p for p in [due_date_problem(case, datetime.now(UTC))] if p]
            if problems:
                raise invalid_input(problems)
            client = await _client(request)
            try:
                status = await _running_status(client, case.loan_id)
                if status == WorkflowExecutionStatus.RUNNING:
                    handle = case_handle(client, case.loan_id)
                    described = await handle.describe(rpc_timeout=RPC_TIMEOUT)
                    return 200, CaseRef(loan_id=case.loan_id, workflow_id=case.workflow_id, run_id=described.run_id,
                                        created=False, differences=await input_differences(handle, case),
                                        status_url=_status_url(case.loan_id))
                ended = await asyncio.to_thread(ended_case_problem, _engine(request), case)
                if ended:
                    raise ProblemError(409, "conflict", f"the case did not open: {ended}", field_problems([ended]))
                try:
                    handle = await start_case(client, case, task_queue=request.app.state.settings.temporal_task_queue,
                                              policies=_policies(request), now=datetime.now(UTC))
                except ValueError as err:
                    raise invalid_input([str(err)]) from err
                answer = await _first_answer(handle)
            except RPCError as err:
                raise _rpc_problem(err, case.loan_id) from err
            if answer not in ("running", "pending", "completed"):
                refusal = answer.removeprefix("invalid case input: ")
                raise ProblemError(409, "conflict", f"the case did not open: {refusal}", field_problems(refusal.split("; ")))
            log.info("api.case.opened", loan_id=case.loan_id, workflow_id=case.workflow_id, key_id=principal.key_id,
                     pending=answer == "pending")
            return (202 if answer == "pending" else 201), CaseRef(
                loan_id=case.loan_id, workflow_id=case.workflow_id, run_id=handle.result_run_id or "", created=True,
                pending=answer == "pending", status_url=_status_url(case.loan_id))

        return await run_idempotent(_engine(request), key_id=principal.key_id, idempotency_key=idempotency_key,
                                    method="POST", path=request.url.path, body=body, produce=produce)

    @app.post("/v1/cases/{loan_id}/payments", status_code=202, response_model=SignalAccepted, tags=["payments"],
              responses=problem_responses(403, 409, 503))
    async def post_payment(request: Request, loan_id: LoanPath, body: PaymentRequest, idempotency_key: IdempotencyKey,
                           principal: Annotated[keys.Principal, write]) -> JSONResponse:
        """A payment received (signal ``payment_received``), applied once per ``payment_id``.
        202 ``delivered``: the case applies it, or rejects it with the rule listed in its
        ``rejected_signals``. 202 ``held_for_reconciliation``: no case is running for the loan
        (never opened, or closed); the payment is stored in ``unmatched_payments`` and listed by
        ``GET /v1/reconciliation/payments``. Needs scope ``write``."""
        if body.paid_at > datetime.now(UTC) + PAID_AT_SKEW:
            raise invalid_input([f"paid_at: must not be in the future (more than {PAID_AT_SKEW.seconds // 60} minutes ahead of now)"])

        async def produce():
            client = await _client(request)
            payment = PaymentReceived(**body.model_dump())
            try:
                status = await _running_status(client, loan_id)
                if status == WorkflowExecutionStatus.RUNNING:
                    await case_handle(client, loan_id).signal("payment_received", payment, rpc_timeout=RPC_TIMEOUT)
                    return 202, SignalAccepted(loan_id=loan_id, signal="payment_received", id=body.payment_id,
                                               status="delivered", status_url=_status_url(loan_id),
                                               detail="the case applies the payment once per payment_id, or lists it "
                                                      "with the rule under rejected_signals")
            except RPCError as err:
                if err.status != RPCStatusCode.NOT_FOUND:  # closed between describe and signal: hold it
                    raise _rpc_problem(err, loan_id) from err
                status = WorkflowExecutionStatus.COMPLETED
            reason = "no_case" if status is None else "case_closed"
            try:
                stored = await asyncio.to_thread(
                    partial(hold_payment, _engine(request), loan_id=loan_id, payment_id=body.payment_id,
                            amount_minor=body.amount_minor, currency=body.currency, paid_at=body.paid_at,
                            reason=reason, api_key_id=principal.key_id))
            except PaymentConflict as err:
                raise ProblemError(409, "conflict", str(err), field_problems([str(err)])) from err
            if stored:
                request.app.state.metrics.payments_held.labels(reason).inc()
                log.warning("api.payment.held", loan_id=loan_id, payment_id=body.payment_id, reason=reason)
            what = "no collections case was ever opened" if reason == "no_case" else "its collections case has closed"
            return 202, SignalAccepted(
                loan_id=loan_id, signal="payment_received", id=body.payment_id, status="held_for_reconciliation",
                reason=reason, status_url=f"/v1/reconciliation/payments?loan_id={loan_id}",
                detail=f"loan {loan_id}: {what}; the payment is held for reconciliation in unmatched_payments",
            )

        return await run_idempotent(_engine(request), key_id=principal.key_id, idempotency_key=idempotency_key,
                                    method="POST", path=request.url.path, body=body, produce=produce)

    @app.post("/v1/cases/{loan_id}/promises", status_code=202, response_model=SignalAccepted, tags=["cases"],
              responses=problem_responses(403, 404, 503))
    async def post_promise(request: Request, loan_id: LoanPath, body: PromiseRequest, idempotency_key: IdempotencyKey,
                           principal: Annotated[keys.Principal, write]) -> JSONResponse:
        """A promise to pay (signal ``promise_to_pay``). 202 ``delivered``: the case opens it or
        lists it with the rule under ``rejected_signals`` (in the past, above the outstanding,
        beyond the policy's horizon, another open, two broken). 404: no running case. Needs
        scope ``write``."""
        return await _signal(request, principal, idempotency_key, loan_id, "promise_to_pay",
                             PromiseToPay(**body.model_dump()), body.promise_id, body)

    @app.post("/v1/cases/{loan_id}/signals/{signal_name}", status_code=202, response_model=SignalAccepted, tags=["cases"],
              responses=problem_responses(403, 404, 503))
    async def post_signal(request: Request, loan_id: LoanPath, signal_name: SignalName, body: dict[str, Any],
                          idempotency_key: IdempotencyKey, principal: Annotated[keys.Principal, write]) -> JSONResponse:
        """A pause or stop (CONTRACT.md "Additions"): ``dispute_opened`` {dispute_id, reason_code},
        ``dispute_resolved`` {dispute_id, resolution, corrected_outstanding_minor},
        ``cease_contact`` {request_id}, ``hardship`` {hardship_id}, ``bankruptcy`` / ``deceased``
        {notice_id}, ``breathing_space`` {breathing_space_id}. Needs scope ``write``."""
        model = CASE_SIGNALS[signal_name]
        try:
            checked = model.model_validate(body)
            extra = sorted(set(body) - set(model.model_fields))
            if extra:
                raise invalid_input([f"{name}: not a field of {signal_name}" for name in extra])
        except ValidationError as err:
            raise invalid_input(describe_errors(err)) from err
        signal_id = getattr(checked, SIGNAL_ID_FIELD[signal_name])
        return await _signal(request, principal, idempotency_key, loan_id, signal_name, checked, signal_id, body)

    @app.post("/v1/cases/{loan_id}/plans", response_model=PlanAccepted, tags=["cases"],
              responses=problem_responses(403, 404, 503))
    async def post_plan(request: Request, loan_id: LoanPath, body: PlanRequest, idempotency_key: IdempotencyKey,
                        principal: Annotated[keys.Principal, write]) -> JSONResponse:
        """Propose a repayment plan (update ``propose_plan``): 200 with the accepted schedule, or
        422 ``rejected-by-case`` naming the field and the policy rule (also written to
        ``rejected_updates``). Needs scope ``write``."""

        async def produce():
            client = await _client(request)
            try:
                accepted = await propose_plan(client, loan_id, body.model_dump(mode="json", exclude_none=True),
                                              engine=_engine(request))
            except UpdateRejected as err:
                raise _rejection(err) from err
            except RPCError as err:
                raise await _update_rpc_problem(client, err, loan_id) from err
            differs = _plan_differs(body, accepted)
            if differs:
                rule = (f"plan {body.plan_id} was already accepted with other terms ({differs}); "
                        "a new proposal needs a new plan_id")
                raise ProblemError(409, "conflict", f"plan_id: {rule}", [FieldProblem(field="plan_id", rule=rule)])
            return 200, accepted

        return await run_idempotent(_engine(request), key_id=principal.key_id, idempotency_key=idempotency_key,
                                    method="POST", path=request.url.path, body=body, produce=produce)

    @app.post("/v1/cases/{loan_id}/contact-outcomes", response_model=ContactOutcome, tags=["cases"],
              responses=problem_responses(403, 404, 503))
    async def post_contact_outcome(request: Request, loan_id: LoanPath, body: ContactOutcomeRequest,
                                   idempotency_key: IdempotencyKey,
                                   principal: Annotated[keys.Principal, write]) -> JSONResponse:
        """Record what an agent's contact achieved (update ``record_contact_outcome``) for an open
        task (``task_key`` from the case's ``open_tasks``): 200 with the recorded outcome, or 422
        ``rejected-by-case``. ``note`` goes to the database only. Needs scope ``write``."""

        async def produce():
            client = await _client(request)
            report = body.model_dump(mode="json", exclude_none=True, exclude={"note"})
            try:
                recorded = await record_contact_outcome(client, loan_id, report, note=body.note, engine=_engine(request))
            except UpdateRejected as err:
                raise _rejection(err) from err
            except RPCError as err:
                raise await _update_rpc_problem(client, err, loan_id) from err
            return 200, recorded

        return await run_idempotent(_engine(request), key_id=principal.key_id, idempotency_key=idempotency_key,
                                    method="POST", path=request.url.path, body=body, produce=produce)


def _plan_differs(proposal: PlanRequest, accepted: PlanAccepted) -> str:
    """How ``proposal`` differs from the plan the case holds under its ``plan_id`` (the case
    answers a repeated ``plan_id`` with the plan it accepted first), or ``""``."""
    if proposal.kind != accepted.kind:
        return f"kind {accepted.kind}, proposed {proposal.kind}"
    if proposal.kind == "instalments" and proposal.instalment_dates is not None:
        dates = [i.due_date for i in accepted.instalments]
        if list(proposal.instalment_dates) != dates:
            return f"instalment_dates {', '.join(map(str, dates))}"
    if proposal.kind == "deferral" and proposal.new_due_date is not None:
        if [i.due_date for i in accepted.instalments][-1:] != [proposal.new_due_date]:
            return f"new_due_date {accepted.instalments[-1].due_date if accepted.instalments else '?'}"
    if proposal.kind == "waiver" and proposal.waive_minor is not None and proposal.waive_minor != accepted.waived_minor:
        return f"waive_minor {accepted.waived_minor}"
    return ""


async def _update_rpc_problem(client: Client, err: RPCError, loan_id: str) -> ProblemError:
    """An update's RPC error as a problem; "not found" says whether the case never ran or closed."""
    if err.status == RPCStatusCode.NOT_FOUND:
        try:
            status = await _running_status(client, loan_id)
        except RPCError:
            status = None
        if status is not None:
            rule = f"the collections case of loan {loan_id!r} has closed"
            return ProblemError(404, "not-found", f"loan_id: {rule}", [FieldProblem(field="loan_id", rule=rule)])
    return _rpc_problem(err, loan_id)


async def _first_answer(handle, timeout_seconds: float = OPEN_CHECK_SECONDS) -> str:
    """Wait briefly for the worker's first workflow task: ``"running"`` once it completed,
    ``"pending"`` when no worker took it in ``timeout_seconds``, else the failure message of a
    run the worker refused."""
    deadline = asyncio.get_running_loop().time() + timeout_seconds
    while True:
        described = await handle.describe(rpc_timeout=RPC_TIMEOUT)
        if described.status not in (None, WorkflowExecutionStatus.RUNNING):
            return await failure_of(handle) if described.status == WorkflowExecutionStatus.FAILED else described.status.name.lower()
        history = await handle.fetch_history()
        if any(event.HasField("workflow_task_completed_event_attributes") for event in history.events):
            return "running"
        if asyncio.get_running_loop().time() > deadline:
            return "pending"
        await asyncio.sleep(0.2)


async def _signal(request: Request, principal: keys.Principal, idempotency_key: str, loan_id: str, name: str,
                  payload, signal_id: str, body) -> JSONResponse:
    """Deliver signal ``name`` to the loan's running case (404 when none runs)."""

    async def produce():
        client = await _client(request)
        try:
            status = await _running_status(client, loan_id)
            if status != WorkflowExecutionStatus.RUNNING:
                what = "was never opened" if status is None else "has closed"
                raise ProblemError(404, "not-found", f"loan_id: the collections case of loan {loan_id!r} {what}",
                                   field_problems([f"loan_id: the collections case of loan {loan_id!r} {what}"]))
            if name in CASE_SIGNALS:
                await send_case_signal(client, loan_id, name, payload.model_dump(mode="json"))
            else:
                await case_handle(client, loan_id).signal(name, payload, rpc_timeout=RPC_TIMEOUT)
        except RPCError as err:
            raise _rpc_problem(err, loan_id) from err
        return 202, SignalAccepted(loan_id=loan_id, signal=name, id=signal_id, status="delivered",
                                   status_url=_status_url(loan_id),
                                   detail="the case applies it once per id, or lists it with the rule under rejected_signals")

    return await run_idempotent(_engine(request), key_id=principal.key_id, idempotency_key=idempotency_key,
                                method="POST", path=request.url.path, body=body, produce=produce)


def _key_out(row) -> dict:
    return {"id": row.id, "name": row.name, "scopes": row.scopes.split(), "created_at": _utc(row.created_at),
            "revoked_at": _utc(row.revoked_at) if row.revoked_at else None}


def _add_admin(app: FastAPI) -> None:
    admin = Depends(require("admin"))

    @app.post("/v1/api-keys", status_code=201, response_model=ApiKeyCreated, tags=["admin"], responses=problem_responses(403))
    async def create_key(request: Request, body: ApiKeyRequest, idempotency_key: IdempotencyKey,
                         principal: Annotated[keys.Principal, admin]) -> JSONResponse:
        """Create an API key; the answer's ``key`` is shown this once (only its hash is stored).
        A replay with the same Idempotency-Key answers the same key's id with ``key: null``: the
        secret is stored nowhere. Needs scope ``admin``."""

        async def produce():
            row, secret = await asyncio.to_thread(keys.create_api_key, _engine(request), body.name, list(body.scopes))
            log.info("api.key.created", key_id=row.id, by=principal.key_id, scopes=row.scopes)
            return 201, {**_key_out(row), "key": secret}

        return await run_idempotent(_engine(request), key_id=principal.key_id, idempotency_key=idempotency_key,
                                    method="POST", path=request.url.path, body=body, produce=produce,
                                    stored=lambda answer: {**answer, "key": None})

    @app.get("/v1/api-keys", response_model=ApiKeyList, tags=["admin"], responses=problem_responses(403))
    async def list_keys(request: Request, _: Annotated[keys.Principal, admin]) -> ApiKeyList:
        """Every API key, revoked ones too (never their secrets). Needs scope ``admin``."""
        _check_list_parameters(request, ())
        rows = await asyncio.to_thread(keys.list_api_keys, _engine(request))
        return ApiKeyList(keys=[ApiKeyOut(**_key_out(row)) for row in rows])

    @app.post("/v1/api-keys/{key_id}/revoke", response_model=ApiKeyOut, tags=["admin"], responses=problem_responses(403, 404, 409))
    async def revoke_key(request: Request, key_id: Annotated[str, Path(pattern=r"^[0-9a-f]{16}$")],
                         idempotency_key: IdempotencyKey, principal: Annotated[keys.Principal, admin]) -> JSONResponse:
        """Revoke a key: it is refused from the next request on. Needs scope ``admin``."""

        async def produce():
            if key_id == principal.key_id:
                raise ProblemError(409, "conflict", "key_id: a key cannot revoke itself; revoke it with another admin key "
                                   "(or starter.py api-key revoke)", field_problems(["key_id: a key cannot revoke itself"]))
            row = await asyncio.to_thread(keys.revoke_api_key, _engine(request), key_id)
            if row is None:
                raise ProblemError(404, "not-found", f"key_id: no API key {key_id!r}",
                                   field_problems([f"key_id: no API key {key_id!r}"]))
            log.info("api.key.revoked", key_id=key_id, by=principal.key_id)
            return 200, _key_out(row)

        return await run_idempotent(_engine(request), key_id=principal.key_id, idempotency_key=idempotency_key,
                                    method="POST", path=request.url.path, body={"key_id": key_id}, produce=produce)
