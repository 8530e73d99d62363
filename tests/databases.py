"""The tests' databases: a SQLite file by default, a fresh PostgreSQL database per test when
``TEST_DATABASE_URL`` names a PostgreSQL server.

``TEST_DATABASE_URL`` is a URL on which the role may ``CREATE DATABASE``, for example
``postgresql+psycopg://collections@/postgres?host=/var/run/postgresql`` or
``postgresql+psycopg://collections:secret@127.0.0.1:5432/postgres``. Each test database is named
``collections_test_<random>`` (``collections_test_gw0_<random>`` in pytest-xdist worker ``gw0``)
and copied from a template database that the migrations built once per session, that is once per
worker process; it is dropped when its test ends (the template, and anything left over, at the end
of the session: ``drop_created_databases``). Every process drops only the databases it created,
so parallel workers never touch each other's.

A new migration after a change to ``collections_domain/store/models.py`` (PostgreSQL needed)::

    TEST_DATABASE_URL=postgresql+psycopg://... .venv/bin/python -m tests.databases revision -m "what changed"
"""

from __future__ import annotations

import os
import sys
import uuid
import warnings
from pathlib import Path

from sqlalchemy import create_engine, text
from sqlalchemy.pool import NullPool
from sqlalchemy.engine import URL, make_url

#: The switch: unset (SQLite) or a PostgreSQL URL whose role can create databases.
ENV = "TEST_DATABASE_URL"

_created: dict[tuple[str, str], str] = {}  # (folder, name) -> database name


def server_url() -> URL | None:
    """``TEST_DATABASE_URL`` parsed, or ``None`` (SQLite)."""
    raw = os.environ.get(ENV, "").strip()
    if not raw:
        return None
    url = make_url(raw)
    if url.get_backend_name() != "postgresql":
        raise RuntimeError(f"{ENV} must be a postgresql URL, not {url.get_backend_name()}")
    return url


def on_postgres() -> bool:
    return server_url() is not None


def _admin(url: URL):
    return create_engine(url, isolation_level="AUTOCOMMIT", poolclass=NullPool)


def fresh_database_url(tmp_path: Path, name: str = "collections", *, empty: bool = False) -> str:
    """The URL of a new database for the file ``tmp_path/<name>.db``.

    Without ``TEST_DATABASE_URL`` that file (SQLite, empty: ``make_engine`` creates the tables).
    With it, a new PostgreSQL database, copied from a template migrated to head once per session
    (``make_engine`` then finds nothing to upgrade), or with no tables at all when ``empty``.
    The same ``tmp_path`` and ``name`` give the same database, as they would give the same file.
    """
    url = server_url()
    if url is None:
        return f"sqlite:///{tmp_path / f'{name}.db'}"
    key = (str(tmp_path), name)
    if key not in _created:
        template = None if empty else _migrated_template(url)
        _created[key] = _create_database(url, template)
    return url.set(database=_created[key]).render_as_string(hide_password=False)


def _create_database(url: URL, template: str | None = None) -> str:
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    database = f"collections_test_{worker + '_' if worker.isalnum() else ''}{uuid.uuid4().hex[:16]}"
    admin = _admin(url)
    try:
        with admin.connect() as connection:
            copy = f' TEMPLATE "{template}"' if template else ""
            connection.execute(text(f'CREATE DATABASE "{database}"{copy}'))
    finally:
        admin.dispose()
    return database


_TEMPLATE_KEY = ("", "template")


def _migrated_template(url: URL) -> str:
    """This session's template database, made by the migrations (``upgrade head``)."""
    if _TEMPLATE_KEY not in _created:
        from collections_domain.store.db import make_engine

        database = _create_database(url)
        _created[_TEMPLATE_KEY] = database
        make_engine(url.set(database=database).render_as_string(hide_password=False)).dispose()
    return _created[_TEMPLATE_KEY]


def created_databases() -> set[str]:
    return set(_created.values())


def drop_created_databases(only: set[str] | None = None) -> None:
    """Drop the databases this process created (``only`` those, when given), even while a
    forgotten engine still holds connections to them or an activity thread of a stopped worker
    tries to open one: new connections are refused first. A database that cannot be dropped is
    kept for the next call (the end of the session) with a warning; it never fails a test."""
    url = server_url()
    if url is None:
        return
    doomed = [key for key, database in _created.items() if only is None or database in only]
    if not doomed:
        return
    admin = _admin(url)
    try:
        with admin.connect() as connection:
            for key in doomed:
                database = _created[key]
                try:
                    connection.execute(text(f'ALTER DATABASE "{database}" ALLOW_CONNECTIONS false'))
                    connection.execute(text(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)'))
                except Exception as err:  # noqa: BLE001 - reported, retried at the end of the session
                    warnings.warn(f"could not drop test database {database}: {err}", stacklevel=2)
                else:
                    del _created[key]
    finally:
        admin.dispose()


def _new_revision(message: str) -> None:
    """Autogenerate a migration for what ``models.py`` has and the migrations lack, against a
    fresh PostgreSQL database brought to the current head."""
    import tempfile

    from alembic import command
    from alembic.config import Config

    from collections_domain.store.db import make_engine

    if server_url() is None:
        sys.exit(f"{ENV} must name a PostgreSQL server (revisions are generated against PostgreSQL)")
    root = Path(__file__).resolve().parent.parent
    with tempfile.TemporaryDirectory() as folder:
        database_url = fresh_database_url(Path(folder), "revision", empty=True)
        try:
            make_engine(database_url).dispose()  # upgrade head
            config = Config(str(root / "alembic.ini"))
            config.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
            config.attributes["autogenerate"] = True  # env.py: no file when nothing changed
            command.revision(config, message=message, autogenerate=True)
        finally:
            drop_created_databases()


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(prog="python -m tests.databases")
    commands = parser.add_subparsers(dest="command", required=True)
    revision = commands.add_parser("revision", help="autogenerate a migration for the models' changes")
    revision.add_argument("-m", "--message", required=True)
    args = parser.parse_args()
    _new_revision(args.message)
