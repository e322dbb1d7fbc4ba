"""Initial tables: predictions, feature values, cards, suggestions, feedback, outcomes.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "predictions",
        sa.Column("prediction_id", sa.String(36), primary_key=True),
        sa.Column("hook_instance", sa.String(64), nullable=False, index=True),
        sa.Column("hook", sa.String(40), nullable=False),
        sa.Column("service_id", sa.String(80), nullable=False, index=True),
        sa.Column("model_id", sa.String(64), nullable=False, index=True),
        sa.Column("model_version", sa.String(32), nullable=False),
        sa.Column("alias", sa.String(16), nullable=False),
        sa.Column("patient_key", sa.String(64), nullable=False, index=True),
        sa.Column("encounter_key", sa.String(64)),
        sa.Column("created_at", TS, nullable=False, index=True),
        sa.Column("outputs", sa.JSON),
        sa.Column("score", sa.Float),
        sa.Column("category", sa.String(40)),
        sa.Column("guard_reasons", sa.JSON, nullable=False),
        sa.Column("missing", sa.JSON, nullable=False),
        sa.Column("cohort", sa.JSON, nullable=False),
        sa.Column("tenant", sa.String(120)),
        sa.Column("client_id", sa.String(300)),
    )
    op.create_index("ix_predictions_model_time", "predictions", ["model_id", "created_at"])
    op.create_table(
        "feature_values",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("prediction_id", sa.String(36),
                  sa.ForeignKey("predictions.prediction_id", ondelete="CASCADE"), nullable=False, index=True),
        sa.Column("name", sa.String(80), nullable=False),
        sa.Column("value", sa.Float),
        sa.Column("unit", sa.String(40)),
        sa.Column("defaulted", sa.Boolean, nullable=False),
        sa.Column("source_refs", sa.JSON, nullable=False),
    )
    op.create_table(
        "cards",
        sa.Column("card_uuid", sa.String(36), primary_key=True),
        sa.Column("prediction_id", sa.String(36),
                  sa.ForeignKey("predictions.prediction_id", ondelete="CASCADE"), nullable=False, index=True),
        sa.Column("summary", sa.String(200), nullable=False),
        sa.Column("indicator", sa.String(10), nullable=False),
        sa.Column("created_at", TS, nullable=False),
    )
    op.create_table(
        "card_suggestions",
        sa.Column("suggestion_uuid", sa.String(36), primary_key=True),
        sa.Column("card_uuid", sa.String(36), sa.ForeignKey("cards.card_uuid", ondelete="CASCADE"), nullable=False,
                  index=True),
    )
    op.create_table(
        "feedback",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("dedupe_key", sa.String(64), nullable=False),
        sa.Column("card_uuid", sa.String(36), nullable=False, index=True),
        sa.Column("service_id", sa.String(80), nullable=False),
        sa.Column("outcome", sa.String(16), nullable=False),
        sa.Column("outcome_timestamp", TS, nullable=False),
        sa.Column("accepted_suggestions", sa.JSON, nullable=False),
        sa.Column("override_reason_system", sa.String(200)),
        sa.Column("override_reason_code", sa.String(80)),
        sa.Column("override_reason_display", sa.String(300)),
        sa.Column("override_comment", sa.Text),
        sa.Column("client_id", sa.String(300)),
        sa.Column("received_at", TS, nullable=False, index=True),
        sa.UniqueConstraint("dedupe_key", name="uq_feedback_dedupe"),
    )
    op.create_table(
        "outcomes",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("patient_key", sa.String(64), nullable=False, index=True),
        sa.Column("system", sa.String(200), nullable=False),
        sa.Column("code", sa.String(80), nullable=False),
        sa.Column("label", sa.Float, nullable=False),
        sa.Column("observed_at", TS, nullable=False),
        sa.Column("source", sa.String(300)),
        sa.UniqueConstraint("patient_key", "system", "code", "observed_at", name="uq_outcome"),
    )


def downgrade() -> None:
    for table in ("outcomes", "feedback", "card_suggestions", "cards", "feature_values", "predictions"):
        op.drop_table(table)
