"""Database faults as activity errors: a code and the table, never the statement or its values.

A SQLAlchemy error's message carries the SQL statement and, unless the engine hides them
(``make_engine`` sets ``hide_parameters``), its bound parameters: a rendered message with a
borrower's name, a phone number. An activity failure's message goes into the workflow history
(``lastFailure``) and the worker's log, so activities never let one out: the worker's interceptor
(``ops.observability.ActivityContextInterceptor``) rewrites it with ``database_fault``.
"""

from __future__ import annotations

import re
from datetime import timedelta

from sqlalchemy import exc
from temporalio.exceptions import ApplicationError

#: How long a worker waits before trying an activity again after the database failed it: this,
#: doubled per attempt, up to ``DATABASE_MAX_RETRY_DELAY`` (so a recovered database is used
#: within a minute, whatever the activity's own backoff).
DATABASE_RETRY_DELAY = timedelta(seconds=2)
DATABASE_MAX_RETRY_DELAY = timedelta(minutes=1)
#: The errors a database that is down, locked, restarting or out of connections raises.
TRANSIENT = (exc.OperationalError, exc.InterfaceError, exc.TimeoutError, exc.DisconnectionError)
_TABLE = re.compile(r"\b(?:INSERT\s+INTO|UPDATE|DELETE\s+FROM|FROM)\s+\"?([A-Za-z_][A-Za-z0-9_]*)", re.IGNORECASE)


def fault_code(err: BaseException) -> str:
    """A short code for ``err``: the driver's SQLSTATE (PostgreSQL), SQLite's error name, or the
    exception's class name (``OperationalError``, ``TimeoutError``...)."""
    original = getattr(err, "orig", None)
    for attribute in ("sqlstate", "sqlite_errorname"):
        value = getattr(original, attribute, None)
        if isinstance(value, str) and value:
            return value
    return type(original or err).__name__


def fault_table(err: BaseException) -> str | None:
    """The first table the failed statement names, or ``None`` (a connection that never opened)."""
    statement = getattr(err, "statement", None)
    match = _TABLE.search(statement) if isinstance(statement, str) else None
    return match.group(1) if match else None


def database_fault(err: exc.SQLAlchemyError, attempt: int = 1) -> ApplicationError:
    """The activity error for a database error on activity ``attempt`` (1-based): type
    ``DatabaseUnavailable`` (the database is down, locked or out of connections) or
    ``DatabaseError`` (it refused a statement), retryable after ``DATABASE_RETRY_DELAY`` doubled per
    attempt (at most ``DATABASE_MAX_RETRY_DELAY``); the message is the code and the table."""
    transient = isinstance(err, TRANSIENT)
    table = fault_table(err)
    kind = "unavailable" if transient else "refused the statement"
    message = f"database {kind} ({fault_code(err)})" + (f" on table {table}" if table else "")
    return ApplicationError(
        message, type="DatabaseUnavailable" if transient else "DatabaseError",
        next_retry_delay=min(DATABASE_RETRY_DELAY * 2 ** min(max(attempt - 1, 0), 10), DATABASE_MAX_RETRY_DELAY),
    )
