"""Alembic environment: the schema is ``SQLModel.metadata`` (``collections_domain.store.models``), the
database is the project's ``DATABASE_URL`` (``collections_domain.ops.settings``).

Run from the command line (``alembic upgrade head``, ``alembic revision --autogenerate -m ...``
with the repository's ``alembic.ini``), or in code through ``collections_domain.store.db``, which
passes its own connection in ``config.attributes["connection"]``.
"""

from __future__ import annotations

from logging.config import fileConfig

from alembic import context
from sqlalchemy import create_engine, pool
from sqlmodel import SQLModel

from collections_domain.store import models  # noqa: F401  (registers the tables)
from collections_domain.ops.settings import Settings

config = context.config
target_metadata = SQLModel.metadata

_connection = config.attributes.get("connection")
if _connection is None and config.config_file_name is not None:
    # The alembic command line: its logging sections. In code, the process's logging is kept.
    fileConfig(config.config_file_name, disable_existing_loggers=False)


def _url() -> str:
    """``sqlalchemy.url`` when the caller set one, else the settings' database."""
    return config.get_main_option("sqlalchemy.url") or Settings().resolved_database_url


def _skip_empty_autogenerate(_context, _revision, directives) -> None:
    """``revision --autogenerate`` writes no file when the models match the migrations."""
    autogenerate = getattr(config.cmd_opts, "autogenerate", False) or config.attributes.get("autogenerate")
    if autogenerate and directives and directives[0].upgrade_ops.is_empty():
        directives[:] = []
        print("No changes in the models: no revision written.")


def _configure(**kwargs) -> None:
    url = kwargs.get("url") or str(kwargs["connection"].engine.url)
    context.configure(
        target_metadata=target_metadata,
        process_revision_directives=_skip_empty_autogenerate,
        compare_type=True,
        compare_server_default=True,
        # SQLite cannot ALTER most things: later revisions copy and move its tables instead.
        render_as_batch=url.startswith("sqlite"),
        **kwargs,
    )


def run_migrations_offline() -> None:
    """``alembic upgrade head --sql``: print the SQL instead of running it."""
    _configure(url=_url(), literal_binds=True, dialect_opts={"paramstyle": "named"})
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    if _connection is not None:
        _configure(connection=_connection)
        with context.begin_transaction():
            context.run_migrations()
        return
    engine = create_engine(_url(), poolclass=pool.NullPool)
    with engine.connect() as connection:
        _configure(connection=connection)
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
