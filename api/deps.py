"""What the API's routers share: the app's metrics, its database engine, policies and Temporal
client (on ``app.state``), the ``require(scope)`` authorization dependency (with the throttle of
failed authentication), the mapping of Temporal RPC errors to problem details, and the path and
header parameter types."""

import asyncio
import contextvars
import dataclasses
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Annotated, Any

from fastapi import Depends, Header, Path, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from prometheus_client import CollectorRegistry, Counter, Histogram
from sqlalchemy.engine import Engine
from temporalio.client import Client, Interceptor, OutboundInterceptor, StartWorkflowInput, WorkflowExecutionStatus
from temporalio.common import WorkflowIDConflictPolicy
from temporalio.service import RetryConfig, RPCError, RPCStatusCode, ServiceClient

from api import keys
from api.problems import (
    TEMPORAL_OUTAGE_CODES,
    FieldProblem,
    ProblemError,
    field_problems,
    invalid_input,
    temporal_unavailable,
)
from api.throttle import FailureThrottle, names_of
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


_fail_if_running: contextvars.ContextVar[bool] = contextvars.ContextVar("fail_if_running", default=False)


@contextmanager
def fail_if_running() -> Iterator[None]:
    """Within this block, a workflow start of the API's client (not a signal-with-start) fails
    with ``WorkflowAlreadyStartedError`` when the workflow id is running, instead of returning
    the running one: Temporal then decides atomically which of concurrent opens created it."""
    token = _fail_if_running.set(True)
    try:
        yield
    finally:
        _fail_if_running.reset(token)


class _StartPolicy(OutboundInterceptor):
    async def start_workflow(self, input: StartWorkflowInput) -> Any:
        if _fail_if_running.get() and input.start_signal is None:
            input.id_conflict_policy = WorkflowIDConflictPolicy.FAIL
        return await super().start_workflow(input)


class StartPolicyInterceptor(Interceptor):
    """The client interceptor behind ``fail_if_running``."""

    def intercept_client(self, next: OutboundInterceptor) -> OutboundInterceptor:
        return _StartPolicy(next)


async def bounded_client(client: Client, timeout_seconds: float) -> Client:
    """``client`` on a connection of its own whose retries of an unanswered call stop after
    ``timeout_seconds`` (the SDK's default retries UNAVAILABLE for about 10 s whatever the
    call's ``rpc_timeout``), with ``StartPolicyInterceptor``. Same server, TLS, credentials and
    data converter."""
    budget = int(timeout_seconds * 1000)
    retry = RetryConfig(initial_interval_millis=100, multiplier=1.5, max_interval_millis=min(1000, budget),
                        max_elapsed_time_millis=budget, max_retries=50)
    service = await ServiceClient.connect(dataclasses.replace(client.service_client.config, retry_config=retry, lazy=True))
    config = client.config()
    interceptors = [*config.get("interceptors", []), StartPolicyInterceptor()]
    return Client(**{**config, "service_client": service, "interceptors": interceptors})


async def client_of(request: Request) -> Client:
    """The app's Temporal client, connecting on first use (at most ``API_TEMPORAL_TIMEOUT_SECONDS``).

    Raises:
        ProblemError: 503 ``temporal-unavailable`` with ``Retry-After`` when Temporal cannot be
            reached in that time (the detail names the address, never a credential).
    """
    state = request.app.state
    if state.client is None:
        async with state.client_lock:
            if state.client is None:
                timeout = state.settings.api_temporal_timeout_seconds
                try:
                    given = state.given_client or await asyncio.wait_for(connect(state.settings), timeout)
                    state.client = await bounded_client(given, timeout)
                except Exception as err:
                    raise temporal_unavailable(f"cannot reach Temporal at {state.settings.temporal_address} "
                                               f"within {timeout:g} s ({type(err).__name__}); retry shortly") from err
    return state.client


def _throttled(request: Request, names: list[str]) -> None:
    """Raise 429 when the address or key id in ``names`` failed too often (``api.throttle``)."""
    throttle: FailureThrottle = request.app.state.auth_throttle
    wait = throttle.retry_after(*names)
    if wait is not None:
        rule = (f"more than {throttle.limit} failed authentications in {throttle.window:g} s from this address "
                "or for this key id; retry later")
        raise ProblemError(429, "too-many-requests", f"Authorization: {rule}",
                           [FieldProblem(field="header.Authorization", rule=rule)],
                           headers={"Retry-After": str(wait)})


def require(scope: str):
    """A dependency: the caller's ``keys.Principal``, which must hold ``scope``.

    A key that fails is counted against the client's address and the key id it names; past
    ``API_AUTH_FAILURES_PER_MINUTE`` failures of either in a minute, requests from that address
    or with that key id answer 429 (``api.throttle``) without looking the key up.

    Raises:
        ProblemError: 401 no key, a malformed, unknown or revoked key; 403 the key lacks
            ``scope``; 429 (``Retry-After``: seconds) too many failures.
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
        names = names_of(request.client.host if request.client else None, credentials.credentials)
        _throttled(request, names)
        found = await asyncio.to_thread(keys.authenticate, engine_of(request), credentials.credentials)
        if found is None:
            request.app.state.auth_throttle.fail(*names)
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
    if err.status in TEMPORAL_OUTAGE_CODES:
        return temporal_unavailable(f"Temporal did not answer ({err.status.name}); retry shortly")
    if err.status == RPCStatusCode.INVALID_ARGUMENT:
        return ProblemError(422, "invalid-input", err.message)
    return temporal_unavailable(f"Temporal answered {err.status.name}: {err.message}")


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
