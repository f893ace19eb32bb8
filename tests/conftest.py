"""Shared fixtures: real video files made once per test session (PyAV encodes, Debian ffmpeg for lavfi)."""

from __future__ import annotations

import atexit
import logging
import os
import runpy
import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

# Before anything imports torchvision (see tests/support/sitecustomize.py); child processes get it too.
SUPPORT = Path(__file__).parent / "support"
os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(SUPPORT), os.environ.get("PYTHONPATH")]))
# Keep the namespace: the torch.library.Library object in it must outlive the session.
TORCHVISION_SHIM = runpy.run_path(str(SUPPORT / "sitecustomize.py"))  # the file child processes load

# Tests never read or write the user's own library (~/.local/share/videopipe): this process and every process it
# starts (CLI runs, servers, workers) get a scratch data folder unless a test sets its own.
DATA_DIR = tempfile.mkdtemp(prefix="vp-tests-data-")
os.environ["VIDEOPIPE_DATA_DIR"] = DATA_DIR
atexit.register(shutil.rmtree, DATA_DIR, True)

# `tests.support` is imported as a package from the checkout's root: on sys.path with `python -m pytest` (the
# Makefile's way), put there for a bare `pytest` too.
if str(SUPPORT.parents[1]) not in sys.path:
    sys.path.insert(0, str(SUPPORT.parents[1]))

from tests.support.media import ffmpeg  # noqa: E402
from videopipe.testing.media import SampleVideo, write_sample_video  # noqa: E402


@pytest.fixture(autouse=True)
def _fail_on_logged_errors(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    """A test that made videopipe log at ERROR failed, even if its assertions passed."""
    yield
    errors = [r for r in caplog.get_records("call") if r.levelno >= logging.ERROR and r.name.startswith("videopipe")]
    if errors:
        pytest.fail("logged at ERROR: " + "; ".join(r.getMessage() for r in errors))


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    """A real S3 API on loopback (moto's server)."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture(scope="session")
def media_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("media")


@pytest.fixture(scope="session")
def shots_video(media_dir: Path) -> SampleVideo:
    """25 fps, 640x360, seven shots with moving cameras and objects, an audio track."""
    return write_sample_video(
        media_dir / "shots.mp4", shots_s=(3.0, 1.5, 4.2, 2.0, 6.0, 0.8, 2.5), fps=25, audio=True, seed=1
    )


@pytest.fixture(scope="session")
def ntsc_video(media_dir: Path) -> SampleVideo:
    """29.97 fps (30000/1001): cut times that are not round numbers."""
    return write_sample_video(media_dir / "ntsc.mp4", shots_s=(2.0, 3.1, 1.7, 2.6), fps=30000 / 1001, seed=2)


@pytest.fixture(scope="session")
def vfr_video(media_dir: Path) -> SampleVideo:
    """Variable frame rate: 50 ms frames for 4 s, then 20 and 33 ms in turn (index / mean fps drifts)."""
    return write_sample_video(
        media_dir / "vfr.mp4",
        shots_s=(2.5, 3.0, 2.2, 3.3),
        fps=30,
        frame_durations_s=lambda i: 0.050 if i < 80 else (0.020, 0.033)[i % 2],
        seed=3,
    )


@pytest.fixture(scope="session")
def lavfi_video(media_dir: Path) -> Path:
    """Three FFmpeg test sources concatenated: hard cuts at exactly 2.0 s and 4.0 s (frame 60 and 120)."""
    out = media_dir / "lavfi.mp4"
    ffmpeg(
        "-f",
        "lavfi",
        "-i",
        "testsrc2=size=320x240:rate=30:duration=2",
        "-f",
        "lavfi",
        "-i",
        "mandelbrot=size=320x240:rate=30",
        "-f",
        "lavfi",
        "-i",
        "life=size=320x240:rate=30:mold=10:ratio=0.2:death_color=#C83232:life_color=#00ff00",
        "-filter_complex",
        "[1:v]trim=duration=2,setpts=PTS-STARTPTS[b];[2:v]trim=duration=2,setpts=PTS-STARTPTS[c];"
        "[0:v][b][c]concat=n=3:v=1:a=0,format=yuv420p[v]",
        "-map",
        "[v]",
        "-c:v",
        "libx264",
        "-preset",
        "veryfast",
        str(out),
    )
    return out


@pytest.fixture(scope="session")
def tiny_qwen(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random-weight Qwen3-VL checkpoint (real tokenizer, processor and model classes), built offline."""
    from videopipe.vlm.testing import build_tiny_qwen3_vl

    return build_tiny_qwen3_vl(tmp_path_factory.mktemp("tiny-qwen3-vl"))


# A short lecture whose spoken and on-screen content is known: three subjects, one sentence each.
LECTURE_SLIDES = (
    ("Entropy and information", ("Shannon 1948", "measured in bits"), 6.0),
    ("How volcanoes erupt", ("magma chambers", "eruption warning signs"), 6.0),
    ("Telescopes and galaxies", ("mirrors and lenses", "distant galaxies"), 6.0),
)
LECTURE_NARRATION = (
    (0.8, "Entropy measures uncertainty in a message."),
    (6.8, "A volcano can erupt without warning."),
    (12.8, "The telescope revealed distant galaxies."),
)


@pytest.fixture(scope="session")
def short_lecture(media_dir: Path) -> Path:
    """18 s, 640x360: three slides, each with one narrated sentence (espeak-ng)."""
    from videopipe.testing.media import Slide, write_lecture_video

    slides = [Slide(t, lines, d) for t, lines, d in LECTURE_SLIDES]
    return write_lecture_video(media_dir / "short-lecture.mp4", slides, LECTURE_NARRATION, width=640, height=360).path
