"""Probe reports the file's real properties."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.support.media import ffmpeg
from videopipe.media import grab_frames, probe
from videopipe.testing.media import SampleVideo, write_sample_video


def test_cfr_video_properties(shots_video: SampleVideo) -> None:
    info = probe(shots_video.path)
    assert (info.width, info.height, info.codec) == (640, 360, "h264")
    assert info.fps == pytest.approx(25.0)
    assert info.duration_s == pytest.approx(shots_video.duration_s, abs=0.05)
    assert info.frame_count == len(shots_video.frame_times_s)
    assert info.has_audio and info.audio_codec == "aac"
    assert not info.vfr
    assert info.rotation == 0


def test_ntsc_rate_is_not_rounded(ntsc_video: SampleVideo) -> None:
    info = probe(ntsc_video.path)
    assert info.fps == pytest.approx(30000 / 1001, rel=1e-3)
    assert not info.vfr and not info.has_audio


def test_vfr_is_flagged(vfr_video: SampleVideo) -> None:
    info = probe(vfr_video.path)
    assert info.vfr
    assert info.fps == pytest.approx(len(vfr_video.frame_times_s) / vfr_video.duration_s, rel=0.02)


@pytest.mark.parametrize("rotation", [90, 270, 180])
def test_rotation_metadata_gives_displayed_dimensions(media_dir: Path, rotation: int) -> None:
    sample = write_sample_video(
        media_dir / f"rot{rotation}.mp4", shots_s=(2.0,), width=320, height=176, fps=25, rotation=rotation, seed=5
    )
    info = probe(sample.path)
    assert info.rotation == rotation
    expect = (176, 320) if rotation in (90, 270) else (320, 176)
    assert (info.width, info.height) == expect
    assert (info.coded_width, info.coded_height) == (320, 176)

    # Grabbed frames come out upright, exactly as FFmpeg's own autorotation shows them.
    reference = media_dir / f"rot{rotation}.png"
    ffmpeg("-i", str(sample.path), "-vf", "select=eq(n\\,25)", "-frames:v", "1", "-pix_fmt", "rgb24", str(reference))
    pts = round(1.0 / float(info.time_base))
    [grabbed] = list(grab_frames(info, [pts]))
    ours = np.asarray(grabbed.image, dtype=np.float32)
    theirs = np.asarray(Image.open(reference).convert("RGB"), dtype=np.float32)
    assert ours.shape == theirs.shape == (expect[1], expect[0], 3)
    assert np.abs(ours - theirs).mean() < 4.0
