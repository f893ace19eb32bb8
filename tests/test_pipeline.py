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
from videopipe.errors import EmptyFile
from videopipe.pipeline import EmbeddedRunner, Pipeline
from videopipe.samples import SampleVideo
from videopipe.storage import LocalBlobStore

FAST = {"asr": False, "ocr": False, "motion": False, "vlm": "none"}


@pytest.fixture
def embedded(tmp_path: Path) -> Any:
    url = f"sqlite:///{tmp_path / 'vp.db'}"
    upgrade(url)
    engine = make_engine(url)
    sessions = make_session_factory(engine)
    settings = Settings(data_dir=tmp_path, jobs=JobSettings(lease_s=30))
    store = LocalBlobStore(tmp_path / "blobs")
    holder: dict[str, Pipeline] = {}
    runner = EmbeddedRunner(lambda: holder["p"], concurrency=1)
    holder["p"] = Pipeline(sessions, store, settings, runner)
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
    status = pipeline.status(submitted.job_id)
    assert status["status"] == "ready" and status["progress"] == 1.0 and status["stage"] is None
    assert [(s["stage"], s["state"], s["attempts"]) for s in status["stages"]] == [
        ("perceive", "done", 1),
        ("understand", "done", 1),
        ("index", "done", 1),
    ]
    n_scenes = len(shots_video.cut_times_s) + 1
    assert _count(sessions, Scene, submitted.video_id) == n_scenes
    assert _count(sessions, Moment, submitted.video_id) == n_scenes
    assert _count(sessions, Chapter, submitted.video_id) >= 1
    doc = pipeline.document(submitted.video_id)
    assert [s["start_s"] for s in doc["scenes"][1:]] == pytest.approx(shots_video.cut_times_s, abs=0.02)
    assert all(pipeline.store.exists(k["blob_key"]) for k in doc["keyframes"])


def test_the_same_video_twice_is_processed_once(embedded: Any, shots_video: SampleVideo, tmp_path: Path) -> None:
    pipeline, runner, sessions = embedded
    first = pipeline.submit(shots_video.path, options=FAST)
    copy = tmp_path / "renamed copy.mp4"
    copy.write_bytes(shots_video.path.read_bytes())
    second = pipeline.submit(copy, options=FAST)
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
    failed = pipeline.submit(bad, options=FAST)
    good = pipeline.submit(shots_video.path, options=FAST)  # queued behind it: not blocked
    runner.wait()
    status = pipeline.status(failed.job_id)
    assert status["status"] == "failed" and status["error_type"] == "not-a-video"
    assert "a text file, not a video" in status["error"]
    assert status["stages"][0]["attempts"] == 1  # bad input is not retried
    assert pipeline.status(good.job_id)["status"] == "ready"
    with pytest.raises(EmptyFile):
        empty = tmp_path / "empty.mp4"
        empty.write_bytes(b"")
        pipeline.submit(empty)


def test_cancel_before_it_runs(tmp_path: Path, shots_video: SampleVideo) -> None:
    url = f"sqlite:///{tmp_path / 'vp.db'}"
    upgrade(url)
    engine = make_engine(url)
    pipeline = Pipeline(make_session_factory(engine), LocalBlobStore(tmp_path / "b"), Settings(data_dir=tmp_path))
    submitted = pipeline.submit(shots_video.path, options=FAST)  # no dispatcher: stays queued
    assert pipeline.status(submitted.job_id)["status"] == "queued"
    assert pipeline.cancel(submitted.job_id)["status"] == "cancelled"
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
    pipeline = Pipeline(make_session_factory(engine), LocalBlobStore(tmp_path / "b"), Settings(data_dir=tmp_path))

    def pending_run(job_id: str) -> str:
        with pipeline.sessions() as s:
            return s.scalars(select(StageRun.id).where(StageRun.job_id == job_id, StageRun.state == "pending")).one()

    first = pipeline.submit(shots_video.path, options=FAST)
    assert pipeline.run_stage(pending_run(first.job_id)) == "done"  # perceive
    pipeline.cancel(first.job_id)  # understand never ran
    second = pipeline.submit(shots_video.path, options=FAST)
    assert second.created and second.job_id != first.job_id
    assert pipeline.run_stage(pending_run(second.job_id)) == "skipped"  # perceive: same bytes, same settings
    assert pipeline.run_stage(pending_run(second.job_id)) == "done"  # understand
    assert pipeline.run_stage(pending_run(second.job_id)) == "done"  # index
    status = pipeline.status(second.job_id)
    assert status["status"] == "ready" and [s["state"] for s in status["stages"]] == ["skipped", "done", "done"]
    assert status["stages"][0]["attempts"] == 0
    assert _count(pipeline.sessions, Scene, second.video_id) == len(shots_video.cut_times_s) + 1
    # Other settings are other inputs: the stage runs.
    third = pipeline.submit(shots_video.path, options={**FAST, "profile": "lecture"})
    assert pipeline.run_stage(pending_run(third.job_id)) == "done"
    engine.dispose()
