"""Run pulse_pipeline's Alembic migrations against PULSE's database.

The Alembic configuration is built in code (no alembic.ini), with `script_location` pointing
at the `migrations` folder inside this package, so it works from an installed wheel too.
"""

from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Connection

from pulse_pipeline.db.urls import create_pulse_engine, to_sqlalchemy_url

MIGRATIONS_DIR = Path(__file__).with_name("migrations")

# Key of the PostgreSQL advisory lock that serialises concurrent upgrades (arbitrary constant).
_UPGRADE_LOCK_KEY = 0x70756C7365_6462  # "pulse" "db"


def alembic_config(
    connection: Connection | None = None, version_table_schema: str | None = None
) -> Config:
    """An Alembic configuration for our migrations, run on `connection` when one is given."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR).replace("%", "%%"))
    config.set_main_option("path_separator", "os")
    config.attributes["connection"] = connection
    config.attributes["version_table_schema"] = version_table_schema
    return config


def head_revision() -> str | None:
    """The newest revision in the migrations folder."""
    return ScriptDirectory.from_config(alembic_config()).get_current_head()


def upgrade(database_url: str) -> None:
    """Upgrade the database to the newest revision, adding only what is missing.

    `database_url` may be the PULSE app's Prisma form (`postgresql://...?schema=public`): the
    schema is created when missing, holds the tables and also Alembic's version table. On
    PostgreSQL the whole upgrade is one transaction, serialised by an advisory lock.
    """
    schema = _ensure_postgres_schema(database_url)
    engine = create_pulse_engine(database_url)
    try:
        with engine.begin() as connection:
            if connection.dialect.name == "postgresql":
                _lock(connection)
            command.upgrade(alembic_config(connection, schema), "head")
    finally:
        engine.dispose()


def current_revision(database_url: str) -> str | None:
    """The revision the database is at, or None before the first upgrade."""
    engine = create_pulse_engine(database_url)
    try:
        with engine.connect() as connection:
            schema = _current_schema(connection) if _prisma_schema(database_url) else None
            context = MigrationContext.configure(connection, opts={"version_table_schema": schema})
            return context.get_current_revision()
    finally:
        engine.dispose()


def _prisma_schema(database_url: str) -> str | None:
    """The `?schema=` of a PostgreSQL URL, None otherwise."""
    return to_sqlalchemy_url(database_url)[1]


def _lock(connection: Connection) -> None:
    connection.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": _UPGRADE_LOCK_KEY})


def _current_schema(connection: Connection) -> str | None:
    """The schema the connection's search_path resolves to (None if it does not exist)."""
    return connection.execute(sa.text("SELECT current_schema()")).scalar_one_or_none()


def _ensure_postgres_schema(database_url: str) -> str | None:
    """Create the URL's `?schema=` if missing; return its name as PostgreSQL resolves it.

    The name is kept as written (Prisma quotes it too), exactly as the connection's quoted
    `search_path` option resolves it, so tables and the version table land in the schema the
    PULSE app and the pipeline's connections actually use.
    """
    schema = _prisma_schema(database_url)
    if schema is None:
        return None
    engine = create_pulse_engine(database_url)
    try:
        with engine.begin() as connection:
            _lock(connection)
            resolved = _current_schema(connection)
            if resolved is None:
                quoted = connection.dialect.identifier_preparer.quote_identifier(schema)
                connection.execute(sa.text(f"CREATE SCHEMA IF NOT EXISTS {quoted}"))
                resolved = _current_schema(connection)
            if resolved is None:
                raise RuntimeError(f"schema {schema!r} was created but is not on the search_path")
            return resolved
    finally:
        engine.dispose()
