"""Fair work: one tenant's long jobs never hold another tenant's short one (embedded runner and workers alike)."""

from __future__ import annotations

import itertools
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from videopipe.config import JobSettings, Settings
from videopipe.db import make_engine, make_session_factory
from videopipe.db.migrate import upgrade
from videopipe.db.models import Job, StageRun, utcnow
from videopipe.dispatch import EmbeddedRunner
from videopipe.jobs import JobEngine
from videopipe.storage import LocalBlobStore
from videopipe.testing.media import write_sample_video

FAST = {"asr": False, "ocr": False, "motion": False, "vlm": "none"}


@pytest.fixture
def fair(tmp_path: Path) -> Any:
    url = f"sqlite:///{tmp_path / 'vp.db'}"
    upgrade(url)
    engine = make_engine(url)
    sessions = make_session_factory(engine)
    settings = Settings(data_dir=tmp_path, jobs=JobSettings(lease_s=30, embedded_concurrency=2))
    holder: dict[str, JobEngine] = {}
    runner = EmbeddedRunner(lambda: holder["p"], concurrency=2, per_tenant=settings.jobs.max_running_per_tenant)
    holder["p"] = JobEngine(sessions, LocalBlobStore(tmp_path / "blobs"), settings, runner)
    yield holder["p"], runner, sessions
    runner.shutdown()
    engine.dispose()


def _runs(sessions: Any, job_id: str) -> list[StageRun]:
    with sessions() as s:
        return list(s.scalars(select(StageRun).where(StageRun.job_id == job_id).order_by(StageRun.started_at)))


def test_a_short_job_is_not_held_behind_another_tenants_long_ones(fair: Any, tmp_path: Path) -> None:
    pipeline, runner, sessions = fair
    longs = [
        write_sample_video(tmp_path / f"long{n}.mp4", shots_s=(6.0, 6.0, 6.0), width=320, height=240, seed=10 + n).path
        for n in range(3)
    ]
    short = write_sample_video(tmp_path / "short.mp4", shots_s=(1.0, 1.0), width=320, height=240, seed=20).path
    a_jobs = [pipeline.submit(p, tenant="a", options=FAST).job_id for p in longs]
    b_job = pipeline.submit(short, tenant="b", options=FAST).job_id
    runner.wait()
    b_runs = _runs(sessions, b_job)
    a_runs = [r for job in a_jobs for r in _runs(sessions, job)]
    a_starts = [min(r.started_at for r in _runs(sessions, job)) for job in a_jobs]
    # B's short video started beside A's first long one (not after A's queue), and was done before A's last began.
    assert b_runs[0].started_at <= a_starts[1]
    assert max(r.finished_at for r in b_runs) <= a_starts[2]
    # A never ran two stages at once (its cap is one), though two threads were there.
    spans = sorted((r.started_at, r.finished_at) for r in a_runs)
    assert all(later[0] >= earlier[1] for earlier, later in itertools.pairwise(spans))
    with sessions() as s:
        assert {j.status for j in s.scalars(select(Job))} == {"ready"}


def test_a_worker_defers_a_stage_of_a_tenant_at_its_cap(fair: Any, tmp_path: Path) -> None:
    """What Celery workers do: the database counts a tenant's live leases on every worker; a stage past the cap
    is sent again later (to the back of the queue), not run."""
    pipeline, runner, sessions = fair
    runner.shutdown()  # drive the stages by hand, as a worker would
    v1 = write_sample_video(tmp_path / "one.mp4", shots_s=(1.0,), width=320, height=240, seed=31).path
    v2 = write_sample_video(tmp_path / "two.mp4", shots_s=(1.0,), width=320, height=240, seed=32).path
    first, second = (pipeline.submit(v, tenant="a", options=FAST).job_id for v in (v1, v2))
    other = pipeline.submit(write_sample_video(tmp_path / "b.mp4", shots_s=(1.0,), seed=33).path, tenant="b",
                            options=FAST).job_id  # fmt: skip
    with sessions.begin() as s:  # the first video's stage is running on some other worker right now
        run = s.scalars(select(StageRun).where(StageRun.job_id == first)).one()
        run.state, run.worker, run.lease_until = "running", "elsewhere", utcnow() + timedelta(seconds=60)
    later: list[tuple[str, str, float]] = []
    pipeline.dispatcher = type("D", (), {"dispatch": lambda *a: None,
                                         "dispatch_later": lambda self, *a: later.append(a)})()  # fmt: skip
    [second_run] = _runs(sessions, second)
    assert pipeline.run_stage(second_run.id, worker="w1") == "deferred"
    assert later == [(second_run.id, "perceive", pipeline.settings.jobs.defer_s)]
    assert _runs(sessions, second)[0].state == "pending"  # untouched: it runs when its turn comes
    [other_run] = _runs(sessions, other)
    assert pipeline.run_stage(other_run.id, worker="w1") == "done"  # another tenant is not held
    with sessions.begin() as s:  # the other worker finished
        s.get(StageRun, run.id).lease_until = utcnow() - timedelta(seconds=1)
    assert pipeline.run_stage(second_run.id, worker="w1") == "done"


def test_an_item_another_replica_is_still_ingesting_is_not_failed_as_deleted(tmp_path: Path) -> None:
    """Two API replicas move batches on. One claims an item and spends a while ingesting its file (the probe runs
    in a child process); the other must see it as in flight, not fail it as "deleted before it was tagged"."""
    from sqlalchemy import update

    from videopipe.db.models import Batch, BatchItem
    from videopipe.services import open_services

    settings = Settings(data_dir=tmp_path)
    pipeline = open_services(settings, dispatch="none", migrate=True)
    batches = pipeline.batches
    batch_id = batches.create("t", [str(tmp_path / "clip.mp4")])
    with pipeline.sessions() as s:
        item_id = s.scalars(select(BatchItem.id).where(BatchItem.batch_id == batch_id)).one()
        batch = s.get(Batch, batch_id)
    assert batch is not None and batches._claim(batch, item_id)  # replica A took it and is ingesting it now
    batches.advance(batch_id, max_in_flight=4)  # replica B's round
    with pipeline.sessions() as s:
        assert s.get(BatchItem, item_id).status == "analyzing"
    with pipeline.sessions.begin() as s:  # an hour later, still no video: A died, or the video was deleted
        s.execute(update(BatchItem).where(BatchItem.id == item_id).values(updated_at=utcnow() - timedelta(hours=2)))
    batches.advance(batch_id, max_in_flight=4)
    with pipeline.sessions() as s:
        item = s.get(BatchItem, item_id)
        assert item.status == "failed" and "before it was tagged" in (item.error or "")
