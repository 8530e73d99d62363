"""The API's database engine: the project's engine (``store.db.make_engine``) with timeouts that
bound how long one statement of a request may wait, so that a locked or absent database
answers 503 in seconds (``api.problems.outage_problem``) instead of holding the request.

- SQLite: ``PRAGMA busy_timeout`` (the project's engine waits 30 s for the worker's activities).
- PostgreSQL: ``lock_timeout`` and ``statement_timeout`` for the session. A server that does not
  accept connections is bounded by ``connect_timeout=<seconds>`` in ``DATABASE_URL``; the pool
  (32 connections) is larger than the API's threads (``asyncio.to_thread``: at most 32), so
  the API never waits for a pooled connection.
"""

from __future__ import annotations

from sqlalchemy import event
from sqlalchemy.engine import Engine

from collections_domain.ops.settings import Settings
from collections_domain.store.db import make_engine


def bound_statements(engine: Engine, timeout_seconds: float) -> Engine:
    """Give every new connection of ``engine`` a wait bound of ``timeout_seconds`` (see the
    module), and close the pooled connections made before it. Returns ``engine``."""
    millis = max(1, int(timeout_seconds * 1000))

    @event.listens_for(engine, "connect")
    def _timeouts(dbapi_connection, _record):  # runs after make_engine's own pragmas
        cursor = dbapi_connection.cursor()
        if engine.dialect.name == "sqlite":
            cursor.execute(f"PRAGMA busy_timeout={millis}")
        elif engine.dialect.name == "postgresql":
            cursor.execute(f"SET lock_timeout = {millis}")
            cursor.execute(f"SET statement_timeout = {millis * 5}")
        cursor.close()
        if engine.dialect.name == "postgresql":
            dbapi_connection.commit()

    engine.dispose()
    return engine


def make_api_engine(settings: Settings) -> Engine:
    """The engine on ``DATABASE_URL`` with its schema up to date and the API's bound of
    ``API_DATABASE_TIMEOUT_SECONDS`` (lock waits; PostgreSQL statements 5 times that)."""
    return bound_statements(make_engine(settings.resolved_database_url), settings.api_database_timeout_seconds)
