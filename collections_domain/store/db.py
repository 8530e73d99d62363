"""Database engine and sessions: SQLite by default, PostgreSQL when ``DATABASE_URL`` says so.

SQLite files (development, tests) get their tables straight from the models. Any other database
(PostgreSQL in production) gets its schema from the Alembic migrations in
``collections_domain/store/migrations``: every engine runs ``upgrade head`` first, under a PostgreSQL
advisory lock so that workers and starters starting together migrate once.
"""

from __future__ import annotations

import fcntl
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import event, inspect, text
from sqlalchemy.engine import Connection, Engine, make_url
from sqlmodel import Session, SQLModel, create_engine

from collections_domain.store import models  # noqa: F401  (registers the tables)

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"

#: The PostgreSQL advisory lock key held while migrating (any fixed 64-bit number; this one is
#: "collections" in ASCII, truncated).
MIGRATION_LOCK_KEY = 0x636F6C6C656374


def make_engine(url: str) -> Engine:
    """An engine for ``url``, with its schema up to date.

    SQLite files get WAL journaling (synchronous=NORMAL) and a busy timeout so that many activity
    threads can write at once; their folder is created when missing; their tables are created from
    the models. Other databases are migrated to the latest revision (``upgrade_schema``).
    """
    _make_sqlite_folder(url)
    if url.startswith("sqlite"):
        engine = create_engine(url, hide_parameters=True, connect_args={"check_same_thread": False, "timeout": 30})

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

        with _schema_lock(url):
            _sqlite_schema(engine)
        return engine
    # Up to 32 connections: one for each of a worker's activity threads (``build_worker``).
    engine = create_engine(url, hide_parameters=True, pool_pre_ping=True, pool_size=10, max_overflow=22, connect_args=_connect_args(url))
    upgrade_schema(engine)
    return engine


#: The revision whose schema SQLite files had while they got their tables from the models alone
#: (before the loan ledger): such a file is stamped with it, then migrated.
SQLITE_MODELS_REVISION = "c8f18ca9377a"


def _sqlite_schema(engine: Engine) -> None:
    """A new SQLite file gets its tables from the models (fast: every test has one) and is stamped
    at the head; a file with a revision is migrated to the head; a file made by an older version
    (tables, no revision) is stamped at ``SQLITE_MODELS_REVISION`` and migrated, so a demo's
    data folder keeps working across upgrades."""
    tables = set(inspect(engine).get_table_names())
    if not tables:
        SQLModel.metadata.create_all(engine)
        _migrate(engine, lambda config: command.stamp(config, "head"))
        return
    if "alembic_version" not in tables:
        _migrate(engine, lambda config: command.stamp(config, SQLITE_MODELS_REVISION))
    if current_revision(engine) != head_revision():
        upgrade_schema(engine)
    SQLModel.metadata.create_all(engine)  # tables of models newer than any revision, if any


@contextmanager
def _schema_lock(url: str) -> Iterator[None]:
    """An exclusive lock on ``<file>.schema-lock`` while one process creates or migrates a SQLite
    file's schema: the demo's worker and API open a new file at the same moment, and two
    processes creating it together left two Alembic heads (found by a newcomer trial)."""
    path = url.removeprefix("sqlite:///") if url.startswith("sqlite:///") and url != "sqlite:///:memory:" else None
    if path is None:
        yield
        return
    with open(f"{path}.schema-lock", "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _make_sqlite_folder(url: str) -> None:
    if url.startswith("sqlite:///") and url != "sqlite:///:memory:":
        Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)


def _connect_args(url: str) -> dict:
    """PostgreSQL sessions run in UTC, so timestamps read back (and naive ones written) are UTC
    whatever the server's or the role's ``TimeZone``."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "postgresql" and "options" not in parsed.query:
        return {"options": "-c timezone=UTC"}
    return {}


def alembic_config(connection: Connection | None = None) -> Config:
    """The migrations' Alembic configuration, built in code (independent of the working folder).

    With ``connection``, the migrations run on it (``env.py`` reads ``attributes["connection"]``);
    without, on the settings' ``DATABASE_URL``.
    """
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR).replace("%", "%%"))
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def _migrate(engine: Engine, action) -> None:
    """Run ``action(config)`` in one transaction on ``engine``, under the migration lock on
    PostgreSQL (released at commit; its DDL is transactional, so a failure leaves nothing)."""
    with engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK_KEY})
        action(alembic_config(connection))


def upgrade_schema(engine: Engine, revision: str = "head") -> None:
    """``alembic upgrade <revision>`` on ``engine``; safe when several processes do it at once."""
    _migrate(engine, lambda config: command.upgrade(config, revision))


def downgrade_schema(engine: Engine, revision: str = "base") -> None:
    """``alembic downgrade <revision>`` on ``engine`` (``base`` drops every table)."""
    _migrate(engine, lambda config: command.downgrade(config, revision))


def current_revision(engine: Engine) -> str | None:
    """The revision the database is at (``None`` when it was never migrated)."""
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def head_revision() -> str | None:
    """The latest revision in ``collections_domain/store/migrations/versions``."""
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(alembic_config()).get_current_head()


def db_upgrade(url: str) -> str | None:
    """Bring the database at ``url`` to the latest revision and return that revision (the CLI's
    ``db-upgrade``)."""
    engine = make_engine(url)
    try:
        return current_revision(engine)
    finally:
        engine.dispose()


def session(engine: Engine) -> Session:
    """A new session on ``engine`` (use as a context manager)."""
    return Session(engine, expire_on_commit=False)
