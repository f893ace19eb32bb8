"""Real Celery workers for the worker and recovery tests: `videopipe worker` processes on a Redis of the test's own
(a scratch redis-server on a free port) and a scratch PostgreSQL database, jobs sent with `videopipe submit`.

Leases and the reconciler run on short timers so that crash recovery takes seconds. (Not named `workers`: this
folder is on child processes' PYTHONPATH, where that name would hide the project's `workers` package.)
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from tests.support.cli import run_cli
from tests.support.servers import POSTGRES_ADMIN_URL, free_port
from videopipe.config import Settings
from videopipe.db.migrate import upgrade
from videopipe.services import Services, open_services
from videopipe.testing.databases import scratch_database


class ScratchRedis:
    """A Redis of the test's own on a free port (no persistence): stopping it never touches the machine's."""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        server = shutil.which("redis-server")
        if server is None:
            pytest.fail("redis-server is not installed (apt-get install redis-server)")
        self.proc = subprocess.Popen([server, "--bind", "127.0.0.1", "--port", str(self.port), "--save", "",
                                      "--appendonly", "no"], stdout=subprocess.DEVNULL)  # fmt: skip
        deadline = time.time() + 20
        while not self.ping():
            assert self.proc.poll() is None and time.time() < deadline, (
                f"the scratch Redis on {self.port} did not start"
            )
            time.sleep(0.1)

    def ping(self) -> bool:
        cmd = ["redis-cli", "-p", str(self.port), "ping"]
        return subprocess.run(cmd, capture_output=True, text=True).stdout.strip() == "PONG"

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()  # no shutdown, no save: everything queued in it is gone
            self.proc.wait(timeout=10)


@contextmanager
def worker_environment(tmp_path_factory: pytest.TempPathFactory, name: str) -> Iterator[dict[str, str]]:
    """The VIDEOPIPE_* settings of one test module's workers: a scratch database (migrated), a scratch Redis as the
    broker, a data dir, no model, and short leases."""
    redis = ScratchRedis()
    redis.start()
    try:
        with scratch_database(POSTGRES_ADMIN_URL, name) as url:
            upgrade(url)
            yield {
                "VIDEOPIPE_DATABASE_URL": url, "VIDEOPIPE_BROKER_URL": redis.url,
                "VIDEOPIPE_DATA_DIR": str(tmp_path_factory.mktemp(name)), "VIDEOPIPE_VLM": "none",
                "VIDEOPIPE_JOBS__LEASE_S": "5", "VIDEOPIPE_JOBS__REDISPATCH_AFTER_S": "6",
                "VIDEOPIPE_JOBS__RECONCILE_EVERY_S": "2",
            }  # fmt: skip
    finally:
        redis.stop()


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
                self.stop()
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


def services_of(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Services:
    """The services the workers of `env` use (this process reads the same settings), dispatching nothing."""
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    return open_services(Settings(), dispatch="none")


def submit(env: dict[str, str], video: Path, *args: str) -> str:
    """`videopipe submit VIDEO --no-asr --no-ocr ARGS`; the job id it prints."""
    proc = run_cli("submit", str(video), "--no-asr", "--no-ocr", *args, cwd=video.parent, env=env)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.split()[-1]


def wait_for(pipeline: Services, job_id: str, states: set[str], timeout: float = 120) -> dict[str, Any]:
    deadline = time.time() + timeout
    while time.time() < deadline:
        info = pipeline.jobs.status("default", job_id)
        if info["status"] in states:
            return info
        time.sleep(0.3)
    raise AssertionError(f"job {job_id} never reached {states}: {pipeline.jobs.status('default', job_id)}")


def wait_running(pipeline: Services, job: str, stage: str = "perceive") -> None:
    """Until `stage` of `job` is under way (past 5 %)."""
    deadline = time.time() + 60
    while time.time() < deadline:
        info = pipeline.jobs.status("default", job)
        if info["status"] == "running" and info["stage"] == stage and info["progress"] > 5:
            return
        time.sleep(0.1)
    raise AssertionError(f"job never got going: {pipeline.jobs.status('default', job)}")
