"""Keep which guard refused a number and which searches a default could not look in.

The details page and what-if had told both from words: a refusal by the text of the rule's reason, a "No" that was
not fully checked by its note ("could not check …"). A model folder may reword its reasons, and a note is written
for people; predictions recorded from now on keep both as data. Older rows have NULL here and are read as before.

Revision ID: 0007_guard_attribution
Revises: 0006_store_sync
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007_guard_attribution"
down_revision = "0006_store_sync"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("predictions") as batch:
        batch.add_column(sa.Column("refused_by", sa.JSON, nullable=True))
    with op.batch_alter_table("feature_values") as batch:
        batch.add_column(sa.Column("unchecked", sa.JSON, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("feature_values") as batch:
        batch.drop_column("unchecked")
    with op.batch_alter_table("predictions") as batch:
        batch.drop_column("refused_by")
