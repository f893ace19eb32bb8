"""Real Celery worker processes on the real Redis and PostgreSQL of this machine.

Workers are started as `videopipe worker` subprocesses (the plain way: each runs the reconciler); videos are
submitted with `videopipe submit`. Leases and the reconciler run on short timers here so crash recovery takes seconds.
"""

from __future__ import annotations

import os
import random
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
from sqlalchemy import func, select

from tests.conftest import POSTGRES_ADMIN_URL, run_cli
from videopipe.config import Settings
from videopipe.db.migrate import upgrade
from videopipe.db.models import Scene, StageRun
from videopipe.db.scratch import scratch_database
from videopipe.pipeline import Pipeline, open_pipeline
from videopipe.samples import write_sample_video

# Real worker processes, Redis restarts, SIGKILLs: about two minutes. `make test-slow` (and CI) runs them.
pytestmark = pytest.mark.slow


def redis_ping() -> bool:
    return (
        subprocess.run(["redis-cli", "-h", "127.0.0.1", "ping"], capture_output=True, text=True).stdout.strip()
        == "PONG"
    )


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    if not redis_ping():
        pytest.fail("Redis is not running on 127.0.0.1:6379; scripts/start-services.sh starts it")
    with scratch_database(POSTGRES_ADMIN_URL, "vp_workers") as url:
        yield from _environment(url, tmp_path_factory)


def _environment(url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    upgrade(url)
    redis_db = random.randrange(1, 16)
    data = tmp_path_factory.mktemp("workers")
    values = {
        "VIDEOPIPE_DATABASE_URL": url, "VIDEOPIPE_BROKER_URL": f"redis://127.0.0.1:6379/{redis_db}",
        "VIDEOPIPE_DATA_DIR": str(data), "VIDEOPIPE_VLM": "none", "VIDEOPIPE_JOBS__LEASE_S": "5",
        "VIDEOPIPE_JOBS__REDISPATCH_AFTER_S": "6", "VIDEOPIPE_JOBS__RECONCILE_EVERY_S": "2",
    }  # fmt: skip
    subprocess.run(["redis-cli", "-n", str(redis_db), "flushdb"], check=True, capture_output=True)
    yield values
    subprocess.run(["redis-cli", "-n", str(redis_db), "flushdb"], capture_output=True)


class Worker:
    """`videopipe worker`, started the plain way (no --beat: every worker reconciles on its own timer)."""

    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.log = log
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "videopipe", "worker", "--concurrency", "1", "--loglevel", "INFO"],
            env={**os.environ, **env}, stdout=log.open("ab"), stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
        deadline = time.time() + 60
        while b"ready." not in log.read_bytes():
            if self.proc.poll() is not None or time.time() > deadline:
                raise AssertionError("worker did not start:\n" + log.read_text()[-3000:])
            time.sleep(0.2)

    def kill(self) -> None:
        """SIGKILL the whole worker: the main process and its pool children, with no chance to clean up."""
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.kill()


@pytest.fixture
def worker(env: dict[str, str], tmp_path: Path) -> Iterator[Worker]:
    w = Worker(env, tmp_path / "worker.log")
    yield w
    w.stop()


@pytest.fixture
def pipeline(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Pipeline:
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    return open_pipeline(Settings())


def submit(env: dict[str, str], video: Path, *args: str) -> str:
    proc = run_cli("submit", str(video), "--no-asr", "--no-ocr", *args, cwd=video.parent, env=env)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.split()[-1]


def wait_for(pipeline: Pipeline, job_id: str, states: set[str], timeout: float = 120) -> dict[str, Any]:
    deadline = time.time() + timeout
    while time.time() < deadline:
        info = pipeline.status(job_id)
        if info["status"] in states:
            return info
        time.sleep(0.3)
    raise AssertionError(f"job {job_id} never reached {states}: {pipeline.status(job_id)}")


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
    env: dict[str, str], worker: Worker, pipeline: Pipeline, videos: dict[str, Path]
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
    env: dict[str, str], worker: Worker, pipeline: Pipeline, tmp_path: Path, videos: dict[str, Path]
) -> None:
    bad = tmp_path / "slides.mp4"
    bad.write_bytes(b"%PDF-1.4\n" + bytes(4000))
    bad_job = submit(env, bad)
    good_job = submit(env, videos["other"])
    info = wait_for(pipeline, bad_job, {"failed", "ready"})
    assert info["status"] == "failed" and info["error_type"] == "not-a-video" and "a PDF document" in info["error"]
    assert wait_for(pipeline, good_job, {"ready", "failed"})["status"] == "ready"


def _wait_running(pipeline: Pipeline, job: str, stage: str = "perceive") -> None:
    deadline = time.time() + 60
    while time.time() < deadline:
        info = pipeline.status(job)
        if info["status"] == "running" and info["stage"] == stage and info["progress"] > 0.05:
            return
        time.sleep(0.1)
    raise AssertionError(f"job never got going: {pipeline.status(job)}")


def test_cancel_stops_a_running_job(
    env: dict[str, str], worker: Worker, pipeline: Pipeline, videos: dict[str, Path]
) -> None:
    job = submit(env, videos["long"], "--profile", "surveillance")
    _wait_running(pipeline, job)
    assert pipeline.cancel(job)["cancel_requested"] is True
    info = wait_for(pipeline, job, {"cancelled", "ready", "failed"})
    assert info["status"] == "cancelled"
    assert [st["state"] for st in info["stages"]] == ["cancelled"]  # stopped mid-perceive, went no further
    proc = run_cli("cancel", job, cwd=videos["long"].parent, env=env)
    assert proc.returncode == 0 and proc.stdout.strip() == f"{job}: cancelled"


def test_worker_killed_mid_stage_is_replaced_and_the_job_completes(
    env: dict[str, str], pipeline: Pipeline, videos: dict[str, Path], tmp_path: Path
) -> None:
    first = Worker(env, tmp_path / "first.log")
    try:
        job = submit(env, videos["long"], "--profile", "general", "--no-motion")
        _wait_running(pipeline, job)
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


def test_two_plain_workers_one_killed_mid_stage_the_other_finishes_the_job(
    env: dict[str, str], pipeline: Pipeline, videos: dict[str, Path], tmp_path: Path
) -> None:
    """No worker was started with --beat and none is restarted: the survivor's own reconciler sends the dead
    one's stage again once its lease runs out."""
    workers = [Worker(env, tmp_path / f"w{n}.log") for n in range(2)]
    try:
        job = submit(env, videos["long"], "--profile", "lecture")
        _wait_running(pipeline, job)
        with pipeline.sessions() as s:
            holder = s.scalars(
                select(StageRun.worker).where(StageRun.job_id == job, StageRun.stage == "perceive")
            ).one()
        pool_pid = int(str(holder).rsplit("/", 1)[-1])
        [victim] = [w for w in workers if psutil.Process(pool_pid).ppid() == w.proc.pid]
        victim.kill()
        [survivor] = [w for w in workers if w is not victim]
        info = wait_for(pipeline, job, {"ready", "failed", "cancelled"}, timeout=180)
        assert survivor.proc.poll() is None
    finally:
        for w in workers:
            w.stop()
    assert info["status"] == "ready", info
    assert info["stages"][0]["attempts"] >= 2  # perceive ran again, on the survivor


class ScratchRedis:
    """A Redis of this test's own on a free port (no persistence): stopping it never touches the machine's."""

    def __init__(self) -> None:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = int(sock.getsockname()[1])
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(["redis-server", "--bind", "127.0.0.1", "--port", str(self.port), "--save", "",
                                      "--appendonly", "no"], stdout=subprocess.DEVNULL)  # fmt: skip
        deadline = time.time() + 20
        while not self.ping():
            assert time.time() < deadline, "the scratch Redis did not start"
            time.sleep(0.1)

    def ping(self) -> bool:
        cmd = ["redis-cli", "-p", str(self.port), "ping"]
        return subprocess.run(cmd, capture_output=True, text=True).stdout.strip() == "PONG"

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()  # no shutdown, no save: everything queued in it is gone
            self.proc.wait(timeout=10)


def test_redis_restart_mid_job_loses_no_job(
    env: dict[str, str], pipeline: Pipeline, videos: dict[str, Path], tmp_path: Path
) -> None:
    extras = [write_sample_video(tmp_path / f"q{n}.mp4", shots_s=(1.0, 1.0), seed=40 + n).path for n in range(2)]
    from workers.celery_app import CeleryDispatcher, make_app

    redis = ScratchRedis()
    redis.start()
    own = {**env, "VIDEOPIPE_BROKER_URL": redis.url}
    worker = Worker(own, tmp_path / "worker.log")
    try:
        settings = Settings(broker_url=redis.url)
        fast = Pipeline(pipeline.sessions, pipeline.store, settings, CeleryDispatcher(make_app(settings)))
        options = {"profile": "general", "asr": False, "ocr": False, "motion": True, "vlm": "none"}  # own settings hash
        running = fast.submit(videos["long"], options=options).job_id
        # These wait in Redis behind the first: a restart without persistence drops their messages.
        queued = [fast.submit(path, options=options).job_id for path in extras]
        _wait_running(pipeline, running)
        redis.stop()
        time.sleep(1.0)
        assert not redis.ping()
        redis.start()
        for job in (running, *queued):
            assert wait_for(pipeline, job, {"ready", "failed", "cancelled"}, timeout=180)["status"] == "ready"
    finally:
        worker.stop()
        redis.stop()
