"""`keys` and `db`: API keys and the database schema."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from videopipe.cli.common import err_console, handle_errors
from videopipe.config import Settings

if TYPE_CHECKING:
    from videopipe.auth import KeyStore


@click.group()
def keys() -> None:
    """API keys for the REST API (each bound to one tenant)."""


def _keystore() -> KeyStore:
    from videopipe.services import open_services

    return open_services(dispatch="none").keys


@keys.command("create")
@click.option("--tenant", required=True, help="The tenant the key acts for.")
@handle_errors
def keys_create(tenant: str) -> None:
    """Create a key and print it (last word). It is stored only as a hash: copy it now."""
    key_id, key = _keystore().create(tenant)
    err_console.print(f"key {key_id} for tenant {tenant!r}; it will not be shown again", highlight=False)
    click.echo(key)


@keys.command("list")
@handle_errors
def keys_list() -> None:
    """List keys (ids, tenants, prefixes; never the keys)."""
    for k in _keystore().list():
        click.echo(
            f"{k['id']}  {k['tenant']:<20} {k['prefix']}...  {k['created_at']}{'  revoked' if k['revoked'] else ''}"
        )


@keys.command("revoke")
@click.argument("key_id")
@handle_errors
def keys_revoke(key_id: str) -> None:
    """Revoke a key by id: requests with it are refused from now on."""
    _keystore().revoke(key_id)
    click.echo(f"revoked {key_id}")


@click.group()
def db() -> None:
    """Database schema (VIDEOPIPE_DATABASE_URL, else a SQLite file in the data dir)."""


@db.command("upgrade")
@click.argument("revision", default="head")
@handle_errors
def db_upgrade(revision: str) -> None:
    """Apply migrations up to REVISION (default: head)."""
    from videopipe.db import database_url
    from videopipe.db.migrate import upgrade

    url = database_url(Settings())
    upgrade(url, revision)
    click.echo(f"database at {_redact(url)} is at {revision}")


@db.command("downgrade")
@click.argument("revision")
@handle_errors
def db_downgrade(revision: str) -> None:
    """Undo migrations down to REVISION ("base" removes every table)."""
    from videopipe.db import database_url
    from videopipe.db.migrate import downgrade

    url = database_url(Settings())
    downgrade(url, revision)
    click.echo(f"database at {_redact(url)} is at {revision}")


def _redact(url: str) -> str:
    """A database URL without its password, for printing."""
    import re

    return re.sub(r"://([^:/@]+):[^@]*@", r"://\1:***@", url)
