"""The views monthly_costs_eur and focus_costs over CostRecord.

Revision ID: 0004
Revises: 0002
Create Date: 2026-11-25

Read-only views (see `pulse_pipeline/db/views.py`): month-to-date and monthly EUR totals per
account, and CostRecord in FOCUS 1.2 column names. They are dropped and created again from
their current definition, so no row of any table is touched.
"""

from collections.abc import Sequence

from alembic import op

from pulse_pipeline.db.migrations.additive import ensure_tables
from pulse_pipeline.db.schema import cost_record
from pulse_pipeline.db.views import create_views

revision: str = "0004"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Create both views (replacing older definitions of them), after giving CostRecord the
    columns their current definition reads (added by later revisions; adding them is a no-op
    when present)."""
    ensure_tables([cost_record])
    create_views(op.get_bind())


def downgrade() -> None:
    """A no-op on purpose, as for every migration here."""
