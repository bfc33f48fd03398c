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

from pulse_pipeline.db.migrations.additive import drop_unique_key, ensure_tables
from pulse_pipeline.db.schema import cost_record

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

OLD_KEY = "CostRecord_cloudAccountId_date_service_key"


def upgrade() -> None:
    """Drop the old three-column key if it is there, then add what the schema now declares."""
    drop_unique_key(cost_record.name, OLD_KEY)
    ensure_tables([cost_record])


def downgrade() -> None:
    """A no-op on purpose: a migration never drops PULSE's data."""
