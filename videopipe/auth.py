"""API keys: random tokens shown once, stored only as SHA-256 hashes, each bound to one tenant."""

from __future__ import annotations

import hashlib
import secrets
import time
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from videopipe.db.models import utcnow
from videopipe.db.repos import keys as repo
from videopipe.errors import BadRequest, NotFound, Unauthorized

PREFIX = "vp_"


def _hash(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def valid_tenant(tenant: str) -> str:
    tenant = tenant.strip()
    if not tenant or len(tenant) > 64 or not all(c.isalnum() or c in "-_." for c in tenant):
        raise BadRequest(f"{tenant!r}: a tenant name is 1-64 letters, digits, '-', '_' or '.'")
    return tenant


class KeyStore:
    """`cache_s`: how long a verified key is trusted without asking the database again (a revoked key stops
    working within that time, in every process: each has its own cache, so keep it short)."""

    def __init__(self, sessions: sessionmaker[Session], cache_s: float = 0.5) -> None:
        self.sessions = sessions
        self.cache_s = cache_s
        self._verified: dict[str, tuple[str, float]] = {}  # key hash -> (tenant, when checked)

    def create(self, tenant: str) -> tuple[str, str]:
        """A new key for `tenant`: (key id, the key itself, which is not stored and cannot be shown again)."""
        tenant = valid_tenant(tenant)
        key = PREFIX + secrets.token_urlsafe(32)
        with self.sessions.begin() as s:
            return repo.add(s, tenant, key[:10], _hash(key)), key

    def cached_tenant(self, key: str) -> str | None:
        """The tenant of a key verified less than `cache_s` ago, without asking the database; else None."""
        cached = self._verified.get(_hash(key))
        return cached[0] if cached is not None and time.monotonic() - cached[1] < self.cache_s else None

    def tenant_for(self, key: str) -> str:
        digest = _hash(key)
        cached = self._verified.get(digest)
        if cached is not None and time.monotonic() - cached[1] < self.cache_s:
            return cached[0]
        with self.sessions() as s:
            tenant = repo.tenant_of(s, digest)
        if tenant is None:
            self._verified.pop(digest, None)
            raise Unauthorized("the API key is not valid (unknown or revoked); create one with `videopipe keys create`")
        if len(self._verified) > 10_000:
            self._verified.clear()
        self._verified[digest] = (tenant, time.monotonic())
        return tenant

    def any_ever(self) -> bool:
        """Whether a key was ever created, revoked ones included: what ends open mode for good."""
        with self.sessions() as s:
            return repo.any_ever(s)

    def list(self) -> list[dict[str, Any]]:
        with self.sessions() as s:
            rows = repo.all_tenants(s)
            return [{"id": r.id, "tenant": r.tenant, "prefix": r.prefix, "created_at": r.created_at.isoformat(),
                     "revoked": r.revoked_at is not None} for r in rows]  # fmt: skip

    def revoke(self, key_id: str) -> None:
        with self.sessions.begin() as s:
            if not repo.revoke_any_tenant(s, key_id, utcnow()):
                raise NotFound(f"no API key {key_id}; `videopipe keys list` shows them")
        self._verified.clear()  # this process forgets at once; others within `cache_s`
