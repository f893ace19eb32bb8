"""Batches: many videos tagged with one vocabulary, resumable, one bad file failing alone.

The state lives in the database (`batches`, `batch_items`), so a batch survives the process that drives it:

- **Service** (`advance`): the API's housekeeping loop queues a bounded number of items at a time through the
  pipeline (workers or the in-process runner) and tags each video once its analysis is ready.
- **In-process** (`run_inline`, for `videopipe tag`): files are analysed one after another in this process and
  added to the local library; killed and started again with the same arguments, it goes on from the first
  unfinished file.

Either way a file whose content (SHA-256) was already analysed with the same settings is not analysed again.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import tempfile
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from videopipe.db.models import Batch, BatchItem, Job, Moment, MomentVector, Tag, Video, utcnow
from videopipe.errors import BadRequest, NotFound, VideopipeError, VLMError
from videopipe.pipeline import Pipeline, settings_hash
from videopipe.pipeline import aware as _aware
from videopipe.progress import Progress
from videopipe.tagging import Label, MomentText, TagScore, keyword_tags, zero_shot_tags

log = logging.getLogger(__name__)

_SUFFIXES = ".mp4 .m4v .mov .mkv .webm .avi .mpg .mpeg .ts .mts .m2ts .wmv .flv .3gp .ogv .mxf .dv"
VIDEO_SUFFIXES = frozenset(_SUFFIXES.split())
MAX_ITEMS = 100_000
TERMINAL = ("done", "failed", "cancelled")
# An item claimed this recently without a video yet is still being ingested (probed, copied from S3) by whichever
# replica claimed it; past this, its video was deleted or that replica died.
_START_GRACE_S = 3600.0


def expand_paths(paths: Iterable[str | Path], limit: int = MAX_ITEMS) -> list[Path]:
    """Files named as given; folders walked (recursively, sorted) for files with a video suffix."""
    out: list[Path] = []
    for raw in paths:
        path = Path(raw).expanduser()
        if path.is_dir():
            out += sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in VIDEO_SUFFIXES)
        elif path.is_file():
            out.append(path)
        else:
            raise NotFound(f"{raw}: no such file or folder; check the path")
        if len(out) > limit:
            raise BadRequest(f"more than {limit} files; split the batch")
    return list(dict.fromkeys(p.resolve() for p in out))


def batch_key(tenant: str, sources: Sequence[str], labels: Sequence[Label] | None, top_k: int, vlm: str,
              options: dict[str, Any]) -> str:  # fmt: skip
    """Names a batch by what it was asked to do, so the same command finds it again after a crash."""
    body = [tenant, list(sources), [[lb.tag, lb.description] for lb in labels or []], top_k, vlm, options]
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


@dataclass(slots=True)
class ItemOutcome:
    position: int
    source: str
    status: str
    reused: bool
    error: str | None
    tags: list[dict[str, Any]]


class Batches:
    def __init__(self, pipeline: Pipeline) -> None:
        self.pipeline = pipeline
        self.sessions = pipeline.sessions
        self.settings = pipeline.settings
        self._labels: dict[str, np.ndarray] = {}  # batch id -> label vectors
        self._lock = threading.Lock()

    # -- creating and reading --------------------------------------------------------------------------------
    def create(
        self,
        tenant: str,
        sources: Sequence[str],
        labels: Sequence[Label] | None = None,
        top_k: int = 5,
        vlm: str = "none",
        options: dict[str, Any] | None = None,
        key: str | None = None,
    ) -> str:
        if not sources:
            raise BadRequest("the batch has no videos; give video ids, a folder or an S3 prefix")
        if len(sources) > MAX_ITEMS:
            raise BadRequest(f"the batch has {len(sources)} videos; at most {MAX_ITEMS}")
        vocabulary = [{"tag": lb.tag, "description": lb.description} for lb in labels] if labels else None
        with self.sessions.begin() as s:
            batch = Batch(tenant=tenant, key=key, vocabulary=vocabulary, top_k=top_k, vlm=vlm, options=options or {})
            s.add(batch)
            s.flush()
            s.add_all(BatchItem(batch_id=batch.id, position=n, source=src) for n, src in enumerate(sources))
            return batch.id

    def find_unfinished(self, tenant: str, key: str) -> str | None:
        with self.sessions() as s:
            found = s.scalars(
                select(Batch.id).where(Batch.tenant == tenant, Batch.key == key, Batch.status == "running")
                .order_by(Batch.created_at.desc())
            ).first()  # fmt: skip
            return str(found) if found else None

    def _batch(self, s: Session, tenant: str, batch_id: str) -> Batch:
        batch = s.get(Batch, batch_id)
        if batch is None or batch.tenant != tenant:
            raise NotFound(f"no batch {batch_id}; GET /v1/batches lists yours")
        return batch

    def describe(
        self, tenant: str, batch_id: str, items: bool = True, offset: int = 0, limit: int | None = None
    ) -> dict[str, Any]:
        with self.sessions() as s:
            batch = self._batch(s, tenant, batch_id)
            counts = dict(
                s.execute(
                    select(BatchItem.status, func.count())
                    .where(BatchItem.batch_id == batch_id)
                    .group_by(BatchItem.status)
                ).all()
            )
            total = sum(counts.values())
            finished = sum(counts.get(k, 0) for k in TERMINAL)
            # Items being analysed count with their analysis's own progress (long videos move the bar too).
            partial = dict(
                s.execute(
                    select(BatchItem.id, func.max(Job.progress))
                    .join(Job, Job.video_id == BatchItem.video_id)
                    .where(BatchItem.batch_id == batch_id, BatchItem.status == "analyzing",
                           Job.status.in_(("queued", "running", "ready")))
                    .group_by(BatchItem.id)
                ).all()
            )  # fmt: skip
            partial = {k: min(0.99, max(0.0, float(p or 0.0))) for k, p in partial.items()}  # tagging is left
            done = finished + sum(partial.values())
            body: dict[str, Any] = {
                "id": batch.id, "status": batch.status, "progress": round(done / total, 4) if total else 1.0,
                "total": total, "counts": {k: counts.get(k, 0) for k in ("pending", "analyzing", *TERMINAL)},
                "vocabulary": batch.vocabulary, "top_k": batch.top_k, "vlm": batch.vlm,
                "created_at": batch.created_at, "finished_at": batch.finished_at,
            }  # fmt: skip
            if items:
                rows = s.scalars(select(BatchItem).where(BatchItem.batch_id == batch_id)
                                 .order_by(BatchItem.position).offset(offset).limit(limit))  # fmt: skip
                body["items"] = [self._item(r, partial.get(r.id)) for r in rows]
            return body

    @staticmethod
    def _item(r: BatchItem, partial: float | None = None) -> dict[str, Any]:
        progress = 1.0 if r.status in TERMINAL else round(float(partial or 0.0), 4)
        return {"position": r.position, "source": r.source, "video_id": r.video_id, "status": r.status,
                "progress": progress, "reused": r.reused, "error_type": r.error_type, "error": r.error,
                "tags": r.tags or []}  # fmt: skip

    def list_batches(self, tenant: str, limit: int = 50) -> list[dict[str, Any]]:
        with self.sessions() as s:
            ids = list(s.scalars(select(Batch.id).where(Batch.tenant == tenant)
                                 .order_by(Batch.created_at.desc()).limit(limit)))  # fmt: skip
        return [self.describe(tenant, i, items=False) for i in ids]

    def export_rows(self, tenant: str, batch_id: str) -> list[tuple[str, str | None, list[dict[str, Any]]]]:
        with self.sessions() as s:
            self._batch(s, tenant, batch_id)
            rows = s.execute(
                select(BatchItem, Video.filename).outerjoin(Video, Video.id == BatchItem.video_id)
                .where(BatchItem.batch_id == batch_id, BatchItem.status == "done").order_by(BatchItem.position)
            ).all()  # fmt: skip
            return [(_display(r.source, name), r.video_id, r.tags or []) for r, name in rows]

    # -- control ------------------------------------------------------------------------------------------------
    def cancel(self, tenant: str, batch_id: str) -> dict[str, Any]:
        """Stop queuing: pending items are cancelled (analyses already running finish, their tags are kept)."""
        with self.sessions.begin() as s:
            batch = self._batch(s, tenant, batch_id)
            if batch.status == "running":
                s.execute(update(BatchItem).where(BatchItem.batch_id == batch_id, BatchItem.status == "pending")
                          .values(status="cancelled", error="the batch was cancelled"))  # fmt: skip
                batch.status, batch.finished_at = "cancelled", utcnow()
        return self.describe(tenant, batch_id, items=False)

    def retry_failed(self, tenant: str, batch_id: str) -> dict[str, Any]:
        """Failed (and cancelled) items go back to pending and the batch runs again."""
        with self.sessions.begin() as s:
            batch = self._batch(s, tenant, batch_id)
            s.execute(update(BatchItem).where(BatchItem.batch_id == batch_id,
                                              BatchItem.status.in_(("failed", "cancelled")))
                      .values(status="pending", error=None, error_type=None))  # fmt: skip
            batch.status, batch.finished_at = "running", None
        return self.describe(tenant, batch_id, items=False)

    # -- tagging one video -------------------------------------------------------------------------------------
    def label_vectors(self, batch_id: str, labels: Sequence[Label]) -> np.ndarray:
        from videopipe.embeddings import open_embedder

        with self._lock:
            cached = self._labels.get(batch_id)
        if cached is None:
            cached = open_embedder(self.settings).embed([lb.text() for lb in labels])
            with self._lock:
                if len(self._labels) > 256:
                    self._labels.clear()
                self._labels[batch_id] = cached
        return cached

    def tag_video(self, batch_id: str, video_id: str, labels: Sequence[Label] | None, top_k: int,
                  vlm: str) -> list[TagScore]:  # fmt: skip
        """Tags for one analysed video: Qwen3-VL when asked for and available, else zero-shot from the moments'
        embeddings (with a vocabulary), else the model's free tags from the analysis, else keywords."""
        from videopipe.embeddings import open_embedder
        from videopipe.moments import moment_text

        if vlm != "none":
            from videopipe.vlm_tagging import vlm_tags

            try:
                tags = vlm_tags(self.pipeline, video_id, labels, top_k, vlm)
                if tags is not None:
                    return tags
            except VLMError as exc:
                log.warning("video %s: the model's tags could not be used (%s); tagging without it", video_id, exc)
        with self.sessions() as s:
            rows = list(s.scalars(select(Moment).where(Moment.video_id == video_id).order_by(Moment.start_s)))
            moments = [MomentText(m.start_s, m.end_s, moment_text(m)) for m in rows]
            embedder = open_embedder(self.settings)
            wanted = select(MomentVector.moment_id, MomentVector.vector).where(
                MomentVector.moment_id.in_([m.id for m in rows]), MomentVector.model == embedder.name
            )
            stored = dict(s.execute(wanted).all())
            free = [
                (t.tag, t.score) for t in s.scalars(select(Tag).where(Tag.video_id == video_id, Tag.source == "vlm"))
            ]
        if not moments or not (labels or free):
            return keyword_tags(moments, top_k)
        if all(m.id in stored for m in rows):
            vectors = np.stack([np.frombuffer(stored[m.id], np.float32) for m in rows])
        else:  # vectors of another model (or none): embed the moments now
            vectors = embedder.embed([m.text for m in moments])
        if labels:
            return zero_shot_tags(moments, vectors, labels, self.label_vectors(batch_id, labels), top_k)
        # The model's free tags from the analysis, with their scores; the moments that support each are found
        # the zero-shot way (the tag against every moment).
        chosen = free[:top_k]
        free_labels = [Label(t) for t, _ in chosen]
        found = zero_shot_tags(moments, vectors, free_labels, embedder.embed([t for t, _ in chosen]), len(chosen))
        support = {t.tag: t.support for t in found}
        return [TagScore(t, score, "vlm", support.get(t, [])) for t, score in chosen]

    def _finish_item(self, item_id: int, batch: Batch, video_id: str, reused: bool) -> None:
        labels = _labels(batch.vocabulary)
        try:
            tags = self.tag_video(batch.id, video_id, labels, batch.top_k, batch.vlm)
            values: dict[str, Any] = {"status": "done", "tags": [t.to_json() for t in tags], "error": None}
        except VideopipeError as exc:
            values = {"status": "failed", "error_type": exc.type, "error": exc.message}
        except Exception as exc:  # a bug: this item fails with the reason, the batch goes on
            log.exception("tagging video %s failed", video_id)
            values = {"status": "failed", "error_type": "internal-error", "error": f"{type(exc).__name__}: {exc}"}
        with self.sessions.begin() as s:
            s.execute(update(BatchItem).where(BatchItem.id == item_id, BatchItem.status.not_in(TERMINAL))
                      .values(video_id=video_id, reused=reused, **values))  # fmt: skip

    def _fail_item(self, item_id: int, error_type: str, message: str, video_id: str | None = None) -> None:
        with self.sessions.begin() as s:
            s.execute(update(BatchItem).where(BatchItem.id == item_id)
                      .values(status="failed", error_type=error_type, error=message, video_id=video_id))  # fmt: skip

    def _close_if_finished(self, batch_id: str) -> bool:
        with self.sessions.begin() as s:
            open_items = s.scalar(select(func.count()).where(BatchItem.batch_id == batch_id,
                                                             BatchItem.status.not_in(TERMINAL)))  # fmt: skip
            if open_items:
                return False
            s.execute(update(Batch).where(Batch.id == batch_id, Batch.status == "running")
                      .values(status="done", finished_at=utcnow()))  # fmt: skip
            return True

    # -- service: through the pipeline's jobs ------------------------------------------------------------------
    def advance_all(self, max_in_flight: int) -> None:
        with self.sessions() as s:
            ids = list(s.scalars(select(Batch.id).where(Batch.status == "running").order_by(Batch.created_at)))
        for batch_id in ids:
            try:
                self.advance(batch_id, max_in_flight)
            except Exception:
                log.exception("batch %s could not advance; the next round tries again", batch_id)

    def advance(self, batch_id: str, max_in_flight: int) -> bool:
        """One round: tag items whose analysis finished, queue more, close the batch when nothing is left.
        Safe to run from several processes at once (items are claimed by a conditional update)."""
        from videopipe.library import Library

        with self.sessions() as s:
            batch = s.get(Batch, batch_id)
            if batch is None or batch.status != "running":
                return True
            s.expunge(batch)
            waiting = s.execute(
                select(BatchItem.id, BatchItem.reused, BatchItem.updated_at, Video.id, Video.status,
                       Video.error_type, Video.error)
                .outerjoin(Video, Video.id == BatchItem.video_id)
                .where(BatchItem.batch_id == batch_id, BatchItem.status == "analyzing")
            ).all()  # fmt: skip
        in_flight = 0
        started_before = utcnow() - timedelta(seconds=_START_GRACE_S)
        for item_id, reused, updated_at, video_id, status, error_type, error in waiting:
            if video_id is None and _aware(updated_at) > started_before:
                in_flight += 1  # claimed a moment ago (here or on another replica): its file is being ingested
            elif video_id is None:
                self._fail_item(item_id, "not-found", "the video was deleted (or its ingestion stopped) before it "
                                "was tagged; retry the batch")  # fmt: skip
            elif status == "ready":
                self._finish_item(item_id, batch, video_id, reused)
            elif status in ("failed", "cancelled"):
                self._fail_item(item_id, error_type or status, error or f"the analysis was {status}", video_id)
            else:
                in_flight += 1
        room = max(0, max_in_flight - in_flight)
        if room:
            library = Library(self.pipeline)
            with self.sessions() as s:
                pending = s.execute(
                    select(BatchItem.id, BatchItem.source).where(BatchItem.batch_id == batch_id,
                                                                 BatchItem.status == "pending")
                    .order_by(BatchItem.position).limit(room)
                ).all()  # fmt: skip
            for item_id, source in pending:
                if self._claim(item_id):
                    self._start(library, batch, item_id, source)
        return self._close_if_finished(batch_id)

    def _claim(self, item_id: int) -> bool:
        """Take a pending item (it becomes "analyzing" with no video until its file is ingested)."""
        with self.sessions.begin() as s:
            claimed = s.execute(update(BatchItem).where(BatchItem.id == item_id, BatchItem.status == "pending")
                                .values(status="analyzing"))  # fmt: skip
            return bool(claimed.rowcount)  # type: ignore[attr-defined]

    def _start(self, library: Any, batch: Batch, item_id: int, source: str) -> None:
        options = dict(batch.options or {})
        try:
            if source.startswith("video:"):
                video_id = source.removeprefix("video:")
                status = self._video_status(batch, video_id)
                if status in ("failed", "cancelled"):
                    library.reanalyze(batch.tenant, video_id, options)
                reused = status == "ready"
            else:
                ingest = library.ingest_s3 if source.startswith("s3://") else library.ingest_path
                got = ingest(source, batch.tenant, options)
                video_id, reused = got.video_id, not got.created
        except VideopipeError as exc:
            self._fail_item(item_id, exc.type, exc.message)
            return
        except Exception as exc:
            log.exception("batch item %s could not start", item_id)
            self._fail_item(item_id, "internal-error", f"{type(exc).__name__}: {exc}")
            return
        with self.sessions.begin() as s:
            s.execute(update(BatchItem).where(BatchItem.id == item_id).values(video_id=video_id, reused=reused))
            ready = s.scalar(select(Video.status).where(Video.id == video_id)) == "ready"
        if ready:
            self._finish_item(item_id, batch, video_id, reused)

    def _video_status(self, batch: Batch, video_id: str) -> str:
        """The status of a library video of the batch's tenant (NotFound for another tenant's, as for none)."""
        with self.sessions() as s:
            video = s.get(Video, video_id)
            if video is None or video.tenant != batch.tenant:
                raise NotFound(f"no video {video_id} in the library")
            return video.status

    # -- in-process: `videopipe tag` ---------------------------------------------------------------------------
    def run_inline(
        self,
        tenant: str,
        batch_id: str,
        progress: Progress | None = None,
        on_item: Callable[[ItemOutcome], None] | None = None,
        on_start: Callable[[str], None] | None = None,
    ) -> None:
        """Analyse (or reuse) and tag every unfinished item, in order, in this process."""
        with self.sessions() as s:
            batch = self._batch(s, tenant, batch_id)
            s.expunge(batch)
            todo = s.execute(select(BatchItem.id, BatchItem.position, BatchItem.source)
                             .where(BatchItem.batch_id == batch_id, BatchItem.status.not_in(TERMINAL))
                             .order_by(BatchItem.position)).all()  # fmt: skip
        for item_id, position, source in todo:
            with self.sessions() as s:
                if s.scalar(select(Batch.status).where(Batch.id == batch_id)) != "running":
                    break
            with self.sessions.begin() as s:
                s.execute(update(BatchItem).where(BatchItem.id == item_id).values(status="analyzing"))
            if on_start is not None:
                on_start(Path(source).name)
            try:
                video_id, reused = self._analyse_inline(source, batch, progress)
            except VideopipeError as exc:
                self._fail_item(item_id, exc.type, exc.message)
            except Exception as exc:
                log.exception("analysing %s failed", source)
                self._fail_item(item_id, "internal-error", f"{type(exc).__name__}: {exc}")
            else:
                self._finish_item(item_id, batch, video_id, reused)
            if on_item is not None:
                with self.sessions() as s:
                    row = s.get(BatchItem, item_id)
                    assert row is not None
                    on_item(ItemOutcome(position, source, row.status, row.reused, row.error, row.tags or []))
        self._close_if_finished(batch_id)

    def _analyse_inline(self, source: str, batch: Batch, progress: Progress | None) -> tuple[str, bool]:
        """The video id for `source`, analysing it here unless the same content was analysed with the same
        settings before (then its results are reused: returns (id, True))."""
        from videopipe import analysis
        from videopipe.storage import sha256_file

        options = dict(batch.options or {})
        if source.startswith("video:"):
            video_id = source.removeprefix("video:")
            status = self._video_status(batch, video_id)
            if status != "ready":
                raise BadRequest(f"video {video_id} is {status}, not analysed; analyse it first")
            return video_id, True
        path = Path(source)
        if not path.is_file():
            raise NotFound(f"{source}: the file is no longer there")
        digest = sha256_file(path)
        wanted = settings_hash(self.settings, options)
        with self.sessions() as s:
            found = s.scalars(
                select(Video.id).join(Job, Job.video_id == Video.id)
                .where(Video.tenant == batch.tenant, Video.content_hash == digest, Video.status == "ready",
                       Job.status == "ready", Job.settings_hash == wanted)
            ).first()  # fmt: skip
        if found is not None:
            return str(found), True
        opts = analysis.AnalyzeOptions.for_profile(options.get("profile", "general"), vlm=batch.vlm)
        workdir = Path(tempfile.mkdtemp(prefix="vp-tag-"))
        try:
            doc = analysis.analyze(path, workdir / "out", self.settings, opts, progress=progress)
            video_id = self.pipeline.import_document(path, doc, workdir / "out", batch.tenant, options)
        finally:
            shutil.rmtree(workdir, ignore_errors=True)
        return video_id, False


def _labels(vocabulary: list[dict[str, str]] | None) -> list[Label] | None:
    return [Label(v["tag"], v.get("description", "")) for v in vocabulary] if vocabulary else None


def _display(source: str, filename: str | None) -> str:
    return filename or source if source.startswith("video:") else source
