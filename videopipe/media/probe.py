"""Probe a file: is it a video we can analyse, and what are its real properties?

Everything a bad file can do wrong is caught here, before any expensive work, and turned into one of the
typed errors of `videopipe.errors` with a message that says what to do.
"""

from __future__ import annotations

import contextlib
import errno
import itertools
import logging
import os
from dataclasses import asdict, dataclass, field
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
from videopipe.media.container import limit_decoder, open_media
from videopipe.timefmt import fmt_time

log = logging.getLogger(__name__)

# How many packets the probe may read looking for the first decodable frame, and for timing statistics.
_FIRST_FRAME_PACKETS = 240
_TIMING_PACKETS = 2000
# Packets read (no decoding) to learn a file's true span, frame count and timestamp jumps: about 80 minutes at
# 30 fps, read in about a second; longer files are checked the rest of the way while they are decoded.
_SCAN_PACKETS = 150_000
# More frames than this per second of timestamps is no camera's (high-speed ones reach about 1,000): the
# timestamps repeat or stand still, and decoding such a file would never move its timeline on.
MAX_FRAMES_PER_S = 1200


@dataclass(frozen=True, slots=True)
class VideoInfo:
    path: str
    size_bytes: int
    container: str
    codec: str
    duration_s: float  # from the packets' timestamps when they could all be read, else as declared
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
    declared_duration_s: float = 0.0  # what the container's header says (0: says nothing)

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["time_base"] = str(self.time_base)
        return data


def probe(path: str | os.PathLike[str], limits: LimitSettings | None = None, name: str | None = None) -> VideoInfo:
    """Open `path`, check it is an analysable video within `limits`, and describe it.

    The order is the point: the container is opened through `open_media` (allow-listed demuxers, no other inputs),
    then dimensions, pixel rate and stream counts are checked from codec parameters, then the packets are read
    without decoding (duration and frame count from their timestamps, jumps refused, the decode budget), and only
    then is one frame decoded, by a decoder that cannot allocate more than `max_frame_pixels`.

    Raises one of the `InputError` subclasses with a user-facing message when it is not. `name`: how to call the
    file in messages (default: its own name).
    """
    limits = limits or LimitSettings()
    p = Path(path)
    label = name or p.name
    size = _check_file(p, limits, label)
    with open_media(p, limits, label) as container:
        return _describe(p, label, size, container, limits)


def _check_file(p: Path, limits: LimitSettings, label: str) -> int:
    if not p.exists():
        raise VideoNotFound(f"{p}: no such file; check the path")
    if p.is_dir():
        raise VideoNotFound(f"{p}: is a directory, not a video file; give the path of a video file")
    size = p.stat().st_size
    if size == 0:
        raise EmptyFile(
            f"{label}: the file is empty (0 bytes); the upload or copy probably failed, copy the video again"
        )
    if size > limits.max_file_bytes:
        raise UnsupportedVideo(
            f"{label}: {size / 1024**3:.1f} GiB is over the {limits.max_file_bytes / 1024**3:.1f} GiB limit; "
            "split it (ffmpeg -i IN -c copy -f segment -segment_time 3600 out%03d.mp4) "
            "or raise VIDEOPIPE_LIMITS__MAX_FILE_BYTES"
        )
    return size


def _rate(value: Fraction | None) -> float:
    return float(value) if value else 0.0


def _describe(p: Path, label: str, size: int, container: Any, limits: LimitSettings) -> VideoInfo:
    videos = [s for s in container.streams.video if not _is_cover_art(s)]
    audios = list(container.streams.audio)
    if not videos:
        if audios:
            a = audios[0]
            raise NoVideoStream(
                f"{label}: audio only ({a.codec_context.name}), there is no picture to analyse; give a video file"
            )
        raise NotAVideo(f"{label}: the file has no video stream; give a video file")
    stream = videos[0]
    cc = stream.codec_context
    if cc is None:
        raise UndecodableVideo(f"{label}: there is no decoder for its video codec; re-encode it to H.264")
    if cc.width <= 0 or cc.height <= 0:
        raise UndecodableVideo(
            f"{label}: the video stream has no usable frame size (none declared, or frames over "
            f"{limits.max_frame_pixels / 1e6:.1f} Mpixel that the decoder refused); re-encode it at a smaller size"
        )
    # Everything the codec parameters say, before any packet is read.
    _check_dimensions(label, cc.width, cc.height, limits)
    _check_index_against_size(label, size, stream)
    declared_rate = _rate(stream.average_rate) or _rate(stream.guessed_rate)
    _check_pixel_rate(label, cc.width, cc.height, declared_rate, limits)

    tb: Fraction = stream.time_base
    start_time_s = container.start_time / 1_000_000 if container.start_time is not None else 0.0
    if stream.duration:
        declared_s = float(stream.duration * tb)
    elif container.duration:
        declared_s = container.duration / 1_000_000
    else:
        declared_s = 0.0
    scan = scan_packets(container, stream, limits, label)
    if scan.complete and scan.count:
        duration_s = scan.span_s
        check_complete(label, container.format.name, declared_s, duration_s, p.suffix or ".mkv")
    else:
        duration_s = max(declared_s, scan.span_s, _tail_span_s(container, stream, scan))
    _check_duration(label, duration_s, limits)

    frame_count, exact = (scan.count, True) if scan.complete and scan.count else (0, False)
    if not exact:
        if stream.frames:
            frame_count, exact = int(stream.frames), True
        else:
            frame_count = round(duration_s * declared_rate)
    avg = declared_rate
    if scan.count > 1 and scan.pts_span_s > 0.5:
        measured = (scan.count - 1) / scan.pts_span_s
        if not avg or measured > 1.5 * avg:
            avg = measured  # timestamps decide: a container may say 1 fps and hold 1,000 frames a second
    real = _rate(stream.base_rate) or avg
    if not avg and duration_s and frame_count:
        avg = frame_count / duration_s
    _check_pixel_rate(label, cc.width, cc.height, avg, limits)
    _check_decode_budget(label, frame_count, cc.width * cc.height, limits)

    rotation, decoded_w, decoded_h = _first_frame(label, container, stream, limits)
    if (decoded_w, decoded_h) != (cc.width, cc.height):
        # The container lied about the frame size: the decoded frame is what costs memory and time.
        _check_dimensions(label, decoded_w, decoded_h, limits)
        _check_pixel_rate(label, decoded_w, decoded_h, avg, limits)
        _check_decode_budget(label, frame_count, decoded_w * decoded_h, limits)
    coded_w, coded_h = cc.width, cc.height
    width, height = (coded_h, coded_w) if rotation in (90, 270) else (coded_w, coded_h)
    _check_dimensions(label, width, height, limits)
    vfr = _is_vfr(scan.deltas_s)
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
        audio_codec=audios[0].codec_context.name if audios and audios[0].codec_context else None,
        time_base=tb,
        declared_duration_s=declared_s,
    )


@dataclass(slots=True)
class PacketScan:
    """What the video stream's packets say, read without decoding."""

    count: int = 0
    first_pts: int | None = None
    end_pts: int | None = None  # the latest pts + duration seen
    complete: bool = False  # every packet was read (else the scan stopped at its packet bound)
    span_s: float = 0.0  # first pts to the end of the last frame
    pts_span_s: float = 0.0  # first pts to the last pts: (count - 1) frame steps, whatever the frames' durations
    deltas_s: list[float] = field(default_factory=list)  # steps between the first frames' timestamps


def scan_packets(container: Any, stream: Any, limits: LimitSettings, label: str) -> PacketScan:
    """Read the video packets (no decoding): their count and time span, with jumps and runaway spans refused as
    soon as they are seen. Stops after `_SCAN_PACKETS` packets on very long files (the decode pass checks the
    rest as it goes); leaves the container positioned at the start."""
    tb = float(stream.time_base or 0) or 1 / 90_000
    max_gap = limits.max_timestamp_gap_s / tb
    scan = PacketScan()
    first_pts: list[int] = []
    last_dts: int | None = None
    try:
        for packet in container.demux(stream):
            if packet.size == 0 and packet.pts is None:
                continue  # the flush packet at the end
            scan.count += 1
            stamp = packet.dts if packet.dts is not None else packet.pts
            if stamp is not None and last_dts is not None:
                step = stamp - last_dts
                if step > max_gap or step < -max(1.0 / tb, max_gap / 3600):
                    raise UnsupportedVideo(_jump_message(label, (last_dts - (scan.first_pts or 0)) * tb, step * tb))
            if stamp is not None:
                last_dts = stamp
            if packet.pts is not None:
                if scan.end_pts is not None and packet.pts - scan.end_pts > max_gap:  # B-frames: pts leads dts
                    at_s = (scan.end_pts - (scan.first_pts or 0)) * tb
                    raise UnsupportedVideo(_jump_message(label, at_s, (packet.pts - scan.end_pts) * tb))
                if len(first_pts) < _TIMING_PACKETS:
                    first_pts.append(packet.pts)
                scan.first_pts = packet.pts if scan.first_pts is None else min(scan.first_pts, packet.pts)
                end = packet.pts + max(int(packet.duration or 0), 0)
                scan.end_pts = end if scan.end_pts is None else max(scan.end_pts, end)
                scan.span_s = (scan.end_pts - scan.first_pts) * tb
                scan.pts_span_s = max(scan.pts_span_s, (packet.pts - scan.first_pts) * tb)
                if scan.span_s > limits.max_duration_s:
                    _check_duration(label, scan.span_s, limits)
            if scan.count > MAX_FRAMES_PER_S * (scan.pts_span_s + 1.0):
                raise UnsupportedVideo(_stalled_message(label, scan.count, scan.pts_span_s))
            if scan.count >= _SCAN_PACKETS:
                break
        else:
            scan.complete = True
    except av.error.FFmpegError:
        scan.complete = True  # damaged data ends the file for every reader; the decode pass says so too
    first_pts.sort()
    scan.deltas_s = [(b - a) * tb for a, b in itertools.pairwise(first_pts) if b > a]
    with contextlib.suppress(av.error.FFmpegError):
        container.seek(0, stream=stream)
    return scan


def _tail_span_s(container: Any, stream: Any, scan: PacketScan) -> float:
    """The time span up to the last packets of a file too long to scan whole (seek near the end, read on)."""
    tb = float(stream.time_base or 0)
    if not tb or scan.first_pts is None or not container.duration:
        return 0.0
    end = scan.end_pts or 0
    try:
        container.seek(int(container.duration + (container.start_time or 0)), backward=True)
        for n, packet in enumerate(container.demux(stream)):
            if packet.pts is not None:
                end = max(end, packet.pts + max(int(packet.duration or 0), 0))
            if n > 2_000:
                break
        container.seek(0, stream=stream)
    except av.error.FFmpegError:
        pass
    return (end - scan.first_pts) * tb


# Containers whose header states the duration (rather than FFmpeg estimating it from the bitrate).
DECLARED_DURATION_FORMATS = frozenset({"matroska,webm", "avi", "mov,mp4,m4a,3gp,3g2,mj2", "flv", "asf"})


def check_complete(label: str, container_format: str, declared_s: float, present_s: float, ext: str = ".mkv") -> None:
    """A file whose pictures stop well before the duration its own header declares was cut off. (The probe
    checks what its packet scan saw; the decode pass checks long files again with what it decoded.)"""
    if container_format not in DECLARED_DURATION_FORMATS or not declared_s:
        return
    if declared_s - present_s > max(1.0, 0.1 * declared_s):
        raise TruncatedVideo(
            f"{label}: the pictures stop at {fmt_time(present_s)} but the file declares {fmt_time(declared_s)}; it "
            "was cut off during upload, copy or recording. Copy the complete file again, or remux what is there "
            f"(ffmpeg -i IN -c copy OUT{ext}) to analyse only that part"
        )


class DecodeGuard:
    """The probe's limits, checked again frame by frame while decoding: the packets of long files were not all
    read by the probe, and the decoder is the last word on what a file holds. `decoded` counts every frame the
    decoder produced (also those dropped afterwards for a repeated timestamp); `timeline` checks the times of
    the frames that are kept."""

    def __init__(self, info: VideoInfo, limits: LimitSettings, budget_only: bool = False) -> None:
        self.label = Path(info.path).name
        self.limits = limits
        self.budget_only = budget_only  # grabs seek and decode frames again: only their cost counts
        self.pixels = 0
        self.frames = 0
        self.last_t_s: float | None = None
        # A little over the budget: the probe's frame count can miss a few frames that the decoder finds.
        self.budget = int(limits.max_decode_pixels * 1.05) + 1

    def decoded(self, width: int, height: int) -> None:
        """Count one decoded frame against the budget, and against the time its timestamps have covered."""
        self.pixels += width * height
        self.frames += 1
        if self.pixels > self.budget:
            _check_decode_budget(self.label, 1, self.pixels, self.limits)
        covered_s = self.last_t_s or 0.0
        if not self.budget_only and self.frames > MAX_FRAMES_PER_S * (covered_s + 1.0):
            raise UnsupportedVideo(_stalled_message(self.label, self.frames, covered_s))

    def timeline(self, t_s: float) -> None:
        """Check the time of the next frame kept: the duration limit and the step from the frame before."""
        if self.last_t_s is not None and t_s - self.last_t_s > self.limits.max_timestamp_gap_s:
            raise UnsupportedVideo(_jump_message(self.label, self.last_t_s, t_s - self.last_t_s))
        _check_duration(self.label, t_s, self.limits)
        self.last_t_s = t_s


def _stalled_message(label: str, frames: int, covered_s: float) -> str:
    return (
        f"{label}: {frames:,} frames share the first {covered_s:.1f} s of timestamps (more than {MAX_FRAMES_PER_S:,} "
        "a second): its timestamps do not advance; rewrite them: ffmpeg -i IN -vf setpts=N/FRAME_RATE/TB OUT.mp4"
    )


def _jump_message(label: str, at_s: float, step_s: float) -> str:
    direction = f"forward by {step_s:,.0f} s" if step_s > 0 else f"back by {-step_s:,.1f} s"
    return (
        f"{label}: the video's timestamps jump {direction} at {at_s:.1f} s (a damaged, spliced or wrapped "
        "timeline), so its times cannot be trusted; rewrite them: ffmpeg -i IN -vf setpts=N/FRAME_RATE/TB "
        "-af aresample=async=1 OUT.mp4"
    )


def _check_duration(label: str, duration_s: float, limits: LimitSettings) -> None:
    if duration_s > limits.max_duration_s:
        raise UnsupportedVideo(
            f"{label}: {duration_s / 3600:,.1f} h is over the {limits.max_duration_s / 3600:.0f} h limit; "
            "split the video or raise VIDEOPIPE_LIMITS__MAX_DURATION_S"
        )


def _check_pixel_rate(label: str, width: int, height: int, fps: float, limits: LimitSettings) -> None:
    rate = width * height * fps
    if rate > limits.max_pixel_rate:
        raise UnsupportedVideo(
            f"{label}: {width}x{height} at {fps:,.1f} frames/s is {rate / 1e6:,.0f} Mpixel/s, over the "
            f"{limits.max_pixel_rate / 1e6:,.0f} Mpixel/s this server decodes; lower the frame rate or size "
            "(ffmpeg -i IN -vf scale=1920:-2,fps=30 OUT.mp4) or raise VIDEOPIPE_LIMITS__MAX_PIXEL_RATE"
        )


def _check_decode_budget(label: str, frames: int, pixels: int, limits: LimitSettings) -> None:
    if frames * pixels > limits.max_decode_pixels:
        raise UnsupportedVideo(
            f"{label}: {frames:,} frames of {pixels / 1e6:.1f} Mpixel are over this server's decode budget "
            f"({limits.max_decode_pixels / 1e12:.1f} Tpixel per video); split or scale the video, or raise "
            "VIDEOPIPE_LIMITS__MAX_DECODE_PIXELS"
        )


def _is_cover_art(stream: Any) -> bool:
    # MP3/M4A files carry album art as a one-picture "video" stream flagged attached_pic.
    disposition = getattr(stream, "disposition", None)
    try:
        return bool(disposition is not None and disposition & av.stream.Disposition.attached_pic)
    except (AttributeError, TypeError):
        return False


def _check_index_against_size(label: str, size: int, stream: Any) -> None:
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
            f"{label}: the file is {_human_bytes(size)} but its index expects {_human_bytes(end)} "
            f"({have} of {n} frames present); it was cut off during upload or copy, copy the complete file again"
        )


def _human_bytes(n: int) -> str:
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} bytes"


def _first_frame(label: str, container: Any, stream: Any, limits: LimitSettings) -> tuple[int, int, int]:
    """Decode the first frame (one thread, size-limited decoder): proves the stream decodes at all, and gives the
    display rotation and the real frame size."""
    limit_decoder(stream, limits, threads=1)
    packets = 0
    errors = 0
    try:
        for packet in container.demux(stream):
            packets += 1
            try:
                frames = packet.decode()
            except av.error.FFmpegError as exc:
                if getattr(exc, "errno", None) == errno.ENOMEM:
                    raise UnsupportedVideo(
                        f"{label}: decoding its first frame needs more memory than this server allows; it is "
                        "damaged or built to exhaust servers. Re-encode it (ffmpeg -i IN -c:v libx264 OUT.mp4)"
                    ) from None
                errors += 1
                frames = []
            if frames:
                frame = frames[0]
                return round(frame.rotation or 0) % 360, frame.width, frame.height
            if packets >= _FIRST_FRAME_PACKETS:
                break
    except av.error.FFmpegError:
        errors += 1
    raise UndecodableVideo(
        f"{label}: the {stream.codec_context.name} video stream has no decodable frame within "
        f"{limits.max_frame_pixels / 1e6:.1f} Mpixel ({packets} packets read, {errors} decode errors); the file "
        "is damaged or its frames are larger than it says: re-export or re-encode it"
    )


def _check_dimensions(label: str, width: int, height: int, limits: LimitSettings) -> None:
    short, long_ = min(width, height), max(width, height)
    if (
        width * height > limits.max_frame_pixels
        or short < limits.min_side_px
        or long_ / short > limits.max_aspect_ratio
    ):
        raise UnsupportedVideo(
            f"{label}: a {width}x{height} frame is outside what videopipe analyses "
            f"(at most {limits.max_frame_pixels / 1e6:.1f} MP, sides at least {limits.min_side_px} px, "
            f"aspect at most {limits.max_aspect_ratio:g}:1); scale it first "
            "(ffmpeg -i IN -vf scale=1920:-2 OUT.mp4) or change VIDEOPIPE_LIMITS__*"
        )


def _is_vfr(deltas: list[float]) -> bool:
    if len(deltas) < 3:
        return False
    ordered = sorted(deltas)
    median = ordered[len(ordered) // 2]
    # Timestamps rounded to the container's clock jitter by one tick; a real VFR stream changes its
    # frame duration by far more than that.
    spread = ordered[int(len(ordered) * 0.98) - 1] - ordered[int(len(ordered) * 0.02)]
    return spread > max(0.002, 0.1 * median)
