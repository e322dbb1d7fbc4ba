"""JWK Set documents shared by every process using this database (cds_hooks/jwks_shared.py): a fleet fetches each
client's `jku` keys once per refresh, and a key rotation one replica saw reaches the others.

Revision ID: 0005_jwks_documents
Revises: 0004_promotion_audit
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005_jwks_documents"
down_revision = "0004_promotion_audit"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "jwks_documents",
        sa.Column("url", sa.String(2048), primary_key=True),
        sa.Column("document", sa.Text, nullable=False),
        sa.Column("fetched_at", sa.Float, nullable=False),
        sa.Column("mac", sa.String(64), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("jwks_documents")
