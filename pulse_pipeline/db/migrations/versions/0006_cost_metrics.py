"""FOCUS's cost columns on CostRecord: billedCost, effectiveCost and contractedCost.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-08

Adds the three nullable columns (each filled from its Cost Explorer metric by the next sync of
the window, see `pulse_pipeline/aws/metrics.py`) and creates the views again so focus_costs
reads them. Rows already stored keep NULL there until re-synced; focus_costs falls back to
`amount` for them. Nothing is dropped or rewritten.
"""

from collections.abc import Sequence

from alembic import op

from pulse_pipeline.db.migrations.additive import ensure_tables
from pulse_pipeline.db.schema import cost_record
from pulse_pipeline.db.views import create_views

revision: str = "0006"
down_revision: str | Sequence[str] | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Add the columns, then re-create the views over them."""
    ensure_tables([cost_record])
    create_views(op.get_bind())


def downgrade() -> None:
    """A no-op on purpose: a migration never drops PULSE's data."""
