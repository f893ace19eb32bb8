"""Load: N short videos submitted at once to 2 Celery worker processes on this machine's Redis and PostgreSQL.

    python benchmarks/load.py            # 50 videos
    python benchmarks/load.py --videos 10

Each video is 4 s of 640x360 H.264 with two shots and a tone (distinct content, so none is deduplicated).
All are submitted in one go; two `videopipe worker` processes (concurrency 1 each, one running the reconciler)
work through perceive -> understand -> index with no VLM. The script reports the wall time until every job is
ready, and checks none was lost or duplicated: every job ready, exactly three stage runs each, each run once,
and exactly two scene rows per video.
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from sqlalchemy import func, select

from videopipe.config import Settings
from videopipe.db.migrate import upgrade
from videopipe.db.models import Job, Scene, StageRun
from videopipe.services import open_services
from videopipe.testing.databases import scratch_database
from videopipe.testing.media import write_sample_video

PG_ADMIN = os.environ.get("VIDEOPIPE_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--videos", type=int, default=50)
    args = parser.parse_args()
    with scratch_database(PG_ADMIN, "vp_load") as url:
        run(args.videos, url)


def run(n_videos: int, url: str) -> None:
    work = Path(tempfile.mkdtemp(prefix="vp-load-"))
    upgrade(url)
    redis_db = random.randrange(1, 16)
    env = {"VIDEOPIPE_DATABASE_URL": url, "VIDEOPIPE_BROKER_URL": f"redis://127.0.0.1:6379/{redis_db}",
           "VIDEOPIPE_DATA_DIR": str(work / "data"), "VIDEOPIPE_VLM": "none"}  # fmt: skip
    os.environ.update(env)
    subprocess.run(["redis-cli", "-n", str(redis_db), "flushdb"], check=True, capture_output=True)
    print(f"generating {n_videos} videos...", file=sys.stderr)
    videos = [write_sample_video(work / f"v{n:03d}.mp4", shots_s=(2.0, 2.0), audio=True, seed=1000 + n).path
              for n in range(n_videos)]  # fmt: skip
    workers = []
    for n in range(2):
        log = (work / f"worker{n}.log").open("wb")
        cmd = [sys.executable, "-m", "videopipe", "worker", "--concurrency", "1"] + (["--beat"] if n == 0 else [])
        workers.append(subprocess.Popen(cmd, env={**os.environ, **env}, stdout=log, stderr=subprocess.STDOUT,
                                        start_new_session=True))  # fmt: skip
    try:
        deadline = time.time() + 60
        while any(b"ready." not in (work / f"worker{n}.log").read_bytes() for n in range(2)):
            if time.time() > deadline:
                raise SystemExit("workers did not start")
            time.sleep(0.2)
        pipeline = open_services(Settings(), dispatch="celery")
        started = time.perf_counter()
        options = {"profile": "general", "vlm": "none"}
        jobs = [pipeline.jobs.submit(v, "default", options=options).job_id for v in videos]
        submitted_s = time.perf_counter() - started
        while True:
            with pipeline.sessions() as s:
                open_jobs = s.scalar(select(func.count()).select_from(Job).where(Job.status.in_(("queued", "running"))))
            if not open_jobs:
                break
            time.sleep(0.5)
        wall = time.perf_counter() - started
        with pipeline.sessions() as s:
            states = dict(s.execute(select(Job.status, func.count()).group_by(Job.status)).all())
            runs = s.scalar(select(func.count()).select_from(StageRun))
            reruns = s.scalar(select(func.count()).select_from(StageRun).where(StageRun.attempts != 1))
            scenes = s.scalar(select(func.count()).select_from(Scene))
        print(
            f"{len(jobs)} videos submitted in {submitted_s:.1f} s; all finished after {wall:.1f} s "
            f"({len(jobs) / wall * 60:.1f} videos/min, {wall / len(jobs):.2f} s each) on 2 worker processes"
        )
        print(
            f"jobs by state: {states}; stage runs: {runs} (expected {3 * len(jobs)}); runs not run exactly "
            f"once: {reruns}; scene rows: {scenes} (expected {2 * len(jobs)})"
        )
        ok = states == {"ready": len(jobs)} and runs == 3 * len(jobs) and reruns == 0 and scenes == 2 * len(jobs)
        print("none lost, none duplicated" if ok else "PROBLEM: see the counts above")
    finally:
        for w in workers:
            os.killpg(w.pid, signal.SIGTERM)
        for w in workers:
            w.wait(timeout=30)
        subprocess.run(["redis-cli", "-n", str(redis_db), "flushdb"], capture_output=True)


if __name__ == "__main__":
    main()
