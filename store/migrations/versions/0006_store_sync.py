"""A one-row counter the recorder increments to make the embedded store's unsynced commits durable.

The recorder commits predictions without a sync of their own while its journal holds them; `Store.sync_predictions`
then commits one change to this row with synchronous=FULL, and SQLite's sync of the write-ahead log at that commit
covers every frame before it (docs/performance.md). A change that alters nothing would write no frame and sync
nothing, hence a counter.

Revision ID: 0006_store_sync
Revises: 0005_jwks_documents
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006_store_sync"
down_revision = "0005_jwks_documents"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "store_sync",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("syncs", sa.BigInteger, nullable=False),
    )
    op.bulk_insert(sa.table("store_sync", sa.column("id", sa.Integer), sa.column("syncs", sa.BigInteger)),
                   [{"id": 1, "syncs": 0}])


def downgrade() -> None:
    op.drop_table("store_sync")
