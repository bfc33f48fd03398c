"""Turn the PULSE app's `DATABASE_URL` (Prisma form) or a SQLAlchemy URL into an engine with
bounded waits, and say in words when a URL cannot be read or the database does not answer.

No message here ever quotes the URL: a password holding an unencoded `@` would otherwise
show its tail as the "host" of every connection error.
"""

import re
import sqlite3
from typing import Any, Literal
from urllib.parse import unquote, urlsplit

import psycopg
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
_BAD_ESCAPE = re.compile(r"%(?![0-9A-Fa-f]{2})")
# libpq's own minimum: a connect_timeout of 1 is treated as 2.
MIN_CONNECT_TIMEOUT_SECONDS = 2
DEFAULT_CONNECT_TIMEOUT_SECONDS = 10


class DatabaseUrlError(ValueError):
    """A database URL pulse_pipeline cannot read; the message never quotes any part of it."""


class DatabaseTimeout(Exception):
    """PULSE's database did not answer within its connect or statement timeout."""

    def __init__(self, seconds: int, waited_for: Literal["connect", "statement"]) -> None:
        what = (
            "to a connection attempt; PULSE_DB_CONNECT_TIMEOUT_SECONDS"
            if waited_for == "connect"
            else "a statement, which waited for a lock or ran too long; "
            "PULSE_DB_STATEMENT_TIMEOUT_SECONDS"
        )
        super().__init__(f"PULSE's database did not answer within {seconds} s ({what})")
        self.seconds = seconds
        self.waited_for = waited_for


def _ambiguous(name: str) -> DatabaseUrlError:
    return DatabaseUrlError(
        f"{name} cannot be read unambiguously: its user name or password holds an unencoded "
        "@, /, ?, # or %; percent-encode each of them (@ as %40, / as %2F, ? as %3F, # as "
        '%23, % as %25), e.g. with python3 -c "import urllib.parse; '
        "print(urllib.parse.quote(input(), safe=''))\""
    )


def parse_database_url(database_url: str, name: str = "DATABASE_URL") -> URL:
    """The URL as SQLAlchemy reads it, or DatabaseUrlError if it is not one or is ambiguous.

    Ambiguous means another reader (the PULSE app's Prisma, libpq, any RFC 3986 parser) would
    split it into user, password and host differently: an unencoded `@`, `/`, `?` or `#` in the
    user name or password, or a `%` that starts no %XX escape.
    """
    try:
        url = make_url(database_url)
    except Exception:
        raise DatabaseUrlError(
            f"{name} is not a database URL pulse_pipeline can read; expected "
            "postgresql://user:password@host:5432/db (password URL-encoded) or sqlite:///path"
        ) from None
    if url.drivername.startswith("sqlite"):
        return url  # a file path, no credentials
    try:
        rfc = urlsplit(database_url)
        rfc_port = rfc.port
    except ValueError:
        raise _ambiguous(name) from None
    userinfo = rfc.netloc.rpartition("@")[0]
    same_reading = (
        unquote(rfc.username or "") == (url.username or "")
        and unquote(rfc.password or "") == (url.password or "")
        and (rfc.hostname or "") == (url.host or "").lower()
        and rfc_port == url.port
    )
    if rfc.netloc.count("@") > 1 or _BAD_ESCAPE.search(userinfo) or not same_reading:
        raise _ambiguous(name)
    return url


def to_sqlalchemy_url(database_url: str, name: str = "DATABASE_URL") -> tuple[URL, str | None]:
    """Return the SQLAlchemy URL and the PostgreSQL schema to use (None for the default).

    `postgresql://user:pass@host:5432/db?schema=public` is the PULSE app's own form; it is
    read with psycopg 3, and `schema` becomes the connection's search_path.
    """
    url = parse_database_url(database_url, name)
    if url.drivername in ("postgres", "postgresql"):
        url = url.set(drivername="postgresql+psycopg")
    if not url.drivername.startswith("postgresql"):
        return url, None
    schema = url.query.get("schema")
    if isinstance(schema, tuple):
        schema = schema[-1]
    if schema is not None and not _SCHEMA_NAME.fullmatch(schema):
        raise DatabaseUrlError(f"{name} names a schema that is not a plain PostgreSQL identifier")
    url = url.difference_update_query(_PRISMA_ONLY_PARAMS)
    return url, schema


def create_pulse_engine(
    database_url: str,
    *,
    connect_timeout: int = DEFAULT_CONNECT_TIMEOUT_SECONDS,
    statement_timeout: int | None = None,
) -> Engine:
    """An engine on PULSE's database with the Prisma `schema` honoured and bounded waits.

    PostgreSQL: `connect_timeout` seconds per connection attempt (libpq's minimum is 2) and,
    when given, `statement_timeout` seconds per statement, lock waits included. SQLite: the
    statement timeout is its busy timeout (30 s when not given).
    """
    url, schema = to_sqlalchemy_url(database_url)
    if url.drivername.startswith("sqlite"):
        engine = create_engine(url)
        busy_ms = 1000 * (statement_timeout or 30)

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
            cursor = dbapi_connection.cursor()
            cursor.execute(f"PRAGMA busy_timeout = {int(busy_ms)}")
            cursor.execute("PRAGMA journal_mode = WAL")
            cursor.close()

        return engine
    options = []
    if schema:
        options.append(f'-c search_path="{schema}"')
    if statement_timeout:
        options.append(f"-c statement_timeout={int(statement_timeout) * 1000}")
    connect_args: dict[str, Any] = {"connect_timeout": int(connect_timeout)}
    if options:
        connect_args["options"] = " ".join(options)
    return create_engine(url, connect_args=connect_args, pool_pre_ping=True)


def timed_out(error: BaseException) -> Literal["connect", "statement"] | None:
    """Which timeout of `create_pulse_engine` a database error is, if it is one."""
    original = getattr(error, "orig", None) or error
    if isinstance(original, psycopg.errors.ConnectionTimeout):
        return "connect"
    if isinstance(original, psycopg.errors.QueryCanceled) and "statement timeout" in str(original):
        return "statement"
    if isinstance(original, sqlite3.OperationalError) and "database is locked" in str(original):
        return "statement"
    return None


def redacted(database_url: str) -> str:
    """The URL without its password, fit for logs and error messages."""
    try:
        return parse_database_url(database_url).render_as_string(hide_password=True)
    except Exception:
        return "<unparseable DATABASE_URL>"
