"""Errors as RFC 9457 problem details (``application/problem+json``), each naming the field and
the rule it broke in ``errors`` when there is one."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from sqlalchemy import exc as sa_exc
from starlette.exceptions import HTTPException as StarletteHTTPException
from temporalio.service import RPCError, RPCStatusCode

PROBLEM_MEDIA_TYPE = "application/problem+json"

#: The problem types this API answers with (RFC 9457 ``type``), and their titles.
PROBLEM_TYPES = {
    "invalid-input": "The request breaks an input rule",
    "unauthenticated": "No valid API key",
    "forbidden": "The API key lacks the scope",
    "not-found": "No such resource",
    "conflict": "The request conflicts with the current state",
    "idempotency-key-reused": "Idempotency-Key already used for another request",
    "request-in-progress": "A request with this Idempotency-Key is still running",
    "rejected-by-case": "The case refused the request",
    "temporal-unavailable": "The Temporal service did not answer",
    "database-unavailable": "The database did not answer in time",
    "not-ready": "The API cannot serve requests now",
    "too-many-requests": "Too many failed authentications",
    "ambiguous-framing": "The request's length is ambiguous",
    "internal-error": "The request failed inside the API",
    "method-not-allowed": "Method not allowed",
    "unsupported-media-type": "The body must be JSON",
    "payload-too-large": "The body is too large",
}


def problem_type(slug: str) -> str:
    """The ``type`` URI of a problem slug (``urn:loan-collections:problem:<slug>``)."""
    return f"urn:loan-collections:problem:{slug}"


class FieldProblem(BaseModel):
    """One broken rule: the field (dotted path, ``header.Idempotency-Key`` for headers) and the rule."""

    field: str
    rule: str


class Problem(BaseModel):
    """RFC 9457 problem details, plus ``errors``: every field and rule at fault."""

    type: str = Field(description="A URI naming the kind of problem (see PROBLEM_TYPES).")
    title: str
    status: int = Field(ge=400, le=599)
    detail: str
    instance: str | None = None
    errors: list[FieldProblem] = []


class ProblemError(Exception):
    """Raise to answer with a problem: ``slug`` from ``PROBLEM_TYPES``, an HTTP status and a detail."""

    def __init__(self, status: int, slug: str, detail: str, errors: list[FieldProblem] | None = None,
                 headers: dict[str, str] | None = None):
        super().__init__(detail)
        self.status = status
        self.slug = slug
        self.detail = detail
        self.errors = errors or []
        self.headers = headers or {}

    def problem(self, instance: str | None = None) -> Problem:
        """The problem document for this error."""
        return Problem(
            type=problem_type(self.slug),
            title=PROBLEM_TYPES.get(self.slug, self.slug),
            status=self.status,
            detail=self.detail,
            instance=instance,
            errors=self.errors,
        )


def field_problems(messages: list[str]) -> list[FieldProblem]:
    """``"field: rule"`` strings (the domain's error style) as ``FieldProblem``s."""
    problems = []
    for message in messages:
        field, sep, rule = message.partition(": ")
        problems.append(FieldProblem(field=field, rule=rule) if sep else FieldProblem(field="(input)", rule=message))
    return problems


def invalid_input(messages: list[str]) -> ProblemError:
    """A 422 problem for domain rule messages (``"field: rule"``)."""
    return ProblemError(422, "invalid-input", "; ".join(messages), field_problems(messages))


def problem_response(error: ProblemError, instance: str | None = None) -> JSONResponse:
    """``error`` as a JSON response with the problem media type."""
    return JSONResponse(
        jsonable_encoder(error.problem(instance)),
        status_code=error.status,
        media_type=PROBLEM_MEDIA_TYPE,
        headers=error.headers,
    )


def _location(loc: tuple[Any, ...]) -> str:
    parts = [str(p) for p in loc]
    if parts and parts[0] == "body":
        parts = parts[1:]
    elif parts and parts[0] == "header" and len(parts) > 1:
        parts = ["header", parts[1]]
    return ".".join(parts) or "(body)"


def validation_problem(err: RequestValidationError) -> ProblemError:
    """FastAPI's request validation error as a 422 problem naming each field and rule."""
    errors = []
    for item in err.errors():
        rule = item.get("msg", "invalid")
        if item.get("type") == "string_pattern_mismatch":
            from collections_domain.case.contract import _PATTERN_RULES

            rule = _PATTERN_RULES.get((item.get("ctx") or {}).get("pattern"), rule)
        location = _location(tuple(item.get("loc", ())))
        if item.get("type") == "json_invalid":
            rule = f"must be valid JSON ({(item.get('ctx') or {}).get('error', 'invalid')} at character {location})"
            location = "(body)"
        errors.append(FieldProblem(field=location, rule=rule))
    detail = "; ".join(f"{e.field}: {e.rule}" for e in errors) or "invalid request"
    return ProblemError(422, "invalid-input", detail, errors)


async def handle_problem(request: Request, exc: ProblemError) -> JSONResponse:
    return problem_response(exc, request.url.path)


async def handle_validation(request: Request, exc: RequestValidationError) -> JSONResponse:
    return problem_response(validation_problem(exc), request.url.path)


async def handle_http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
    slug = {401: "unauthenticated", 403: "forbidden", 404: "not-found", 405: "method-not-allowed",
            413: "payload-too-large", 415: "unsupported-media-type"}.get(exc.status_code, "invalid-input")
    detail = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
    headers = dict(exc.headers or {})
    if exc.status_code == 405:
        headers["Allow"] = ", ".join(allowed_methods(request))
        detail = f"{request.method} is not allowed on {request.url.path}; allowed: {headers['Allow']}"
    if exc.status_code == 413:
        return problem_response(ProblemError(413, slug, detail, [FieldProblem(field="(body)", rule=detail.partition(": ")[2])]),
                                request.url.path)
    if exc.status_code == 400 and "parsing the body" in detail:
        return problem_response(ProblemError(400, "invalid-input", "body: must be valid JSON",
                                             [FieldProblem(field="(body)", rule="must be valid JSON")]), request.url.path)
    if exc.status_code == 404 and detail == "Not Found":
        detail = f"no such path: {request.url.path}"
    return problem_response(ProblemError(exc.status_code, slug, detail, headers=headers), request.url.path)


def allowed_methods(request: Request) -> list[str]:
    """Every method some route serves at the request's path (for a 405's ``Allow``)."""
    from fastapi import routing
    from starlette.routing import Match

    # FastAPI >= 0.16x keeps an included router as one wrapper route; walk the routes it holds.
    flatten = getattr(routing, "iter_route_contexts", None)
    routes = flatten(request.app.routes) if flatten else request.app.routes
    methods: set[str] = set()
    for route in routes:
        match, _ = route.matches({**request.scope, "method": "GET"})
        route_methods = getattr(route, "methods", None) or set()
        if match != Match.NONE:  # FULL: a GET route; PARTIAL: the path matched, not the method
            methods |= set(route_methods) - {"HEAD"}
    return sorted(methods)


def problem_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` entries declaring problem bodies for ``statuses``."""
    return {
        status: {"model": Problem, "content": {PROBLEM_MEDIA_TYPE: {"schema": {"$ref": "#/components/schemas/Problem"}}}}
        for status in statuses
    }


# -- outages: the database and Temporal -----------------------------------------------------

#: Seconds a client is told to wait (``Retry-After``) after a 503 for an outage.
OUTAGE_RETRY_AFTER_SECONDS = 5

#: Temporal RPC status codes that mean "Temporal is not answering now" (retry later).
TEMPORAL_OUTAGE_CODES = (RPCStatusCode.UNAVAILABLE, RPCStatusCode.DEADLINE_EXCEEDED, RPCStatusCode.CANCELLED,
                         RPCStatusCode.RESOURCE_EXHAUSTED)

#: What the API catches as an outage (the exception handlers of ``api.app``).
OUTAGE_ERRORS: tuple[type[BaseException], ...] = (sa_exc.DBAPIError, sa_exc.TimeoutError, RPCError, ConnectionError,
                                                  RuntimeError, asyncio.TimeoutError)


def temporal_unavailable(detail: str) -> ProblemError:
    """A 503 ``temporal-unavailable`` problem with ``Retry-After``."""
    return ProblemError(503, "temporal-unavailable", detail, headers={"Retry-After": str(OUTAGE_RETRY_AFTER_SECONDS)})


def outage_problem(err: BaseException) -> ProblemError | None:
    """The problem an outage error answers with, or ``None`` when ``err`` is not an outage.

    - ``sqlalchemy`` ``OperationalError``, ``InterfaceError``, a lost connection or the pool's
      ``TimeoutError``: 503 ``database-unavailable`` (a lock held past
      ``API_DATABASE_TIMEOUT_SECONDS``, a server down); any other ``DBAPIError`` is a 500
      ``internal-error``. Neither carries the statement, its parameters or the driver's message
      (they may hold personal data): only the error's class.
    - Temporal ``RPCError`` UNAVAILABLE, DEADLINE_EXCEEDED, CANCELLED, RESOURCE_EXHAUSTED, a
      failed connection (``ConnectionError``, the SDK's ``RuntimeError("Failed client connect")``)
      or ``asyncio.TimeoutError``: 503 ``temporal-unavailable``.
    Every 503 carries ``Retry-After: OUTAGE_RETRY_AFTER_SECONDS``.
    """
    retry = {"Retry-After": str(OUTAGE_RETRY_AFTER_SECONDS)}
    if isinstance(err, sa_exc.DBAPIError):
        kind = type(err.orig).__name__ if err.orig is not None else type(err).__name__
        if isinstance(err, (sa_exc.OperationalError, sa_exc.InterfaceError)) or err.connection_invalidated:
            return ProblemError(503, "database-unavailable", f"the database did not answer ({kind}); retry shortly",
                                headers=retry)
        return ProblemError(500, "internal-error", f"a database statement failed ({kind})")
    if isinstance(err, sa_exc.TimeoutError):
        return ProblemError(503, "database-unavailable", "no database connection was free in time; retry shortly",
                            headers=retry)
    if isinstance(err, RPCError):
        if err.status in TEMPORAL_OUTAGE_CODES:
            return temporal_unavailable(f"Temporal did not answer ({err.status.name}); retry shortly")
        return None
    if isinstance(err, (ConnectionError, asyncio.TimeoutError)) or (
            isinstance(err, RuntimeError) and "client connect" in str(err)):
        return temporal_unavailable(f"cannot reach Temporal ({type(err).__name__}); retry shortly")
    return None


async def handle_outage(request: Request, exc: Exception) -> JSONResponse:
    """Answer an outage with its problem (``outage_problem``); any other error of those classes
    is a 500 ``internal-error`` problem. Logs the problem's type and the error's class only."""
    from collections_domain.ops.logs import get_logger

    problem = outage_problem(exc) or ProblemError(500, "internal-error", f"the request failed ({type(exc).__name__})")
    get_logger("api").error("api.request.outage", path=request.url.path, problem=problem.slug,
                            error=type(exc).__name__, status=problem.status)
    return problem_response(problem, request.url.path)
