"""Real Celery worker processes on real Redis (a redis-server of the module's own, on a free port) and the machine's
PostgreSQL (a scratch database).

Workers are started as `videopipe worker` subprocesses (the plain way: each runs the reconciler); videos are
submitted with `videopipe submit`. Leases and the reconciler run on short timers here so crash recovery takes seconds.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import func, select

from tests.support.celery_workers import (
    ScratchRedis,
    Worker,
    services_of,
    submit,
    wait_for,
    wait_running,
    worker_environment,
)
from tests.support.cli import run_cli
from videopipe.config import Settings
from videopipe.db.models import Scene, StageRun
from videopipe.services import Services
from videopipe.testing.media import write_sample_video

# Real worker processes, Redis restarts, SIGKILLs: about two minutes. `make test-slow` (and CI) runs them. The
# recovery test that `make test` runs (two workers, one killed) is in test_recovery.py.
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    with worker_environment(tmp_path_factory, "vp_workers") as values:
        yield values


@pytest.fixture
def worker(env: dict[str, str], tmp_path: Path) -> Iterator[Worker]:
    w = Worker(env, tmp_path / "worker.log")
    yield w
    w.stop()


@pytest.fixture
def pipeline(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Services:
    return services_of(env, monkeypatch)


@pytest.fixture(scope="module")
def videos(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("worker-videos")
    return {
        "short": write_sample_video(d / "short.mp4", shots_s=(2.0, 2.0), seed=21).path,
        "other": write_sample_video(d / "other.mp4", shots_s=(1.5, 2.5), seed=22).path,
        # Long enough (2.5 min of 960x540) that its first stage is surely in flight when the test strikes.
        "long": write_sample_video(d / "long.mp4", shots_s=(6.0,) * 25, width=960, height=540, seed=23).path,
    }


def test_submitted_video_reaches_ready_once(
    env: dict[str, str], worker: Worker, pipeline: Services, videos: dict[str, Path]
) -> None:
    job = submit(env, videos["short"])
    again = submit(env, videos["short"])
    assert again == job
    info = wait_for(pipeline, job, {"ready", "failed"})
    assert info["status"] == "ready", info
    with pipeline.sessions() as s:
        runs = s.scalars(select(StageRun).where(StageRun.job_id == job)).all()
        assert sorted((r.stage, r.state, r.attempts) for r in runs) == [
            ("index", "done", 1),
            ("perceive", "done", 1),
            ("understand", "done", 1),
        ]
        assert s.scalar(select(func.count()).select_from(Scene).where(Scene.video_id == info["video_id"])) == 2


def test_bad_video_fails_clearly_and_does_not_block_the_queue(
    env: dict[str, str], worker: Worker, pipeline: Services, tmp_path: Path, videos: dict[str, Path]
) -> None:
    bad = tmp_path / "slides.mp4"
    bad.write_bytes(b"%PDF-1.4\n" + bytes(4000))
    bad_job = submit(env, bad)
    good_job = submit(env, videos["other"])
    info = wait_for(pipeline, bad_job, {"failed", "ready"})
    assert info["status"] == "failed" and info["error_type"] == "not-a-video" and "a PDF document" in info["error"]
    assert wait_for(pipeline, good_job, {"ready", "failed"})["status"] == "ready"


def test_cancel_stops_a_running_job(
    env: dict[str, str], worker: Worker, pipeline: Services, videos: dict[str, Path]
) -> None:
    job = submit(env, videos["long"], "--profile", "surveillance")
    wait_running(pipeline, job)
    assert pipeline.jobs.cancel("default", job)["cancel_requested"] is True
    info = wait_for(pipeline, job, {"cancelled", "ready", "failed"})
    assert info["status"] == "cancelled"
    assert [st["state"] for st in info["stages"]] == ["cancelled"]  # stopped mid-perceive, went no further
    proc = run_cli("cancel", job, cwd=videos["long"].parent, env=env)
    assert proc.returncode == 0 and proc.stdout.strip() == f"{job}: cancelled"


def test_worker_killed_mid_stage_is_replaced_and_the_job_completes(
    env: dict[str, str], pipeline: Services, videos: dict[str, Path], tmp_path: Path
) -> None:
    first = Worker(env, tmp_path / "first.log")
    try:
        job = submit(env, videos["long"], "--profile", "general", "--no-motion")
        wait_running(pipeline, job)
        first.kill()
    finally:
        first.stop()
    replacement = Worker(env, tmp_path / "second.log")
    try:
        info = wait_for(pipeline, job, {"ready", "failed", "cancelled"}, timeout=180)
    finally:
        replacement.stop()
    assert info["status"] == "ready", info
    perceive = info["stages"][0]
    assert perceive["stage"] == "perceive" and perceive["attempts"] >= 2  # it ran again after the kill
    with pipeline.sessions() as s:  # and its outputs are there once
        assert s.scalar(select(func.count()).select_from(Scene).where(Scene.video_id == info["video_id"])) == 25


def test_redis_restart_mid_job_loses_no_job(
    env: dict[str, str], pipeline: Services, videos: dict[str, Path], tmp_path: Path
) -> None:
    extras = [write_sample_video(tmp_path / f"q{n}.mp4", shots_s=(1.0, 1.0), seed=40 + n).path for n in range(2)]
    from videopipe.dispatch import CeleryDispatcher, celery_app
    from videopipe.jobs import JobEngine

    redis = ScratchRedis()
    redis.start()
    own = {**env, "VIDEOPIPE_BROKER_URL": redis.url}
    worker = Worker(own, tmp_path / "worker.log")
    try:
        settings = Settings(broker_url=redis.url)
        fast = JobEngine(pipeline.sessions, pipeline.store, settings, CeleryDispatcher(celery_app(settings)))
        options = {"profile": "general", "asr": False, "ocr": False, "motion": True, "vlm": "none"}  # own settings hash
        running = fast.submit(videos["long"], "default", options=options).job_id
        # These wait in Redis behind the first: a restart without persistence drops their messages.
        queued = [fast.submit(path, "default", options=options).job_id for path in extras]
        wait_running(pipeline, running)
        redis.stop()
        time.sleep(1.0)
        assert not redis.ping()
        redis.start()
        for job in (running, *queued):
            assert wait_for(pipeline, job, {"ready", "failed", "cancelled"}, timeout=180)["status"] == "ready"
    finally:
        worker.stop()
        redis.stop()
