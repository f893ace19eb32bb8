"""Every kind of bad input gets a one-line typed error, exit status 2, no traceback, and nothing written."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import av
import pytest

from tests.support.cli import run_cli
from videopipe import errors
from videopipe.analysis import analyze
from videopipe.config import LimitSettings
from videopipe.media import probe
from videopipe.testing.media import SampleVideo, write_audio_only, write_sample_video


def _packets(path: Path) -> list[tuple[int, int]]:
    with av.open(str(path)) as c:
        return [(p.pos, p.size) for p in c.demux(video=0) if p.size]


def make_zero_byte(d: Path) -> Path:
    (p := d / "empty.mp4").write_bytes(b"")
    return p


def make_truncated_moov_at_end(d: Path) -> Path:
    src = write_sample_video(d / "full_moov_end.mp4", shots_s=(2.0, 2.0), faststart=False).path
    data = src.read_bytes()
    (p := d / "truncated_moov_end.mp4").write_bytes(data[: len(data) // 2])
    return p


def make_truncated_faststart(d: Path) -> Path:
    src = write_sample_video(d / "full_faststart.mp4", shots_s=(2.0, 2.0), faststart=True).path
    data = src.read_bytes()
    (p := d / "truncated_faststart.mp4").write_bytes(data[: len(data) // 2])
    return p


def make_truncated_mkv(d: Path) -> Path:
    src = write_sample_video(d / "full.mkv", shots_s=(2.0, 2.0, 2.0)).path
    data = src.read_bytes()
    (p := d / "truncated.mkv").write_bytes(data[: len(data) // 2])
    return p


def make_text(d: Path) -> Path:
    (p := d / "notes.mp4").write_text("meeting notes\nthese are not a video\n" * 20)
    return p


def make_pdf(d: Path) -> Path:
    (p := d / "slides.mp4").write_bytes(b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\n%%EOF\n" + bytes(2000))
    return p


def make_audio_only(d: Path) -> Path:
    return write_audio_only(d / "podcast.mp4", duration_s=2.0)


def make_no_decodable_frames(d: Path) -> Path:
    src = write_sample_video(d / "to_wipe.mp4", shots_s=(2.0,)).path
    data = bytearray(src.read_bytes())
    for pos, size in _packets(src):  # every video packet's payload replaced by junk NAL start codes
        data[pos : pos + size] = (b"\x00\x00\x00\x01" * (size // 4 + 1))[:size]
    (p := d / "wiped.mp4").write_bytes(bytes(data))
    return p


def make_absurd_aspect(d: Path) -> Path:
    return write_sample_video(d / "ribbon.mp4", shots_s=(0.4,), width=1024, height=16, fps=10).path


def make_missing(d: Path) -> Path:
    return d / "does-not-exist.mp4"


def make_directory(d: Path) -> Path:
    (p := d / "folder.mp4").mkdir(exist_ok=True)
    return p


BAD_INPUTS: list[tuple[Callable[[Path], Path], type[errors.InputError], str]] = [
    (make_zero_byte, errors.EmptyFile, "empty (0 bytes)"),
    (make_truncated_moov_at_end, errors.TruncatedVideo, "cut off"),
    (make_truncated_faststart, errors.TruncatedVideo, "cut off"),
    (make_truncated_mkv, errors.TruncatedVideo, "cut off"),
    (make_text, errors.NotAVideo, "a text file, not a video"),
    (make_pdf, errors.NotAVideo, "a PDF document, not a video"),
    (make_audio_only, errors.NoVideoStream, "audio only"),
    (make_no_decodable_frames, errors.UndecodableVideo, "no decodable frame"),
    (make_absurd_aspect, errors.UnsupportedVideo, "1024x16 frame is outside"),
    (make_missing, errors.VideoNotFound, "no such file"),
    (make_directory, errors.VideoNotFound, "is a directory"),
]


@pytest.mark.parametrize(("make", "error", "phrase"), BAD_INPUTS, ids=[m.__name__[5:] for m, _, _ in BAD_INPUTS])
def test_library_raises_typed_error(
    make: Callable[[Path], Path], error: type[Exception], phrase: str, tmp_path: Path
) -> None:
    path = make(tmp_path)
    with pytest.raises(error, match=phrase.replace("(", r"\(").replace(")", r"\)")):
        analyze(path, tmp_path / "out")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(("make", "error", "phrase"), BAD_INPUTS, ids=[m.__name__[5:] for m, _, _ in BAD_INPUTS])
def test_cli_prints_one_line_and_exits_2(
    make: Callable[[Path], Path], error: type[Exception], phrase: str, tmp_path: Path
) -> None:
    path = make(tmp_path)
    proc = run_cli("analyze", str(path), "--out", str(tmp_path / "out"), cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    assert phrase in lines[0]
    assert proc.stdout == ""
    assert not (tmp_path / "out").exists()


def test_oversized_frame_refused_by_limit(shots_video: SampleVideo, tmp_path: Path) -> None:
    with pytest.raises(errors.UnsupportedVideo, match="640x360 frame is outside"):
        probe(shots_video.path, LimitSettings(max_frame_pixels=640 * 359))
    proc = run_cli("analyze", str(shots_video.path), cwd=tmp_path, env={"VIDEOPIPE_LIMITS__MAX_FRAME_PIXELS": "100000"})
    assert proc.returncode == 2 and "VIDEOPIPE_LIMITS__" in proc.stderr


def test_oversized_file_refused_by_limit(shots_video: SampleVideo) -> None:
    with pytest.raises(errors.UnsupportedVideo, match="GiB limit"):
        probe(shots_video.path, LimitSettings(max_file_bytes=1000))


def test_corrupt_packet_mid_stream_is_skipped_with_warning(tmp_path: Path) -> None:
    src = write_sample_video(tmp_path / "ok.mp4", shots_s=(2.0, 2.0, 2.0), seed=4)
    data = bytearray(src.path.read_bytes())
    packets = _packets(src.path)
    pos, _ = packets[len(packets) // 2]
    data[pos : pos + 16] = b"\xff" * 16  # a broken NAL length prefix in the middle of the stream
    (bad := tmp_path / "corrupt.mp4").write_bytes(bytes(data))

    proc = run_cli("analyze", str(bad), "--json", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "warning: skipping a corrupt packet" in proc.stderr
    assert "Traceback" not in proc.stderr
    import json

    doc = json.loads(proc.stdout)
    assert len(doc["scenes"]) == 3
    assert any("corrupt packet" in w for w in doc["warnings"])
    assert doc["video"]["frame_count"] == len(src.frame_times_s) - 1


def test_failed_run_keeps_previous_results(shots_video: SampleVideo, tmp_path: Path) -> None:
    out = tmp_path / "out"
    analyze(shots_video.path, out)
    before = (out / "analysis.json").read_bytes()
    images = sorted(p.name for p in (out / "keyframes").iterdir())
    with pytest.raises(errors.EmptyFile):
        analyze(make_zero_byte(tmp_path), out)
    assert (out / "analysis.json").read_bytes() == before
    assert sorted(p.name for p in (out / "keyframes").iterdir()) == images
    assert [p.name for p in out.iterdir() if p.name.startswith(".")] == []
