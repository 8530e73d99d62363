"""API keys: create, list and revoke them (scope ``admin``)."""

import asyncio
from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Path, Request
from fastapi.responses import JSONResponse

from api import keys
from api.deps import IdempotencyKey, check_list_parameters, engine_of, require
from api.idempotency import run_idempotent
from api.problems import ProblemError, field_problems, problem_responses
from api.schemas import ApiKeyCreated, ApiKeyList, ApiKeyOut, ApiKeyRequest
from collections_domain.ops.logs import get_logger

log = get_logger("api")

router = APIRouter(tags=["admin"])

admin = Depends(require("admin"))


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _key_out(row) -> dict:
    return {"id": row.id, "name": row.name, "scopes": row.scopes.split(), "created_at": _utc(row.created_at),
            "revoked_at": _utc(row.revoked_at) if row.revoked_at else None}


@router.post("/v1/api-keys", status_code=201, response_model=ApiKeyCreated, responses=problem_responses(403))
async def create_key(request: Request, body: ApiKeyRequest, idempotency_key: IdempotencyKey,
                     principal: Annotated[keys.Principal, admin]) -> JSONResponse:
    """Create an API key; the answer's ``key`` is shown this once (only its hash is stored).
    A replay with the same Idempotency-Key answers the same key's id with ``key: null``: the
    secret is stored nowhere. Needs scope ``admin``."""

    async def produce():
        row, secret = await asyncio.to_thread(keys.create_api_key, engine_of(request), body.name, list(body.scopes))
        log.info("api.key.created", key_id=row.id, by=principal.key_id, scopes=row.scopes)
        return 201, {**_key_out(row), "key": secret}

    return await run_idempotent(engine_of(request), key_id=principal.key_id, idempotency_key=idempotency_key,
                                method="POST", path=request.url.path, body=body, produce=produce,
                                stored=lambda answer: {**answer, "key": None})


@router.get("/v1/api-keys", response_model=ApiKeyList, responses=problem_responses(403))
async def list_keys(request: Request, _: Annotated[keys.Principal, admin]) -> ApiKeyList:
    """Every API key, revoked ones too (never their secrets). Needs scope ``admin``."""
    check_list_parameters(request, ())
    rows = await asyncio.to_thread(keys.list_api_keys, engine_of(request))
    return ApiKeyList(keys=[ApiKeyOut(**_key_out(row)) for row in rows])


@router.post("/v1/api-keys/{key_id}/revoke", response_model=ApiKeyOut, responses=problem_responses(403, 404, 409))
async def revoke_key(request: Request, key_id: Annotated[str, Path(pattern=r"^[0-9a-f]{16}$")],
                     idempotency_key: IdempotencyKey, principal: Annotated[keys.Principal, admin]) -> JSONResponse:
    """Revoke a key: it is refused from the next request on. Needs scope ``admin``."""

    async def produce():
        if key_id == principal.key_id:
            raise ProblemError(409, "conflict", "key_id: a key cannot revoke itself; revoke it with another admin key "
                               "(or starter.py api-key revoke)", field_problems(["key_id: a key cannot revoke itself"]))
        row = await asyncio.to_thread(keys.revoke_api_key, engine_of(request), key_id)
        if row is None:
            raise ProblemError(404, "not-found", f"key_id: no API key {key_id!r}",
                               field_problems([f"key_id: no API key {key_id!r}"]))
        log.info("api.key.revoked", key_id=key_id, by=principal.key_id)
        return 200, _key_out(row)

    return await run_idempotent(engine_of(request), key_id=principal.key_id, idempotency_key=idempotency_key,
                                method="POST", path=request.url.path, body={"key_id": key_id}, produce=produce)
