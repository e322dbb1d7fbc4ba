"""Keep a derived value as it was reported (an eGFR computed as 29.8 is reported 30).

A model folder may say a derived value is reported at fewer decimals than it is computed to (`reported_decimals`):
the card shows that number and its advice tests it. The details page must test the same number, and the stored
value is the unrounded one the model read. Older rows have NULL here and are read by their value, as before.

Revision ID: 0008_reported_value
Revises: 0007_guard_attribution
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008_reported_value"
down_revision = "0007_guard_attribution"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("feature_values") as batch:
        batch.add_column(sa.Column("reported", sa.Float, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("feature_values") as batch:
        batch.drop_column("reported")
