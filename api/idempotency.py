"""Idempotent writes: every POST carries a client-chosen ``Idempotency-Key`` (per API key).

The first request with a key runs and its answer (status and JSON body, errors below 500
included) is stored in ``idempotent_requests``; a repeat with the same method, path and body gets
that answer again with ``Idempotent-Replayed: true``. The same key with a different request is a
422; a repeat while the first still runs is a 409. A 5xx answer is not kept, so the client can
retry with the same key (draft-ietf-httpapi-idempotency-key-header). A request left "in progress" by
a process that died is taken up again after ``ABANDONED_AFTER``.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from fastapi.encoders import jsonable_encoder
from fastapi.responses import JSONResponse
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, select

from api.problems import PROBLEM_MEDIA_TYPE, FieldProblem, ProblemError, problem_response
from collections_domain.store.models import IdempotentRequest

#: An answer: HTTP status and a JSON-able body.
Answer = tuple[int, Any]


def request_digest(method: str, path: str, body: Any) -> str:
    """SHA-256 over the method, the path and the canonical JSON of the body."""
    canonical = json.dumps(jsonable_encoder(body), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(f"{method} {path}\n{canonical}".encode()).hexdigest()


#: A request still "in progress" after this long was abandoned (its API process died): the key is
#: claimed again. Longer than any request can run (Temporal calls time out after 10 s).
ABANDONED_AFTER = timedelta(minutes=2)


def _claim(engine: Engine, key_id: str, idem_key: str, method: str, path: str, digest: str) -> IdempotentRequest | None:
    """Insert the in-progress row; ``None`` if claimed now, else the existing row. An abandoned
    in-progress row (older than ``ABANDONED_AFTER``) is removed and the key claimed anew."""
    for _ in range(2):
        with Session(engine, expire_on_commit=False) as db:
            db.add(IdempotentRequest(api_key_id=key_id, idempotency_key=idem_key, method=method, path=path,
                                     request_sha256=digest, created_at=datetime.now(UTC)))
            try:
                db.commit()
                return None
            except IntegrityError:
                db.rollback()
        with Session(engine, expire_on_commit=False) as db:
            row = db.exec(select(IdempotentRequest).where(IdempotentRequest.api_key_id == key_id,
                                                          IdempotentRequest.idempotency_key == idem_key)).one()
            created = row.created_at if row.created_at.tzinfo else row.created_at.replace(tzinfo=UTC)
            if row.status_code is not None or datetime.now(UTC) - created < ABANDONED_AFTER:
                return row
            db.delete(row)
            db.commit()
    return row


def _complete(engine: Engine, key_id: str, idem_key: str, status: int, body: Any) -> None:
    with Session(engine) as db:
        row = db.exec(select(IdempotentRequest).where(IdempotentRequest.api_key_id == key_id,
                                                      IdempotentRequest.idempotency_key == idem_key)).one()
        row.status_code = status
        row.response_json = json.dumps(jsonable_encoder(body))
        row.completed_at = datetime.now(UTC)
        db.add(row)
        db.commit()


def _release(engine: Engine, key_id: str, idem_key: str) -> None:
    with Session(engine) as db:
        row = db.exec(select(IdempotentRequest).where(IdempotentRequest.api_key_id == key_id,
                                                      IdempotentRequest.idempotency_key == idem_key)).first()
        if row is not None and row.status_code is None:
            db.delete(row)
            db.commit()


async def run_idempotent(
    engine: Engine,
    *,
    key_id: str,
    idempotency_key: str,
    method: str,
    path: str,
    body: Any,
    produce: Callable[[], Awaitable[Answer]],
    stored: Callable[[Any], Any] | None = None,
) -> JSONResponse:
    """Run ``produce`` once per (API key, ``idempotency_key``) and answer with its result, or
    replay the stored answer.

    ``stored`` maps an answer's body to what is kept for replays (a new API key's secret is
    never stored: the replay carries ``key: null``).

    Raises:
        ProblemError: 422 the key was used for a different request; 409 the first request is
            still running; any 5xx problem ``produce`` raised (the key is released for a retry).
    """
    digest = request_digest(method, path, body)
    existing = await asyncio.to_thread(_claim, engine, key_id, idempotency_key, method, path, digest)
    if existing is not None:
        if existing.request_sha256 != digest:
            what = "with another body" if (existing.method, existing.path) == (method, path) else "for another request"
            raise ProblemError(
                422, "idempotency-key-reused",
                f"Idempotency-Key {idempotency_key!r} was already used {what} ({existing.method} {existing.path}); "
                "use a new key for a new request",
                [FieldProblem(field="header.Idempotency-Key", rule=f"already used {what}")],
            )
        if existing.status_code is None:
            raise ProblemError(409, "request-in-progress",
                               f"the request with Idempotency-Key {idempotency_key!r} is still running; retry later",
                               [FieldProblem(field="header.Idempotency-Key", rule="a request with this key is still running")],
                               headers={"Retry-After": "1"})
        media = PROBLEM_MEDIA_TYPE if existing.status_code >= 400 else "application/json"
        return JSONResponse(json.loads(existing.response_json or "null"), status_code=existing.status_code,
                            media_type=media, headers={"Idempotent-Replayed": "true"})
    try:
        status, payload = await produce()
    except ProblemError as err:
        if err.status >= 500:
            await asyncio.to_thread(_release, engine, key_id, idempotency_key)
            raise
        problem = err.problem(path)
        await asyncio.to_thread(_complete, engine, key_id, idempotency_key, err.status, problem)
        return problem_response(err, path)
    except BaseException:
        await asyncio.to_thread(_release, engine, key_id, idempotency_key)
        raise
    kept = stored(jsonable_encoder(payload)) if stored else payload
    await asyncio.to_thread(_complete, engine, key_id, idempotency_key, status, kept)
    return JSONResponse(jsonable_encoder(payload), status_code=status)
