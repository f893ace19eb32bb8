"""Resumable (tus) uploads: the rows that record how many bytes arrived, and the claims that let one request at
a time write them. Every function keyed by an upload id takes the tenant; the housekeeping ones (expiry, sweeping
leftover files) go over every tenant's uploads and say so in their names."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, delete, or_, select, update
from sqlalchemy.orm import Session

from videopipe.db.models import Upload, aware
from videopipe.errors import NotFound


def unclaimed(now: datetime) -> ColumnElement[bool]:
    """In SQL: no request holds the upload (no claim, or one whose lease ran out)."""
    return or_(Upload.claim.is_(None), Upload.claim_until < now)


def held(row: Upload, now: datetime) -> bool:
    """In Python: some request holds the upload now."""
    return row.claim is not None and row.claim_until is not None and aware(row.claim_until) >= now


def create(s: Session, tenant: str, length: int, filename: str, options: dict[str, Any]) -> str:
    row = Upload(tenant=tenant, length=length, offset=0, filename=filename, options=options)
    s.add(row)
    s.flush()
    return row.id


def get(s: Session, tenant: str, upload_id: str) -> Upload:
    """`tenant`'s upload `upload_id`, or `NotFound` (also for another tenant's: the same answer)."""
    row = s.get(Upload, upload_id)
    if row is None or row.tenant != tenant:
        raise NotFound(f"no upload {upload_id}; start a new one with POST /v1/uploads")
    return row


def claim(s: Session, tenant: str, upload_id: str, offset: int, token: str, until: datetime, now: datetime) -> bool:
    """Take the upload with `token` until `until` when it is at `offset`, not complete and not held (one
    conditional UPDATE, so it holds across processes and replicas); whether it was taken."""
    taken = s.execute(
        update(Upload)
        .where(Upload.id == upload_id, Upload.tenant == tenant, Upload.offset == offset, Upload.video_id.is_(None),
               unclaimed(now))
        .values(claim=token, claim_until=until)
    )  # fmt: skip
    return bool(taken.rowcount)  # type: ignore[attr-defined]


def update_claimed(s: Session, tenant: str, upload_id: str, token: str, **values: Any) -> bool:
    """Change the upload while `token` still holds it (offset, claim renewal or release); whether it did."""
    kept = s.execute(
        update(Upload)
        .where(Upload.id == upload_id, Upload.tenant == tenant, Upload.claim == token)
        .values(**values)
    )  # fmt: skip
    return bool(kept.rowcount)  # type: ignore[attr-defined]


def record_video(s: Session, tenant: str, upload_id: str, video_id: str) -> None:
    """The upload is complete and became video `video_id`; its claim is let go."""
    s.execute(
        update(Upload)
        .where(Upload.id == upload_id, Upload.tenant == tenant)
        .values(video_id=video_id, claim=None, claim_until=None)
    )  # fmt: skip


def delete_unclaimed(s: Session, tenant: str, upload_id: str, now: datetime) -> bool:
    """Delete the upload unless a request holds it; whether it went."""
    gone = s.execute(delete(Upload).where(Upload.id == upload_id, Upload.tenant == tenant, unclaimed(now)))
    return bool(gone.rowcount)  # type: ignore[attr-defined]


def remove(s: Session, tenant: str, upload_id: str) -> None:
    s.execute(delete(Upload).where(Upload.id == upload_id, Upload.tenant == tenant))


def expire_all_tenants(s: Session, cutoff: datetime, now: datetime) -> list[str]:
    """Delete every tenant's uploads untouched since `cutoff`, not complete and not held; their ids."""
    old = s.scalars(select(Upload).where(Upload.updated_at < cutoff, Upload.video_id.is_(None), unclaimed(now))).all()
    for row in old:
        s.delete(row)
    return [row.id for row in old]


def by_ids_all_tenants(s: Session, upload_ids: Iterable[str]) -> dict[str, Upload]:
    """The uploads (any tenant's) with these ids: which leftover files still have an owner."""
    return {r.id: r for r in s.scalars(select(Upload).where(Upload.id.in_(list(upload_ids))))}
