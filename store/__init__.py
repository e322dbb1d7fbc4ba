"""Durable record of predictions, cards and clinician feedback (SQLAlchemy; SQLite by default)."""
