"""The API's middleware: the refusal of ambiguous request framing, the request-body limit, the
body and content-type check, and the per-request metrics."""

import time

from fastapi import HTTPException, Request

from api.deps import Metrics
from api.problems import FieldProblem, ProblemError, problem_response
from collections_domain.ops.logs import get_logger

log = get_logger("api")

#: The largest request body the API reads (every body here is a few hundred bytes).
MAX_BODY_BYTES = 64 * 1024


class RefuseAmbiguousFraming:
    """ASGI middleware (outermost): a request with both ``Content-Length`` and
    ``Transfer-Encoding``, or more than one ``Content-Length``, is answered 400 problem+json
    with ``Connection: close`` before anything reads its body, and the server closes the
    connection (uvicorn does on ``Connection: close``): bytes after it on the same connection,
    a smuggled second request, are never read as a request (RFC 9112 6.3)."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http":
            names = [name.lower() for name, _ in scope.get("headers", [])]
            lengths = names.count(b"content-length")
            if lengths > 1 or (lengths and b"transfer-encoding" in names):
                rule = "send either Content-Length or Transfer-Encoding, not both (nor Content-Length twice)"
                error = ProblemError(400, "ambiguous-framing", f"headers: {rule}",
                                     [FieldProblem(field="header.Transfer-Encoding", rule=rule)],
                                     headers={"Connection": "close"})
                log.warning("api.request.ambiguous_framing", method=scope.get("method"), path=scope.get("path"))
                await problem_response(error, scope.get("path"))(scope, receive, send)
                return
        await self.app(scope, receive, send)


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


def body_problem(request: Request) -> ProblemError | None:
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


async def count_requests(request: Request, call_next):
    """HTTP middleware: refuse a body ``body_problem`` names, then count the request and its
    latency by route template, and log a 5xx answer."""
    started = time.perf_counter()
    refused = body_problem(request)
    response = problem_response(refused, request.url.path) if refused else await call_next(request)
    route = request.scope.get("route")
    template = getattr(route, "path", "unmatched")
    metrics: Metrics = request.app.state.metrics
    metrics.requests.labels(request.method, template, str(response.status_code)).inc()
    metrics.latency.labels(request.method, template).observe(time.perf_counter() - started)
    if response.status_code >= 500:
        log.error("api.request.failed", method=request.method, route=template, status=response.status_code)
    return response
