"""Charge types and metric on CostRecord: one row per account, day, service and record type.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25

Adds `recordType`, `chargeCategory` and `metric`, and replaces pulse_pipeline's own unique key
(`cloudAccountId`, `date`, `service`) by (`cloudAccountId`, `date`, `service`, `recordType`),
since a service now has one row per charge type. No row is dropped or changed; on SQLite a
unique key declared inside CREATE TABLE can only go by rebuilding the table, rows included.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from pulse_pipeline.db.migrations.additive import ensure_tables
from pulse_pipeline.db.schema import cost_record

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

OLD_KEY = "CostRecord_cloudAccountId_date_service_key"


def upgrade() -> None:
    """Drop the old three-column key if it is there, then add what the schema now declares."""
    bind = op.get_bind()
    inspector = sa.inspect(bind)
    if inspector.has_table(cost_record.name):
        constraints = {u["name"] for u in inspector.get_unique_constraints(cost_record.name)}
        indexes = {i["name"] for i in inspector.get_indexes(cost_record.name)}
        if OLD_KEY in constraints:
            if bind.dialect.name == "sqlite":
                with op.batch_alter_table(cost_record.name, recreate="always") as batch:
                    batch.drop_constraint(OLD_KEY, type_="unique")
            else:
                op.drop_constraint(OLD_KEY, cost_record.name, type_="unique")
        elif OLD_KEY in indexes:
            op.drop_index(OLD_KEY, table_name=cost_record.name)
    ensure_tables([cost_record])


def downgrade() -> None:
    """A no-op on purpose: a migration never drops PULSE's data."""
