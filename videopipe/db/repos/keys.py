"""API keys: stored as SHA-256 hashes, each bound to one tenant. Keys are the operator's business (the CLI),
so listing and revoking read every tenant's keys; the functions that do say so in their names."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from videopipe.db.models import ApiKey


def add(s: Session, tenant: str, prefix: str, key_hash: str) -> str:
    """A new key of `tenant`; its id."""
    row = ApiKey(tenant=tenant, prefix=prefix, key_hash=key_hash)
    s.add(row)
    s.flush()
    return row.id


def tenant_of(s: Session, key_hash: str) -> str | None:
    """The tenant of the live (not revoked) key with this hash."""
    found = s.scalar(select(ApiKey.tenant).where(ApiKey.key_hash == key_hash, ApiKey.revoked_at.is_(None)))
    return str(found) if found is not None else None


def any_ever(s: Session) -> bool:
    """Whether any key was ever created (revoked ones included), by any tenant."""
    return s.scalar(select(ApiKey.id).limit(1)) is not None


def all_tenants(s: Session) -> Sequence[ApiKey]:
    """Every tenant's keys, oldest first (the operator's list)."""
    return s.scalars(select(ApiKey).order_by(ApiKey.created_at)).all()


def revoke_any_tenant(s: Session, key_id: str, now: datetime) -> bool:
    """Revoke key `key_id`, whichever tenant holds it (the operator revokes); False when there is no such key."""
    row = s.get(ApiKey, key_id)
    if row is None:
        return False
    row.revoked_at = row.revoked_at or now
    return True
