"""Keep each feature's words as the card showed them: the value in words (e.g. the recognised drug) and the note
(how it was recognised, or which active medications were not), so the details page can show the full reasoning.

Revision ID: 0003_feature_display_note
Revises: 0002_auth_replay
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003_feature_display_note"
down_revision = "0002_auth_replay"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("feature_values") as batch:
        batch.add_column(sa.Column("display", sa.Text, nullable=True))
        batch.add_column(sa.Column("note", sa.Text, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("feature_values") as batch:
        batch.drop_column("note")
        batch.drop_column("display")
