"""SyncRequest: the PULSE app's "Sync now" and "Test connection" requests.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-25

Creates `"SyncRequest"` (Prisma naming) with its two indexes; a table the PULSE app created
first (through Prisma) keeps its rows and only gets what is missing.
"""

from collections.abc import Sequence

from pulse_pipeline.db.migrations.additive import ensure_tables
from pulse_pipeline.db.schema import sync_request

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Add the table, or what an existing one lacks."""
    ensure_tables([sync_request])


def downgrade() -> None:
    """A no-op on purpose: a migration never drops PULSE's data."""
