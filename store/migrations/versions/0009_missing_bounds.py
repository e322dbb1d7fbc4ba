"""Keep the newest result of a missing feature when it was written as a bound ('>300 mg/g').

Such a result is no number the model can read, yet it may say enough for a card's note: KDIGO's albuminuria A3 is
300 mg/g or more, so '>300 mg/g' is A3 whatever its value. The card says so; the details page reads the same bound
from the store. Older rows have NULL here: their pages show no note for a bound, as their cards did not.

Revision ID: 0009_missing_bounds
Revises: 0008_reported_value
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009_missing_bounds"
down_revision = "0008_reported_value"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("predictions") as batch:
        batch.add_column(sa.Column("bounds", sa.JSON, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("predictions") as batch:
        batch.drop_column("bounds")
