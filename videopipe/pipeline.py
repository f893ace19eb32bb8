"""The stage graph: ``perceive`` (cpu) -> ``understand`` (gpu) -> ``index``, for one video at a time.

The database holds all job state; a queue message only says "run stage run X". Every stage:

1. **leases** its row in a short transaction (state ``running``, ``lease_until``, attempts + 1); a run that is
   already done, or leased by a live worker, is left alone, so duplicate deliveries are harmless;
2. **works** outside any transaction, reporting progress through `DbProgress`, which renews the lease and
   raises `JobCancelled` when the job was cancelled;
3. **commits** its outputs in one transaction (replacing any earlier outputs of the same stage for the video,
   so a stage redone after a crash never duplicates rows), marks itself done and creates the next stage run,
   but only if it still holds the lease;
4. **dispatches** the next stage after the commit.

A stage whose outputs already exist for the same inputs (content hash + settings) is not run again. A worker
killed mid-stage loses that stage only: its lease expires and `reconcile` sends it again, as it does for
messages lost with a broker restart. Bad input fails the job with its clear message and is never retried.
The dispatcher is an interface: the in-process runner here, Celery in ``workers/``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

from sqlalchemy import delete, select, text
from sqlalchemy.orm import Session, sessionmaker

from videopipe import analysis
from videopipe.config import Settings
from videopipe.db.models import (
    STAGES,
    Chapter,
    Event,
    Job,
    Keyframe,
    Moment,
    OcrLine,
    Scene,
    StageRun,
    Tag,
    TranscriptSegment,
    Video,
    utcnow,
)
from videopipe.errors import BlobMissing, EmptyFile, InputError, NotFound, VideoNotFound, VideopipeError, VLMUnavailable
from videopipe.storage import BlobStore, sha256_file

log = logging.getLogger(__name__)

QUEUE_FOR = {"perceive": "cpu", "understand": "gpu", "index": "index"}
NEXT_STAGE = {"perceive": "understand", "understand": "index", "index": None}
# Share of a job's progress each stage accounts for.
_WEIGHTS = {"perceive": 0.6, "understand": 0.3, "index": 0.1}
_BEFORE = {"perceive": 0.0, "understand": 0.6, "index": 0.9}


class JobCancelled(Exception):
    """Raised inside a running stage when its job was cancelled."""


class TransientError(VideopipeError):
    """Worth retrying later (a model server down, a lost lease); the stage goes back to pending."""

    type = "transient"


class Dispatcher(Protocol):
    def dispatch(self, stage_run_id: str, stage: str) -> None: ...


@dataclass(slots=True)
class Submitted:
    job_id: str
    video_id: str
    created: bool  # False: the same video with the same settings was already queued, running or ready
    new_video: bool = True  # False: these bytes were already in the tenant's library


def settings_hash(settings: Settings, options: dict[str, Any]) -> str:
    """What decides a job's outputs besides the bytes of the video."""
    relevant = settings.model_dump(
        mode="json",
        include={"analysis", "scenes", "keyframes", "perception", "motion", "understanding", "vlm", "vlm_model"},
    )
    blob = json.dumps({"settings": relevant, "options": options, "schema": analysis.SCHEMA_VERSION}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()


class DbProgress:
    """`videopipe.progress.Progress` that writes to the stage run and its job (at most once a second),
    renews the lease, and raises `JobCancelled` once the job is cancelled."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        run_id: str,
        job_id: str,
        stage: str,
        worker: str,
        lease_s: float,
        interval_s: float = 1.0,
    ) -> None:
        self.sessions, self.run_id, self.job_id, self.stage = sessions, run_id, job_id, stage
        self.worker, self.lease_s, self.interval_s = worker, lease_s, interval_s
        self._total = 1.0
        self._sub: list[str] = []
        self._last = 0.0

    def start(self, stage: str, total: float) -> None:
        self._sub.append(stage)
        self._total = max(total, 1e-9)
        self._write(0.0, force=True)

    def update(self, done: float) -> None:
        self._write(min(1.0, done / self._total))

    def _write(self, fraction: float, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._last < self.interval_s:
            return
        self._last = now
        # Sub-stages (scan, speech, ...) each get an equal share of the stage: coarse, but monotonic.
        within = min(0.99, (len(self._sub) - 1 + fraction) / max(4, len(self._sub)))
        with self.sessions.begin() as s:
            run = s.get(StageRun, self.run_id)
            job = s.get(Job, self.job_id)
            if run is None or job is None:
                raise JobCancelled("the job was deleted")
            if job.cancel_requested or job.status == "cancelled":
                raise JobCancelled("cancelled")
            if run.worker == self.worker and run.state == "running":
                run.progress = within
                run.lease_until = utcnow() + timedelta(seconds=self.lease_s)
                job.progress = _BEFORE[self.stage] + _WEIGHTS[self.stage] * within


class Pipeline:
    def __init__(
        self,
        sessions: sessionmaker[Session],
        store: BlobStore,
        settings: Settings,
        dispatcher: Dispatcher | None = None,
    ) -> None:
        self.sessions = sessions
        self.store = store
        self.settings = settings
        self.dispatcher = dispatcher

    # -- submitting ----------------------------------------------------------------------------------------
    def submit(
        self,
        path: Path,
        tenant: str = "default",
        options: dict[str, Any] | None = None,
        *,
        filename: str | None = None,
        content_hash: str | None = None,
        force: bool = False,
        media_type: str | None = None,
    ) -> Submitted:
        """Store the original (once per content), record the video and a job, and dispatch its first stage.

        `content_hash`: the SHA-256 already computed while the bytes streamed in (saves reading them again).
        `force`: analyse again even when a finished job with the same settings exists (stages are recomputed).
        `media_type`: the Content-Type the original is served with (from its probed container).
        """
        options = analysis.check_job_options({k: v for k, v in (options or {}).items() if k != "force"})
        if not path.is_file():
            raise VideoNotFound(f"{path}: no such file; check the path")
        size = path.stat().st_size
        if size == 0:
            raise EmptyFile(f"{filename or path.name}: the file is empty (0 bytes); copy the video again")
        content_hash = content_hash or sha256_file(path)
        name = filename or path.name
        key = f"originals/{content_hash}{Path(name).suffix.lower()[:16]}"
        if not self.store.exists(key):
            self.store.put_file(key, path)
        s_hash = settings_hash(self.settings, options)
        with self.sessions.begin() as s:
            video = s.scalars(select(Video).where(Video.tenant == tenant, Video.content_hash == content_hash)).first()
            new_video = video is None
            if video is None:
                video = Video(
                    tenant=tenant,
                    content_hash=content_hash,
                    filename=name,
                    blob_key=key,
                    size_bytes=size,
                    media_type=media_type,
                )
                s.add(video)
                s.flush()
            elif media_type and video.media_type is None:  # a row from before media types were recorded
                video.media_type = media_type
            live = ("queued", "running") if force else ("queued", "running", "ready")
            existing = s.scalars(
                select(Job).where(Job.video_id == video.id, Job.settings_hash == s_hash, Job.status.in_(live))
            ).first()
            if existing is not None:
                return Submitted(existing.id, video.id, created=False, new_video=new_video)
            stored_options = {**options, "force": True} if force else options
            job = Job(video_id=video.id, tenant=tenant, settings_hash=s_hash, options=stored_options, stage="perceive")
            s.add(job)
            s.flush()
            run = StageRun(job_id=job.id, video_id=video.id, stage="perceive", state="pending")
            s.add(run)
            s.flush()
            video.status, video.error, video.error_type = "queued", None, None
            submitted, run_id = Submitted(job.id, video.id, created=True, new_video=new_video), run.id
        self._dispatch(run_id, "perceive")
        return submitted

    def _dispatch(self, run_id: str, stage: str) -> None:
        with self.sessions.begin() as s:
            run = s.get(StageRun, run_id)
            if run is not None:
                run.dispatched_at = utcnow()
        if self.dispatcher is not None:
            self.dispatcher.dispatch(run_id, stage)

    # -- running -------------------------------------------------------------------------------------------
    def run_stage(self, run_id: str, worker: str = "local") -> str:
        """Run one stage run to its end. Returns its final state (or "busy" when another worker holds it)."""
        leased = self._lease(run_id, worker)
        if leased == "deferred":
            self._defer(run_id)
        if isinstance(leased, str):
            return leased
        stage, job_id, video_id, reuse = leased
        if reuse:  # same content, same settings, outputs already stored: nothing to compute
            next_run = self._commit(run_id, job_id, video_id, stage, worker, None)
            if next_run is not None:
                self._dispatch(next_run, NEXT_STAGE[stage] or "")
            return "skipped"
        progress = DbProgress(self.sessions, run_id, job_id, stage, worker, self.settings.jobs.lease_s)
        try:
            outputs = self._work(stage, job_id, video_id, progress)
        except JobCancelled:
            self._finish_cancelled(run_id, job_id)
            return "cancelled"
        except (InputError, BlobMissing) as exc:  # the same input fails the same way again: no retries
            self._fail(run_id, job_id, exc.type, exc.message)
            return "failed"
        except VLMUnavailable as exc:
            return self._retry_or_fail(run_id, job_id, exc.type, exc.message)
        except Exception as exc:  # a bug or an environment problem: retried a few times, then reported
            log.exception("stage %s of job %s failed", stage, job_id)
            return self._retry_or_fail(run_id, job_id, "internal-error", f"{type(exc).__name__}: {exc}")
        next_run = self._commit(run_id, job_id, video_id, stage, worker, outputs)
        if next_run is not None:
            self._dispatch(next_run, NEXT_STAGE[stage] or "")
        if stage == "index":
            self.sync_index()
        return "done"

    def sync_index(self) -> None:
        """Bring the vector index up to the database. A failure here loses nothing (the vectors are in the
        database; the next sync or `videopipe index rebuild` adds them), so it is logged, not raised."""
        from videopipe.index import vector_index

        try:
            vector_index(self.settings, self.sessions).sync()
        except Exception:
            log.warning("the vector index could not be updated; `videopipe index rebuild` will", exc_info=True)

    def _lease(self, run_id: str, worker: str) -> tuple[str, str, str, bool] | str:
        now = utcnow()
        with self.sessions.begin() as s:
            run = s.scalars(select(StageRun).where(StageRun.id == run_id).with_for_update()).first()
            if run is None:
                return "missing"
            job = s.get(Job, run.job_id)
            if run.state in ("done", "failed", "cancelled", "skipped"):
                return run.state
            if job is None or job.status in ("cancelled", "failed") or job.cancel_requested:
                run.state = "cancelled"
                if job is not None and job.status != "failed":
                    job.status, job.finished_at = "cancelled", now
                return "cancelled"
            if run.state == "running" and run.lease_until is not None and aware(run.lease_until) > now:
                return "busy"
            if self._tenant_at_cap(s, job.tenant, run.id, now):
                return "deferred"
            video = s.get(Video, run.video_id)
            assert video is not None
            run.inputs_hash = hashlib.sha256(
                f"{video.content_hash}:{job.settings_hash}:{run.stage}".encode()
            ).hexdigest()
            run.state, run.worker, run.started_at = "running", worker, now
            run.lease_until = now + timedelta(seconds=self.settings.jobs.lease_s)
            job.status, job.stage, video.status = "running", run.stage, "running"
            if not (job.options or {}).get("force") and self._outputs_current(s, run):
                return run.stage, job.id, run.video_id, True
            run.attempts += 1
            return run.stage, job.id, run.video_id, False

    def _tenant_at_cap(self, s: Session, tenant: str, run_id: str, now: datetime) -> bool:
        """Whether `tenant` already runs `jobs.max_running_per_tenant` stages (live leases) on any worker."""
        cap = self.settings.jobs.max_running_per_tenant
        if not cap:
            return False
        if s.get_bind().dialect.name == "postgresql":  # one tenant's leases are counted one worker at a time
            s.execute(text("SELECT pg_advisory_xact_lock(hashtext(:t))"), {"t": f"videopipe-tenant:{tenant}"})
        leases = s.scalars(
            select(StageRun.lease_until)
            .join(Job, Job.id == StageRun.job_id)
            .where(Job.tenant == tenant, StageRun.state == "running", StageRun.id != run_id)
        ).all()
        return sum(1 for until in leases if until is not None and aware(until) > now) >= cap

    def _defer(self, run_id: str) -> None:
        """Send a run whose tenant is at its cap again a little later (the reconciler would, much later)."""
        with self.sessions.begin() as s:
            run = s.get(StageRun, run_id)
            stage = run.stage if run is not None else None
            if run is not None:  # sent (again) just now: the reconciler must not add copies while it waits
                run.dispatched_at = utcnow()
        later = getattr(self.dispatcher, "dispatch_later", None)
        if stage is not None and later is not None:
            later(run_id, stage, self.settings.jobs.defer_s)

    @staticmethod
    def _outputs_current(s: Session, run: StageRun) -> bool:
        """Whether the video's stored outputs for this stage came from the same inputs (content and settings):
        the latest finished run of the stage for this video decides what is in the tables."""
        latest = s.scalars(
            select(StageRun)
            .where(StageRun.video_id == run.video_id, StageRun.stage == run.stage, StageRun.id != run.id,
                   StageRun.state.in_(("done", "skipped")))
            .order_by(StageRun.finished_at.desc())
            .limit(1)
        ).first()  # fmt: skip
        return latest is not None and latest.inputs_hash == run.inputs_hash

    def _work(self, stage: str, job_id: str, video_id: str, progress: DbProgress) -> dict[str, Any]:
        with self.sessions() as s:
            video = s.get(Video, video_id)
            job = s.get(Job, job_id)
            assert video is not None and job is not None
            options = dict(job.options or {})
        if stage == "perceive":
            return self._perceive(video, options, progress)
        if stage == "understand":
            return self._understand(video, options, progress)
        return self._index(video)

    def _perceive(self, video: Video, options: dict[str, Any], progress: DbProgress) -> dict[str, Any]:
        opts = analysis.AnalyzeOptions.for_profile(
            options.get("profile", "general"), no_asr=not options.get("asr", True),
            no_ocr=not options.get("ocr", True), no_motion=not options.get("motion", True), vlm="none",
        )  # fmt: skip
        workdir = Path(tempfile.mkdtemp(prefix="vp-perceive-"))
        try:
            with self.original(video.blob_key) as original:
                doc = analysis.analyze(original, workdir / "out", self.settings, opts, progress=progress)
            keyframe_keys = []
            for n, k in enumerate(doc["keyframes"]):
                key = f"keyframes/{video.id}/{n:05d}.jpg"
                self.store.put_file(key, workdir / "out" / k["image"])
                keyframe_keys.append(key)
        finally:
            shutil.rmtree(workdir, ignore_errors=True)
        doc["video"]["path"] = video.filename
        return {"doc": doc, "keyframe_keys": keyframe_keys}

    def _understand(self, video: Video, options: dict[str, Any], progress: DbProgress) -> dict[str, Any]:
        from videopipe.understanding import understand
        from videopipe.vlm import select_backend

        doc = self.document(video.id)
        choice = select_backend(self.settings, options.get("vlm"))
        workdir = Path(tempfile.mkdtemp(prefix="vp-understand-"))
        try:
            for k in doc["keyframes"]:
                target = workdir / k["image"]
                target.parent.mkdir(parents=True, exist_ok=True)
                with self.store.open(k["blob_key"]) as src, target.open("wb") as out:
                    shutil.copyfileobj(src, out)
            result = understand(doc, workdir, choice, self.settings, progress)
        finally:
            shutil.rmtree(workdir, ignore_errors=True)
        if result.vlm.get("error_type") == "vlm-unavailable" and choice.name != "none":
            raise VLMUnavailable(str(result.vlm.get("error")))
        return {"result": result}

    def _index(self, video: Video) -> dict[str, Any]:
        """Moments from the stored results, and their embeddings (recorded with the model's name)."""
        from videopipe.embeddings import open_embedder
        from videopipe.moments import build_moments, moment_text

        moments = build_moments(self.document(video.id), self.settings.search.moment_window_s)
        embedder = open_embedder(self.settings)
        vectors = embedder.embed([moment_text(m) for m in moments]) if moments else None
        return {"moments": moments, "vectors": vectors, "model": embedder.name}

    # -- committing ----------------------------------------------------------------------------------------
    def _commit(
        self, run_id: str, job_id: str, video_id: str, stage: str, worker: str, outputs: dict[str, Any] | None
    ) -> str | None:
        """Write `outputs` (None: reuse what is stored) and finish the run, if this worker still holds it."""
        now = utcnow()
        with self.sessions.begin() as s:
            run = s.scalars(select(StageRun).where(StageRun.id == run_id).with_for_update()).first()
            if run is None or run.state != "running" or run.worker != worker:
                log.warning(
                    "stage run %s was taken over while %s worked on it; its results are dropped", run_id, worker
                )
                return None
            job = s.get(Job, job_id)
            video = s.get(Video, video_id)
            assert job is not None and video is not None
            if job.cancel_requested:
                run.state, job.status, job.finished_at = "cancelled", "cancelled", now
                video.status = "cancelled"
                return None
            if outputs is not None:
                _STORE[stage](s, video, outputs)
            run.state = "done" if outputs is not None else "skipped"
            run.progress, run.finished_at, run.error = 1.0, now, None
            nxt = NEXT_STAGE[stage]
            if nxt is None:
                job.status, job.stage, job.progress, job.finished_at = "ready", None, 1.0, now
                video.status = "ready"
                return None
            next_run = StageRun(job_id=job.id, video_id=video.id, stage=nxt, state="pending")
            s.add(next_run)
            s.flush()
            job.stage, job.progress = nxt, _BEFORE[nxt]
            return next_run.id

    def _fail(self, run_id: str, job_id: str, error_type: str, message: str) -> None:
        now = utcnow()
        with self.sessions.begin() as s:
            run, job = s.get(StageRun, run_id), s.get(Job, job_id)
            if run is not None:
                run.state, run.error, run.finished_at = "failed", message, now
            if job is not None:
                job.status, job.error_type, job.error, job.finished_at = "failed", error_type, message, now
                video = s.get(Video, job.video_id)
                if video is not None:
                    video.status, video.error_type, video.error = "failed", error_type, message

    def _retry_or_fail(self, run_id: str, job_id: str, error_type: str, message: str) -> str:
        with self.sessions.begin() as s:
            run = s.get(StageRun, run_id)
            if run is None:
                return "missing"
            if run.attempts < self.settings.jobs.max_attempts:
                run.state, run.error, run.lease_until, run.worker = "pending", message, None, None
                retry = True
            else:
                retry = False
        if retry:
            raise TransientError(message)
        self._fail(run_id, job_id, error_type, message)
        return "failed"

    def _finish_cancelled(self, run_id: str, job_id: str) -> None:
        now = utcnow()
        with self.sessions.begin() as s:
            run, job = s.get(StageRun, run_id), s.get(Job, job_id)
            if run is not None:
                run.state, run.finished_at = "cancelled", now
            if job is not None:
                job.status, job.finished_at = "cancelled", now
                video = s.get(Video, job.video_id)
                if video is not None:
                    video.status = "cancelled"

    # -- control -------------------------------------------------------------------------------------------
    def cancel(self, job_id: str) -> dict[str, Any]:
        with self.sessions.begin() as s:
            job = s.get(Job, job_id)
            if job is None:
                raise JobNotFound(f"no job {job_id}; check the id (videopipe status lists it)")
            if job.status in ("queued", "running"):
                job.cancel_requested = True
                running = s.scalars(select(StageRun).where(StageRun.job_id == job.id, StageRun.state == "running"))
                if running.first() is None:  # nothing in flight to notice it: cancelled now
                    job.status, job.finished_at = "cancelled", utcnow()
                    for run in s.scalars(
                        select(StageRun).where(StageRun.job_id == job.id, StageRun.state == "pending")
                    ):
                        run.state = "cancelled"
        return self.status(job_id)

    def status(self, job_id: str) -> dict[str, Any]:
        with self.sessions() as s:
            job = s.get(Job, job_id)
            if job is None:
                raise JobNotFound(f"no job {job_id}; check the id")
            runs = s.scalars(select(StageRun).where(StageRun.job_id == job_id)).all()
            order = {name: n for n, name in enumerate(STAGES)}
            return {
                "job_id": job.id, "video_id": job.video_id, "tenant": job.tenant, "status": job.status,
                "stage": job.stage, "progress": round(job.progress, 3), "error_type": job.error_type,
                "error": job.error, "cancel_requested": job.cancel_requested,
                "stages": [{"stage": r.stage, "state": r.state, "attempts": r.attempts,
                            "progress": round(r.progress, 3)} for r in sorted(runs, key=lambda r: order[r.stage])],
            }  # fmt: skip

    def reconcile(self) -> list[str]:
        """Send again the stage runs that nobody is working on: leases that expired (a killed worker) and
        pending runs whose message seems lost (a broker restart). Duplicates are harmless (see `_lease`)."""
        now = utcnow()
        stale = now - timedelta(seconds=self.settings.jobs.redispatch_after_s)
        with self.sessions() as s:
            rows = s.scalars(select(StageRun).where(StageRun.state.in_(("pending", "running")))).all()
            todo = []
            for run in rows:
                job = s.get(Job, run.job_id)
                if job is None or job.status not in ("queued", "running"):
                    continue
                lease_expired = run.state == "running" and run.lease_until and aware(run.lease_until) < now
                message_lost = run.state == "pending" and (not run.dispatched_at or aware(run.dispatched_at) < stale)
                if lease_expired or message_lost:
                    todo.append((run.id, run.stage))
        for run_id, stage in todo:
            log.warning("re-dispatching stage run %s (%s)", run_id, stage)
            self._dispatch(run_id, stage)
        return [r for r, _ in todo]

    def reconcile_if_elected(self) -> list[str] | None:
        """`reconcile`, by one process at a time: every worker runs this on a timer, and on PostgreSQL an advisory
        lock elects the one that does the round (the others get None). Elsewhere (SQLite: one machine) every
        caller reconciles; that is harmless, since dispatching a run twice is."""
        with self.sessions() as s:
            if s.get_bind().dialect.name == "postgresql":
                elected = s.scalar(text("SELECT pg_try_advisory_xact_lock(hashtext('videopipe-reconciler'))"))
                if not elected:
                    return None
            return self.reconcile()  # the lock lasts as long as this session's transaction

    @contextmanager
    def original(self, blob_key: str) -> Iterator[Path]:
        """A local path of a video's original: from the blob store, or the user's own file for videos of the
        local library (``external:`` keys, which `videopipe analyze` records instead of copying the file)."""
        if blob_key.startswith("external:"):
            path = Path(blob_key.removeprefix("external:"))
            if not path.is_file():
                raise VideoNotFound(f"{path}: the original is no longer there; analyse the file at its new place")
            yield path
            return
        with self.store.local_path(blob_key) as path:
            yield path

    def import_document(
        self,
        path: Path,
        doc: dict[str, Any],
        out_dir: Path,
        tenant: str = "default",
        options: dict[str, Any] | None = None,
    ) -> str:
        """Add a video analysed in-process (`videopipe analyze`) to the library: its results, keyframes, moments
        and their vectors, so `search` and `ask` find it. The original stays where it is (not copied).
        Returns the video id; the same file analysed again replaces its earlier results."""
        from types import SimpleNamespace

        from videopipe.embeddings import open_embedder
        from videopipe.moments import build_moments, moment_text

        path = path.resolve()
        content_hash = sha256_file(path)
        moments = build_moments(doc, self.settings.search.moment_window_s)
        embedder = open_embedder(self.settings)
        vectors = embedder.embed([moment_text(m) for m in moments]) if moments else None
        options = dict(options or {})
        with self.sessions.begin() as s:
            video = s.scalars(select(Video).where(Video.tenant == tenant, Video.content_hash == content_hash)).first()
            if video is None:
                video = Video(tenant=tenant, content_hash=content_hash, filename=path.name,
                              blob_key=f"external:{path}", size_bytes=path.stat().st_size)  # fmt: skip
                s.add(video)
                s.flush()
            video_id = video.id
        keys = []
        for n, k in enumerate(doc["keyframes"]):
            keys.append(f"keyframes/{video_id}/{n:05d}.jpg")
            self.store.put_file(keys[-1], out_dir / k["image"])
        now = utcnow()
        with self.sessions.begin() as s:
            video = s.get(Video, video_id)
            assert video is not None
            if not video.blob_key.startswith("external:") or video.filename != path.name:
                video.blob_key, video.filename = f"external:{path}", path.name
            _store_perceive(s, video, {"doc": doc, "keyframe_keys": keys})
            captions = {sc["index"]: sc["caption"] for sc in doc["scenes"] if sc.get("caption")}
            result = SimpleNamespace(chapters=doc["chapters"], events=doc["events"], tags=doc.get("tags", []),
                                     captions=captions)  # fmt: skip
            _store_understand(s, video, {"result": result})
            _store_index(s, video, {"moments": moments, "vectors": vectors, "model": embedder.name})
            s.add(Job(video_id=video.id, tenant=tenant, status="ready", stage=None, progress=1.0,
                      settings_hash=settings_hash(self.settings, options), options={**options, "source": "analyze"},
                      finished_at=now))  # fmt: skip
            video.status, video.error, video.error_type = "ready", None, None
        self.sync_index()
        return video_id

    # -- reading -------------------------------------------------------------------------------------------
    def document(self, video_id: str) -> dict[str, Any]:
        """The analysis document (schema 1) of a video, from the database."""
        with self.sessions() as s:
            video = s.get(Video, video_id)
            if video is None:
                raise JobNotFound(f"no video {video_id}")

            def rows(model: Any, order: Any) -> list[Any]:
                return list(s.scalars(select(model).where(model.video_id == video_id).order_by(order)))

            scenes = rows(Scene, Scene.index)
            return {
                "schema": analysis.SCHEMA_VERSION,
                "video": {"path": video.filename, "duration_s": video.duration_s or 0.0, "fps": video.fps,
                          "width": video.width, "height": video.height, "vfr": video.vfr, "has_audio": video.has_audio},
                "scenes": [{"index": r.index, "start_s": r.start_s, "end_s": r.end_s, "caption": r.caption}
                           for r in scenes],
                "keyframes": [{"index": r.index, "t_s": r.t_s, "scene_index": r.scene_index, "score": r.score,
                               "image": f"keyframes/{r.index:05d}.jpg", "blob_key": r.blob_key}
                              for r in rows(Keyframe, Keyframe.index)],
                "transcript": [{"start_s": r.start_s, "end_s": r.end_s, "text": r.text, "words": r.words}
                               for r in rows(TranscriptSegment, TranscriptSegment.start_s)],
                "ocr": [{"t_s": r.t_s, "scene_index": r.scene_index, "text": r.text, "confidence": r.confidence}
                        for r in rows(OcrLine, OcrLine.t_s)],
                "chapters": [{"start_s": r.start_s, "end_s": r.end_s, "title": r.title, "summary": r.summary,
                              "source": r.source} for r in rows(Chapter, Chapter.start_s)],
                "events": [{"start_s": r.start_s, "end_s": r.end_s, "label": r.label, "description": r.description,
                            "bbox": r.bbox, "source": r.source} for r in rows(Event, Event.start_s)],
                "tags": [r.tag for r in rows(Tag, Tag.id)],
            }  # fmt: skip


class JobNotFound(NotFound):
    """No such job or video."""


def aware(dt: datetime) -> datetime:
    """SQLite hands back naive datetimes for timezone-aware columns; they were written in UTC."""
    return dt if dt.tzinfo is not None else dt.replace(tzinfo=UTC)


# -- how each stage's outputs are written (old outputs of the same stage replaced) ---------------------------
def _store_perceive(s: Session, video: Video, out: dict[str, Any]) -> None:
    doc = out["doc"]
    for model in (Scene, Keyframe, TranscriptSegment, OcrLine):
        s.execute(delete(model).where(model.video_id == video.id))
    s.execute(delete(Event).where(Event.video_id == video.id, Event.source == "motion"))
    v = doc["video"]
    video.duration_s, video.width, video.height = v["duration_s"], v["width"], v["height"]
    video.fps, video.vfr, video.has_audio = v["fps"], v["vfr"], v["has_audio"]
    s.add_all(Scene(video_id=video.id, index=sc["index"], start_s=sc["start_s"], end_s=sc["end_s"])
              for sc in doc["scenes"])  # fmt: skip
    s.add_all(Keyframe(video_id=video.id, index=n, t_s=k["t_s"], scene_index=k["scene_index"], score=k["score"],
                       blob_key=key) for n, (k, key) in enumerate(zip(doc["keyframes"], out["keyframe_keys"],
                                                                         strict=True)))  # fmt: skip
    s.add_all(TranscriptSegment(video_id=video.id, start_s=t["start_s"], end_s=t["end_s"], text=t["text"],
                                words=t.get("words", [])) for t in doc["transcript"])  # fmt: skip
    s.add_all(OcrLine(video_id=video.id, t_s=o["t_s"], scene_index=o.get("scene_index"), text=o["text"],
                      confidence=o["confidence"]) for o in doc["ocr"])  # fmt: skip
    s.add_all(Event(video_id=video.id, start_s=e["start_s"], end_s=e["end_s"], label=e["label"],
                    description=e.get("description", ""), bbox=e.get("bbox"), source="motion")
              for e in doc["events"] if e.get("source") == "motion")  # fmt: skip


def _store_understand(s: Session, video: Video, out: dict[str, Any]) -> None:
    result = out["result"]
    s.execute(delete(Chapter).where(Chapter.video_id == video.id))
    s.execute(delete(Tag).where(Tag.video_id == video.id))
    s.execute(delete(Event).where(Event.video_id == video.id, Event.source != "motion"))
    s.add_all(Chapter(video_id=video.id, start_s=c["start_s"], end_s=c["end_s"], title=c["title"],
                      summary=c.get("summary", ""), source=c["source"]) for c in result.chapters)  # fmt: skip
    s.add_all(Event(video_id=video.id, start_s=e["start_s"], end_s=e["end_s"], label=e["label"],
                    description=e.get("description", ""), bbox=e.get("bbox"), source=e.get("source", "vlm"))
              for e in result.events if e.get("source") != "motion")  # fmt: skip
    s.add_all(Tag(video_id=video.id, tag=t, source="vlm") for t in dict.fromkeys(result.tags))
    for scene in s.scalars(select(Scene).where(Scene.video_id == video.id)):
        scene.caption = result.captions.get(scene.index)


def _store_index(s: Session, video: Video, out: dict[str, Any]) -> None:
    s.execute(delete(Moment).where(Moment.video_id == video.id))  # their vectors go with them (cascade)
    rows = [Moment(video_id=video.id, tenant=video.tenant, **m) for m in out["moments"]]
    s.add_all(rows)
    s.flush()
    vectors = out.get("vectors")
    if vectors is not None:
        from videopipe.index import vector_rows

        s.add_all(vector_rows([row.id for row in rows], vectors, out["model"]))


_STORE: dict[str, Callable[[Session, Video, dict[str, Any]], None]] = {
    "perceive": _store_perceive,
    "understand": _store_understand,
    "index": _store_index,
}


def open_pipeline(settings: Settings, dispatcher: Dispatcher | None = None, migrate: bool = False) -> Pipeline:
    """A pipeline on the configured database and blob store. `migrate`: bring the schema to head first (the
    embedded SQLite default does this itself; shared databases are migrated with `videopipe db upgrade`)."""
    from sqlalchemy import inspect

    from videopipe.db import database_url, make_engine, make_session_factory
    from videopipe.db.migrate import upgrade
    from videopipe.errors import ConfigError
    from videopipe.storage import open_store

    url = database_url(settings)
    if migrate:
        upgrade(url)
    engine = make_engine(url)
    if "jobs" not in inspect(engine).get_table_names():
        raise ConfigError("the database has no videopipe tables yet: run `videopipe db upgrade`")
    return Pipeline(make_session_factory(engine), open_store(settings), settings, dispatcher)


class EmbeddedRunner:
    """The dispatcher for a single process with no broker: `concurrency` threads running the same stages, fair
    between tenants. A free thread takes the oldest stage of the tenant with the fewest stages running (then the
    one served longest ago), and never one of a tenant already running `per_tenant` stages (0: no cap): one
    tenant's long job, or a thousand of them, never holds another tenant's short one behind it."""

    def __init__(self, pipeline_factory: Callable[[], Pipeline], concurrency: int = 1, per_tenant: int = 0) -> None:
        self._factory = pipeline_factory
        self.per_tenant = per_tenant
        self._cond = threading.Condition()
        self._queue: list[tuple[str, str]] = []  # (stage run id, tenant), oldest first
        self._running: dict[str, int] = {}  # tenant -> stages running now
        self._served: dict[str, int] = {}  # tenant -> when its last stage started (a counter)
        self._starts = 0
        self._busy = 0  # queued + running, for wait()
        self._errors: list[BaseException] = []
        self._closed = False
        self._threads = [
            threading.Thread(target=self._loop, name=f"vp-stage-{n}", daemon=True) for n in range(concurrency)
        ]
        for thread in self._threads:
            thread.start()

    def dispatch(self, stage_run_id: str, stage: str) -> None:
        tenant = self._tenant_of(stage_run_id)
        with self._cond:
            if self._closed:
                return
            if any(run_id == stage_run_id for run_id, _ in self._queue):
                return  # the reconciler sends a run again while it waits its turn here
            self._queue.append((stage_run_id, tenant))
            self._busy += 1
            self._cond.notify()

    def dispatch_later(self, stage_run_id: str, stage: str, delay_s: float) -> None:
        with self._cond:
            if self._closed:
                return
            self._busy += 1  # wait() waits for it too

        def again() -> None:
            try:
                if not self._closed:
                    self.dispatch(stage_run_id, stage)
            finally:
                with self._cond:
                    self._busy -= 1
                    self._cond.notify_all()

        timer = threading.Timer(delay_s, again)
        timer.daemon = True
        timer.start()

    def _tenant_of(self, stage_run_id: str) -> str:
        with self._factory().sessions() as s:
            tenant = s.scalar(
                select(Job.tenant).join(StageRun, StageRun.job_id == Job.id).where(StageRun.id == stage_run_id)
            )
        return tenant or ""

    def _pick(self) -> tuple[str, str] | None:
        best: tuple[int, int, int] | None = None
        chosen = None
        for position, (_, tenant) in enumerate(self._queue):
            running = self._running.get(tenant, 0)
            if self.per_tenant and running >= self.per_tenant:
                continue
            rank = (running, self._served.get(tenant, -1), position)
            if best is None or rank < best:
                best, chosen = rank, position
        return self._queue.pop(chosen) if chosen is not None else None

    def _loop(self) -> None:
        while True:
            with self._cond:
                while (item := self._pick()) is None:
                    if self._closed:
                        return
                    self._cond.wait()
                run_id, tenant = item
                self._running[tenant] = self._running.get(tenant, 0) + 1
                self._starts += 1
                self._served[tenant] = self._starts
            try:
                self._run(run_id)
            except BaseException as exc:  # kept for wait(): a stage bug must not end the thread silently
                with self._cond:
                    self._errors.append(exc)
            finally:
                with self._cond:
                    self._running[tenant] -= 1
                    self._busy -= 1
                    self._cond.notify_all()

    def _run(self, stage_run_id: str) -> str:
        try:
            return self._factory().run_stage(stage_run_id, worker=f"embedded-{threading.get_ident()}")
        except TransientError as exc:
            log.warning("stage run %s will be retried by the reconciler: %s", stage_run_id, exc.message)
            return "pending"

    def wait(self) -> None:
        """Block until every dispatched stage (and the stages they dispatched) has finished."""
        with self._cond:
            while self._busy and not self._errors:
                self._cond.wait()
            if self._errors:
                raise self._errors.pop(0)

    def shutdown(self) -> None:
        """Stop taking stages; wait (up to 10 minutes in all) for those running. Queued ones stay pending in the
        database: the reconciler of the next process sends them again."""
        with self._cond:
            self._closed = True
            self._busy -= len(self._queue)
            self._queue.clear()
            self._cond.notify_all()
        deadline = time.monotonic() + 600
        for thread in self._threads:
            thread.join(timeout=max(0.0, deadline - time.monotonic()))
