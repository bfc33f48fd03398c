"""focus_costs with every FOCUS 1.2 Mandatory column, and its timestamps in UTC.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-07

Adds ListCost, ContractedCost, ChargeDescription, ChargeFrequency, ServiceCategory,
ServiceSubcategory, PricingQuantity, PricingUnit, BillingAccountId and BillingAccountName to
the view, and makes its Date/Time columns moments in UTC (timestamptz on PostgreSQL, ISO 8601
text ending in Z on SQLite), as `pulse_pipeline/db/views.py` now defines them. Both views are
dropped and created again: no row of any table is touched.
"""

from collections.abc import Sequence

from alembic import op

from pulse_pipeline.db.views import create_views

revision: str = "0005"
down_revision: str | Sequence[str] | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Create both views again from their current definitions."""
    create_views(op.get_bind())


def downgrade() -> None:
    """A no-op on purpose, as for every migration here."""
