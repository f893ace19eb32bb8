"""The shared pass hands every frame, once and in order, to every consumer (the hook motion will use)."""

from __future__ import annotations

from pathlib import Path

from videopipe.analysis import analyze, run_pass
from videopipe.config import Settings
from videopipe.media import probe
from videopipe.scenes import SceneFrame
from videopipe.testing.media import SampleVideo


class Recorder:
    def __init__(self) -> None:
        self.frames: list[SceneFrame] = []

    def push(self, sf: SceneFrame) -> None:
        self.frames.append(sf)


class StageLog:
    def __init__(self) -> None:
        self.events: list[tuple[str, float]] = []

    def start(self, stage: str, total: float) -> None:
        self.events.append((stage, total))

    def update(self, done: float) -> None:
        self.events.append(("update", done))


def test_consumers_see_every_frame_with_its_scene(shots_video: SampleVideo) -> None:
    recorder = Recorder()
    result = run_pass(probe(shots_video.path), Settings(), consumers=[recorder])
    times = [sf.frame.t_s for sf in recorder.frames]
    assert len(times) == len(shots_video.frame_times_s) == result.frames
    assert times == sorted(times) and len(set(times)) == len(times)
    starts = [sf.frame.t_s for sf in recorder.frames if sf.new_scene]
    assert starts == [s.start_s for s in result.scenes]
    assert [sf.scene_index for sf in recorder.frames] == sorted(sf.scene_index for sf in recorder.frames)
    assert recorder.frames[0].frame.luma.shape == (180, 320)  # 640x360 halved once to fit 400 px


def test_progress_reports_each_stage_and_reaches_the_end(shots_video: SampleVideo, tmp_path: Path) -> None:
    log = StageLog()
    doc = analyze(shots_video.path, tmp_path / "out", progress=log)
    stages = [name for name, _ in log.events if name != "update"]
    assert stages == ["scan", "keyframes", "speech", "ocr"]
    scan_total = log.events[0][1]
    scan_updates = [v for name, v in log.events[1 : log.events.index(("keyframes", len(doc["keyframes"])))]]
    assert scan_updates == sorted(scan_updates) and scan_updates[-1] == scan_total
    keyframe_updates = log.events[log.events.index(("keyframes", len(doc["keyframes"]))) + 1 :]
    assert keyframe_updates[len(doc["keyframes"]) - 1] == ("update", len(doc["keyframes"]))
    assert log.events[-1] == ("update", len(doc["keyframes"]))  # OCR read every keyframe, last
