"""API keys: creation, revocation and checking, with scopes ``read``, ``write``, ``decode`` (the
codec server: decrypted payloads in the Temporal UI) and ``admin`` (all of them).

A key reads ``lck_<id>_<secret>``: ``id`` is 16 hex digits (public, shown in lists and logs),
``secret`` 64 hex digits (256 random bits). Only the SHA-256 of the secret is stored
(``api_keys``); the whole key is shown once, when it is created.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from collections_domain.store.models import ApiKey

SCOPES = ("read", "write", "decode", "admin")
KEY_PATTERN = re.compile(r"^lck_([0-9a-f]{16})_([0-9a-f]{64})$")
NAME_PATTERN = re.compile(r"^[A-Za-z0-9 ._-]{1,100}$")


@dataclass(frozen=True)
class Principal:
    """Who is calling: the key's id, name and scopes."""

    key_id: str
    name: str
    scopes: frozenset[str]

    def allows(self, scope: str) -> bool:
        """``admin`` grants every scope; otherwise the scope must be listed."""
        return "admin" in self.scopes or scope in self.scopes


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def scope_problems(scopes: list[str]) -> list[str]:
    """Why ``scopes`` cannot be given to a key, as ``"scopes: rule"`` strings."""
    if not scopes:
        return [f"scopes: at least one of {', '.join(SCOPES)}"]
    unknown = [s for s in scopes if s not in SCOPES]
    return [f"scopes: {s!r} is not one of {', '.join(SCOPES)}" for s in unknown]


def create_api_key(engine: Engine, name: str, scopes: list[str]) -> tuple[ApiKey, str]:
    """Create a key; returns the stored row and the full key (shown once, never stored).

    Raises:
        ValueError: an empty or unknown scope, or a name that is not 1-100 letters, digits,
            spaces, ``.``, ``_`` or ``-``.
    """
    problems = scope_problems(scopes)
    if not NAME_PATTERN.match(name or ""):
        problems.append("name: must be 1-100 characters, each a letter, a digit, a space, '.', '_' or '-'")
    if problems:
        raise ValueError("; ".join(problems))
    key_id = secrets.token_hex(8)
    secret = secrets.token_hex(32)
    row = ApiKey(
        id=key_id,
        name=name,
        scopes=" ".join(s for s in SCOPES if s in set(scopes)),
        secret_sha256=_digest(secret),
        created_at=datetime.now(UTC),
    )
    with Session(engine, expire_on_commit=False) as db:
        db.add(row)
        db.commit()
    return row, f"lck_{key_id}_{secret}"


def authenticate(engine: Engine, presented: str) -> Principal | None:
    """The principal of ``presented`` (a whole key), or ``None`` when it is malformed, unknown,
    revoked or wrong. The secret is compared in constant time."""
    match = KEY_PATTERN.match(presented or "")
    if not match:
        return None
    key_id, secret = match.groups()
    with Session(engine) as db:
        row = db.get(ApiKey, key_id)
    if row is None or row.revoked_at is not None:
        return None
    if not hmac.compare_digest(row.secret_sha256, _digest(secret)):
        return None
    return Principal(key_id=row.id, name=row.name, scopes=frozenset(row.scopes.split()))


def list_api_keys(engine: Engine) -> list[ApiKey]:
    """Every key (revoked ones too), oldest first; secrets are not stored, so never shown."""
    with Session(engine) as db:
        return list(db.exec(select(ApiKey).order_by(ApiKey.created_at)))


def revoke_api_key(engine: Engine, key_id: str) -> ApiKey | None:
    """Revoke ``key_id`` (idempotent: a revoked key keeps its first revocation time); ``None``
    when there is no such key."""
    with Session(engine, expire_on_commit=False) as db:
        row = db.get(ApiKey, key_id)
        if row is None:
            return None
        if row.revoked_at is None:
            row.revoked_at = datetime.now(UTC)
            db.add(row)
            db.commit()
            db.refresh(row)
        return row
