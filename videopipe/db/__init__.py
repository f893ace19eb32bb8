"""The database: SQLAlchemy 2 models, the session factory, and the repository functions.

PostgreSQL in production (``VIDEOPIPE_DATABASE_URL``), a SQLite file in the data directory by default; the
same Alembic migrations (``videopipe/db/migrations/``) build both. Job and stage state live here, not in the broker.
"""

from videopipe.db.models import Base
from videopipe.db.session import database_url, make_engine, make_session_factory

__all__ = ["Base", "database_url", "make_engine", "make_session_factory"]
