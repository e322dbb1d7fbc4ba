"""Replay protection for client JWTs: the (iss, jti) of accepted tokens until they expire.

Revision ID: 0002_auth_replay
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002_auth_replay"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "auth_replay",
        sa.Column("iss", sa.String(1024), primary_key=True),
        sa.Column("jti", sa.String(255), primary_key=True),
        sa.Column("expires_at", sa.Float, nullable=False),
    )
    op.create_index("ix_auth_replay_expires_at", "auth_replay", ["expires_at"])


def downgrade() -> None:
    op.drop_index("ix_auth_replay_expires_at", table_name="auth_replay")
    op.drop_table("auth_replay")
