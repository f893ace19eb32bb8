"""`videopipe db upgrade|downgrade|current`: Alembic, driven from code (no ini file needed)."""

from __future__ import annotations

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
    command.upgrade(alembic_config(url), revision)


def downgrade(url: str, revision: str = "base") -> None:
    command.downgrade(alembic_config(url), revision)
