"""The codec server: the Temporal UI (and ``temporal ... --codec-endpoint``) shows decrypted
payloads to operators who hold an API key with scope ``decode`` (or ``admin``).

Temporal's remote codec protocol: ``POST /codec/decode`` and ``POST /codec/encode`` take and
return ``{"payloads": [{"metadata": {name: base64}, "data": base64}]}`` (``temporal.api.common.v1.
Payloads`` as proto JSON). The caller proves its key with ``Authorization: Bearer <key>`` (the
CLI's ``--codec-auth``), or, from the browser, with the ``codec_key`` cookie that
``/codec/login`` sets (HttpOnly, ``Path=/codec``, 8 hours) and the UI sends when its codec setting
"include cross-origin credentials" is on. Only the UI origins of ``API_CODEC_ALLOWED_ORIGINS`` may
call it from a browser (CORS). An operator without a key sees ``binary/encrypted`` payloads.
"""

from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import HTMLResponse
from fastapi.security import HTTPAuthorizationCredentials
from google.protobuf import json_format
from pydantic import BaseModel, Field
from google.protobuf.message import DecodeError
from temporalio.api.common.v1 import Payloads

from api.deps import bearer, require
from api.keys import Principal
from api.problems import FieldProblem, ProblemError, problem_responses
from collections_domain.ops.codec import EncryptionCodec, MissingPayloadKey
from collections_domain.ops.connection import key_ring

router = APIRouter(prefix="/codec", tags=["codec"])
COOKIE = "codec_key"
COOKIE_SECONDS = 8 * 3600
_ALLOWED_HEADERS = "authorization, content-type, x-namespace"


class CodecPayload(BaseModel):
    """One payload as Temporal's codec protocol carries it: metadata values and data in base64."""

    metadata: dict[str, str] = Field(default_factory=dict, max_length=16)
    data: str = Field("", max_length=60_000)


class CodecPayloads(BaseModel):
    """The body and answer of ``/codec/decode`` and ``/codec/encode``."""

    payloads: list[CodecPayload] = Field(default_factory=list, max_length=200)


def codec_of(request: Request) -> EncryptionCodec | None:
    """The API process's codec, built once from its settings (``None``: encryption is off)."""
    state = request.app.state
    if not hasattr(state, "payload_codec"):
        ring = key_ring(state.settings)
        state.payload_codec = EncryptionCodec(ring) if ring else None
    return state.payload_codec


def cors_headers(request: Request) -> dict[str, str]:
    """CORS headers for a browser call from an allowed UI origin; none for any other origin."""
    origin = request.headers.get("origin")
    allowed = {o.strip().rstrip("/") for o in request.app.state.settings.api_codec_allowed_origins.split(",") if o.strip()}
    if not origin or origin.rstrip("/") not in allowed:
        return {}
    return {"Access-Control-Allow-Origin": origin, "Access-Control-Allow-Credentials": "true",
            "Access-Control-Allow-Methods": "POST, OPTIONS", "Access-Control-Allow-Headers": _ALLOWED_HEADERS,
            "Access-Control-Max-Age": "600", "Vary": "Origin"}


async def decoder(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> Principal:
    """The caller, from its bearer key or its ``codec_key`` cookie, with scope ``decode``
    (``api.deps.require``: 401, 403 and the failed-authentication throttle apply)."""
    cookie = request.cookies.get(COOKIE)
    if credentials is None and cookie:
        credentials = HTTPAuthorizationCredentials(scheme="Bearer", credentials=cookie)
    try:
        return await require("decode")(request, credentials)
    except ProblemError as err:
        err.headers = {**(err.headers or {}), **cors_headers(request)}
        raise


def _payloads_of(request: Request, body: CodecPayloads) -> Payloads:
    """The request's payloads as protos (422 naming ``payloads`` when a value is not base64)."""
    try:
        return json_format.ParseDict(body.model_dump(), Payloads())
    except (ValueError, json_format.ParseError, DecodeError) as err:
        rule = f"metadata values and data in base64: {str(err)[:200]}"
        raise ProblemError(422, "invalid-request", f"payloads: {rule}", [FieldProblem(field="payloads", rule=rule)],
                           headers=cors_headers(request)) from None


def _answer(request: Request, payloads: list[Any]) -> Response:
    body = json_format.MessageToDict(Payloads(payloads=payloads))
    return Response(json.dumps({"payloads": body.get("payloads", [])}), media_type="application/json",
                    headers={**cors_headers(request), "Cache-Control": "no-store"})


@router.options("/{operation}", include_in_schema=False)
async def preflight(request: Request, operation: str) -> Response:
    """The browser's CORS preflight: allowed for the UI origins, empty for others."""
    return Response(status_code=204, headers=cors_headers(request))


@router.post("/decode", summary="Decrypt payloads for the Temporal UI or CLI (scope decode)",
             response_model=CodecPayloads, responses=problem_responses(401, 403, 413, 422, 429))
async def decode(request: Request, body: CodecPayloads, _: Annotated[Principal, Depends(decoder)]) -> Response:
    """Decrypt each encrypted payload (others pass through unchanged).

    Raises:
        ProblemError: 401/403/429 as ``decoder``; 422 a malformed body or a payload no key held
            here can open (the key id is named).
    """
    payloads = _payloads_of(request, body)
    codec = codec_of(request)
    try:
        decoded = await codec.decode(payloads.payloads) if codec else list(payloads.payloads)
    except MissingPayloadKey as err:
        raise ProblemError(422, "unknown-key", f"payloads: {err}", [FieldProblem(field="payloads", rule=str(err))],
                           headers=cors_headers(request)) from None
    except Exception:  # the tag did not match: tampered, or another ring's key of the same id
        rule = "a payload could not be decrypted with the key its metadata names"
        raise ProblemError(422, "undecryptable", f"payloads: {rule}", [FieldProblem(field="payloads", rule=rule)],
                           headers=cors_headers(request)) from None
    return _answer(request, decoded)


@router.post("/encode", summary="Encrypt payloads under the active key (scope decode)",
             response_model=CodecPayloads, responses=problem_responses(401, 403, 413, 422, 429))
async def encode(request: Request, body: CodecPayloads, _: Annotated[Principal, Depends(decoder)]) -> Response:
    """Encrypt each payload under the active key (what the UI sends when an operator signals)."""
    payloads = _payloads_of(request, body)
    codec = codec_of(request)
    return _answer(request, await codec.encode(payloads.payloads) if codec else list(payloads.payloads))


LOGIN_PAGE = """<!doctype html><meta charset="utf-8"><title>Decode payloads in the Temporal UI</title>
<h1>Decode payloads in the Temporal UI</h1>
<p>Paste an API key with scope <code>decode</code>. This browser then sends it (an HttpOnly cookie
on <code>/codec</code>, 8 hours) when the Temporal UI asks this API to decrypt payloads.</p>
<form id="f"><input id="k" type="password" size="90" placeholder="lck_..." autocomplete="off">
<button>Enable decoding</button></form><p id="r" role="status"></p>
<script>
document.getElementById('f').onsubmit = async (e) => {
  e.preventDefault();
  const r = await fetch('login', {method: 'POST', headers: {'Content-Type': 'application/json'},
                                  body: JSON.stringify({key: document.getElementById('k').value})});
  const b = await r.json();
  document.getElementById('r').textContent = r.ok ? b.detail : (b.detail || r.status);
};
</script>"""


@router.get("/login", response_class=HTMLResponse, include_in_schema=False)
async def login_page() -> HTMLResponse:
    """A page where an operator pastes a ``decode`` key to let this browser decode in the UI."""
    return HTMLResponse(LOGIN_PAGE, headers={"Cache-Control": "no-store", "X-Frame-Options": "DENY"})


@router.post("/login", include_in_schema=False)
async def login(request: Request) -> Response:
    """Check ``{"key": "lck_..."}`` like a bearer key (scope ``decode``) and keep it as the
    ``codec_key`` cookie (HttpOnly, SameSite=Lax, ``Path=/codec``, Secure over HTTPS).

    Raises:
        ProblemError: 422 no ``key``; 401/403/429 as ``decoder``.
    """
    try:
        key = json.loads(await request.body() or b"{}").get("key")
    except (ValueError, AttributeError):
        key = None
    if not isinstance(key, str) or not key:
        rule = "required: an API key with scope decode"
        raise ProblemError(422, "invalid-request", f"key: {rule}", [FieldProblem(field="key", rule=rule)])
    principal = await require("decode")(request, HTTPAuthorizationCredentials(scheme="Bearer", credentials=key))
    response = Response(json.dumps({"detail": f"decoding enabled in this browser with key {principal.key_id}"}),
                        media_type="application/json", headers={"Cache-Control": "no-store"})
    response.set_cookie(COOKIE, key, max_age=COOKIE_SECONDS, path="/codec", httponly=True, samesite="lax",
                        secure=request.url.scheme == "https")
    return response


@router.post("/logout", include_in_schema=False)
async def logout() -> Response:
    """Forget the ``codec_key`` cookie."""
    response = Response(status_code=204)
    response.delete_cookie(COOKIE, path="/codec")
    return response
