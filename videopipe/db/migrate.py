"""`videopipe db upgrade|downgrade|current`: Alembic, driven from code (no ini file needed)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from alembic import command
from alembic.config import Config

from videopipe.errors import ConfigError

# Package data (pyproject.toml), so a wheel install migrates as well as a checkout does.
MIGRATIONS = Path(__file__).resolve().parent / "migrations"


def alembic_config(url: str) -> Config:
    if not (MIGRATIONS / "env.py").exists():
        raise ConfigError(
            f"the migrations folder is missing ({MIGRATIONS}): this videopipe installation is incomplete; "
            "reinstall it (pip install --force-reinstall videopipe)"
        )
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def upgrade(url: str, revision: str = "head") -> None:
    _run(command.upgrade, url, revision)


def downgrade(url: str, revision: str = "base") -> None:
    _run(command.downgrade, url, revision)


def _run(step: Callable[[Config, str], None], url: str, revision: str) -> None:
    """An Alembic step, its refusals as one clear error: a database migrated by a newer videopipe (a revision this
    one does not know) is the common case, after a downgrade or with two versions sharing one database."""
    from alembic.util import CommandError

    try:
        step(alembic_config(url), revision)
    except CommandError as exc:
        known = ", ".join(sorted(p.stem.split("_")[0] for p in (MIGRATIONS / "versions").glob("[0-9]*.py")))
        raise ConfigError(
            f"the database's schema cannot be brought to {revision} ({exc}); this videopipe knows revisions "
            f"{known}: a newer videopipe migrated it? upgrade videopipe, or point VIDEOPIPE_DATABASE_URL / "
            "VIDEOPIPE_DATA_DIR at a database of this version"
        ) from None
