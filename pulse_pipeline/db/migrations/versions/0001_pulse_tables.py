"""The tables pulse_pipeline needs: PULSE's CloudAccount and CostRecord, and its own tables.

Revision ID: 0001
Revises:
Create Date: 2025-01-01

Safe on a database the PULSE app (Prisma) already created: tables that are missing are
created as declared in `pulse_pipeline/db/schema.py`; tables that exist only gain their
missing columns (nullable, or with their server default) and indexes, including the unique
index `CostRecord_cloudAccountId_date_service_key`. Nothing is dropped, renamed or rewritten,
and running it on an up-to-date database changes nothing.
"""

from collections.abc import Sequence

from pulse_pipeline.db.migrations.additive import ensure_tables
from pulse_pipeline.db.schema import cloud_account, cost_explorer_page, cost_record, fx_rate

revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Create or complete the four tables."""
    ensure_tables([cloud_account, cost_record, cost_explorer_page, fx_rate])


def downgrade() -> None:
    """A no-op on purpose: the tables hold PULSE's data, which a migration never drops."""
