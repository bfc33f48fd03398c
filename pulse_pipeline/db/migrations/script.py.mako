"""${message}

Revision ID: ${up_revision}
Revises: ${down_revision | comma,n}
Create Date: ${create_date}

Revisions only add what the live database lacks (see migrations/additive.py): they never
drop, rename or rewrite the PULSE app's tables, columns or rows.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
${imports if imports else ""}

revision: str = ${repr(up_revision)}
down_revision: str | Sequence[str] | None = ${repr(down_revision)}
branch_labels: str | Sequence[str] | None = ${repr(branch_labels)}
depends_on: str | Sequence[str] | None = ${repr(depends_on)}


def upgrade() -> None:
    """Add what is missing."""
    ${upgrades if upgrades else "pass"}


def downgrade() -> None:
    """A no-op: PULSE's data is never dropped by a migration."""
