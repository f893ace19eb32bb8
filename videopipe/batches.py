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
from sqlalchemy.orm import Session, sessionmaker

from videopipe.config import Settings
from videopipe.db.models import FINISHED_ITEM, Batch, BatchItem, BatchStatus, ItemStatus, VideoStatus, utcnow
from videopipe.db.models import aware as _aware
from videopipe.db.repos import batches as repo
from videopipe.db.repos import results, videos
from videopipe.errors import BadRequest, NotFound, VideopipeError, VLMError
from videopipe.jobs import JobEngine, settings_hash
from videopipe.library import Library
from videopipe.progress import Progress
from videopipe.storage import BlobStore
from videopipe.tagging import Label, MomentText, TagScore, keyword_tags, zero_shot_tags

log = logging.getLogger(__name__)

_SUFFIXES = ".mp4 .m4v .mov .mkv .webm .avi .mpg .mpeg .ts .mts .m2ts .wmv .flv .3gp .ogv .mxf .dv"
VIDEO_SUFFIXES = frozenset(_SUFFIXES.split())
MAX_ITEMS = 100_000
TERMINAL = FINISHED_ITEM
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
    def __init__(
        self, settings: Settings, sessions: sessionmaker[Session], store: BlobStore, jobs: JobEngine, library: Library
    ) -> None:
        self.settings = settings
        self.sessions = sessions
        self.store = store
        self.jobs = jobs
        self.library = library  # the server's way in: files are ingested (and analysed by the job engine) like uploads
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
            return repo.create(s, tenant, sources, key, vocabulary, top_k, vlm, options or {})

    def find_unfinished(self, tenant: str, key: str) -> str | None:
        with self.sessions() as s:
            return repo.find_unfinished(s, tenant, key)

    def describe(
        self, tenant: str, batch_id: str, items: bool = True, offset: int = 0, limit: int | None = None
    ) -> dict[str, Any]:
        with self.sessions() as s:
            batch = repo.get_batch(s, tenant, batch_id)
            counts = repo.item_counts(s, batch)
            total = sum(counts.values())
            finished = sum(counts.get(k, 0) for k in TERMINAL)
            # Items being analysed count with their analysis's own progress (long videos move the bar too).
            partial = {k: min(0.99, max(0.0, p)) for k, p in repo.analysis_progress(s, batch).items()}  # tagging left
            done = finished + sum(partial.values())
            body: dict[str, Any] = {
                "id": batch.id, "status": batch.status, "progress": round(100 * done / total, 2) if total else 100.0,
                "total": total, "counts": {k.value: counts.get(k, 0) for k in ItemStatus},
                "vocabulary": batch.vocabulary, "top_k": batch.top_k, "vlm": batch.vlm,
                "created_at": batch.created_at, "finished_at": batch.finished_at,
            }  # fmt: skip
            if items:
                body["items"] = [self._item(r, partial.get(r.id)) for r in repo.items(s, batch, offset, limit)]
            return body

    @staticmethod
    def _item(r: BatchItem, partial: float | None = None) -> dict[str, Any]:
        progress = 100.0 if r.status in TERMINAL else round(100 * float(partial or 0.0), 2)
        return {"position": r.position, "source": r.source, "video_id": r.video_id, "status": r.status,
                "progress": progress, "reused": r.reused, "error_type": r.error_type, "error": r.error,
                "tags": r.tags or []}  # fmt: skip

    def list_batches(self, tenant: str, limit: int = 50) -> list[dict[str, Any]]:
        with self.sessions() as s:
            ids = repo.list_ids(s, tenant, limit)
        return [self.describe(tenant, i, items=False) for i in ids]

    def export_rows(self, tenant: str, batch_id: str) -> list[tuple[str, str | None, list[dict[str, Any]]]]:
        with self.sessions() as s:
            rows = repo.tagged_items(s, repo.get_batch(s, tenant, batch_id))
            return [(_display(r.source, name), r.video_id, r.tags or []) for r, name in rows]

    # -- control ------------------------------------------------------------------------------------------------
    def cancel(self, tenant: str, batch_id: str) -> dict[str, Any]:
        """Stop queuing: pending items are cancelled (analyses already running finish, their tags are kept)."""
        with self.sessions.begin() as s:
            repo.cancel(s, repo.get_batch(s, tenant, batch_id), utcnow())
        return self.describe(tenant, batch_id, items=False)

    def retry_failed(self, tenant: str, batch_id: str) -> dict[str, Any]:
        """Failed (and cancelled) items go back to pending and the batch runs again."""
        with self.sessions.begin() as s:
            repo.retry(s, repo.get_batch(s, tenant, batch_id))
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

    def _document(self, batch_id: str, video_id: str) -> dict[str, Any]:
        """The analysis document of a video of the batch (read as the batch's tenant)."""
        with self.sessions() as s:
            batch = repo.by_id(s, batch_id)
            if batch is None:
                raise NotFound(f"no batch {batch_id}")
            return results.document(s, batch.tenant, video_id)

    def tag_video(self, batch_id: str, video_id: str, labels: Sequence[Label] | None, top_k: int,
                  vlm: str) -> list[TagScore]:  # fmt: skip
        """Tags for one analysed video: Qwen3-VL when asked for and available, else zero-shot from the moments'
        embeddings (with a vocabulary), else the model's free tags from the analysis, else keywords."""
        from videopipe.embeddings import open_embedder
        from videopipe.moments import moment_text

        if vlm != "none":
            from videopipe.vlm_tagging import vlm_tags

            try:
                document = lambda: self._document(batch_id, video_id)  # noqa: E731
                tags = vlm_tags(self.settings, self.store, document, labels, top_k, vlm)
                if tags is not None:
                    return tags
            except VLMError as exc:
                log.warning("video %s: the model's tags could not be used (%s); tagging without it", video_id, exc)
        embedder = open_embedder(self.settings)
        with self.sessions() as s:
            batch = repo.by_id(s, batch_id)
            if batch is None:
                raise NotFound(f"no batch {batch_id}")
            rows, stored, free = repo.tagging_inputs(s, batch.tenant, video_id, embedder.name)
            moments = [MomentText(m.start_s, m.end_s, moment_text(m)) for m in rows]
        if not moments or not (labels or free):
            return keyword_tags(moments, top_k)
        if all(m.id in stored for m in rows):
            vectors = np.stack([stored[m.id] for m in rows])
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
            values: dict[str, Any] = {"status": ItemStatus.DONE, "tags": [t.to_json() for t in tags], "error": None}
        except VideopipeError as exc:
            values = {"status": ItemStatus.FAILED, "error_type": exc.type, "error": exc.message}
        except Exception as exc:  # a bug: this item fails with the reason, the batch goes on
            log.exception("tagging video %s failed", video_id)
            values = {"status": ItemStatus.FAILED, "error_type": "internal-error",
                      "error": f"{type(exc).__name__}: {exc}"}  # fmt: skip
        with self.sessions.begin() as s:
            repo.update_item(s, batch, item_id, unfinished_only=True, video_id=video_id, reused=reused, **values)

    def _fail_item(self, batch: Batch, item_id: int, error_type: str, message: str,
                   video_id: str | None = None) -> None:  # fmt: skip
        with self.sessions.begin() as s:
            repo.update_item(s, batch, item_id, status=ItemStatus.FAILED, error_type=error_type, error=message,
                             video_id=video_id)  # fmt: skip

    def _close_if_finished(self, batch: Batch) -> bool:
        with self.sessions.begin() as s:
            return repo.close_if_finished(s, batch, utcnow())

    # -- service: through the pipeline's jobs ------------------------------------------------------------------
    def advance_all(self, max_in_flight: int) -> None:
        with self.sessions() as s:
            ids = repo.running_all_tenants(s)
        for batch_id in ids:
            try:
                self.advance(batch_id, max_in_flight)
            except Exception:
                log.exception("batch %s could not advance; the next round tries again", batch_id)

    def advance(self, batch_id: str, max_in_flight: int) -> bool:
        """One round: tag items whose analysis finished, queue more, close the batch when nothing is left.
        Safe to run from several processes at once (items are claimed by a conditional update)."""
        with self.sessions() as s:
            batch = repo.by_id(s, batch_id)
            if batch is None or batch.status != BatchStatus.RUNNING:
                return True
            s.expunge(batch)
            waiting = repo.waiting_items(s, batch)
        in_flight = 0
        started_before = utcnow() - timedelta(seconds=_START_GRACE_S)
        for item_id, reused, updated_at, video_id, status, error_type, error in waiting:
            if video_id is None and _aware(updated_at) > started_before:
                in_flight += 1  # claimed a moment ago (here or on another replica): its file is being ingested
            elif video_id is None:
                self._fail_item(batch, item_id, "not-found", "the video was deleted (or its ingestion stopped) "
                                "before it was tagged; retry the batch")  # fmt: skip
            elif status == VideoStatus.READY:
                self._finish_item(item_id, batch, video_id, reused)
            elif status in (VideoStatus.FAILED, VideoStatus.CANCELLED):
                self._fail_item(batch, item_id, error_type or status, error or f"the analysis was {status}", video_id)
            else:
                in_flight += 1
        room = max(0, max_in_flight - in_flight)
        if room:
            library = self.library
            with self.sessions() as s:
                pending = repo.pending_items(s, batch, room)
            for item_id, _, source in pending:
                if self._claim(batch, item_id):
                    self._start(library, batch, item_id, source)
        return self._close_if_finished(batch)

    def _claim(self, batch: Batch, item_id: int) -> bool:
        """Take a pending item (it becomes "analyzing" with no video until its file is ingested)."""
        with self.sessions.begin() as s:
            return repo.claim_item(s, batch, item_id)

    def _start(self, library: Any, batch: Batch, item_id: int, source: str) -> None:
        options = dict(batch.options or {})
        try:
            if source.startswith("video:"):
                video_id = source.removeprefix("video:")
                status = self._video_status(batch, video_id)
                if status in (VideoStatus.FAILED, VideoStatus.CANCELLED):
                    library.reanalyze(batch.tenant, video_id, options)
                reused = status == VideoStatus.READY
            else:
                ingest = library.ingest_s3 if source.startswith("s3://") else library.ingest_path
                got = ingest(source, batch.tenant, options)
                video_id, reused = got.video_id, not got.created
        except VideopipeError as exc:
            self._fail_item(batch, item_id, exc.type, exc.message)
            return
        except Exception as exc:
            log.exception("batch item %s could not start", item_id)
            self._fail_item(batch, item_id, "internal-error", f"{type(exc).__name__}: {exc}")
            return
        with self.sessions.begin() as s:
            repo.update_item(s, batch, item_id, video_id=video_id, reused=reused)
            ready = videos.status_of(s, batch.tenant, video_id) == VideoStatus.READY
        if ready:
            self._finish_item(item_id, batch, video_id, reused)

    def _video_status(self, batch: Batch, video_id: str) -> str:
        """The status of a library video of the batch's tenant (NotFound for another tenant's, as for none)."""
        with self.sessions() as s:
            status = videos.status_of(s, batch.tenant, video_id)
        if status is None:
            raise NotFound(f"no video {video_id} in the library")
        return status

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
            batch = repo.get_batch(s, tenant, batch_id)
            s.expunge(batch)
            todo = repo.unfinished_items(s, batch)
        for item_id, position, source in todo:
            with self.sessions() as s:
                if repo.status_of(s, batch) != BatchStatus.RUNNING:
                    break
            with self.sessions.begin() as s:
                repo.update_item(s, batch, item_id, status=ItemStatus.ANALYZING)
            if on_start is not None:
                on_start(Path(source).name)
            try:
                video_id, reused = self._analyse_inline(source, batch, progress)
            except VideopipeError as exc:
                self._fail_item(batch, item_id, exc.type, exc.message)
            except Exception as exc:
                log.exception("analysing %s failed", source)
                self._fail_item(batch, item_id, "internal-error", f"{type(exc).__name__}: {exc}")
            else:
                self._finish_item(item_id, batch, video_id, reused)
            if on_item is not None:
                with self.sessions() as s:
                    row = repo.get_item(s, batch, item_id)
                    on_item(ItemOutcome(position, source, row.status, row.reused, row.error, row.tags or []))
        self._close_if_finished(batch)

    def _analyse_inline(self, source: str, batch: Batch, progress: Progress | None) -> tuple[str, bool]:
        """The video id for `source`, analysing it here unless the same content was analysed with the same
        settings before (then its results are reused: returns (id, True))."""
        from videopipe import analysis
        from videopipe.storage import sha256_file

        options = dict(batch.options or {})
        if source.startswith("video:"):
            video_id = source.removeprefix("video:")
            status = self._video_status(batch, video_id)
            if status != VideoStatus.READY:
                raise BadRequest(f"video {video_id} is {status}, not analysed; analyse it first")
            return video_id, True
        path = Path(source)
        if not path.is_file():
            raise NotFound(f"{source}: the file is no longer there")
        digest = sha256_file(path)
        wanted = settings_hash(self.settings, options)
        with self.sessions() as s:
            found = videos.reusable(s, batch.tenant, digest, wanted)
        if found is not None:
            return found, True
        opts = analysis.AnalyzeOptions.for_profile(options.get("profile", "general"), vlm=batch.vlm)
        workdir = Path(tempfile.mkdtemp(prefix="vp-tag-"))
        try:
            doc = analysis.analyze(path, workdir / "out", self.settings, opts, progress=progress)
            video_id = self.jobs.record_analysis(path, doc, workdir / "out", batch.tenant, options)
        finally:
            shutil.rmtree(workdir, ignore_errors=True)
        return video_id, False


def _labels(vocabulary: list[dict[str, str]] | None) -> list[Label] | None:
    return [Label(v["tag"], v.get("description", "")) for v in vocabulary] if vocabulary else None


def _display(source: str, filename: str | None) -> str:
    return filename or source if source.startswith("video:") else source
