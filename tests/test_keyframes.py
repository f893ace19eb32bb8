"""Keyframes: at least one per scene, more for long scenes, within budget, never at a cut, exact times."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from videopipe.analysis import run_pass
from videopipe.config import AnalysisSettings, KeyframeSettings, Settings
from videopipe.keyframes import KeyframeSelector
from videopipe.media import grab_frames, iter_analysis_frames, probe
from videopipe.media.decode import AnalysisFrame
from videopipe.scenes import Scene, SceneFrame
from videopipe.testing.media import SampleVideo


def test_every_scene_has_a_keyframe_inside_it_away_from_cuts(shots_video: SampleVideo) -> None:
    result = run_pass(probe(shots_video.path), Settings())
    by_scene = {s.index: s for s in result.scenes}
    assert {k.scene_index for k in result.keyframes} == set(by_scene)
    for k in result.keyframes:
        scene = by_scene[k.scene_index]
        assert scene.start_s + 0.12 <= k.t_s < scene.end_s - 0.12 + 1e-9
        assert any(abs(k.t_s - t) < 1e-3 for t in shots_video.frame_times_s)  # a real frame's time


def test_long_scenes_get_more_keyframes_and_budget_holds(shots_video: SampleVideo) -> None:
    settings = Settings(keyframes=KeyframeSettings(extra_every_s=2.0))
    result = run_pass(probe(shots_video.path), settings)
    per_scene = {s.index: 0 for s in result.scenes}
    for k in result.keyframes:
        per_scene[k.scene_index] += 1
    longest = max(result.scenes, key=lambda s: s.end_s - s.start_s)
    assert per_scene[longest.index] == 1 + int((longest.end_s - longest.start_s) // 2.0)
    assert min(per_scene.values()) >= 1

    tight = Settings(keyframes=KeyframeSettings(extra_every_s=2.0, max_total=len(result.scenes) + 1))
    trimmed = run_pass(probe(shots_video.path), tight)
    assert len(trimmed.keyframes) == len(result.scenes) + 1
    assert {k.scene_index for k in trimmed.keyframes} == set(per_scene)


def test_grabbed_keyframe_is_the_frame_at_that_pts(shots_video: SampleVideo) -> None:
    """The full-resolution image matches the analysis frame with the same PTS, not a neighbour."""
    info = probe(shots_video.path)
    result = run_pass(info, Settings())
    wanted = {k.pts for k in result.keyframes}
    exact = AnalysisSettings(skip_loop_filter=False)
    # Analysis planes are limited-range Y (16-235); the grabbed RGB image is full range.
    small = {
        f.pts: (f.luma.astype(np.float32) - 16) * 255 / 219
        for f in iter_analysis_frames(info, exact)
        if f.pts in wanted or f.pts - 512 in wanted
    }
    assert len(wanted) >= len(result.scenes)
    compared = 0
    for grabbed in grab_frames(info, wanted):
        assert grabbed.image.size == (info.width, info.height)
        luma = np.asarray(
            grabbed.image.convert("L").resize(small[grabbed.pts].shape[::-1], Image.Resampling.BOX), dtype=np.float32
        )
        same = np.abs(luma - small[grabbed.pts]).mean()
        assert same < 3.0
        neighbour = small.get(grabbed.pts + 512)  # the next frame (time base 1/12800 at 25 fps)
        if neighbour is not None:  # none after the video's last frame
            assert same < np.abs(luma - neighbour).mean()
            compared += 1
    assert compared >= len(wanted) - 1  # the neighbour check ran for (nearly) every keyframe


def _frame(i: int, luma: np.ndarray) -> AnalysisFrame:
    chroma = np.full((luma.shape[0] // 2, luma.shape[1] // 2), 128, np.uint8)
    return AnalysisFrame(i, i * 40, i * 0.04, luma, chroma, chroma)


def test_selector_prefers_the_sharp_still_frame() -> None:
    rng = np.random.default_rng(0)
    sharp = (rng.random((90, 160)) * 255).astype(np.uint8)
    blurred = np.full((90, 160), 128, np.uint8) + (sharp // 32)
    selector = KeyframeSelector(KeyframeSettings())
    for i in range(50):
        luma = sharp if i == 30 else blurred
        selector.push(SceneFrame(_frame(i, luma), 0, i == 0, 1.0))
    [chosen] = selector.select([Scene(0, 0.0, 2.0, 0, 50)])
    assert chosen.t_s == pytest.approx(30 * 0.04)
