"""Crash recovery with plain workers, in the default suite: two `videopipe worker` processes (none started with
--beat, none restarted), one SIGKILLed in the middle of a stage; the survivor's own reconciler sends the stage again
once the dead one's lease runs out, and the job finishes. The rest of the Celery suite (tests/test_workers.py) is
marked slow."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
from sqlalchemy import func, select

from tests.support.celery_workers import Worker, services_of, submit, wait_for, wait_running, worker_environment
from tests.support.media import ffmpeg
from videopipe.db.models import Scene, StageRun
from videopipe.services import Services
from videopipe.testing.media import write_sample_video

SHOTS, LOOPS = 8, 4


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    with worker_environment(tmp_path_factory, "vp_recovery") as values:
        yield values


@pytest.fixture
def pipeline(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Services:
    return services_of(env, monkeypatch)


@pytest.fixture(scope="module")
def long_video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """3.2 minutes of 960x540, so that its first stage (about 8 s here) is surely still in flight when the test
    strikes: 48 s of shots, rendered once, then played LOOPS times over (a stream copy: cheap); each seam is a cut."""
    folder = tmp_path_factory.mktemp("recovery-video")
    shots = write_sample_video(folder / "shots.mp4", shots_s=(6.0,) * SHOTS, width=960, height=540, seed=23).path
    playlist = folder / "loop.txt"
    playlist.write_text(f"file '{shots.name}'\n" * LOOPS)
    ffmpeg("-f", "concat", "-safe", "0", "-i", str(playlist), "-c", "copy", str(folder / "long.mp4"))
    return folder / "long.mp4"


def _perceive_worker(pipeline: Services, job: str) -> str:
    """The `host/pid` of the worker process that holds (or last held) the job's perceive stage."""
    with pipeline.sessions() as s:
        return str(s.scalars(select(StageRun.worker).where(StageRun.job_id == job, StageRun.stage == "perceive")).one())


def test_two_plain_workers_one_killed_mid_stage_the_other_finishes_the_job(
    env: dict[str, str], pipeline: Services, long_video: Path, tmp_path: Path
) -> None:
    workers = [Worker(env, tmp_path / f"w{n}.log") for n in range(2)]
    try:
        job = submit(env, long_video, "--profile", "lecture")
        wait_running(pipeline, job)
        holder = _perceive_worker(pipeline, job)
        [victim] = [w for w in workers if psutil.Process(int(holder.rsplit("/", 1)[-1])).ppid() == w.proc.pid]
        victim.kill()
        # killed in the middle of the stage:
        assert pipeline.jobs.status("default", job)["stages"][0]["state"] == "running"
        [survivor] = [w for w in workers if w is not victim]
        info = wait_for(pipeline, job, {"ready", "failed", "cancelled"}, timeout=180)
        assert survivor.proc.poll() is None
        finisher = _perceive_worker(pipeline, job)
        assert psutil.Process(int(finisher.rsplit("/", 1)[-1])).ppid() == survivor.proc.pid  # the survivor's pool
    finally:
        for w in workers:
            w.stop()
    assert info["status"] == "ready", info
    perceive = info["stages"][0]
    assert perceive["stage"] == "perceive" and perceive["attempts"] >= 2  # perceive ran again, on the survivor
    with pipeline.sessions() as s:  # and its outputs are there once
        scenes = s.scalar(select(func.count()).select_from(Scene).where(Scene.video_id == info["video_id"]))
    assert scenes == SHOTS * LOOPS
