"""A throw-away PostgreSQL database (created, then dropped), for tests and benchmarks."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import text

from videopipe.db.session import make_engine


@contextmanager
def scratch_database(admin_url: str, prefix: str = "vp_scratch") -> Iterator[str]:
    """Create an empty database next to `admin_url` (a URL to an existing database with CREATE rights) and
    yield its URL; drop it (forcefully) afterwards."""
    admin = make_engine(admin_url).execution_options(isolation_level="AUTOCOMMIT")
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        yield admin_url.rsplit("/", 1)[0] + f"/{name}"
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()
