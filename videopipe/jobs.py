"""The job engine: runs the stages of `videopipe.stages` (``perceive`` (cpu) -> ``understand`` (gpu) -> ``index``)
one at a time, for the Celery workers and the embedded runner alike.

The database holds all job state (queries in `videopipe.db.repos.jobs`); a queue message only says "run stage
run X". Every stage:

1. **leases** its row in a short transaction (state ``running``, ``lease_until``, attempts + 1); a run that is
   already done, or leased by a live worker, is left alone, so duplicate deliveries are harmless;
2. **works** outside any transaction, reporting progress through `DbProgress`, which renews the lease and
   raises `JobCancelled` when the job was cancelled;
3. **commits** its outputs in one transaction (replacing any earlier outputs of the same stage for the video,
   so a stage redone after a crash never duplicates rows), marks itself done and creates the next stage run,
   but only if it still holds the lease;
4. **dispatches** the next stage after the commit.

A stage whose outputs already exist for the same inputs (content hash + settings) is not run again. One retry
budget, `jobs.max_attempts`, counted in the database: a failed attempt (a model server away, a bug) is sent
again by the engine after a backoff, a worker killed mid-stage loses that stage only (its lease expires and the
reconciler sends it again, which the next lease counts as an attempt). Bad input fails the job with its clear
message and is never retried. The dispatcher is an interface (`videopipe.dispatch`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from videopipe import stages
from videopipe.config import Settings
from videopipe.db.models import Video
from videopipe.db.repos import jobs as repo
from videopipe.db.repos import results, videos
from videopipe.dispatch import Dispatcher
from videopipe.errors import BlobMissing, EmptyFile, InputError, VideoNotFound, VLMUnavailable
from videopipe.options import AnalyzeOptions, check_job_options
from videopipe.schema import SCHEMA_VERSION
from videopipe.storage import BlobStore, sha256_file
from videopipe.understanding import UnderstandingResult

log = logging.getLogger(__name__)

RETRY_BACKOFF_MAX_S = 120.0


class JobCancelled(Exception):
    """Raised inside a running stage when its job was cancelled."""


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
        include={"analysis", "scenes", "slides", "keyframes", "perception", "motion", "understanding", "vlm",
                 "vlm_model"},
    )
    blob = json.dumps({"settings": relevant, "options": options, "schema": SCHEMA_VERSION}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()


class DbProgress:
    """`videopipe.progress.Progress` that writes to the stage run and its job (at most once a second),
    renews the lease, and raises `JobCancelled` once the job is cancelled."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        run_id: str,
        job_id: str,
        worker: str,
        lease_s: float,
        interval_s: float = 1.0,
    ) -> None:
        self.sessions, self.run_id, self.job_id = sessions, run_id, job_id
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
            if not repo.report_progress(s, self.run_id, self.job_id, self.worker, within, self.lease_s):
                raise JobCancelled("cancelled")


class JobEngine:
    """Submits videos as jobs and runs their stages; built by `videopipe.services`."""

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
        tenant: str,
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
        options = check_job_options({k: v for k, v in (options or {}).items() if k != "force"})
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
        with self.sessions.begin() as s:
            job_id, video_id, run_id, new_video = repo.enqueue(
                s, tenant, content_hash=content_hash, filename=name, blob_key=key, size_bytes=size,
                media_type=media_type, settings_hash=settings_hash(self.settings, options), options=options,
                force=force,
            )  # fmt: skip
        if run_id is not None:
            self._dispatch(run_id, "perceive")
        return Submitted(job_id, video_id, created=run_id is not None, new_video=new_video)

    def _dispatch(self, run_id: str, stage: str, delay_s: float = 0.0) -> None:
        with self.sessions.begin() as s:
            repo.mark_dispatched(s, run_id)
        if self.dispatcher is None:
            return
        if delay_s > 0:
            self.dispatcher.dispatch_later(run_id, stage, delay_s)
        else:
            self.dispatcher.dispatch(run_id, stage)

    # -- running -------------------------------------------------------------------------------------------
    def run_stage(self, run_id: str, worker: str = "local") -> str:
        """Run one stage run to its end. Returns what became of it: its final state, "retrying", "deferred" (its
        tenant at its cap: sent again shortly) or "busy" (another worker holds it)."""
        with self.sessions.begin() as s:
            jobs = self.settings.jobs
            leased = repo.lease(s, run_id, worker, jobs.lease_s, jobs.max_running_per_tenant, jobs.max_attempts)
        if leased == "deferred":  # sent again shortly (the reconciler would, much later), to the back of the queue
            with self.sessions.begin() as s:
                stage = repo.mark_dispatched(s, run_id)
            if stage is not None and self.dispatcher is not None:
                self.dispatcher.dispatch_later(run_id, stage, self.settings.jobs.defer_s)
        if isinstance(leased, str):
            return leased
        if leased.reuse:  # same content, same settings, outputs already stored: nothing to compute
            self._commit(run_id, worker, None)
            return "skipped"
        progress = DbProgress(self.sessions, run_id, leased.job_id, worker, self.settings.jobs.lease_s)
        try:
            outputs = self._work(leased, progress)
        except JobCancelled:
            with self.sessions.begin() as s:
                repo.cancelled(s, run_id, worker)
            return "cancelled"
        except (InputError, BlobMissing) as exc:  # the same input fails the same way again: no retries
            self._fail(run_id, worker, exc.type, exc.message)
            return "failed"
        except VLMUnavailable as exc:
            return self._retry_or_fail(run_id, worker, leased.stage, exc.type, exc.message)
        except Exception as exc:  # a bug or an environment problem: retried a few times, then reported
            log.exception("stage %s of job %s failed", leased.stage, leased.job_id)
            return self._retry_or_fail(run_id, worker, leased.stage, "internal-error", f"{type(exc).__name__}: {exc}")
        self._commit(run_id, worker, outputs)
        if leased.stage == "index":
            self.sync_index()
        return "done"

    def _work(self, leased: repo.Leased, progress: DbProgress) -> Any:
        with self.sessions() as s:
            video = videos.get_video(s, leased.tenant, leased.video_id)
            s.expunge(video)
        if leased.stage == "perceive":
            return self._perceive(video, leased.options, progress)
        if leased.stage == "understand":
            return self._understand(video, leased.options, progress)
        return self._index(video)

    def _perceive(
        self, video: Video, options: dict[str, Any], progress: DbProgress
    ) -> tuple[dict[str, Any], list[str]]:
        opts = AnalyzeOptions.for_profile(
            options.get("profile", "general"), no_asr=not options.get("asr", True),
            no_ocr=not options.get("ocr", True), no_motion=not options.get("motion", True),
            no_slides=not options.get("slides", True),
        )  # fmt: skip
        workdir = Path(tempfile.mkdtemp(prefix="vp-perceive-"))
        try:
            with self.original(video.blob_key) as original:
                perception = stages.perceive(original, workdir, self.settings, opts, progress)
            keys = []
            for n, k in enumerate(perception.doc["keyframes"]):
                keys.append(f"keyframes/{video.id}/{n:05d}.jpg")
                self.store.put_file(keys[-1], workdir / k["image"])
        finally:
            shutil.rmtree(workdir, ignore_errors=True)
        perception.doc["video"]["path"] = video.filename
        return perception.doc, keys

    def _understand(self, video: Video, options: dict[str, Any], progress: DbProgress) -> UnderstandingResult:
        from videopipe.vlm import select_backend

        with self.sessions() as s:
            doc = results.document(s, video.tenant, video.id)
        choice = select_backend(self.settings, options.get("vlm"))
        workdir = Path(tempfile.mkdtemp(prefix="vp-understand-"))
        try:
            for k in doc["keyframes"]:
                target = workdir / k["image"]
                target.parent.mkdir(parents=True, exist_ok=True)
                with self.store.open(k["blob_key"]) as src, target.open("wb") as out:
                    shutil.copyfileobj(src, out)
            return stages.understand(stages.Perception(doc, workdir), choice, self.settings, progress,
                                     fallback=False)  # fmt: skip
        finally:
            shutil.rmtree(workdir, ignore_errors=True)

    def _index(self, video: Video) -> stages.Indexed:
        with self.sessions() as s:
            doc = results.document(s, video.tenant, video.id)
        return stages.index(doc, self.settings)

    def _commit(self, run_id: str, worker: str, outputs: Any) -> None:
        """Write `outputs` (None: reuse what is stored) and finish the run, if this worker still holds it; then
        dispatch the next stage."""
        with self.sessions.begin() as s:
            held = repo.held(s, run_id, worker)
            if held is None:
                log.warning(
                    "stage run %s was taken over while %s worked on it; its results are dropped", run_id, worker
                )
                return
            run, job, video = held
            if outputs is not None and not job.cancel_requested:
                if run.stage == "perceive":
                    results.store_perception(s, video, *outputs)
                elif run.stage == "understand":
                    results.store_understanding(s, video, outputs)
                else:
                    results.store_index(s, video, outputs)
            stage = run.stage
            next_run = repo.finish(s, run, job, video, reused=outputs is None)
        if next_run is not None:
            self._dispatch(next_run, repo.NEXT_STAGE[stage] or "")

    def _fail(self, run_id: str, worker: str, error_type: str, message: str) -> None:
        with self.sessions.begin() as s:
            repo.fail(s, run_id, worker, error_type, message)

    def _retry_or_fail(self, run_id: str, worker: str, stage: str, error_type: str, message: str) -> str:
        """Another attempt after a backoff, while `jobs.max_attempts` allows; else the job fails."""
        with self.sessions.begin() as s:
            attempts = repo.release_for_retry(s, run_id, worker, self.settings.jobs.max_attempts, message)
        if attempts == "lost":  # taken over meanwhile: the run is someone else's now
            return "busy"
        if attempts == "exhausted":
            self._fail(run_id, worker, error_type, message)
            return "failed"
        assert isinstance(attempts, int)
        delay = min(RETRY_BACKOFF_MAX_S, self.settings.jobs.defer_s * 2 ** (attempts - 1))
        log.warning("stage run %s (%s) will be tried again in %.0f s: %s", run_id, stage, delay, message)
        if self.dispatcher is not None:
            self.dispatcher.dispatch_later(run_id, stage, delay)
        return "retrying"

    def sync_index(self) -> None:
        """Bring the vector index up to the database. A failure here loses nothing (the vectors are in the
        database; the next sync or `videopipe index rebuild` adds them), so it is logged, not raised."""
        from videopipe.index import vector_index

        try:
            vector_index(self.settings, self.sessions).sync()
        except Exception:
            log.warning("the vector index could not be updated; `videopipe index rebuild` will", exc_info=True)

    # -- control -------------------------------------------------------------------------------------------
    def cancel(self, tenant: str, job_id: str) -> dict[str, Any]:
        with self.sessions.begin() as s:
            repo.request_cancel(s, tenant, job_id)
        return self.status(tenant, job_id)

    def status(self, tenant: str, job_id: str) -> dict[str, Any]:
        with self.sessions() as s:
            return repo.status(s, tenant, job_id)

    def reconcile(self) -> list[str]:
        """Send again the stage runs that nobody is working on: leases that expired (a killed worker) and
        pending runs whose message seems lost (a broker restart). Duplicates are harmless (see `repo.lease`)."""
        with self.sessions() as s:
            todo = repo.unattended(s, self.settings.jobs.redispatch_after_s)
        for run_id, stage in todo:
            log.warning("re-dispatching stage run %s (%s)", run_id, stage)
            self._dispatch(run_id, stage)
        return [r for r, _ in todo]

    def reconcile_if_elected(self) -> list[str] | None:
        """`reconcile`, by one process at a time: every worker runs this on a timer, and on PostgreSQL an advisory
        lock elects the one that does the round (the others get None)."""
        with self.sessions() as s:
            if not repo.try_elect(s, "reconciler"):
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

    def record_analysis(
        self,
        path: Path,
        doc: dict[str, Any],
        out_dir: Path,
        tenant: str,
        options: dict[str, Any] | None = None,
    ) -> str:
        """Add a video analysed in-process (`videopipe analyze`) to the library: its results, keyframes, moments
        and their vectors, so `search` and `ask` find it. The original stays where it is (not copied).
        Returns the video id; the same file analysed again replaces its earlier results."""
        path = path.resolve()
        content_hash = sha256_file(path)
        indexed = stages.index(doc, self.settings)
        options = dict(options or {})
        with self.sessions.begin() as s:
            video_id = videos.local_video(s, tenant, content_hash, path)
        keys = []
        for n, k in enumerate(doc["keyframes"]):
            keys.append(f"keyframes/{video_id}/{n:05d}.jpg")
            self.store.put_file(keys[-1], out_dir / k["image"])
        captions = {sc["index"]: sc["caption"] for sc in doc["scenes"] if sc.get("caption")}
        understood = UnderstandingResult(
            doc["chapters"], doc["events"], captions, doc.get("tags", []), doc.get("vlm") or {}
        )
        with self.sessions.begin() as s:
            video = videos.get_video(s, tenant, video_id)
            results.store_perception(s, video, doc, keys)
            results.store_understanding(s, video, understood)
            results.store_index(s, video, indexed)
            repo.record_finished(
                s, tenant, video, settings_hash(self.settings, options), {**options, "source": "analyze"}
            )
        self.sync_index()
        return video_id
