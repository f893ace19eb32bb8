"""Full-resolution frames at chosen presentation timestamps, in one forward sweep through the file.

Every returned frame has exactly the requested PTS (the same one the analysis pass saw), so the time stored
with a keyframe image is the time of its pixels. Display rotation is applied, so images are upright.

How little is decoded: the packets are read in order (demuxing costs next to nothing) and held, still
compressed, until it is known whether their group of pictures (GOP) holds the next target. A GOP without a
target is dropped undecoded when the next keyframe arrives; the one that holds it is decoded from its keyframe,
skipping the frames nothing refers to (``skip_frame=NONREF``) unless a target is among them. After a target the
decoder simply goes on if the next target is in the same GOP, so no frame is ever decoded twice and nothing is
sought backwards. A target more than `_SEEK_AHEAD_S` ahead, with nothing of the current GOP decoded, is reached
by a seek forward (MP4/MOV, Matroska), which only ever skips reading. The compressed packets held at any time
are at most one GOP (and never more than `_MAX_HELD_BYTES`: past that they are decoded as they come, which is
only slower); decoded frames are never held beyond the one being returned.

Containers whose packets may lack presentation stamps (AVI, MPEG program streams) keep the older way: a seek
to the keyframe before each far target and a decode forward from there.
"""

from __future__ import annotations

import logging
import math
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import av.error
from PIL import Image

from videopipe.config import LimitSettings
from videopipe.media.container import limit_decoder, open_media
from videopipe.media.decode import timed_frames
from videopipe.media.probe import DecodeGuard, VideoInfo

log = logging.getLogger(__name__)

# Seek-per-target fallback: decoding forward is cheaper than seeking when the next target is closer than this.
_FORWARD_DECODE_S = 2.0

# Compressed bytes of one GOP held back undecoded before they are decoded as they come instead.
_MAX_HELD_BYTES = 64 * 1024 * 1024

# The sweep reads every packet up to the last target (reading is ~1,000x cheaper than decoding), but jumps ahead
# with a seek when the next target is farther than this and nothing of the current GOP has been decoded.
_SEEK_AHEAD_S = 10.0

# Containers with an index of keyframes that a seek uses (MP4/MOV, Matroska with cues).
_SEEKABLE_FORMATS = frozenset({"mov", "matroska"})

# Containers whose packets may carry no presentation stamp, or decode-order ones (AVI with B-frames).
_UNSTAMPED_FORMATS = frozenset({"avi", "mpeg"})

_TRANSPOSE = {90: Image.Transpose.ROTATE_90, 180: Image.Transpose.ROTATE_180, 270: Image.Transpose.ROTATE_270}


@dataclass(slots=True)
class GrabbedFrame:
    pts: int
    t_s: float
    image: Image.Image  # RGB, upright


@dataclass(slots=True)
class GrabStats:
    """What a grab cost. `decoded_pts`, when given a list, receives the PTS of every frame the decoder produced."""

    frames_decoded: int = 0
    packets_decoded: int = 0
    packets_skipped: int = 0  # read but never given to the decoder
    seeks: int = 0
    method: str = ""
    decoded_pts: list[int] | None = field(default=None, repr=False)


def upright(image: Image.Image, rotation: int) -> Image.Image:
    """Apply display rotation metadata (degrees counter-clockwise) to decoded pixels."""
    transpose = _TRANSPOSE.get(rotation % 360)
    return image.transpose(transpose) if transpose is not None else image


def grab_frames(
    info: VideoInfo,
    pts_list: Iterable[int],
    limits: LimitSettings | None = None,
    stats: GrabStats | None = None,
    method: str = "auto",
) -> Iterator[GrabbedFrame]:
    """Yield one full-resolution frame per requested PTS, in ascending PTS order.

    A PTS with no frame yields the first frame after it (with a warning); one past the end yields nothing.
    `method`: "sweep" (one forward pass), "seek" (a seek before each far target; what containers without
    reliable stamps get) or "auto" (the sweep where the container allows it).
    """
    if method not in ("auto", "sweep", "seek"):
        raise ValueError(f"unknown grab method {method!r}")
    targets = sorted(set(pts_list))
    if not targets:
        return
    limits = limits or LimitSettings()
    stats = stats if stats is not None else GrabStats()
    guard = DecodeGuard(info, limits, budget_only=True)
    container = open_media(info.path, limits)
    try:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        limit_decoder(stream, limits)
        tb = stream.time_base or info.time_base
        start_pts = round(info.start_time_s / float(tb)) if tb else 0

        def count(frame: Any) -> None:
            guard.decoded(frame.width, frame.height)
            stats.frames_decoded += 1
            if stats.decoded_pts is not None and frame.pts is not None:
                stats.decoded_pts.append(int(frame.pts))

        missing: list[int] = []
        if method == "seek" or (method == "auto" and container.format.name in _UNSTAMPED_FORMATS):
            stats.method = "seek"
            found = _seek_each(container, stream, targets, tb, count, stats, missing)
        else:
            stats.method = "sweep"
            found = _Sweep(stream, targets, count, stats).run(container, missing)
        for target, pts, frame in found:
            if pts != target:
                log.warning("frame at pts %d requested, %d found", target, pts)
            yield GrabbedFrame(pts, float((pts - start_pts) * tb), upright(frame.to_image(), info.rotation))
        for target in missing:
            log.warning("no frame at pts %d (%.3f s): the file ends earlier", target, (target - start_pts) * float(tb))
    finally:
        container.close()


class _Sweep:
    """One forward pass over the packets: decode only the GOPs that hold a target, each packet at most once."""

    def __init__(self, stream: Any, targets: list[int], count: Any, stats: GrabStats) -> None:
        self.stream = stream
        self.ctx = stream.codec_context
        self.pending: deque[int] = deque(targets)
        self.wanted = frozenset(targets)
        self.count = count
        self.stats = stats
        self.fed_max = -math.inf  # highest packet PTS given to the decoder
        self.fed_since_flush = False
        self.last_out: int | None = None
        self.bad_packets = 0

    # -- decoding ------------------------------------------------------------------------------------------

    def feed(self, packet: Any) -> Iterator[tuple[int, int, Any]]:
        pts = packet.pts
        # Frames nothing refers to are skipped unless one of them is a target (or cannot be told apart).
        skip = "DEFAULT" if pts is None or pts in self.wanted else "NONREF"
        if self.ctx.skip_frame != skip:
            self.ctx.skip_frame = skip
        if pts is not None:
            self.fed_max = max(self.fed_max, pts)
        self.fed_since_flush = True
        self.stats.packets_decoded += 1
        try:
            frames = packet.decode()
        except av.error.FFmpegError as exc:
            self.bad_packets += 1
            if self.bad_packets == 1:
                reason = getattr(exc, "strerror", None) or type(exc).__name__
                log.warning("skipping a corrupt packet while grabbing keyframes (%s)", reason)
            return
        for frame in frames:
            yield from self.offer(frame)

    def drain(self) -> Iterator[tuple[int, int, Any]]:
        if not self.fed_since_flush:
            return
        self.ctx.skip_frame = "DEFAULT"
        try:
            frames = self.stream.decode(None)
        except av.error.FFmpegError:
            return
        for frame in frames:
            yield from self.offer(frame)

    def offer(self, frame: Any) -> Iterator[tuple[int, int, Any]]:
        self.count(frame)
        # A frame without a stamp continues the clock of the one before, as in the pass.
        pts = int(frame.pts) if frame.pts is not None else (self.last_out + 1 if self.last_out is not None else 0)
        if self.last_out is not None and pts <= self.last_out:
            return  # a repeated stamp (corruption): the pass dropped it too
        self.last_out = pts
        while self.pending and self.pending[0] <= pts:
            yield self.pending.popleft(), pts, frame

    def needs_output(self) -> bool:
        """The next target's packet (or a later one) went into the decoder: keep feeding until it comes out."""
        return bool(self.pending) and self.fed_max >= self.pending[0]

    def drop(self, held: list[Any]) -> None:
        """Packets of a GOP without a target are never decoded; the decoder forgets the GOP it was in."""
        self.stats.packets_skipped += len(held)
        if self.fed_since_flush:
            self.ctx.flush_buffers()
            self.fed_since_flush = False

    def run(self, container: Any, missing: list[int]) -> Iterator[tuple[int, int, Any]]:
        """Yield (target, pts, frame) in target order; targets past the end go to `missing`."""
        stream = self.stream
        tb = float(stream.time_base or 0)
        seekable = bool(tb) and container.format.name.split(",")[0] in _SEEKABLE_FORMATS
        seek_ahead = _SEEK_AHEAD_S / tb if tb else math.inf
        held: list[Any] = []  # undecoded packets since the GOP's keyframe, or since the last one decoded
        held_bytes = 0
        live = False  # the decoder was given packets of the GOP being read
        sought_for: int | None = None  # the target the last seek was for (one seek per target)
        resume: int | None = None  # where the sweep was before that seek, until it proves right
        await_key = False  # just after a seek: packets before the first keyframe cannot be decoded
        overshoots = 0
        packets = container.demux(stream)
        while self.pending:
            try:
                packet = next(packets)
            except StopIteration:
                break
            except av.error.FFmpegError as exc:
                log.warning("the file ends in damaged data (%s)", getattr(exc, "strerror", None) or type(exc).__name__)
                break
            if packet.size == 0:
                break  # the demuxer's final empty packet: drained below
            if self.needs_output():
                yield from self.feed(packet)
                continue
            target = self.pending[0]
            pts = packet.pts
            if await_key:
                if not packet.is_keyframe:
                    self.stats.packets_skipped += 1
                    continue
                await_key = False
                if resume is not None and pts is not None and pts > target:
                    # The seek overshot (MP4 seeks by decode time, which runs ahead of presentation time): go
                    # further back, or give up seeking and return to where the sweep was.
                    overshoots += 1
                    seekable = overshoots < 3
                    self._seek(container, int(target - overshoots * seek_ahead) if seekable else resume)
                    resume = resume if seekable else None
                    packets, await_key = container.demux(stream), True
                    continue
                resume = None
            if seekable and not live and sought_for != target and pts is not None and target - pts > seek_ahead:
                # Far from the next target, with nothing of this GOP decoded: jump to the keyframe before it.
                self.drop(held)
                held, held_bytes = [], 0
                sought_for, resume = target, pts
                self._seek(container, target)
                packets, await_key = container.demux(stream), True
                continue
            if packet.is_keyframe:
                live = False
                # A new GOP begins: the one that ends here holds no target, so its packets are never decoded.
                # (When the next target lies before this keyframe, it is a leading picture of an open GOP that
                # needs the GOP before it, which is still held and is decoded below with this packet.)
                if held and pts is not None and pts <= target:
                    self.drop(held)
                    held, held_bytes = [], 0
            held.append(packet)
            held_bytes += packet.size
            if pts is None or pts >= target or held_bytes > _MAX_HELD_BYTES:
                live = True
                for p in held:
                    yield from self.feed(p)
                held, held_bytes = [], 0
        self.stats.packets_skipped += len(held)
        if self.pending:
            yield from self.drain()
        missing.extend(self.pending)

    def _seek(self, container: Any, pts: int) -> None:
        if self.fed_since_flush:
            self.ctx.flush_buffers()
            self.fed_since_flush = False
        container.seek(pts, stream=self.stream, backward=True, any_frame=False)
        self.stats.seeks += 1


def _seek_each(
    container: Any, stream: Any, targets: list[int], tb: Any, count: Any, stats: GrabStats, missing: list[int]
) -> Iterator[tuple[int, int, Any]]:
    """A seek to the keyframe before each far target, then a decode forward (files without reliable stamps)."""
    forward_pts = _FORWARD_DECODE_S / float(tb)
    frames: Iterator[tuple[int, Any]] | None = None
    last_pts: int | None = None
    for target in targets:
        if frames is None or last_pts is None or target < last_pts or target - last_pts > forward_pts:
            container.seek(target, stream=stream, backward=True, any_frame=False)
            stats.seeks += 1
            frames = timed_frames(container, stream, log.warning, on_decoded=count)
            last_pts = None
        found = None
        for pts, frame in frames:
            last_pts = pts
            if pts >= target:
                found = (pts, frame)
                break
        if found is None:
            missing.append(target)
            continue
        yield target, found[0], found[1]
