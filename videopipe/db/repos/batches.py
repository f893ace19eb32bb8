"""Batches and their items. A batch id from outside goes through `get_batch` (the tenant gate); functions that
read or change a batch's items take the `Batch` the gate (or the housekeeping loop) returned, so they touch that
batch's items only. The loop that moves every tenant's running batches on says so in its name."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

import numpy as np
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from videopipe.db.models import (
    FINISHED_ITEM,
    Batch,
    BatchItem,
    BatchStatus,
    ItemStatus,
    Job,
    JobStatus,
    Moment,
    MomentVector,
    Tag,
    Video,
)
from videopipe.errors import NotFound


def create(s: Session, tenant: str, sources: Iterable[str], key: str | None, vocabulary: list[dict[str, str]] | None,
           top_k: int, vlm: str, options: dict[str, Any]) -> str:  # fmt: skip
    """A new batch of `tenant` with one pending item per source, in order; its id."""
    batch = Batch(tenant=tenant, key=key, vocabulary=vocabulary, top_k=top_k, vlm=vlm, options=options)
    s.add(batch)
    s.flush()
    s.add_all(BatchItem(batch_id=batch.id, position=n, source=src) for n, src in enumerate(sources))
    return batch.id


def find_unfinished(s: Session, tenant: str, key: str) -> str | None:
    """The tenant's newest running batch made with `key` (the same command run again resumes it)."""
    q = select(Batch.id).where(Batch.tenant == tenant, Batch.key == key, Batch.status == BatchStatus.RUNNING)
    found = s.scalars(q.order_by(Batch.created_at.desc())).first()
    return str(found) if found else None


def get_batch(s: Session, tenant: str, batch_id: str) -> Batch:
    """`tenant`'s batch `batch_id`, or `NotFound` (also for another tenant's batch: the same answer)."""
    batch = s.get(Batch, batch_id)
    if batch is None or batch.tenant != tenant:
        raise NotFound(f"no batch {batch_id}; GET /v1/batches lists yours")
    return batch


def list_ids(s: Session, tenant: str, limit: int) -> list[str]:
    """The tenant's batches, newest first."""
    q = select(Batch.id).where(Batch.tenant == tenant).order_by(Batch.created_at.desc()).limit(limit)
    return [str(i) for i in s.scalars(q)]


def item_counts(s: Session, batch: Batch) -> dict[str, int]:
    """How many of the batch's items are in each state."""
    q = select(BatchItem.status, func.count()).where(BatchItem.batch_id == batch.id).group_by(BatchItem.status)
    return {str(status): int(n) for status, n in s.execute(q)}


def analysis_progress(s: Session, batch: Batch) -> dict[int, float]:
    """Item id -> the progress (0-1) of the analysis of each item being analysed."""
    q = (
        select(BatchItem.id, func.max(Job.progress))
        .join(Job, Job.video_id == BatchItem.video_id)
        .where(BatchItem.batch_id == batch.id, BatchItem.status == ItemStatus.ANALYZING,
               Job.status.in_((JobStatus.QUEUED, JobStatus.RUNNING, JobStatus.READY)), Job.tenant == batch.tenant)
        .group_by(BatchItem.id)
    )  # fmt: skip
    return {int(i): float(p or 0.0) for i, p in s.execute(q)}


def items(s: Session, batch: Batch, offset: int = 0, limit: int | None = None) -> Sequence[BatchItem]:
    q = select(BatchItem).where(BatchItem.batch_id == batch.id).order_by(BatchItem.position)
    return s.scalars(q.offset(offset).limit(limit)).all()


def tagged_items(s: Session, batch: Batch) -> list[tuple[BatchItem, str | None]]:
    """The batch's tagged items in order, each with its video's file name (None: the video is gone)."""
    q = (
        select(BatchItem, Video.filename)
        .outerjoin(Video, (Video.id == BatchItem.video_id) & (Video.tenant == batch.tenant))
        .where(BatchItem.batch_id == batch.id, BatchItem.status == ItemStatus.DONE)
        .order_by(BatchItem.position)
    )
    return [(item, name) for item, name in s.execute(q)]


def cancel(s: Session, batch: Batch, now: datetime) -> None:
    """A running batch stops: its pending items are cancelled."""
    if batch.status == BatchStatus.RUNNING:
        s.execute(update(BatchItem).where(BatchItem.batch_id == batch.id, BatchItem.status == ItemStatus.PENDING)
                  .values(status=ItemStatus.CANCELLED, error="the batch was cancelled"))  # fmt: skip
        batch.status, batch.finished_at = BatchStatus.CANCELLED, now


def retry(s: Session, batch: Batch) -> None:
    """Failed and cancelled items go back to pending; the batch runs again."""
    s.execute(update(BatchItem)
              .where(BatchItem.batch_id == batch.id, BatchItem.status.in_((ItemStatus.FAILED, ItemStatus.CANCELLED)))
              .values(status=ItemStatus.PENDING, error=None, error_type=None))  # fmt: skip
    batch.status, batch.finished_at = BatchStatus.RUNNING, None


# -- moving batches on -----------------------------------------------------------------------------------------
def running_all_tenants(s: Session) -> list[str]:
    """Every tenant's running batches, oldest first: the housekeeping loop moves them all on."""
    q = select(Batch.id).where(Batch.status == BatchStatus.RUNNING).order_by(Batch.created_at)
    return [str(i) for i in s.scalars(q)]


def by_id(s: Session, batch_id: str) -> Batch | None:
    """A batch by id, whoever's: for the engine, with ids that came from `running_all_tenants` or from a batch
    the gate let through (never with an id from a request)."""
    return s.get(Batch, batch_id)


def waiting_items(s: Session, batch: Batch) -> list[tuple[Any, ...]]:
    """(item id, reused, updated_at, video id, video status, error type, error) of the items being analysed."""
    q = (
        select(BatchItem.id, BatchItem.reused, BatchItem.updated_at, Video.id, Video.status, Video.error_type,
               Video.error)
        .outerjoin(Video, (Video.id == BatchItem.video_id) & (Video.tenant == batch.tenant))
        .where(BatchItem.batch_id == batch.id, BatchItem.status == ItemStatus.ANALYZING)
    )  # fmt: skip
    return [tuple(r) for r in s.execute(q)]


def pending_items(s: Session, batch: Batch, limit: int | None = None) -> list[tuple[int, int, str]]:
    """(item id, position, source) of the batch's items not started (`limit` of them), in order."""
    q = select(BatchItem.id, BatchItem.position, BatchItem.source).where(
        BatchItem.batch_id == batch.id, BatchItem.status == ItemStatus.PENDING
    )
    return [(int(i), int(p), str(src)) for i, p, src in s.execute(q.order_by(BatchItem.position).limit(limit))]


def unfinished_items(s: Session, batch: Batch) -> list[tuple[int, int, str]]:
    """(item id, position, source) of the batch's items not finished, in order."""
    q = select(BatchItem.id, BatchItem.position, BatchItem.source).where(
        BatchItem.batch_id == batch.id, BatchItem.status.not_in(FINISHED_ITEM)
    )
    return [(int(i), int(p), str(src)) for i, p, src in s.execute(q.order_by(BatchItem.position))]


def status_of(s: Session, batch: Batch) -> str | None:
    """The batch's status as stored now (another process may have cancelled it)."""
    found = s.scalar(select(Batch.status).where(Batch.id == batch.id))
    return str(found) if found is not None else None


def claim_item(s: Session, batch: Batch, item_id: int) -> bool:
    """Take a pending item (it becomes "analyzing"); False when another process took it first."""
    claimed = s.execute(
        update(BatchItem)
        .where(BatchItem.id == item_id, BatchItem.batch_id == batch.id, BatchItem.status == ItemStatus.PENDING)
        .values(status=ItemStatus.ANALYZING)
    )  # fmt: skip
    return bool(claimed.rowcount)  # type: ignore[attr-defined]


def update_item(s: Session, batch: Batch, item_id: int, *, unfinished_only: bool = False, **values: Any) -> None:
    """Change one of the batch's items (`unfinished_only`: unless it finished meanwhile)."""
    q = update(BatchItem).where(BatchItem.id == item_id, BatchItem.batch_id == batch.id)
    if unfinished_only:
        q = q.where(BatchItem.status.not_in(FINISHED_ITEM))
    s.execute(q.values(**values))


def get_item(s: Session, batch: Batch, item_id: int) -> BatchItem:
    item = s.get(BatchItem, item_id)
    if item is None or item.batch_id != batch.id:
        raise NotFound(f"batch {batch.id} has no item {item_id}")
    return item


def close_if_finished(s: Session, batch: Batch, now: datetime) -> bool:
    """Mark the batch done when none of its items is left to finish; whether none is."""
    open_items = s.scalar(select(func.count()).where(BatchItem.batch_id == batch.id,
                                                     BatchItem.status.not_in(FINISHED_ITEM)))  # fmt: skip
    if open_items:
        return False
    s.execute(update(Batch).where(Batch.id == batch.id, Batch.status == BatchStatus.RUNNING)
              .values(status=BatchStatus.DONE, finished_at=now))  # fmt: skip
    return True


# -- tagging ---------------------------------------------------------------------------------------------------
def tagging_inputs(
    s: Session, tenant: str, video_id: str, model: str
) -> tuple[list[Moment], dict[int, np.ndarray], list[tuple[str, float]]]:
    """What tags the tenant's video: its moments in time order, their stored vectors of `model` (by moment id),
    and the free tags its analysis gave (with their scores)."""
    moments = list(s.scalars(select(Moment).where(Moment.video_id == video_id, Moment.tenant == tenant)
                             .order_by(Moment.start_s)))  # fmt: skip
    wanted = select(MomentVector.moment_id, MomentVector.vector).where(
        MomentVector.moment_id.in_([m.id for m in moments]), MomentVector.model == model
    )
    vectors = {int(i): np.frombuffer(v, np.float32) for i, v in s.execute(wanted)}
    owned = select(Video.id).where(Video.id == video_id, Video.tenant == tenant)
    free = [(t.tag, t.score) for t in s.scalars(select(Tag).where(Tag.video_id.in_(owned), Tag.source == "vlm"))]
    return moments, vectors, free
