"""The stage graph with the in-process runner (the embedded default: SQLite, local blobs, no broker)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from videopipe.config import JobSettings, Settings
from videopipe.db import make_engine, make_session_factory
from videopipe.db.migrate import upgrade
from videopipe.db.models import Chapter, Moment, Scene, StageRun
from videopipe.db.repos import results
from videopipe.dispatch import EmbeddedRunner
from videopipe.errors import EmptyFile
from videopipe.jobs import JobEngine
from videopipe.storage import LocalBlobStore
from videopipe.testing.media import SampleVideo

FAST = {"asr": False, "ocr": False, "motion": False, "vlm": "none"}


@pytest.fixture
def embedded(tmp_path: Path) -> Any:
    url = f"sqlite:///{tmp_path / 'vp.db'}"
    upgrade(url)
    engine = make_engine(url)
    sessions = make_session_factory(engine)
    settings = Settings(data_dir=tmp_path, jobs=JobSettings(lease_s=30))
    store = LocalBlobStore(tmp_path / "blobs")
    holder: dict[str, JobEngine] = {}
    runner = EmbeddedRunner(lambda: holder["p"], concurrency=1)
    holder["p"] = JobEngine(sessions, store, settings, runner)
    yield holder["p"], runner, sessions
    runner.shutdown()
    engine.dispose()


def _count(sessions: Any, model: Any, video_id: str) -> int:
    with sessions() as s:
        return int(s.scalar(select(func.count()).select_from(model).where(model.video_id == video_id)) or 0)


def test_a_submitted_video_reaches_ready_with_all_outputs(embedded: Any, shots_video: SampleVideo) -> None:
    pipeline, runner, sessions = embedded
    submitted = pipeline.submit(shots_video.path, tenant="acme", options=FAST)
    runner.wait()
    status = pipeline.status("acme", submitted.job_id)
    assert status["status"] == "ready" and status["progress"] == 100.0 and status["stage"] is None
    assert [(s["stage"], s["state"], s["attempts"]) for s in status["stages"]] == [
        ("perceive", "done", 1),
        ("understand", "done", 1),
        ("index", "done", 1),
    ]
    n_scenes = len(shots_video.cut_times_s) + 1
    assert _count(sessions, Scene, submitted.video_id) == n_scenes
    assert _count(sessions, Moment, submitted.video_id) == n_scenes
    assert _count(sessions, Chapter, submitted.video_id) >= 1
    with sessions() as s:
        doc = results.document(s, "acme", submitted.video_id)
    assert [s["start_s"] for s in doc["scenes"][1:]] == pytest.approx(shots_video.cut_times_s, abs=0.02)
    assert len(doc["keyframes"]) >= n_scenes and all(pipeline.store.exists(k["blob_key"]) for k in doc["keyframes"])


def test_the_same_video_twice_is_processed_once(embedded: Any, shots_video: SampleVideo, tmp_path: Path) -> None:
    pipeline, runner, sessions = embedded
    first = pipeline.submit(shots_video.path, "default", options=FAST)
    copy = tmp_path / "renamed copy.mp4"
    copy.write_bytes(shots_video.path.read_bytes())
    second = pipeline.submit(copy, "default", options=FAST)
    runner.wait()
    assert (second.job_id, second.video_id, second.created) == (first.job_id, first.video_id, False)
    with sessions() as s:
        assert s.scalar(select(func.count()).select_from(StageRun)) == 3
    # Rerunning a finished stage (a duplicate message) changes nothing.
    with sessions() as s:
        perceive = s.scalars(select(StageRun).where(StageRun.stage == "perceive")).one()
    assert pipeline.run_stage(perceive.id) == "done"
    assert _count(sessions, Scene, first.video_id) == len(shots_video.cut_times_s) + 1


def test_a_bad_video_fails_its_job_with_the_clear_error(
    embedded: Any, tmp_path: Path, shots_video: SampleVideo
) -> None:
    pipeline, runner, _ = embedded
    bad = tmp_path / "notes.mp4"
    bad.write_text("not a video\n" * 50)
    failed = pipeline.submit(bad, "default", options=FAST)
    good = pipeline.submit(shots_video.path, "default", options=FAST)  # queued behind it: not blocked
    runner.wait()
    status = pipeline.status("default", failed.job_id)
    assert status["status"] == "failed" and status["error_type"] == "not-a-video"
    assert "a text file, not a video" in status["error"]
    assert status["stages"][0]["attempts"] == 1  # bad input is not retried
    assert pipeline.status("default", good.job_id)["status"] == "ready"
    with pytest.raises(EmptyFile):
        empty = tmp_path / "empty.mp4"
        empty.write_bytes(b"")
        pipeline.submit(empty, "default")


def test_cancel_before_it_runs(tmp_path: Path, shots_video: SampleVideo) -> None:
    url = f"sqlite:///{tmp_path / 'vp.db'}"
    upgrade(url)
    engine = make_engine(url)
    pipeline = JobEngine(make_session_factory(engine), LocalBlobStore(tmp_path / "b"), Settings(data_dir=tmp_path))
    submitted = pipeline.submit(shots_video.path, "default", options=FAST)  # no dispatcher: stays queued
    assert pipeline.status("default", submitted.job_id)["status"] == "queued"
    assert pipeline.cancel("default", submitted.job_id)["status"] == "cancelled"
    with pipeline.sessions() as s:
        run_id = s.scalars(select(StageRun.id)).one()
    assert pipeline.run_stage(run_id) == "cancelled"  # a late message does nothing
    engine.dispose()


def test_a_stage_whose_outputs_exist_for_the_same_inputs_is_not_run_again(
    tmp_path: Path, shots_video: SampleVideo
) -> None:
    url = f"sqlite:///{tmp_path / 'vp.db'}"
    upgrade(url)
    engine = make_engine(url)
    pipeline = JobEngine(make_session_factory(engine), LocalBlobStore(tmp_path / "b"), Settings(data_dir=tmp_path))

    def pending_run(job_id: str) -> str:
        with pipeline.sessions() as s:
            return s.scalars(select(StageRun.id).where(StageRun.job_id == job_id, StageRun.state == "pending")).one()

    first = pipeline.submit(shots_video.path, "default", options=FAST)
    assert pipeline.run_stage(pending_run(first.job_id)) == "done"  # perceive
    pipeline.cancel("default", first.job_id)  # understand never ran
    second = pipeline.submit(shots_video.path, "default", options=FAST)
    assert second.created and second.job_id != first.job_id
    assert pipeline.run_stage(pending_run(second.job_id)) == "skipped"  # perceive: same bytes, same settings
    assert pipeline.run_stage(pending_run(second.job_id)) == "done"  # understand
    assert pipeline.run_stage(pending_run(second.job_id)) == "done"  # index
    status = pipeline.status("default", second.job_id)
    assert status["status"] == "ready" and [s["state"] for s in status["stages"]] == ["skipped", "done", "done"]
    assert status["stages"][0]["attempts"] == 0
    assert _count(pipeline.sessions, Scene, second.video_id) == len(shots_video.cut_times_s) + 1
    # Other settings are other inputs: the stage runs.
    third = pipeline.submit(shots_video.path, "default", options={**FAST, "profile": "lecture"})
    assert pipeline.run_stage(pending_run(third.job_id)) == "done"
    engine.dispose()


class Recorder:
    """A dispatcher that only remembers what it was asked to send (the test runs the stages itself)."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, str, float]] = []

    def dispatch(self, stage_run_id: str, stage: str) -> None:
        self.sent.append((stage_run_id, stage, 0.0))

    def dispatch_later(self, stage_run_id: str, stage: str, delay_s: float) -> None:
        self.sent.append((stage_run_id, stage, delay_s))


def _engine(tmp_path: Path, **settings: Any) -> tuple[JobEngine, list[tuple[str, str, float]]]:
    """An engine whose dispatcher records what it sends (returned: that list)."""
    url = f"sqlite:///{tmp_path / 'vp.db'}"
    upgrade(url)
    recorder = Recorder()
    engine = JobEngine(make_session_factory(make_engine(url)), LocalBlobStore(tmp_path / "b"),
                       Settings(data_dir=tmp_path, **settings), recorder)  # fmt: skip
    return engine, recorder.sent


def test_a_model_server_away_is_retried_with_backoff_then_fails_within_one_budget(
    tmp_path: Path, shots_video: SampleVideo
) -> None:
    """One retry budget, `jobs.max_attempts`, counted in the database: the engine itself sends a failed attempt
    again after a growing backoff (no Celery retries, no reconciler needed), and fails the job when it is spent."""
    from videopipe.config import UnderstandingSettings

    closed = f"http://127.0.0.1:{_closed_port()}/v1"
    engine, sent = _engine(tmp_path, vlm_url=closed, understanding=UnderstandingSettings(max_retries=0),
                           jobs=JobSettings(max_attempts=3, defer_s=2.0))  # fmt: skip
    job = engine.submit(shots_video.path, "acme", options={**FAST, "vlm": "openai"}).job_id
    run_id, stage, _ = sent[-1]
    assert engine.run_stage(run_id) == "done" and stage == "perceive"
    understand, stage, delay = sent[-1]
    assert stage == "understand" and delay == 0.0
    delays = []
    for attempt in (1, 2):
        assert engine.run_stage(understand) == "retrying"
        assert sent[-1][:2] == (understand, "understand")
        delays.append(sent[-1][2])
        info = engine.status("acme", job)
        assert info["status"] == "running" and info["stages"][1] == {
            "stage": "understand", "state": "pending", "attempts": attempt, "progress": info["stages"][1]["progress"]}
    assert delays == [2.0, 4.0]  # backoff doubles
    assert engine.run_stage(understand) == "failed"  # the third attempt was the last
    info = engine.status("acme", job)
    assert info["status"] == "failed" and info["error_type"] == "vlm-unavailable" and closed in info["error"]
    assert info["stages"][1]["attempts"] == 3 and len(sent) == 4  # nothing sent after the last attempt


def test_a_stage_whose_worker_dies_every_time_fails_when_the_budget_is_spent(
    tmp_path: Path, shots_video: SampleVideo
) -> None:
    """A worker killed mid-stage (OOM, a decoder crash) never reports back: its lease runs out and the reconciler
    sends the stage again. Each new lease is an attempt; once `max_attempts` are spent the job fails, instead of
    the reconciler sending a video that kills every worker forever."""
    from datetime import timedelta

    from videopipe.db.models import utcnow
    from videopipe.db.repos import jobs as repo

    engine, sent = _engine(tmp_path, jobs=JobSettings(max_attempts=2, lease_s=30))
    job = engine.submit(shots_video.path, "acme", options=FAST).job_id
    run_id = sent[-1][0]
    for attempt in (1, 2):
        with engine.sessions.begin() as s:  # a worker takes it ... and dies: its lease simply runs out
            leased = repo.lease(s, run_id, f"doomed-{attempt}", 30, 0, 2)
            assert isinstance(leased, repo.Leased)
            s.get(StageRun, run_id).lease_until = utcnow() - timedelta(seconds=1)  # type: ignore[union-attr]
        assert engine.reconcile() == [run_id]  # the reconciler notices and sends it again
    assert engine.run_stage(run_id, worker="third") == "failed"
    info = engine.status("acme", job)
    assert info["status"] == "failed" and info["error_type"] == "internal-error"
    assert "started 2 times" in info["error"] and info["stages"][0]["attempts"] == 2


def test_a_worker_whose_lease_was_taken_over_cannot_fail_the_job(tmp_path: Path, shots_video: SampleVideo) -> None:
    """Worker A's lease expired and B holds the run now: A's late failure (or retry) must not touch B's run."""
    from datetime import timedelta

    from videopipe.db.models import utcnow
    from videopipe.db.repos import jobs as repo

    engine, sent = _engine(tmp_path, jobs=JobSettings(lease_s=30))
    job = engine.submit(shots_video.path, "acme", options=FAST).job_id
    run_id = sent[-1][0]
    with engine.sessions.begin() as s:
        assert isinstance(repo.lease(s, run_id, "a", 30, 0, 3), repo.Leased)
        s.get(StageRun, run_id).lease_until = utcnow() - timedelta(seconds=1)  # type: ignore[union-attr]
    with engine.sessions.begin() as s:
        assert isinstance(repo.lease(s, run_id, "b", 30, 0, 3), repo.Leased)
    with engine.sessions.begin() as s:
        repo.fail(s, run_id, "a", "internal-error", "A's late failure")
        assert repo.release_for_retry(s, run_id, "a", 3, "A's late retry") == "lost"
    info = engine.status("acme", job)
    assert info["status"] == "running" and info["stages"][0]["state"] == "running" and info["error"] is None


def _closed_port() -> int:
    import socket

    with socket.socket() as sock:  # bound, then closed: nothing listens there
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
