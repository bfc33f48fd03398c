"""Linked accounts on CostRecord: which AWS account incurred each cost.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-08

Adds `linkedAccountId` and `linkedAccountName` (Cost Explorer's LINKED_ACCOUNT and its name),
and makes the unique key (`cloudAccountId`, `date`, `linkedAccountId`, `service`,
`recordType`), since a management account's connection holds one row per member account. Rows
already stored get the role's own account: the AWS account of the raw page they came from, else
the 12-digit id in their CloudAccount's role ARN (their name stays empty until re-synced).
Nothing is dropped except the old four-column key; the views are created again.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from pulse_pipeline.aws.connection import aws_account_id
from pulse_pipeline.db.migrations.additive import drop_unique_key, ensure_tables
from pulse_pipeline.db.schema import (
    UNIQUE_COST_KEY_BEFORE_LINKED_ACCOUNTS,
    cloud_account,
    cost_explorer_page,
    cost_record,
)
from pulse_pipeline.db.views import create_views

revision: str = "0007"
down_revision: str | Sequence[str] | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Replace the key, add the columns, fill them for stored rows, re-create the views."""
    drop_unique_key(cost_record.name, UNIQUE_COST_KEY_BEFORE_LINKED_ACCOUNTS)
    ensure_tables([cost_record])
    bind = op.get_bind()
    c, pages = cost_record.c, cost_explorer_page.c
    bind.execute(
        sa.update(cost_record)
        .where(c.linkedAccountId.is_(None), c.rawPageId.is_not(None))
        .values(
            linkedAccountId=sa.select(pages.aws_account_id)
            .where(pages.id == c.rawPageId)
            .scalar_subquery()
        )
    )
    accounts = bind.execute(sa.select(cloud_account.c.id, cloud_account.c.roleArn)).all()
    for account_id, role_arn in accounts:
        own = aws_account_id(role_arn)
        if own is not None:
            bind.execute(
                sa.update(cost_record)
                .where(c.linkedAccountId.is_(None), c.cloudAccountId == account_id)
                .values(linkedAccountId=own)
            )
    create_views(bind)


def downgrade() -> None:
    """A no-op on purpose: a migration never drops PULSE's data."""
