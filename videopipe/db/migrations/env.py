"""Alembic environment: videopipe's metadata, and the database URL from videopipe's settings unless the
caller put one in the Alembic config (tests do)."""

from __future__ import annotations

from alembic import context

from videopipe.config import Settings
from videopipe.db.models import Base
from videopipe.db.session import database_url, make_engine

config = context.config
url = config.get_main_option("sqlalchemy.url") or database_url(Settings())


def run_migrations_offline() -> None:
    context.configure(url=url, target_metadata=Base.metadata, literal_binds=True, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    engine = make_engine(url)
    with engine.connect() as connection:
        # Batch mode: SQLite cannot ALTER most things, so Alembic copies the table instead.
        context.configure(connection=connection, target_metadata=Base.metadata, render_as_batch=True)
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
