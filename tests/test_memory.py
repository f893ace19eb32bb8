"""The pass keeps no per-frame state: a video four times longer needs no more memory."""

from __future__ import annotations

import tracemalloc
from pathlib import Path

from videopipe.analysis import run_pass
from videopipe.config import Settings
from videopipe.media import probe
from videopipe.testing.media import write_sample_video


def _peak_bytes(path: Path) -> tuple[int, int]:
    info = probe(path)
    tracemalloc.start()
    try:
        result = run_pass(info, Settings())
        return tracemalloc.get_traced_memory()[1], result.frames
    finally:
        tracemalloc.stop()


def test_memory_is_flat_in_video_length(tmp_path: Path) -> None:
    # Same shot length in both, so the longer one has proportionally more scenes (their records are tiny).
    short = write_sample_video(tmp_path / "short.mp4", shots_s=[4.0] * 5, width=320, height=180, fps=25)
    long_ = write_sample_video(tmp_path / "long.mp4", shots_s=[4.0] * 20, width=320, height=180, fps=25)
    peak_short, frames_short = _peak_bytes(short.path)
    peak_long, frames_long = _peak_bytes(long_.path)
    assert frames_long == 4 * frames_short
    # Every frame's planes together would be ~2000 x 300 KB; the pass holds a handful at a time.
    assert peak_long < 1.25 * peak_short + 256 * 1024, (peak_short, peak_long)
