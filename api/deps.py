"""What the API's routers share: the app's metrics, its database engine, policies and Temporal
client (on ``app.state``), the ``require(scope)`` authorization dependency, the mapping of
Temporal RPC errors to problem details, and the path and header parameter types."""

import asyncio
from datetime import timedelta
from typing import Annotated

from fastapi import Depends, Header, Path, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from prometheus_client import CollectorRegistry, Counter, Histogram
from sqlalchemy.engine import Engine
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.service import RPCError, RPCStatusCode

from api import keys
from api.problems import FieldProblem, ProblemError, field_problems, invalid_input
from collections_domain.case.contract import ID_PATTERN
from collections_domain.client import case_handle, connect
from collections_domain.rules.policy import PolicyRegistry

#: How long a call to Temporal may take before the API answers 503.
RPC_TIMEOUT = timedelta(seconds=10)

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

bearer = HTTPBearer(auto_error=False, description="An API key: `Authorization: Bearer lck_<id>_<secret>`.")


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


def engine_of(request: Request) -> Engine:
    """The app's database engine."""
    return request.app.state.engine


def policies_of(request: Request) -> PolicyRegistry:
    """The policies this API checks inputs against (``COLLECTIONS_POLICY``, loaded once)."""
    state = request.app.state
    if getattr(state, "policies", None) is None:
        state.policies = PolicyRegistry.from_settings(state.settings.collections_policy)
    return state.policies


async def client_of(request: Request) -> Client:
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
        found = await asyncio.to_thread(keys.authenticate, engine_of(request), credentials.credentials)
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


def rpc_problem(err: RPCError, loan_id: str) -> ProblemError:
    """A Temporal RPC error as a problem: 404 not found, 422 invalid argument, else 503."""
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


def status_url(loan_id: str) -> str:
    """Where the loan's case status is read."""
    return f"/v1/cases/{loan_id}"


async def running_status(client: Client, loan_id: str) -> WorkflowExecutionStatus | None:
    """The status of the loan's latest case run, ``None`` if there never was one."""
    try:
        return (await case_handle(client, loan_id).describe(rpc_timeout=RPC_TIMEOUT)).status
    except RPCError as err:
        if err.status == RPCStatusCode.NOT_FOUND:
            return None
        raise


def check_list_parameters(request: Request, allowed: tuple[str, ...]) -> None:
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


def refuse_parameters(request: Request) -> None:
    """A resource that takes no query parameters refuses any (a typo must not be ignored).

    Raises:
        ProblemError: 422 naming each parameter.
    """
    names = dict.fromkeys(name for name, _ in request.query_params.multi_items())
    if names:
        raise invalid_input([f"query.{name}: this resource takes no query parameters" for name in names])
