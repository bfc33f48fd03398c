"""Alembic environment: runs on the connection `pulse_pipeline.db.migrate` hands over.

There is no alembic.ini: `migrate.alembic_config()` builds the configuration in code and puts
the open connection (inside its transaction) and the version table's schema into
`config.attributes`.
"""

from alembic import context
from sqlalchemy.engine import Connection

from pulse_pipeline.db.schema import metadata

config = context.config


def run_migrations_online(connection: Connection) -> None:
    """Run the pending revisions on `connection`."""
    context.configure(
        connection=connection,
        target_metadata=metadata,
        version_table_schema=config.attributes.get("version_table_schema"),
    )
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    raise RuntimeError(
        "pulse_pipeline's migrations inspect the live database, so offline (--sql) mode "
        "is not supported; run `pulse-pipeline db upgrade`"
    )

_connection = config.attributes.get("connection")
if _connection is None:
    raise RuntimeError(
        "no database connection given; run `pulse-pipeline db upgrade` or "
        "pulse_pipeline.db.migrate.upgrade(database_url)"
    )
run_migrations_online(_connection)
