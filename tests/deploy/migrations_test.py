"""The Alembic migrations build exactly the models' schema, and come down again.

On SQLite always (a temporary file), and on PostgreSQL when the suite runs against it
(``TEST_DATABASE_URL``, see ``tests/databases.py``). When this fails after a change to
``collections_domain/store/models.py``, the migration for it is missing: generate it with
``TEST_DATABASE_URL=postgresql+psycopg://... .venv/bin/python -m tests.databases revision -m "..."``.
"""

from __future__ import annotations

import pprint
from datetime import UTC, datetime, timedelta, timezone
import subprocess
import sys

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import create_engine, inspect
from sqlmodel import SQLModel, select

from collections_domain.store import db
from collections_domain.store.models import Payment
from collections_domain.ops.settings import PROJECT_ROOT
from tests.databases import fresh_database_url


def _differences(engine) -> list:
    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True, "compare_server_default": True})
        return compare_metadata(context, SQLModel.metadata)


def test_upgrade_head_builds_the_models_schema_and_downgrade_base_removes_it(tmp_path):
    engine = create_engine(fresh_database_url(tmp_path, "migrations", empty=True))
    try:
        assert inspect(engine).get_table_names() == []
        db.upgrade_schema(engine)
        assert db.current_revision(engine) == db.head_revision()
        differences = _differences(engine)
        assert differences == [], "the migrations differ from the models:\n" + pprint.pformat(differences)
        db.upgrade_schema(engine)  # at head already: nothing to do

        db.downgrade_schema(engine, "base")
        assert set(inspect(engine).get_table_names()) <= {"alembic_version"}
        assert db.current_revision(engine) is None
    finally:
        engine.dispose()


def test_processes_starting_together_migrate_once(tmp_path):
    """Workers and starters that start at once on an empty PostgreSQL database: each runs
    ``upgrade head`` (``make_engine``), the advisory lock lets one migrate and the others wait."""
    url = fresh_database_url(tmp_path, "together", empty=True)
    if not url.startswith("postgresql"):
        pytest.skip("SQLite files get their tables from create_all; the lock is PostgreSQL's")
    script = "import sys; from collections_domain.store.db import make_engine; make_engine(sys.argv[1]).dispose()"
    processes = [subprocess.Popen([sys.executable, "-c", script, url], stderr=subprocess.PIPE, text=True) for _ in range(4)]
    errors = [process.communicate(timeout=120)[1] for process in processes]
    assert [process.returncode for process in processes] == [0] * 4, errors
    engine = create_engine(url)
    try:
        assert db.current_revision(engine) == db.head_revision()
    finally:
        engine.dispose()


def test_amounts_beyond_32_bits_and_instants_round_trip(tmp_path):
    """Amounts are 64-bit (PostgreSQL's INTEGER stops at 2,147,483,647 minor units); an instant
    written with an offset reads back as the same instant (PostgreSQL sessions run in UTC)."""
    engine = db.make_engine(fresh_database_url(tmp_path, "types"))
    paid_at = datetime(2025, 3, 1, 9, 30, tzinfo=timezone(timedelta(hours=8)))
    try:
        with db.session(engine) as s:
            s.add(Payment(payment_id="p-1", workflow_id="collection-L-1", loan_id="L-1", amount_minor=9_000_000_000_000,
                          applied_minor=2**40, currency="IDR", paid_at=paid_at.astimezone(UTC), applied_at=paid_at.astimezone(UTC)))
            s.commit()
        with db.session(engine) as s:
            row = s.exec(select(Payment)).one()
        assert (row.amount_minor, row.applied_minor) == (9_000_000_000_000, 2**40)
        read = row.paid_at if row.paid_at.tzinfo else row.paid_at.replace(tzinfo=UTC)  # SQLite: naive UTC
        assert read == paid_at and read.utcoffset() == timedelta(0)
    finally:
        engine.dispose()


def test_there_is_one_head():
    from alembic.script import ScriptDirectory

    assert len(ScriptDirectory.from_config(db.alembic_config()).get_heads()) == 1


def test_make_engine_gives_the_models_schema(tmp_path):
    """What the workers use: create_all on SQLite, the migrations elsewhere; the same tables."""
    engine = db.make_engine(fresh_database_url(tmp_path, "made", empty=True))
    try:
        assert set(inspect(engine).get_table_names()) - {"alembic_version"} == set(SQLModel.metadata.tables)
        if engine.dialect.name != "sqlite":
            assert db.current_revision(engine) == db.head_revision()
            assert _differences(engine) == []
    finally:
        engine.dispose()


def test_db_upgrade_command(tmp_path):
    """``starter.py db-upgrade`` migrates the settings' database and names its revision."""
    url = fresh_database_url(tmp_path, "cli", empty=True)
    done = subprocess.run(
        [sys.executable, str(PROJECT_ROOT / "starter.py"), "db-upgrade"],
        env={"DATABASE_URL": url, "PATH": "/usr/bin:/bin", "DATA_DIR": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    assert db.head_revision() in done.stdout
    engine = create_engine(url)
    try:
        assert db.current_revision(engine) == db.head_revision()
    finally:
        engine.dispose()


def _open_new_file(url: str) -> str:
    from collections_domain.store.db import current_revision, make_engine

    engine = make_engine(url)
    try:
        return current_revision(engine) or ""
    finally:
        engine.dispose()


def test_processes_opening_a_new_sqlite_file_together_make_one_schema(tmp_path):
    """Found by a newcomer trial: the demo's worker and API opened a new SQLite file at the same
    moment, and the file was left with two Alembic heads (neither could start again). The schema
    is now made under a file lock: four processes at once, five times, one head each time."""
    import multiprocessing

    from sqlalchemy import create_engine, text

    from collections_domain.store.db import head_revision

    context = multiprocessing.get_context("spawn")
    for trial in range(5):
        url = f"sqlite:///{tmp_path / f'race-{trial}.db'}"
        with context.Pool(4) as pool:
            revisions = pool.map(_open_new_file, [url] * 4)
        assert revisions == [head_revision()] * 4
        with create_engine(url).connect() as connection:
            assert connection.execute(text("SELECT count(*) FROM alembic_version")).scalar() == 1
