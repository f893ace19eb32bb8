"""Cut detection on real encoded files: every hard cut found within one frame, and no false ones."""

from __future__ import annotations

from pathlib import Path

import pytest

from videopipe.analysis import run_pass
from videopipe.config import Settings
from videopipe.media import iter_analysis_frames, probe
from videopipe.scenes import match_cuts
from videopipe.testing.media import SampleVideo, write_sample_video


def _scan(path: Path) -> tuple[list[float], list[float]]:
    result = run_pass(probe(path), Settings())
    starts = [s.start_s for s in result.scenes]
    return starts[1:], [s.end_s for s in result.scenes]


@pytest.mark.parametrize("fixture", ["shots_video", "ntsc_video", "vfr_video"])
def test_hard_cuts_found_within_one_frame(fixture: str, request: pytest.FixtureRequest) -> None:
    sample: SampleVideo = request.getfixturevalue(fixture)
    found, _ = _scan(sample.path)
    assert len(found) == len(sample.cut_times_s), (found, sample.cut_times_s)
    frame_s = 1 / sample.fps
    for got, want in zip(found, sample.cut_times_s, strict=True):
        assert abs(got - want) < 0.5 * frame_s, (got, want)


def test_cut_times_are_frame_pts_on_vfr(vfr_video: SampleVideo) -> None:
    """On VFR input the cut is the exact PTS of the shot's first frame, not index / fps."""
    found, _ = _scan(vfr_video.path)
    frame_times = vfr_video.frame_times_s
    for got, want in zip(found, vfr_video.cut_times_s, strict=True):
        assert got == pytest.approx(want, abs=1e-3)
        naive = frame_times.index(want) / (len(frame_times) / vfr_video.duration_s)
        assert abs(naive - want) > 0.02  # index/fps would have been visibly wrong here


def test_every_decoded_frame_time_is_a_real_pts(vfr_video: SampleVideo) -> None:
    info = probe(vfr_video.path)
    times = [f.t_s for f in iter_analysis_frames(info)]
    assert len(times) == len(vfr_video.frame_times_s)
    assert times == pytest.approx(vfr_video.frame_times_s, abs=1e-3)


def test_ffmpeg_lavfi_sources_cut_at_known_frames(lavfi_video: Path) -> None:
    found, ends = _scan(lavfi_video)
    assert found == pytest.approx([2.0, 4.0], abs=0.5 / 30)
    assert ends[-1] == pytest.approx(6.0, abs=1 / 30)


def test_flashes_and_camera_motion_are_not_cuts(media_dir: Path) -> None:
    sample = write_sample_video(media_dir / "flash.mp4", shots_s=(4.0, 4.0), fps=25, seed=7, flashes_s=(1.0, 2.52, 5.6))
    found, _ = _scan(sample.path)
    tp, fp, fn = match_cuts(found, sample.cut_times_s, tolerance_s=0.02)
    assert (tp, fp, fn) == (1, 0, 0), found


def test_single_shot_is_one_scene_spanning_the_video(media_dir: Path) -> None:
    sample = write_sample_video(media_dir / "one.mp4", shots_s=(3.0,), fps=25, seed=11)
    found, ends = _scan(sample.path)
    assert found == []
    assert ends == [pytest.approx(3.0, abs=0.04)]


def test_avi_with_b_frames_gets_presentation_times(media_dir: Path) -> None:
    """AVI stores no presentation stamps: decode-order stamps are re-sorted so times still increase."""
    sample = write_sample_video(media_dir / "bframes.avi", shots_s=(2.0, 1.6, 2.4), fps=25, seed=9)
    info = probe(sample.path)
    times = [f.t_s for f in iter_analysis_frames(info)]
    # FFmpeg puts AVI's first B-frame-delayed picture at one frame in (0.04 s); what matters is that every
    # frame is there, in order, on the right clock.
    offset = times[0]
    assert 0 <= offset <= 0.04 + 1e-9
    assert [t - offset for t in times] == pytest.approx(sample.frame_times_s, abs=1e-6)
    found, _ = _scan(sample.path)
    assert [t - offset for t in found] == pytest.approx(sample.cut_times_s, abs=1e-6)
