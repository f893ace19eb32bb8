"""Probe a file: is it a video we can analyse, and what are its real properties?

Everything a bad file can do wrong is caught here, before any expensive work, and turned into one of the
typed errors of `videopipe.errors` with a message that says what to do.
"""

from __future__ import annotations

import itertools
import logging
import os
from dataclasses import asdict, dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import av.error

from videopipe.config import LimitSettings
from videopipe.errors import (
    EmptyFile,
    NotAVideo,
    NoVideoStream,
    TruncatedVideo,
    UndecodableVideo,
    UnsupportedVideo,
    VideoNotFound,
)

log = logging.getLogger(__name__)

# How many packets the probe may read looking for the first decodable frame, and for timing statistics.
_FIRST_FRAME_PACKETS = 240
_TIMING_PACKETS = 2000


@dataclass(frozen=True, slots=True)
class VideoInfo:
    path: str
    size_bytes: int
    container: str
    codec: str
    duration_s: float
    # Times reported everywhere are seconds from this presentation time (what a player shows as 0:00).
    start_time_s: float
    fps: float  # average frame rate (frames / duration)
    real_fps: float  # the stream's base ("real") rate: the lowest rate that represents every timestamp
    frame_count: int
    frame_count_exact: bool
    vfr: bool
    width: int  # as displayed, after rotation metadata
    height: int
    coded_width: int
    coded_height: int
    rotation: int  # degrees counter-clockwise applied for display (0, 90, 180, 270)
    pix_fmt: str
    has_audio: bool
    audio_codec: str | None
    time_base: Fraction

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["time_base"] = str(self.time_base)
        return data


def probe(path: str | os.PathLike[str], limits: LimitSettings | None = None) -> VideoInfo:
    """Open `path`, check it is an analysable video, and describe it.

    Raises one of the `InputError` subclasses with a user-facing message when it is not.
    """
    limits = limits or LimitSettings()
    p = Path(path)
    size = _check_file(p, limits)
    try:
        container = av.open(str(p), metadata_errors="ignore")
    except (av.error.InvalidDataError, av.error.EOFError, av.error.UndefinedError) as exc:
        raise _not_openable(p, exc) from None
    except av.error.FFmpegError as exc:
        raise NotAVideo(
            f"{p.name}: FFmpeg cannot read this file ({exc.strerror}); check that it is a complete video file"
        ) from None
    with container:
        return _describe(p, size, container, limits)


def _check_file(p: Path, limits: LimitSettings) -> int:
    if not p.exists():
        raise VideoNotFound(f"{p}: no such file; check the path")
    if p.is_dir():
        raise VideoNotFound(f"{p}: is a directory, not a video file; give the path of a video file")
    size = p.stat().st_size
    if size == 0:
        raise EmptyFile(
            f"{p.name}: the file is empty (0 bytes); the upload or copy probably failed, copy the video again"
        )
    if size > limits.max_file_bytes:
        raise UnsupportedVideo(
            f"{p.name}: {size / 1024**3:.1f} GiB is over the {limits.max_file_bytes / 1024**3:.1f} GiB limit; "
            "split it (ffmpeg -i IN -c copy -f segment -segment_time 3600 out%03d.mp4) "
            "or raise VIDEOPIPE_LIMITS__MAX_FILE_BYTES"
        )
    return size


def _sniff(p: Path) -> str | None:
    """Name what a non-video file looks like, from its first bytes."""
    with p.open("rb") as fh:
        head = fh.read(4096)
    signatures = [
        (b"%PDF", "a PDF document"),
        (b"\x89PNG", "a PNG image"),
        (b"\xff\xd8\xff", "a JPEG image"),
        (b"GIF8", "a GIF image"),
        (b"PK\x03\x04", "a ZIP archive (or an Office document)"),
        (b"\x1f\x8b", "a gzip archive"),
        (b"{\\rtf", "an RTF document"),
        (b"<!DOCTYPE html", "an HTML page"),
        (b"<html", "an HTML page"),
    ]
    for magic, what in signatures:
        if head.startswith(magic):
            return what
    if head[4:8] == b"ftyp" or head[4:8] in (b"moov", b"mdat", b"free", b"wide"):
        return None  # an MP4/MOV: leave it to the truncation message
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        return None
    if all(ch.isprintable() or ch in "\r\n\t" for ch in text):
        return "a text file"
    return None


def _not_openable(p: Path, exc: Exception) -> Exception:
    what = _sniff(p)
    if what is not None:
        return NotAVideo(f"{p.name}: this is {what}, not a video; upload the video file itself")
    with p.open("rb") as fh:
        head = fh.read(12)
    if head[4:8] in (b"ftyp", b"mdat", b"free", b"wide"):
        return TruncatedVideo(
            f"{p.name}: the MP4/MOV index (moov box) is missing, so the file was most likely cut off during "
            "upload, copy or recording; copy the complete file again"
        )
    return NotAVideo(
        f"{p.name}: not a video format FFmpeg recognises ({type(exc).__name__}); "
        "convert it to MP4 (H.264) and try again"
    )


def _rate(value: Fraction | None) -> float:
    return float(value) if value else 0.0


def _describe(p: Path, size: int, container: Any, limits: LimitSettings) -> VideoInfo:
    videos = [s for s in container.streams.video if not _is_cover_art(s)]
    audios = list(container.streams.audio)
    if not videos:
        if audios:
            a = audios[0]
            raise NoVideoStream(
                f"{p.name}: audio only ({a.codec_context.name}), there is no picture to analyse; give a video file"
            )
        raise NotAVideo(f"{p.name}: the file has no video stream; give a video file")
    stream = videos[0]
    cc = stream.codec_context
    if cc.width <= 0 or cc.height <= 0:
        raise UndecodableVideo(f"{p.name}: the video stream declares no frame size; re-encode the file")

    _check_index_against_size(p, size, stream)
    rotation = _first_frame_rotation(p, container, stream)

    coded_w, coded_h = cc.width, cc.height
    width, height = (coded_h, coded_w) if rotation in (90, 270) else (coded_w, coded_h)
    _check_dimensions(p, width, height, limits)

    tb: Fraction = stream.time_base
    start_time_s = container.start_time / 1_000_000 if container.start_time is not None else 0.0
    if stream.duration:
        duration_s = float(stream.duration * tb)
    elif container.duration:
        duration_s = container.duration / 1_000_000
    else:
        duration_s = 0.0
    if duration_s > limits.max_duration_s:
        raise UnsupportedVideo(
            f"{p.name}: {duration_s / 3600:.1f} h is over the {limits.max_duration_s / 3600:.0f} h limit; "
            "split the video or raise VIDEOPIPE_LIMITS__MAX_DURATION_S"
        )

    deltas = _packet_deltas(container, stream)
    vfr = _is_vfr(deltas)
    avg = _rate(stream.average_rate) or _rate(stream.guessed_rate)
    real = _rate(stream.base_rate) or avg
    if stream.frames:
        frame_count, exact = int(stream.frames), True
    else:
        frame_count, exact = round(duration_s * avg), False
    if not avg and duration_s and frame_count:
        avg = frame_count / duration_s
    return VideoInfo(
        path=str(p.resolve()),
        size_bytes=size,
        container=container.format.name,
        codec=cc.name,
        duration_s=duration_s,
        start_time_s=start_time_s,
        fps=avg,
        real_fps=real,
        frame_count=frame_count,
        frame_count_exact=exact,
        vfr=vfr,
        width=width,
        height=height,
        coded_width=coded_w,
        coded_height=coded_h,
        rotation=rotation,
        pix_fmt=cc.pix_fmt or "unknown",
        has_audio=bool(audios),
        audio_codec=audios[0].codec_context.name if audios else None,
        time_base=tb,
    )


def _is_cover_art(stream: Any) -> bool:
    # MP3/M4A files carry album art as a one-picture "video" stream flagged attached_pic.
    disposition = getattr(stream, "disposition", None)
    try:
        return bool(disposition is not None and disposition & av.stream.Disposition.attached_pic)
    except (AttributeError, TypeError):
        return False


def _check_index_against_size(p: Path, size: int, stream: Any) -> None:
    """A file whose own sample index points past its end was cut off (MP4 with the index at the front)."""
    try:
        entries = stream.index_entries
        n = len(entries)
    except (AttributeError, TypeError):
        return
    if n == 0:
        return
    last = entries[n - 1]
    end = int(last.pos) + int(last.size)
    if end > size:
        have = sum(1 for i in range(n) if int(entries[i].pos) + int(entries[i].size) <= size)
        raise TruncatedVideo(
            f"{p.name}: the file is {_human_bytes(size)} but its index expects {_human_bytes(end)} "
            f"({have} of {n} frames present); it was cut off during upload or copy, copy the complete file again"
        )


def _human_bytes(n: int) -> str:
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} bytes"


def _first_frame_rotation(p: Path, container: Any, stream: Any) -> int:
    """Decode the first frame: proves the stream decodes at all and gives the display rotation."""
    packets = 0
    errors = 0
    try:
        for packet in container.demux(stream):
            packets += 1
            try:
                frames = packet.decode()
            except av.error.FFmpegError:
                errors += 1
                frames = []
            if frames:
                return round(frames[0].rotation or 0) % 360
            if packets >= _FIRST_FRAME_PACKETS:
                break
    except av.error.FFmpegError:
        errors += 1
    raise UndecodableVideo(
        f"{p.name}: the {stream.codec_context.name} video stream has no decodable frame "
        f"({packets} packets read, {errors} decode errors); the file is damaged, re-export or re-encode it"
    )


def _check_dimensions(p: Path, width: int, height: int, limits: LimitSettings) -> None:
    short, long_ = min(width, height), max(width, height)
    if (
        width * height > limits.max_frame_pixels
        or short < limits.min_side_px
        or long_ / short > limits.max_aspect_ratio
    ):
        raise UnsupportedVideo(
            f"{p.name}: a {width}x{height} frame is outside what videopipe analyses "
            f"(at most {limits.max_frame_pixels / 1e6:.1f} MP, sides at least {limits.min_side_px} px, "
            f"aspect at most {limits.max_aspect_ratio:g}:1); scale it first "
            "(ffmpeg -i IN -vf scale=1920:-2 OUT.mp4) or change VIDEOPIPE_LIMITS__*"
        )


def _packet_deltas(container: Any, stream: Any) -> list[float]:
    """Presentation-time steps between the first frames, read from packets (no decoding)."""
    pts: list[int] = []
    try:
        container.seek(0, stream=stream)
    except av.error.FFmpegError:
        return []
    try:
        for packet in container.demux(stream):
            if packet.pts is not None:
                pts.append(packet.pts)
            if len(pts) >= _TIMING_PACKETS:
                break
    except av.error.FFmpegError:
        pass
    pts.sort()
    tb = float(stream.time_base)
    return [(b - a) * tb for a, b in itertools.pairwise(pts) if b > a]


def _is_vfr(deltas: list[float]) -> bool:
    if len(deltas) < 3:
        return False
    ordered = sorted(deltas)
    median = ordered[len(ordered) // 2]
    # Timestamps rounded to the container's clock jitter by one tick; a real VFR stream changes its
    # frame duration by far more than that.
    spread = ordered[int(len(ordered) * 0.98) - 1] - ordered[int(len(ordered) * 0.02)]
    return spread > max(0.002, 0.1 * median)
