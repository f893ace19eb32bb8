"""Tables, named for what they hold. Times are seconds (float) from the start of the video."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

# Stable constraint names: Alembic can then drop and alter them the same way on PostgreSQL and SQLite.
NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

class JobStatus(StrEnum):
    """A job's (and its video's) state. StrEnum: members are the strings stored in the columns."""

    QUEUED = "queued"
    RUNNING = "running"
    READY = "ready"
    FAILED = "failed"
    CANCELLED = "cancelled"


LIVE_JOB = (JobStatus.QUEUED, JobStatus.RUNNING)  # a job someone still works on (or will)
# A video's status mirrors its latest job's: the same values.
VideoStatus = JobStatus


class StageState(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    SKIPPED = "skipped"  # outputs for the same inputs were already stored
    CANCELLED = "cancelled"


FINISHED_STAGE = (StageState.DONE, StageState.FAILED, StageState.SKIPPED, StageState.CANCELLED)


class Stage(StrEnum):
    """The stage graph, in order: perceive (cpu) -> understand (gpu) -> index."""

    PERCEIVE = "perceive"
    UNDERSTAND = "understand"
    INDEX = "index"




def new_id() -> str:
    return uuid.uuid4().hex


def utcnow() -> datetime:
    return datetime.now(UTC)


def aware(dt: datetime) -> datetime:
    """SQLite hands back naive datetimes for timezone-aware columns; they were written in UTC."""
    return dt if dt.tzinfo is not None else dt.replace(tzinfo=UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


def _video_fk() -> Any:
    return ForeignKey("videos.id", ondelete="CASCADE")


class Video(Base):
    __tablename__ = "videos"
    __table_args__ = (UniqueConstraint("tenant", "content_hash", name="uq_videos_tenant_content_hash"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    tenant: Mapped[str] = mapped_column(String(64), index=True, default="default")
    content_hash: Mapped[str] = mapped_column(String(64))  # sha256 of the original bytes
    filename: Mapped[str] = mapped_column(String(512))
    blob_key: Mapped[str] = mapped_column(String(512))  # the original in the blob store
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    status: Mapped[str] = mapped_column(String(16), default="queued")  # mirrors its latest job
    error_type: Mapped[str | None] = mapped_column(String(64))
    error: Mapped[str | None] = mapped_column(Text)
    duration_s: Mapped[float | None] = mapped_column(Float)
    width: Mapped[int | None] = mapped_column(Integer)
    height: Mapped[int | None] = mapped_column(Integer)
    fps: Mapped[float | None] = mapped_column(Float)
    vfr: Mapped[bool | None] = mapped_column(Boolean)
    has_audio: Mapped[bool | None] = mapped_column(Boolean)
    # The Content-Type the original is served with, from the probed container (never the client's file name);
    # None on rows older than migration 0005: served as application/octet-stream.
    media_type: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, onupdate=utcnow)


class Job(Base):
    __tablename__ = "jobs"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    video_id: Mapped[str] = mapped_column(_video_fk(), index=True)
    tenant: Mapped[str] = mapped_column(String(64), index=True, default="default")
    status: Mapped[str] = mapped_column(String(16), default="queued", index=True)
    stage: Mapped[str | None] = mapped_column(String(16))
    progress: Mapped[float] = mapped_column(Float, default=0.0)  # 0-1 over all stages
    settings_hash: Mapped[str] = mapped_column(String(64))
    options: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)  # stages on/off, VLM backend, profile
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    error_type: Mapped[str | None] = mapped_column(String(64))
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, onupdate=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class StageRun(Base):
    """One stage of one job: the unit a worker leases, runs, and commits."""

    __tablename__ = "stage_runs"
    __table_args__ = (
        UniqueConstraint("job_id", "stage", name="uq_stage_runs_job_id_stage"),
        Index("ix_stage_runs_state_lease", "state", "lease_until"),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), index=True)
    video_id: Mapped[str] = mapped_column(_video_fk(), index=True)
    stage: Mapped[str] = mapped_column(String(16))
    state: Mapped[str] = mapped_column(String(16), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    lease_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    worker: Mapped[str | None] = mapped_column(String(128))
    inputs_hash: Mapped[str | None] = mapped_column(String(64))  # content hash + settings: same inputs, same output
    progress: Mapped[float] = mapped_column(Float, default=0.0)
    error: Mapped[str | None] = mapped_column(Text)
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    dispatched_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class Scene(Base):
    __tablename__ = "scenes"
    __table_args__ = (UniqueConstraint("video_id", "index", name="uq_scenes_video_id_index"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    video_id: Mapped[str] = mapped_column(_video_fk(), index=True)
    index: Mapped[int] = mapped_column(Integer)
    start_s: Mapped[float] = mapped_column(Float)
    end_s: Mapped[float] = mapped_column(Float)
    caption: Mapped[str | None] = mapped_column(Text)


class Keyframe(Base):
    __tablename__ = "keyframes"
    __table_args__ = (UniqueConstraint("video_id", "index", name="uq_keyframes_video_id_index"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    video_id: Mapped[str] = mapped_column(_video_fk(), index=True)
    index: Mapped[int] = mapped_column(Integer)
    t_s: Mapped[float] = mapped_column(Float)
    scene_index: Mapped[int] = mapped_column(Integer)
    score: Mapped[float] = mapped_column(Float, default=0.0)
    blob_key: Mapped[str] = mapped_column(String(512))


class TranscriptSegment(Base):
    __tablename__ = "transcript_segments"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    video_id: Mapped[str] = mapped_column(_video_fk(), index=True)
    start_s: Mapped[float] = mapped_column(Float)
    end_s: Mapped[float] = mapped_column(Float)
    text: Mapped[str] = mapped_column(Text)
    words: Mapped[list[Any]] = mapped_column(JSON, default=list)
    language: Mapped[str | None] = mapped_column(String(16))  # ISO 639-1 ("en", "de"); None: not known


class OcrLine(Base):
    __tablename__ = "ocr_lines"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    video_id: Mapped[str] = mapped_column(_video_fk(), index=True)
    t_s: Mapped[float] = mapped_column(Float)
    scene_index: Mapped[int | None] = mapped_column(Integer)
    text: Mapped[str] = mapped_column(Text)
    confidence: Mapped[float] = mapped_column(Float)


class Chapter(Base):
    __tablename__ = "chapters"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    video_id: Mapped[str] = mapped_column(_video_fk(), index=True)
    start_s: Mapped[float] = mapped_column(Float)
    end_s: Mapped[float] = mapped_column(Float)
    title: Mapped[str] = mapped_column(Text)
    summary: Mapped[str] = mapped_column(Text, default="")
    source: Mapped[str] = mapped_column(String(16))


class Event(Base):
    __tablename__ = "events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    video_id: Mapped[str] = mapped_column(_video_fk(), index=True)
    start_s: Mapped[float] = mapped_column(Float)
    end_s: Mapped[float] = mapped_column(Float)
    label: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(Text, default="")
    bbox: Mapped[list[Any] | None] = mapped_column(JSON)
    source: Mapped[str] = mapped_column(String(16))


class Tag(Base):
    __tablename__ = "tags"
    __table_args__ = (UniqueConstraint("video_id", "tag", name="uq_tags_video_id_tag"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    video_id: Mapped[str] = mapped_column(_video_fk(), index=True)
    tag: Mapped[str] = mapped_column(String(120))
    score: Mapped[float] = mapped_column(Float, default=1.0)
    source: Mapped[str] = mapped_column(String(16), default="vlm")


class Moment(Base):
    """The searchable unit: a scene (or a window of a long scene) with everything said and shown in it.

    Full-text search lives beside it, in the migration only (dialect-specific, see 0003): on SQLite the FTS5
    table `moments_fts` kept in step by triggers, on PostgreSQL the generated `tsv` column and its GIN index."""

    __tablename__ = "moments"

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True)
    video_id: Mapped[str] = mapped_column(_video_fk(), index=True)
    tenant: Mapped[str] = mapped_column(String(64), index=True)
    start_s: Mapped[float] = mapped_column(Float)
    end_s: Mapped[float] = mapped_column(Float)
    caption: Mapped[str] = mapped_column(Text, default="")
    speech: Mapped[str] = mapped_column(Text, default="")
    screen_text: Mapped[str] = mapped_column(Text, default="")
    keyframe_index: Mapped[int | None] = mapped_column(Integer)


class MomentVector(Base):
    __tablename__ = "moment_vectors"
    __table_args__ = (
        UniqueConstraint("moment_id", "model", name="uq_moment_vectors_moment_id_model"),
        Index("ix_moment_vectors_model_moment_id", "model", "moment_id"),  # a model's vectors, in id order
    )

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True)
    moment_id: Mapped[int] = mapped_column(ForeignKey("moments.id", ondelete="CASCADE"), index=True)
    model: Mapped[str] = mapped_column(String(200))
    dim: Mapped[int] = mapped_column(Integer)
    vector: Mapped[bytes] = mapped_column(LargeBinary)  # float32, little endian


class ApiKey(Base):
    """A tenant's API key. Only a SHA-256 of the key is stored; `prefix` (its first characters) names it."""

    __tablename__ = "api_keys"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    tenant: Mapped[str] = mapped_column(String(64), index=True)
    prefix: Mapped[str] = mapped_column(String(16))
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class Upload(Base):
    """A resumable (tus 1.0) upload in progress: its bytes so far live in the API's data dir."""

    __tablename__ = "uploads"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    tenant: Mapped[str] = mapped_column(String(64), index=True)
    length: Mapped[int] = mapped_column(BigInteger)
    offset: Mapped[int] = mapped_column(BigInteger, default=0)
    filename: Mapped[str] = mapped_column(String(512), default="upload")
    options: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    video_id: Mapped[str | None] = mapped_column(String(32))  # set once complete and ingested
    error_type: Mapped[str | None] = mapped_column(String(64))
    error: Mapped[str | None] = mapped_column(Text)
    # The request receiving bytes (or ingesting the finished file) holds the upload by this token until
    # `claim_until`, renewed as it goes: taken by one conditional UPDATE, so it holds across server processes and
    # replicas, and a crashed holder's claim simply runs out.
    claim: Mapped[str | None] = mapped_column(String(32))
    claim_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, onupdate=utcnow)


class BatchStatus(StrEnum):
    RUNNING = "running"
    DONE = "done"  # every item finished (tagged or failed)
    CANCELLED = "cancelled"


class ItemStatus(StrEnum):
    """A batch item's state."""

    PENDING = "pending"
    ANALYZING = "analyzing"  # claimed: its file is being ingested or analysed
    DONE = "done"  # tagged
    FAILED = "failed"
    CANCELLED = "cancelled"


FINISHED_ITEM = (ItemStatus.DONE, ItemStatus.FAILED, ItemStatus.CANCELLED)


class Batch(Base):
    """Many videos tagged with one vocabulary. `key` names a batch the command line can find again (resume)."""

    __tablename__ = "batches"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    tenant: Mapped[str] = mapped_column(String(64), index=True)
    key: Mapped[str | None] = mapped_column(String(64), index=True)
    status: Mapped[str] = mapped_column(String(16), default="running")
    vocabulary: Mapped[list[dict[str, str]] | None] = mapped_column(JSON)  # [{"tag", "description"}] or free tags
    top_k: Mapped[int] = mapped_column(Integer, default=5)
    vlm: Mapped[str] = mapped_column(String(16), default="none")
    options: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)  # analysis options for new files
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class BatchItem(Base):
    """One file (or library video) of a batch, its state, and once tagged its tags with their support."""

    __tablename__ = "batch_items"
    __table_args__ = (Index("ix_batch_items_batch_id_status", "batch_id", "status"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    batch_id: Mapped[str] = mapped_column(ForeignKey("batches.id", ondelete="CASCADE"))
    position: Mapped[int] = mapped_column(Integer)
    source: Mapped[str] = mapped_column(String(2048))  # a path, an s3:// URL or "video:<id>"
    video_id: Mapped[str | None] = mapped_column(ForeignKey("videos.id", ondelete="SET NULL"))
    status: Mapped[str] = mapped_column(String(16), default="pending")
    reused: Mapped[bool] = mapped_column(Boolean, default=False)  # analysed before: results reused
    error_type: Mapped[str | None] = mapped_column(String(64))
    error: Mapped[str | None] = mapped_column(Text)
    tags: Mapped[list[dict[str, Any]] | None] = mapped_column(JSON)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, onupdate=utcnow)
