"""Jobs and their stage runs: the queries of the job engine (`videopipe.jobs`). Job state lives here, not in
the broker: a queue message only says "run stage run X".

What a caller names from outside (a job id from the API or the command line) goes through the tenant gate:
`get_job`, `status`, `request_cancel`, `enqueue` take the tenant. Stage run ids never come from outside: they
are the engine's own (created here, carried by the queue), so the functions that lease, finish, fail or renew
a stage run take the run id and the worker that holds it, and read the tenant from the job."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select, text
from sqlalchemy.orm import Session

from videopipe.db.models import (
    FINISHED_STAGE,
    LIVE_JOB,
    Job,
    JobStatus,
    Stage,
    StageRun,
    StageState,
    Video,
    aware,
    utcnow,
)
from videopipe.errors import NotFound

# Share of a job's progress each stage accounts for, and the share done before it starts.
WEIGHTS = {"perceive": 0.6, "understand": 0.3, "index": 0.1}
BEFORE = {"perceive": 0.0, "understand": 0.6, "index": 0.9}
NEXT_STAGE: dict[str, str | None] = {"perceive": "understand", "understand": "index", "index": None}


class JobNotFound(NotFound):
    """No such job (or another tenant's)."""


@dataclass(slots=True)
class Leased:
    """A stage run this worker now holds. `reuse`: outputs for the same inputs are already stored."""

    stage: str
    job_id: str
    video_id: str
    tenant: str
    options: dict[str, Any]
    reuse: bool


def get_job(s: Session, tenant: str, job_id: str) -> Job:
    job = s.get(Job, job_id)
    if job is None or job.tenant != tenant:
        raise JobNotFound(f"no job {job_id}; check the id (the video's page or `videopipe submit` shows it)")
    return job


def enqueue(
    s: Session,
    tenant: str,
    *,
    content_hash: str,
    filename: str,
    blob_key: str,
    size_bytes: int,
    media_type: str | None,
    settings_hash: str,
    options: dict[str, Any],
    force: bool,
) -> tuple[str, str, str | None, bool]:
    """The tenant's video for these bytes (created if new) and a job with its first stage run, unless a job with
    the same settings is live (or, without `force`, ready). Returns (job id, video id, new stage run id or None
    when an existing job was found, whether the video is new)."""
    video = s.scalars(select(Video).where(Video.tenant == tenant, Video.content_hash == content_hash)).first()
    new_video = video is None
    if video is None:
        video = Video(tenant=tenant, content_hash=content_hash, filename=filename, blob_key=blob_key,
                      size_bytes=size_bytes, media_type=media_type)  # fmt: skip
        s.add(video)
        s.flush()
    elif media_type and video.media_type is None:  # a row from before media types were recorded
        video.media_type = media_type
    live = LIVE_JOB if force else (*LIVE_JOB, JobStatus.READY)
    existing = s.scalars(
        select(Job).where(Job.video_id == video.id, Job.settings_hash == settings_hash, Job.status.in_(live))
    ).first()
    if existing is not None:
        return existing.id, video.id, None, new_video
    stored_options = {**options, "force": True} if force else options
    job = Job(video_id=video.id, tenant=tenant, settings_hash=settings_hash, options=stored_options,
              stage=Stage.PERCEIVE)  # fmt: skip
    s.add(job)
    s.flush()
    run = StageRun(job_id=job.id, video_id=video.id, stage=Stage.PERCEIVE, state=StageState.PENDING)
    s.add(run)
    s.flush()
    video.status, video.error, video.error_type = JobStatus.QUEUED, None, None
    return job.id, video.id, run.id, new_video


def mark_dispatched(s: Session, run_id: str) -> str | None:
    """Record that `run_id` was (just) sent to a queue: the reconciler leaves it alone a while. Its stage."""
    run = s.get(StageRun, run_id)
    if run is None:
        return None
    run.dispatched_at = utcnow()
    return run.stage


def tenant_of_run(s: Session, run_id: str) -> str:
    tenant = s.scalar(select(Job.tenant).join(StageRun, StageRun.job_id == Job.id).where(StageRun.id == run_id))
    return tenant or ""


def lease(s: Session, run_id: str, worker: str, lease_s: float, per_tenant: int, max_attempts: int) -> Leased | str:
    """Take `run_id` for `worker` (state running, a lease, one more attempt), or say why not: its final state,
    "missing", "cancelled", "busy" (a live lease of another worker), "deferred" (its tenant at its cap) or
    "failed": its `max_attempts` were all used up by workers that died running it (a video that kills the
    decoder, or memory, would otherwise be sent again by the reconciler forever)."""
    now = utcnow()
    run = s.scalars(select(StageRun).where(StageRun.id == run_id).with_for_update()).first()
    if run is None:
        return "missing"
    job = s.get(Job, run.job_id)
    if run.state in FINISHED_STAGE:
        return str(run.state)
    if job is None or job.status in (JobStatus.CANCELLED, JobStatus.FAILED) or job.cancel_requested:
        run.state = StageState.CANCELLED
        if job is not None and job.status != JobStatus.FAILED:
            job.status, job.finished_at = JobStatus.CANCELLED, now
            _video_status(s, job.video_id, JobStatus.CANCELLED)
        return StageState.CANCELLED.value
    if run.state == StageState.RUNNING and run.lease_until is not None and aware(run.lease_until) > now:
        return "busy"
    if run.attempts >= max_attempts:  # every attempt ended with its worker gone (a caught error never gets here)
        fail(s, run.id, None, "internal-error", f"the {run.stage} stage was started {run.attempts} times and its "
             "worker died each time (killed, or out of memory?); the worker logs say why")  # fmt: skip
        return StageState.FAILED.value
    if tenant_at_cap(s, job.tenant, run.id, now, per_tenant):
        return "deferred"
    video = s.get(Video, run.video_id)
    assert video is not None
    run.inputs_hash = hashlib.sha256(f"{video.content_hash}:{job.settings_hash}:{run.stage}".encode()).hexdigest()
    run.state, run.worker, run.started_at = StageState.RUNNING, worker, now
    run.lease_until = now + timedelta(seconds=lease_s)
    job.status, job.stage, video.status = JobStatus.RUNNING, run.stage, JobStatus.RUNNING
    options = dict(job.options or {})
    if not options.get("force") and _outputs_current(s, run):
        return Leased(run.stage, job.id, run.video_id, job.tenant, options, reuse=True)
    run.attempts += 1
    return Leased(run.stage, job.id, run.video_id, job.tenant, options, reuse=False)


def tenant_at_cap(s: Session, tenant: str, run_id: str, now: datetime, cap: int) -> bool:
    """Whether `tenant` already runs `cap` stages (live leases) on any worker (0: no cap)."""
    if not cap:
        return False
    if s.get_bind().dialect.name == "postgresql":  # one tenant's leases are counted one worker at a time
        s.execute(text("SELECT pg_advisory_xact_lock(hashtext(:t))"), {"t": f"videopipe-tenant:{tenant}"})
    leases = s.scalars(
        select(StageRun.lease_until)
        .join(Job, Job.id == StageRun.job_id)
        .where(Job.tenant == tenant, StageRun.state == StageState.RUNNING, StageRun.id != run_id)
    ).all()
    return sum(1 for until in leases if until is not None and aware(until) > now) >= cap


def _outputs_current(s: Session, run: StageRun) -> bool:
    """Whether the video's stored outputs for this stage came from the same inputs (content and settings): the
    latest finished run of the stage for this video decides what is in the tables."""
    latest = s.scalars(
        select(StageRun)
        .where(StageRun.video_id == run.video_id, StageRun.stage == run.stage, StageRun.id != run.id,
               StageRun.state.in_((StageState.DONE, StageState.SKIPPED)))
        .order_by(StageRun.finished_at.desc())
        .limit(1)
    ).first()  # fmt: skip
    return latest is not None and latest.inputs_hash == run.inputs_hash


def held(s: Session, run_id: str, worker: str) -> tuple[StageRun, Job, Video] | None:
    """The run, its job and video, locked, if `worker` still holds the run (else None: it was taken over)."""
    run = s.scalars(select(StageRun).where(StageRun.id == run_id).with_for_update()).first()
    if run is None or run.state != StageState.RUNNING or run.worker != worker:
        return None
    job, video = s.get(Job, run.job_id), s.get(Video, run.video_id)
    assert job is not None and video is not None
    return run, job, video


def finish(s: Session, run: StageRun, job: Job, video: Video, reused: bool) -> str | None:
    """Mark a held run done (or skipped: outputs reused) and create the next stage's run; the job is ready after
    the last. Returns the next run's id. A job cancelled meanwhile is cancelled here instead."""
    now = utcnow()
    if job.cancel_requested:
        run.state, job.status, job.finished_at = StageState.CANCELLED, JobStatus.CANCELLED, now
        video.status = JobStatus.CANCELLED
        return None
    run.state = StageState.SKIPPED if reused else StageState.DONE
    run.progress, run.finished_at, run.error = 1.0, now, None
    nxt = NEXT_STAGE[run.stage]
    if nxt is None:
        job.status, job.stage, job.progress, job.finished_at = JobStatus.READY, None, 1.0, now
        video.status = JobStatus.READY
        return None
    next_run = StageRun(job_id=job.id, video_id=video.id, stage=nxt, state=StageState.PENDING)
    s.add(next_run)
    s.flush()
    job.stage, job.progress = nxt, BEFORE[nxt]
    return next_run.id


def _holds(run: StageRun | None, worker: str | None) -> bool:
    """Whether `worker` still holds `run` (None: whoever does: the engine itself, inside a lease)."""
    return run is not None and (worker is None or (run.state == StageState.RUNNING and run.worker == worker))


def _video_status(s: Session, video_id: str, status: JobStatus) -> None:
    video = s.get(Video, video_id)
    if video is not None:
        video.status = status


def fail(s: Session, run_id: str, worker: str | None, error_type: str, message: str) -> None:
    """The run, its job and video failed with `message`, if `worker` still holds the run (a worker whose lease
    was taken over must not fail the job under the one now running it)."""
    now = utcnow()
    run = s.get(StageRun, run_id)
    if run is None or not _holds(run, worker):
        return
    run.state, run.error, run.finished_at = StageState.FAILED, message, now
    job = s.get(Job, run.job_id)
    if job is not None:
        job.status, job.error_type, job.error, job.finished_at = JobStatus.FAILED, error_type, message, now
        video = s.get(Video, job.video_id)
        if video is not None:
            video.status, video.error_type, video.error = JobStatus.FAILED, error_type, message


def release_for_retry(s: Session, run_id: str, worker: str, max_attempts: int, message: str) -> int | str:
    """Put the run `worker` holds back to pending for another attempt: returns the attempts made so far, or
    "exhausted" (none left: fail it) or "lost" (the run is gone, or another worker holds it now)."""
    run = s.get(StageRun, run_id)
    if run is None or not _holds(run, worker):
        return "lost"
    if run.attempts >= max_attempts:
        return "exhausted"
    run.state, run.error, run.lease_until, run.worker = StageState.PENDING, message, None, None
    run.dispatched_at = utcnow()  # sent again (later) by the engine itself: not the reconciler's
    return run.attempts


def cancelled(s: Session, run_id: str, worker: str) -> None:
    """The stage `worker` runs noticed its job was cancelled."""
    now = utcnow()
    run = s.get(StageRun, run_id)
    if run is None or not _holds(run, worker):
        return
    run.state, run.finished_at = StageState.CANCELLED, now
    job = s.get(Job, run.job_id)
    if job is not None:
        job.status, job.finished_at = JobStatus.CANCELLED, now
        video = s.get(Video, job.video_id)
        if video is not None:
            video.status = JobStatus.CANCELLED


def request_cancel(s: Session, tenant: str, job_id: str) -> None:
    """Ask `tenant`'s job to stop: at once when nothing runs, else at the running stage's next progress report."""
    job = get_job(s, tenant, job_id)
    if job.status not in LIVE_JOB:
        return
    job.cancel_requested = True
    running = s.scalars(select(StageRun).where(StageRun.job_id == job.id, StageRun.state == StageState.RUNNING))
    if running.first() is None:  # nothing in flight to notice it: cancelled now
        job.status, job.finished_at = JobStatus.CANCELLED, utcnow()
        _video_status(s, job.video_id, JobStatus.CANCELLED)
        for run in s.scalars(select(StageRun).where(StageRun.job_id == job.id, StageRun.state == StageState.PENDING)):
            run.state = StageState.CANCELLED


def status(s: Session, tenant: str, job_id: str) -> dict[str, Any]:
    job = get_job(s, tenant, job_id)
    runs = s.scalars(select(StageRun).where(StageRun.job_id == job_id)).all()
    order = {str(name): n for n, name in enumerate(Stage)}
    return {
        "job_id": job.id, "video_id": job.video_id, "tenant": job.tenant, "status": job.status,
        "stage": job.stage, "progress": round(100 * job.progress, 1), "error_type": job.error_type,
        "error": job.error, "cancel_requested": job.cancel_requested,
        "stages": [{"stage": r.stage, "state": r.state, "attempts": r.attempts,
                    "progress": round(100 * r.progress, 1)} for r in sorted(runs, key=lambda r: order[r.stage])],
    }  # fmt: skip


def report_progress(s: Session, run_id: str, job_id: str, worker: str, within: float, lease_s: float) -> bool:
    """Write a running stage's progress (0..1 within the stage) and renew its lease. False: the job was
    cancelled or deleted (the stage should stop)."""
    run, job = s.get(StageRun, run_id), s.get(Job, job_id)
    if run is None or job is None or job.cancel_requested or job.status == JobStatus.CANCELLED:
        return False
    if run.worker == worker and run.state == StageState.RUNNING:
        run.progress = within
        run.lease_until = utcnow() + timedelta(seconds=lease_s)
        job.progress = BEFORE[run.stage] + WEIGHTS[run.stage] * within
    return True


def unattended(s: Session, redispatch_after_s: float) -> list[tuple[str, str]]:
    """(run id, stage) of the stage runs of live jobs nobody is working on: expired leases (a killed worker) and
    pending runs whose message seems lost (a broker restart)."""
    now = utcnow()
    stale = now - timedelta(seconds=redispatch_after_s)
    rows = s.execute(
        select(StageRun, Job.status)
        .join(Job, Job.id == StageRun.job_id)
        .where(StageRun.state.in_((StageState.PENDING, StageState.RUNNING)), Job.status.in_(LIVE_JOB))
    ).all()
    todo = []
    for run, _ in rows:
        lease_expired = run.state == StageState.RUNNING and run.lease_until and aware(run.lease_until) < now
        message_lost = run.state == StageState.PENDING and (not run.dispatched_at or aware(run.dispatched_at) < stale)
        if lease_expired or message_lost:
            todo.append((run.id, run.stage))
    return todo


def try_elect(s: Session, role: str) -> bool:
    """Whether this session's transaction holds the one lock of `role` (PostgreSQL; elsewhere always True: one
    machine, where doing the round twice is harmless)."""
    if s.get_bind().dialect.name != "postgresql":
        return True
    return bool(s.scalar(text("SELECT pg_try_advisory_xact_lock(hashtext(:r))"), {"r": f"videopipe-{role}"}))


def record_finished(s: Session, tenant: str, video: Video, settings_hash: str, options: dict[str, Any]) -> None:
    """A job that ran outside the engine (`videopipe analyze`), recorded as ready."""
    s.add(Job(video_id=video.id, tenant=tenant, status=JobStatus.READY, stage=None, progress=1.0,
              settings_hash=settings_hash, options=options, finished_at=utcnow()))  # fmt: skip
    video.status, video.error, video.error_type = JobStatus.READY, None, None
