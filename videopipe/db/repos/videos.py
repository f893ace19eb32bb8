"""Videos: the tenant gate every id from outside goes through (`find_video`, `get_video`), and the library's
queries over a tenant's videos."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from videopipe.db.models import (
    LIVE_JOB,
    Chapter,
    Event,
    Job,
    Keyframe,
    Moment,
    Scene,
    TranscriptSegment,
    Video,
    VideoStatus,
)
from videopipe.errors import NotFound


def find_video(s: Session, tenant: str, video_id: str) -> Video | None:
    """`tenant`'s video `video_id`; None for no such video and for another tenant's alike. The one place that
    decides whether an id names one of the tenant's videos."""
    video = s.get(Video, video_id)
    return video if video is not None and video.tenant == tenant else None


def get_video(s: Session, tenant: str, video_id: str) -> Video:
    """`tenant`'s video `video_id`, or `NotFound` (also for another tenant's video: the same answer)."""
    video = find_video(s, tenant, video_id)
    if video is None:
        raise NotFound(f"no video {video_id}; GET /v1/videos lists yours")
    return video


def local_video(s: Session, tenant: str, content_hash: str, path: Path) -> str:
    """The id of the tenant's video for a file of the local library (`videopipe analyze`), created if new; its
    path kept current (``external:`` blob keys point at the user's own file, which is not copied)."""
    video = s.scalars(select(Video).where(Video.tenant == tenant, Video.content_hash == content_hash)).first()
    if video is None:
        video = Video(tenant=tenant, content_hash=content_hash, filename=path.name, blob_key=f"external:{path}",
                      size_bytes=path.stat().st_size)  # fmt: skip
        s.add(video)
        s.flush()
    elif not video.blob_key.startswith("external:") or video.filename != path.name:
        video.blob_key, video.filename = f"external:{path}", path.name
    return video.id


def id_by_content(s: Session, tenant: str, content_hash: str) -> str | None:
    """The id of `tenant`'s video with these bytes (SHA-256), if it has one."""
    found = s.scalars(select(Video.id).where(Video.tenant == tenant, Video.content_hash == content_hash)).first()
    return str(found) if found is not None else None


def owns(s: Session, tenant: str, video_id: str) -> bool:
    """Whether `video_id` is one of `tenant`'s videos."""
    return find_video(s, tenant, video_id) is not None


def list_videos(
    s: Session, tenant: str, limit: int, offset: int, status: VideoStatus | str | None = None
) -> tuple[Sequence[Video], int]:
    """A page of the tenant's videos, newest first, and how many there are in all (of that status)."""
    q = select(Video).where(Video.tenant == tenant)
    if status:
        q = q.where(Video.status == status)
    total = s.scalar(select(func.count()).select_from(q.subquery())) or 0
    return s.scalars(q.order_by(Video.created_at.desc(), Video.id).limit(limit).offset(offset)).all(), int(total)


def latest_job(s: Session, tenant: str, video_id: str) -> Job | None:
    """The tenant's most recent job on the video."""
    q = select(Job).where(Job.video_id == video_id, Job.tenant == tenant)
    return s.scalars(q.order_by(Job.created_at.desc()).limit(1)).first()


RESULT_TABLES: dict[str, tuple[Any, Any]] = {
    "chapters": (Chapter, Chapter.start_s),
    "events": (Event, Event.start_s),
    "transcript": (TranscriptSegment, TranscriptSegment.start_s),
    "scenes": (Scene, Scene.index),
}


def result_rows(s: Session, tenant: str, video_id: str, kind: str) -> list[Any]:
    """The tenant's video's chapters, events, transcript or scenes (`kind`), in time order; `NotFound` for a video
    not the tenant's."""
    get_video(s, tenant, video_id)
    model, order = RESULT_TABLES[kind]
    return list(s.scalars(select(model).where(model.video_id == video_id).order_by(order)))


def keyframe_key(s: Session, tenant: str, video_id: str, n: int) -> str | None:
    """The blob key of keyframe `n` of the tenant's video (None: it has no such keyframe); `NotFound` for a video
    not the tenant's."""
    get_video(s, tenant, video_id)
    key = s.scalar(select(Keyframe.blob_key).where(Keyframe.video_id == video_id, Keyframe.index == n))
    return str(key) if key is not None else None


@dataclass(frozen=True, slots=True)
class Deleted:
    blob_key: str  # the original's
    moment_ids: list[int]  # to drop from the vector index
    shared: bool  # another video (another tenant's, with the same bytes) still uses the original


def delete_video(s: Session, tenant: str, video_id: str) -> Deleted:
    """Delete the tenant's video (every table's rows go with it, by cascade) and ask its live jobs to stop;
    `NotFound` for a video not the tenant's."""
    video = get_video(s, tenant, video_id)
    blob_key = video.blob_key
    moment_ids = [int(i) for i in s.scalars(select(Moment.id).where(Moment.video_id == video_id))]
    for job in s.scalars(select(Job).where(Job.video_id == video_id, Job.status.in_(LIVE_JOB))):
        job.cancel_requested = True
    s.flush()
    s.execute(delete(Video).where(Video.id == video_id))
    shared = s.scalar(select(func.count()).select_from(Video).where(Video.blob_key == blob_key)) or 0
    return Deleted(blob_key, moment_ids, bool(shared))


def status_of(s: Session, tenant: str, video_id: str) -> str | None:
    """The status of the tenant's video (None: no such video of the tenant's)."""
    video = find_video(s, tenant, video_id)
    return video.status if video is not None else None


def reusable(s: Session, tenant: str, content_hash: str, settings_hash: str) -> str | None:
    """The id of the tenant's video with these bytes analysed to the end with these settings, if there is one."""
    found = s.scalars(
        select(Video.id).join(Job, Job.video_id == Video.id)
        .where(Video.tenant == tenant, Video.content_hash == content_hash, Video.status == VideoStatus.READY,
               Job.status == VideoStatus.READY, Job.settings_hash == settings_hash)
    ).first()  # fmt: skip
    return str(found) if found is not None else None
