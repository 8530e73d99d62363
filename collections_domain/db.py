"""Database engine and sessions: SQLite by default, PostgreSQL when ``DATABASE_URL`` says so."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlmodel import Session, SQLModel, create_engine

from collections_domain import models  # noqa: F401  (registers the tables)


def make_engine(url: str) -> Engine:
    """An engine for ``url``, with the tables created.

    SQLite files get WAL journaling (synchronous=NORMAL) and a busy timeout so that many activity
    threads can write at once; their folder is created when missing.
    """
    if url.startswith("sqlite:///") and url != "sqlite:///:memory:":
        Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_connection, _record):  # pragma: no cover - trivial
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            # In WAL mode NORMAL stays consistent after a crash; only the last commits before a
            # power loss may be lost, and every write here is an idempotent activity that Temporal
            # retries. FULL syncs on every commit and was the bottleneck of the simulation.
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute("PRAGMA busy_timeout=30000")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.close()
    else:
        engine = create_engine(url, pool_pre_ping=True)
    SQLModel.metadata.create_all(engine)
    return engine


def session(engine: Engine) -> Session:
    """A new session on ``engine`` (use as a context manager)."""
    return Session(engine, expire_on_commit=False)
