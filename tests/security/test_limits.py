"""The media limits, in the library itself: opened through one allow-listed door, checked before the work they
bound, and checked again while decoding (files the probe could not read whole, decoders that find more)."""

from __future__ import annotations

import importlib
import re
import socket
import threading
from collections.abc import Callable, Iterator
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import psutil
import pytest

from tests.support.media import ffmpeg
from videopipe import errors
from videopipe.analysis import check_job_options
from videopipe.config import AnalysisSettings, LimitSettings
from videopipe.media import iter_analysis_frames, probe
from videopipe.media.container import open_media
from videopipe.media.isolate import probe_isolated
from videopipe.perception.audio import iter_audio_chunks
from videopipe.testing.media import write_sample_video


@pytest.fixture
def listener() -> Iterator[tuple[int, list[object]]]:
    """A loopback TCP port that records every connection: nothing we open may ever reach it."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    server.settimeout(0.2)
    seen: list[object] = []
    stop = threading.Event()

    def accept() -> None:
        while not stop.is_set():
            try:
                conn, addr = server.accept()
            except OSError:
                continue
            seen.append(addr)
            conn.close()

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield server.getsockname()[1], seen
    stop.set()
    thread.join()
    server.close()


@pytest.fixture(scope="module")
def segment(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("segments")
    out = folder / "secret.ts"
    ffmpeg("-f", "lavfi", "-i", "testsrc2=size=320x240:rate=25:duration=2", "-c:v", "libx264", "-f", "mpegts", str(out))
    return out


def _refs(segment: Path, port: int) -> dict[str, bytes]:
    url = f"http://127.0.0.1:{port}/x.ts"
    return {
        "hls-local.m3u8": f"#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXTINF:2,\n{segment}\n#EXT-X-ENDLIST\n".encode(),
        "hls-net.mp4": f"#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXTINF:2,\n{url}\n#EXT-X-ENDLIST\n".encode(),
        "concat.mkv": f"ffconcat version 1.0\nfile '{segment}'\nfile '{url}'\n".encode(),
        "dash.mp4": (
            '<?xml version="1.0"?><MPD xmlns="urn:mpeg:dash:schema:mpd:2011" type="static" '
            'mediaPresentationDuration="PT2S"><Period><AdaptationSet mimeType="video/mp2t"><Representation id="1" '
            f'bandwidth="1000"><BaseURL>{url}</BaseURL></Representation></AdaptationSet></Period></MPD>'
        ).encode(),
        "stream.sdp": f"v=0\no=- 0 0 IN IP4 127.0.0.1\ns=x\nc=IN IP4 127.0.0.1\nt=0 0\nm=video {port} RTP/AVP 96\n"
        "a=rtpmap:96 H264/90000\n".encode(),
        "list.avi": f"{segment}\n{url}\n".encode(),
    }


@pytest.mark.parametrize("name", ["hls-local.m3u8", "hls-net.mp4", "concat.mkv", "dash.mp4", "stream.sdp", "list.avi"])
def test_files_that_name_other_inputs_are_refused_unread(
    name: str, segment: Path, listener: tuple[int, list[object]], tmp_path: Path
) -> None:
    port, seen = listener
    path = tmp_path / name
    path.write_bytes(_refs(segment, port)[name])
    with pytest.raises(errors.UnsupportedContainer, match="names other files or URLs"):
        probe(path)
    with pytest.raises(errors.UnsupportedContainer):
        probe_isolated(path, LimitSettings())
    assert seen == []


@pytest.mark.parametrize(("fmt", "ext", "codec"), [
    ("mp4", "mp4", "libx264"), ("matroska", "mkv", "libx264"), ("webm", "webm", "libvpx"), ("avi", "avi", "mpeg4"),
    ("mpegts", "ts", "libx264"), ("vob", "mpg", "mpeg2video"), ("flv", "flv", "libx264"), ("asf", "wmv", "wmv2"),
    ("ogg", "ogv", "libtheora"), ("mov", "mov", "libx264"),
])  # fmt: skip
def test_every_allowed_container_opens(fmt: str, ext: str, codec: str, tmp_path: Path) -> None:
    out = tmp_path / f"ok.{ext}"
    ffmpeg("-f", "lavfi", "-i", "testsrc2=size=320x240:rate=25:duration=2", "-c:v", codec, "-f", fmt, str(out))
    info = probe(out)
    assert info.duration_s == pytest.approx(2.0, abs=0.15)
    assert (info.width, info.height) == (320, 240)


def test_an_image_sequence_or_raw_stream_is_not_opened(tmp_path: Path) -> None:
    ffmpeg("-f", "lavfi", "-i", "testsrc2=size=320x240:rate=5:duration=1", str(tmp_path / "img%03d.png"))
    pattern = tmp_path / "img%03d.png"  # a file really called so: FFmpeg's image2 would read img001.png...
    pattern.write_bytes((tmp_path / "img002.png").read_bytes())
    with pytest.raises((errors.UnsupportedContainer, errors.NotAVideo)):
        probe(pattern)
    ffmpeg("-f", "lavfi", "-i", "testsrc2=size=320x240:rate=25:duration=1", "-f", "h264", str(tmp_path / "raw.mp4"))
    with pytest.raises(errors.UnsupportedContainer, match="not one videopipe opens"):
        probe(tmp_path / "raw.mp4")
    with pytest.raises(errors.NotAVideo, match="PNG image"):
        probe((tmp_path / "img001.png").rename(tmp_path / "photo.mp4"))


def _write_mkv(
    path: Path,
    frames: int,
    *,
    size: tuple[int, int] = (320, 240),
    rate: int = 25,
    shade: Callable[[int], int] = lambda i: (i * 5) % 255,
    frame_pts: Callable[[int], int] | None = None,
    packet_pts: int | None = None,
    options: dict[str, str] | None = None,
) -> Path:
    """H.264 frames of flat `shade`s in Matroska (no Duration element), their timestamps as the test needs:
    `frame_pts` in milliseconds for each frame, or `packet_pts` stamped on every packet after encoding."""
    out = av.open(str(path), "w", format="matroska")
    stream = out.add_stream("libx264", rate=rate)
    stream.width, stream.height, stream.pix_fmt = size[0], size[1], "yuv420p"
    if frame_pts is not None:
        stream.time_base = Fraction(1, 1000)
    if options:
        stream.options = options

    def mux(packets: list[av.Packet]) -> None:
        for packet in packets:
            if packet_pts is not None:
                packet.pts = packet.dts = packet_pts
            out.mux(packet)

    for i in range(frames):
        frame = av.VideoFrame.from_ndarray(np.full((size[1], size[0], 3), shade(i), np.uint8), format="rgb24")
        if frame_pts is not None:
            frame.pts, frame.time_base = frame_pts(i), Fraction(1, 1000)
        mux(stream.encode(frame))
    mux(stream.encode())
    out.close()
    return path


def _mkv_with_jump(path: Path, jump_s: float, frames: int = 50) -> Path:
    """2 s at 25 fps whose timestamps jump by `jump_s` half way."""
    jump_ms = round(jump_s * 1000)
    return _write_mkv(path, frames, frame_pts=lambda i: i * 40 + (jump_ms if i >= frames // 2 else 0))


def test_a_timestamp_jump_is_refused_at_once(tmp_path: Path) -> None:
    path = _mkv_with_jump(tmp_path / "jump.mkv", 1e7)
    with pytest.raises(errors.UnsupportedVideo, match=r"timestamps jump forward by 10,000,000 s at 0\.9 s"):
        probe(path)
    # Under the duration limit but over the gap limit: still a jump, not a 2-hour video of nothing.
    with pytest.raises(errors.UnsupportedVideo, match="jump forward by 7,200 s"):
        probe(_mkv_with_jump(tmp_path / "gap.mkv", 7200))
    # A small step is an ordinary pause in a variable-frame-rate recording.
    assert probe(_mkv_with_jump(tmp_path / "pause.mkv", 30)).duration_s == pytest.approx(32.0, abs=0.1)


def test_limits_past_the_probe_are_checked_while_decoding(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A file too long for the probe to read whole: the decode pass finds the jump itself."""
    path = _mkv_with_jump(tmp_path / "late.mkv", 7200, frames=60)
    monkeypatch.setattr(importlib.import_module("videopipe.media.probe"), "_SCAN_PACKETS", 10)
    info = probe(path)  # the first 10 packets look fine, and Matroska without Duration says nothing more
    with pytest.raises(errors.UnsupportedVideo, match="jump forward by 7,200 s"):
        list(iter_analysis_frames(info, AnalysisSettings()))


def test_the_decode_budget_and_pixel_rate(tmp_path: Path) -> None:
    video = write_sample_video(tmp_path / "v.mp4", shots_s=(2.0,), width=320, height=240, fps=25).path
    budget = 320 * 240 * 30  # 30 frames' worth; the file has 50
    with pytest.raises(errors.UnsupportedVideo, match="decode budget"):
        probe(video, LimitSettings(max_decode_pixels=budget))
    info = probe(video)
    with pytest.raises(errors.UnsupportedVideo, match="decode budget"):
        list(iter_analysis_frames(info, AnalysisSettings(), limits=LimitSettings(max_decode_pixels=budget)))
    with pytest.raises(errors.UnsupportedVideo, match="Mpixel/s"):
        probe(video, LimitSettings(max_pixel_rate=320 * 240 * 20))


def test_frames_many_times_faster_than_declared_count_against_the_pixel_rate(tmp_path: Path) -> None:
    """1,000 720p frames crammed into 1 s of timestamps: the rate from the packets decides, not the header's."""
    path = _write_mkv(tmp_path / "dense.mkv", 1000, size=(1280, 720), rate=1, shade=lambda i: 0,
                      frame_pts=lambda i: i, options={"preset": "ultrafast"})  # fmt: skip
    with pytest.raises(errors.UnsupportedVideo, match="Mpixel/s"):
        probe(path)


def test_too_many_streams(tmp_path: Path) -> None:
    video = write_sample_video(tmp_path / "v.mp4", shots_s=(1.0,), width=320, height=240).path
    maps = [arg for _ in range(40) for arg in ("-map", "1:a")]
    out = tmp_path / "streams.mkv"
    ffmpeg("-i", str(video), "-f", "lavfi", "-i", "sine=d=1", "-map", "0:v", *maps, "-c:v", "copy", "-c:a", "aac",
           str(out))  # fmt: skip
    with pytest.raises(errors.UnsupportedVideo, match="more than 32 streams"):
        probe(out)
    assert probe(out, LimitSettings(max_streams=64)).duration_s == pytest.approx(1.0, abs=0.1)


def test_a_huge_frame_is_refused_without_its_memory(tmp_path: Path) -> None:
    big = tmp_path / "big.mkv"
    ffmpeg("-f", "lavfi", "-i", "color=c=red:s=16000x16000:d=1:r=1", "-frames:v", "1", "-c:v", "png", str(big))
    me = psutil.Process()
    before = me.memory_info().rss
    with pytest.raises(errors.InputError, match=r"Mpixel|outside what videopipe analyses"):
        probe(big)
    with pytest.raises(errors.InputError):
        probe_isolated(big, LimitSettings())
    assert me.memory_info().rss - before < 100 * 1024**2
    # With the frame limit raised, the child process's memory limit still holds it.
    roomy = LimitSettings(max_frame_pixels=16000 * 16000, probe_memory_bytes=600 * 1024**2)
    with pytest.raises(errors.UnsupportedVideo, match="needs more memory"):
        probe_isolated(big, roomy)


def test_audio_is_decoded_no_further_than_asked(tmp_path: Path) -> None:
    out = tmp_path / "long-audio.mkv"
    ffmpeg("-f", "lavfi", "-i", "testsrc2=size=320x240:rate=25:duration=2", "-f", "lavfi", "-i", "sine=d=60",
           "-c:v", "libx264", "-c:a", "aac", str(out))  # fmt: skip
    total = sum(samples.size for _, samples in iter_audio_chunks(out, chunk_s=30.0, search_s=1.0, max_s=5.0))
    assert 5 * 16_000 <= total < 6 * 16_000


def test_job_options_are_checked_in_the_core() -> None:
    assert check_job_options({"profile": "lecture", "asr": False}) == {"profile": "lecture", "asr": False}
    for bad in ({"profile": "evil"}, {"asr": 1}, {"what": True}, {"vlm": "gpt"}):
        with pytest.raises(errors.BadRequest):
            check_job_options(bad)


def test_open_media_is_the_only_door() -> None:
    """Every module that reads media goes through open_media (videopipe.testing writes our own files)."""
    root = Path(__file__).resolve().parents[2]
    offenders = [
        str(p.relative_to(root))
        for package in ("videopipe", "api", "workers")
        for p in (root / package).rglob("*.py")
        if re.search(r"\bav\s*\.\s*open\b|from av import open", p.read_text())
        # videopipe/testing/ writes our own synthetic media (and reads back the WAVs it synthesised or took from
        # packages a moment before); it serves the demo, tests and benchmarks, never an upload
        and str(p.relative_to(root)) != "videopipe/media/container.py"
        and not str(p.relative_to(root)).startswith("videopipe/testing/")
    ]
    assert offenders == []
    assert open_media  # the door itself


def _mkv_frozen_clock(path: Path, frames: int) -> Path:
    """Every frame stamped 0: a decoder produces them all, a timeline keeps one."""
    return _write_mkv(path, frames, size=(64, 64), shade=lambda i: i % 255, packet_pts=0,
                      options={"preset": "ultrafast", "bframes": "0"})  # fmt: skip


def test_frames_whose_timestamps_stand_still_are_counted_and_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Frames dropped for a repeated timestamp still cost their decoding: they count, and a clock that stands
    still is refused (by the probe, and by the decode pass for files too long for the probe to read whole)."""
    path = _mkv_frozen_clock(tmp_path / "frozen.mkv", 3000)
    with pytest.raises(errors.UnsupportedVideo, match="timestamps do not advance"):
        probe(path)
    monkeypatch.setattr(importlib.import_module("videopipe.media.probe"), "_SCAN_PACKETS", 10)
    info = probe(path)
    with pytest.raises(errors.UnsupportedVideo, match="timestamps do not advance"):
        list(iter_analysis_frames(info, AnalysisSettings()))


def test_a_child_that_cannot_start_is_the_servers_fault_not_the_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    video = write_sample_video(tmp_path / "v.mp4", shots_s=(1.0,), width=320, height=240).path
    monkeypatch.setattr("sys.executable", "/bin/false")
    with pytest.raises(RuntimeError, match="probe child process failed"):
        probe_isolated(video, LimitSettings())


def test_the_child_sees_none_of_the_servers_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    from videopipe.media.isolate import _child_env

    monkeypatch.setenv("VIDEOPIPE_DATABASE_URL", "postgresql://u:secret@db/x")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "secret")
    assert "secret" not in repr(_child_env())


def test_probes_wait_their_turn_then_say_the_server_is_busy(tmp_path: Path) -> None:
    from videopipe.media.isolate import _slot

    video = write_sample_video(tmp_path / "v.mp4", shots_s=(1.0,), width=320, height=240).path
    limits = LimitSettings(probe_concurrency=1, probe_timeout_s=0.5)
    slot = _slot(limits)
    assert slot.acquire(timeout=5)
    try:
        with pytest.raises(errors.Busy, match="too many uploads at once"):
            probe_isolated(video, limits)
    finally:
        slot.release()
    assert probe_isolated(video, limits).frame_count == 25
