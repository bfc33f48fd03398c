"""`pulse-pipeline`: command-line tools for the pulse_pipeline code location."""

import argparse
import os
import sys

from pulse_pipeline.db.migrate import current_revision, upgrade
from pulse_pipeline.db.urls import DatabaseUrlError, parse_database_url, redacted


def _scrub(message: str, database_url: str) -> str:
    """`message` with the URL and its password replaced by the password-free rendering."""
    message = message.replace(database_url, redacted(database_url))
    try:
        password = parse_database_url(database_url).password
    except DatabaseUrlError:
        password = None
    if password:
        message = message.replace(str(password), "***")
    return message


def _db_upgrade(args: argparse.Namespace) -> int:
    database_url = args.database_url or os.environ.get("DATABASE_URL")
    if not database_url:
        print("pulse-pipeline: set DATABASE_URL or pass --database-url", file=sys.stderr)
        return 1
    try:
        parse_database_url(database_url, "--database-url" if args.database_url else "DATABASE_URL")
    except DatabaseUrlError as unreadable:  # its message never quotes the URL
        print(f"pulse-pipeline: {unreadable}", file=sys.stderr)
        return 1
    shown = redacted(database_url)
    try:
        upgrade(database_url)
        revision = current_revision(database_url)
    except Exception as exc:
        error = _scrub(f"{type(exc).__name__}: {exc}", database_url)
        print(f"pulse-pipeline: upgrading {shown} failed: {error}", file=sys.stderr)
        return 1
    print(f"Upgraded {shown} to schema revision {revision}.")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of `pulse-pipeline`."""
    parser = argparse.ArgumentParser(
        prog="pulse-pipeline", description="Tools for the pulse_pipeline Dagster code location."
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    db = commands.add_parser("db", help="manage PULSE's database schema")
    db_commands = db.add_subparsers(dest="db_command", required=True, metavar="DB_COMMAND")
    db_upgrade = db_commands.add_parser(
        "upgrade",
        help="add the tables, columns and indexes pulse_pipeline needs (never drops anything)",
    )
    db_upgrade.add_argument(
        "--database-url",
        help="SQLAlchemy or Prisma-style URL (default: $DATABASE_URL)",
    )
    db_upgrade.set_defaults(handler=_db_upgrade)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run `pulse-pipeline`; returns the process exit status."""
    args = build_parser().parse_args(argv)
    status: int = args.handler(args)
    return status


if __name__ == "__main__":
    raise SystemExit(main())
