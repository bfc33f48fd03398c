"""Turn the PULSE app's `DATABASE_URL` (Prisma form) or a SQLAlchemy URL into an engine."""

import re
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import URL, make_url

# Query parameters Prisma understands but libpq does not.
_PRISMA_ONLY_PARAMS = frozenset(
    {
        "schema",
        "connection_limit",
        "pool_timeout",
        "pgbouncer",
        "statement_cache_size",
        "socket_timeout",
        "sslaccept",
        "sslidentity",
        "sslpassword",
    }
)
_SCHEMA_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")


def to_sqlalchemy_url(database_url: str) -> tuple[URL, str | None]:
    """Return the SQLAlchemy URL and the PostgreSQL schema to use (None for the default).

    `postgresql://user:pass@host:5432/db?schema=public` is the PULSE app's own form; it is
    read with psycopg 3, and `schema` becomes the connection's search_path.
    """
    url = make_url(database_url)
    if url.drivername in ("postgres", "postgresql"):
        url = url.set(drivername="postgresql+psycopg")
    if not url.drivername.startswith("postgresql"):
        return url, None
    schema = url.query.get("schema")
    if isinstance(schema, tuple):
        schema = schema[-1]
    if schema is not None and not _SCHEMA_NAME.fullmatch(schema):
        raise ValueError("DATABASE_URL names a schema that is not a plain PostgreSQL identifier")
    url = url.difference_update_query(_PRISMA_ONLY_PARAMS)
    return url, schema


def create_pulse_engine(database_url: str, **engine_kwargs: Any) -> Engine:
    """An engine on PULSE's database with the Prisma `schema` honoured."""
    url, schema = to_sqlalchemy_url(database_url)
    if url.drivername.startswith("sqlite"):
        engine = create_engine(url, **engine_kwargs)

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA busy_timeout = 30000")
            cursor.execute("PRAGMA journal_mode = WAL")
            cursor.close()

        return engine
    connect_args: dict[str, Any] = dict(engine_kwargs.pop("connect_args", {}))
    if schema:
        connect_args["options"] = f'-c search_path="{schema}"'
    return create_engine(url, connect_args=connect_args, pool_pre_ping=True, **engine_kwargs)


def redacted(database_url: str) -> str:
    """The URL without its password, fit for logs and error messages."""
    try:
        return make_url(database_url).render_as_string(hide_password=True)
    except Exception:
        return "<unparseable DATABASE_URL>"
