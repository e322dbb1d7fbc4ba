"""Alembic environment: runs migrations on the connection the Store hands over (no alembic.ini, no CWD dependence)."""

from __future__ import annotations

from alembic import context

from store.schema import Base

connection = context.config.attributes.get("connection")
if connection is None:  # pragma: no cover - the Store always passes a connection
    raise RuntimeError("store migrations run through store.Store.migrate()")
context.configure(connection=connection, target_metadata=Base.metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
