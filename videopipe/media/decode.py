"""The one low-resolution decode pass that every per-frame consumer shares.

Frames come out of FFmpeg's threaded decoder; their luma and chroma planes are read in place (no copy, no
RGB conversion) and box-averaged down by powers of two (two exact 2x2 means per halving, done by OpenCV's
bilinear resize at exactly half size) until the long side fits the analysis size. A 720p frame costs about
50 µs of Python-side work, so the pass runs at nearly the decoder's own speed.

Times are the frames' presentation timestamps converted to seconds from the start of the video: never
``index / fps``, so variable-frame-rate files get their true times.
"""

from __future__ import annotations

import heapq
import logging
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import av
import av.error
import cv2
import numpy as np

from videopipe.config import AnalysisSettings, LimitSettings
from videopipe.media.container import limit_decoder, open_media
from videopipe.media.probe import DecodeGuard, VideoInfo

log = logging.getLogger(__name__)

_PLANAR_8BIT = {
    "yuv420p",
    "yuvj420p",
    "yuv422p",
    "yuvj422p",
    "yuv444p",
    "yuvj444p",
    "yuv440p",
    "yuvj440p",
    "yuv411p",
    "yuv410p",
}
_PLANAR_16BIT = {"yuv420p10le", "yuv422p10le", "yuv444p10le", "yuv420p12le", "yuv422p12le", "yuv444p12le"}

WarningSink = Callable[[str], None]


@dataclass(slots=True)
class AnalysisFrame:
    """One decoded frame at analysis resolution. Arrays are owned by the frame (safe to keep)."""

    index: int  # position in presentation order among decoded frames
    pts: int  # presentation timestamp in the stream's time base (exact key for full-resolution grabs)
    t_s: float  # seconds from the start of the video
    luma: np.ndarray  # uint8 (h, w)
    chroma_u: np.ndarray  # uint8, the chroma planes at their own (possibly lower) resolution
    chroma_v: np.ndarray


def halvings_for(width: int, height: int, max_long_side_px: int) -> int:
    """How many 2x box-downscales bring the long side to at most `max_long_side_px`."""
    n, long_side = 0, max(width, height)
    while long_side > max_long_side_px:
        long_side //= 2
        n += 1
    return n


def box_halve(plane: np.ndarray, times: int) -> np.ndarray:
    """Average 2x2 blocks `times` times. Odd edges drop their last row/column so every block is exact."""
    out = plane
    for _ in range(times):
        h, w = out.shape[0] // 2, out.shape[1] // 2
        if h == 0 or w == 0:
            break
        out = cv2.resize(out[: 2 * h, : 2 * w], (w, h), interpolation=cv2.INTER_LINEAR)
    if out is plane:
        out = plane.copy()
    return out


def _plane_view(plane: Any, dtype: type[np.generic]) -> np.ndarray:
    itemsize = np.dtype(dtype).itemsize
    arr = np.frombuffer(plane, dtype=dtype)
    return arr.reshape(plane.height, plane.line_size // itemsize)[:, : plane.width]


class _Downscaler:
    """Turns a decoded frame into small planes, reading planar YUV directly when the format allows."""

    def __init__(self, info: VideoInfo, settings: AnalysisSettings) -> None:
        self.halvings = halvings_for(info.coded_width, info.coded_height, settings.max_long_side_px)
        self.target = (max(1, info.coded_width >> self.halvings), max(1, info.coded_height >> self.halvings))
        self.chroma_halvings: int | None = None

    def __call__(self, frame: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        fmt = frame.format.name
        if fmt in _PLANAR_8BIT:
            planes = [_plane_view(p, np.uint8) for p in frame.planes[:3]]
        elif fmt in _PLANAR_16BIT:
            shift = 2 if "10" in fmt else 4
            planes = [(_plane_view(p, np.uint16) >> shift).astype(np.uint8) for p in frame.planes[:3]]
        else:
            # Packed, semi-planar or RGB formats: let swscale shrink straight to the target size (area
            # filter) in yuv420p; still no full-resolution conversion.
            small = frame.reformat(width=self.target[0], height=self.target[1], format="yuv420p", interpolation="AREA")
            y, u, v = (_plane_view(p, np.uint8).copy() for p in small.planes[:3])
            return y, u, v
        if self.chroma_halvings is None:  # the planes' shapes are the stream's: work it out once
            self.chroma_halvings = chroma_halvings(planes[0].shape[1], planes[1].shape[1], self.halvings)
        y = box_halve(planes[0], self.halvings)
        return y, box_halve(planes[1], self.chroma_halvings), box_halve(planes[2], self.chroma_halvings)


def chroma_halvings(luma_width: int, chroma_width: int, luma_halvings: int) -> int:
    """Chroma planes are often subsampled already (4:2:0 is half as wide): halve them that much less."""
    subsampled = 0
    while chroma_width and (chroma_width << (subsampled + 1)) <= luma_width:
        subsampled += 1
    return max(0, luma_halvings - subsampled)


def open_for_analysis(info: VideoInfo, settings: AnalysisSettings, limits: LimitSettings) -> tuple[Any, Any]:
    container = open_media(info.path, limits)
    stream = next(s for s in container.streams.video)
    stream.thread_type = "AUTO"
    skip = settings.skip_loop_filter and stream.codec_context.name in ("h264", "hevc")
    extra = {"skip_loop_filter": "all"} if skip else {}
    limit_decoder(stream, limits, settings.decode_threads, **extra)
    return container, stream


def iter_analysis_frames(
    info: VideoInfo,
    settings: AnalysisSettings | None = None,
    warn: WarningSink | None = None,
    limits: LimitSettings | None = None,
) -> Iterator[AnalysisFrame]:
    """Decode the whole video once, yielding small frames with exact presentation times.

    Corrupt packets are skipped and reported through `warn` (the first one, then a count at the end); they
    never stop the pass. `limits` (decode budget, duration, timestamp jumps) stop it with `UnsupportedVideo`.
    """
    settings = settings or AnalysisSettings()
    warn = warn or log.warning
    downscale = _Downscaler(info, settings)
    guard = DecodeGuard(info, limits or LimitSettings())
    container, stream = open_for_analysis(info, settings, limits or LimitSettings())
    tb = float(stream.time_base)
    start_pts = round(info.start_time_s / tb) if tb else 0
    bad_packets = 0

    def on_bad_packet(exc: Exception, packet: Any) -> None:
        nonlocal bad_packets
        bad_packets += 1
        if bad_packets == 1:
            at = f"{(packet.pts - start_pts) * tb:.3f} s" if packet.pts is not None else "unknown time"
            reason = getattr(exc, "strerror", None) or type(exc).__name__
            warn(f"skipping a corrupt packet at {at} ({reason}); the frames around it may be missing or damaged")

    step = round(1 / (info.fps * tb)) if info.fps and tb else 1
    try:

        def count(frame: Any) -> None:
            guard.decoded(frame.width, frame.height)

        for index, (pts, frame) in enumerate(timed_frames(container, stream, warn, on_bad_packet, step, count)):
            t_s = (pts - start_pts) * tb
            guard.timeline(t_s)
            y, u, v = downscale(frame)
            yield AnalysisFrame(index, pts, t_s, y, u, v)
    finally:
        container.close()
    if bad_packets > 1:
        warn(f"{bad_packets} corrupt packets were skipped in all")


# Decoders emit frames in presentation order, but some containers (AVI with B-frames) label them with
# decode-order stamps: the right stamps are the same set, sorted. Sorting within a window this deep fixes
# any real reorder depth; for ordinary files it changes nothing.
_REORDER_DEPTH = 8


def timed_frames(
    container: Any,
    stream: Any,
    warn: WarningSink,
    on_bad_packet: Callable[[Exception, Any], None] | None = None,
    step: int = 1,
    on_decoded: Callable[[Any], None] | None = None,
) -> Iterator[tuple[int, Any]]:
    """Decoded frames in presentation order, each with a strictly increasing PTS (stream time base).

    Frames without a timestamp continue the previous frame's clock by `step`; duplicate timestamps (after
    corruption) are dropped, since every time must name exactly one frame. `on_decoded` sees every frame the
    decoder produced, dropped ones too (what decoding costs).
    """
    stamps: list[int] = []
    pending: deque[Any] = deque()
    newest: int | None = None
    last: int | None = None

    def release() -> tuple[int, Any] | None:
        nonlocal last
        frame, pts = pending.popleft(), heapq.heappop(stamps)
        if last is not None and pts <= last:
            return None
        last = pts
        return pts, frame

    for packet in _demux_safely(container, stream, warn):
        try:
            frames = packet.decode()
        except av.error.FFmpegError as exc:
            if on_bad_packet is not None:
                on_bad_packet(exc, packet)
            continue
        for frame in frames:
            if on_decoded is not None:
                on_decoded(frame)
            pts = frame.pts if frame.pts is not None else (newest + step if newest is not None else 0)
            newest = pts if newest is None else max(newest, pts)
            heapq.heappush(stamps, pts)
            pending.append(frame)
            if len(pending) > _REORDER_DEPTH and (released := release()) is not None:
                yield released
    while pending:
        if (released := release()) is not None:
            yield released


def _demux_safely(container: Any, stream: Any, warn: WarningSink) -> Iterator[Any]:
    demux = container.demux(stream)
    while True:
        try:
            packet = next(demux)
        except StopIteration:
            return
        except av.error.FFmpegError as exc:
            reason = getattr(exc, "strerror", None) or type(exc).__name__
            warn(f"the file ends in damaged data ({reason}); analysing what was read before it")
            return
        yield packet  # the last, empty packet drains the (threaded) decoder


def describe_resolution(info: VideoInfo, settings: AnalysisSettings) -> tuple[int, int]:
    """The luma size of analysis frames for this video."""
    return _Downscaler(info, settings).target


__all__ = ["AnalysisFrame", "box_halve", "describe_resolution", "halvings_for", "iter_analysis_frames"]
