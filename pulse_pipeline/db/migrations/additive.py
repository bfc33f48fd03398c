"""Additive schema reconciliation: bring live tables up to `schema.py` without dropping anything.

Used from inside Alembic revisions (it needs `alembic.op`). Every step inspects the live
database first, so running it again is a no-op and a database created by the PULSE app
(Prisma) keeps its tables, columns and rows: only missing tables, columns and indexes are added.
"""

import logging
from collections.abc import Iterable, Iterator
from typing import Any, NamedTuple

import sqlalchemy as sa
from alembic import op
from sqlalchemy.engine import Connection

log = logging.getLogger(__name__)

# PostgreSQL truncates longer identifiers; SQLite does not care.
_MAX_NAME_LENGTH = 63


class IndexSpec(NamedTuple):
    """An index or unique key a table should have."""

    name: str
    columns: tuple[str, ...]
    unique: bool


def ensure_tables(tables: Iterable[sa.Table]) -> None:
    """Create each missing table; add missing columns and indexes to tables that exist."""
    bind = op.get_bind()
    for table in tables:
        if not sa.inspect(bind).has_table(table.name):
            log.info("creating table %s", table.name)
            table.create(bind)
            continue
        _add_missing_columns(bind, table)
        _add_missing_indexes(bind, table)


def addable_column(column: sa.Column[Any], dialect_name: str) -> sa.Column[Any]:
    """A detached copy of `column` that ALTER TABLE ... ADD COLUMN can add to a table with rows.

    The column is nullable unless it has a server default the database can fill existing rows
    with; SQLite cannot add a column whose default is an expression (e.g. CURRENT_TIMESTAMP),
    so there it is added nullable without one.
    """
    default: Any = None
    if isinstance(column.server_default, sa.DefaultClause):
        default = column.server_default.arg
        if dialect_name == "sqlite" and not isinstance(default, str):
            default = None
    not_null = not column.nullable and default is not None
    return sa.Column(column.name, column.type, nullable=not not_null, server_default=default)


def wanted_indexes(table: sa.Table) -> Iterator[IndexSpec]:
    """The table's indexes and unique constraints as declared in `schema.py`."""
    for index in table.indexes:
        if isinstance(index.name, str) and index.name:
            columns = tuple(column.name for column in index.columns)
            yield IndexSpec(index.name, columns, bool(index.unique))
    for constraint in table.constraints:
        if isinstance(constraint, sa.UniqueConstraint):
            columns = tuple(column.name for column in constraint.columns)
            name = constraint.name
            if not (isinstance(name, str) and name):
                name = f"{table.name}_{'_'.join(columns)}_key"
            yield IndexSpec(name[:_MAX_NAME_LENGTH], columns, True)


def _add_missing_columns(bind: Connection, table: sa.Table) -> None:
    present = {column["name"] for column in sa.inspect(bind).get_columns(table.name)}
    for column in table.columns:
        if column.name not in present:
            log.info("adding column %s.%s", table.name, column.name)
            op.add_column(table.name, addable_column(column, bind.dialect.name))


def _existing_indexes(bind: Connection, table_name: str) -> list[IndexSpec]:
    """Indexes and unique constraints the live table has (names may be empty)."""
    inspector = sa.inspect(bind)
    existing = [
        IndexSpec(index["name"] or "", tuple(map(str, index["column_names"])), index["unique"])
        for index in inspector.get_indexes(table_name)
    ]
    existing += [
        IndexSpec(constraint["name"] or "", tuple(constraint["column_names"]), True)
        for constraint in inspector.get_unique_constraints(table_name)
    ]
    return existing


def _is_covered(wanted: IndexSpec, existing: list[IndexSpec]) -> bool:
    """Whether the live table already has this index, by name or by an equivalent one."""
    for index in existing:
        if index.name == wanted.name:
            if index.columns != wanted.columns or index.unique != wanted.unique:
                log.warning(
                    "index %s exists with columns %s (unique=%s); leaving it as it is",
                    index.name,
                    index.columns,
                    index.unique,
                )
            return True
        if wanted.unique and index.unique and set(index.columns) == set(wanted.columns):
            return True
        if not wanted.unique and index.columns == wanted.columns:
            return True
    return False


def _add_missing_indexes(bind: Connection, table: sa.Table) -> None:
    existing = _existing_indexes(bind, table.name)
    for wanted in wanted_indexes(table):
        if not _is_covered(wanted, existing):
            log.info("creating index %s on %s", wanted.name, table.name)
            op.create_index(wanted.name, table.name, list(wanted.columns), unique=wanted.unique)
            existing.append(wanted)


def drop_unique_key(table_name: str, name: str) -> None:
    """Drop a unique key that is no longer declared, whether the live table has it as a unique
    constraint (on SQLite only a rebuild of the table, rows included, removes one) or as a
    unique index; a table without it is left alone."""
    bind = op.get_bind()
    inspector = sa.inspect(bind)
    if not inspector.has_table(table_name):
        return
    constraints = {u["name"] for u in inspector.get_unique_constraints(table_name)}
    indexes = {i["name"] for i in inspector.get_indexes(table_name)}
    if name in constraints:
        if bind.dialect.name == "sqlite":
            with op.batch_alter_table(table_name, recreate="always") as batch:
                batch.drop_constraint(name, type_="unique")
        else:
            op.drop_constraint(name, table_name, type_="unique")
    elif name in indexes:
        op.drop_index(name, table_name=table_name)
