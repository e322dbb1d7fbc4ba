"""The promotion audit: an append-only, hash-chained record of every change of a model's champion.

Triggers refuse UPDATE and DELETE on the table, on PostgreSQL and on SQLite, so that no code path and no casual SQL
rewrites history; the hash chain (store/audit.py) still detects a change made by someone who drops the triggers first.

Revision ID: 0004_promotion_audit
Revises: 0003_feature_display_note
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004_promotion_audit"
down_revision = "0003_feature_display_note"
branch_labels = None
depends_on = None

MESSAGE = "promotion_audit is append-only: records are never updated or deleted"


def upgrade() -> None:
    op.create_table(
        "promotion_audit",
        sa.Column("seq", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("model_id", sa.String(64), nullable=False, index=True),
        sa.Column("position", sa.Integer, nullable=False),
        sa.Column("action", sa.String(16), nullable=False),
        sa.Column("from_version", sa.String(32), nullable=False),
        sa.Column("to_version", sa.String(32), nullable=False),
        sa.Column("approver", sa.String(200), nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("recorded_at", sa.String(40), nullable=False),
        sa.Column("evidence", sa.Text, nullable=False),
        sa.Column("evidence_digest", sa.String(64), nullable=False),
        sa.Column("files", sa.Text, nullable=False),
        sa.Column("previous_hash", sa.String(64), nullable=False),
        sa.Column("record_hash", sa.String(64), nullable=False, unique=True),
        sa.UniqueConstraint("model_id", "position", name="uq_promotion_audit_position"),
    )
    if op.get_bind().dialect.name == "postgresql":
        op.execute(f"""
            CREATE FUNCTION promotion_audit_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN RAISE EXCEPTION '{MESSAGE}'; END $$""")
        op.execute("""
            CREATE TRIGGER promotion_audit_append_only BEFORE UPDATE OR DELETE ON promotion_audit
            FOR EACH ROW EXECUTE FUNCTION promotion_audit_append_only()""")
        op.execute("""
            CREATE TRIGGER promotion_audit_no_truncate BEFORE TRUNCATE ON promotion_audit
            FOR EACH STATEMENT EXECUTE FUNCTION promotion_audit_append_only()""")
    else:
        for verb in ("UPDATE", "DELETE"):
            op.execute(f"""
                CREATE TRIGGER promotion_audit_no_{verb.lower()} BEFORE {verb} ON promotion_audit
                BEGIN SELECT RAISE(ABORT, '{MESSAGE}'); END""")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS promotion_audit_no_truncate ON promotion_audit")
        op.execute("DROP TRIGGER IF EXISTS promotion_audit_append_only ON promotion_audit")
        op.execute("DROP FUNCTION IF EXISTS promotion_audit_append_only()")
    op.drop_table("promotion_audit")
