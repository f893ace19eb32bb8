"""Full-resolution frames at chosen presentation timestamps.

Targets are visited in time order. Between nearby targets the decoder simply runs forward; a far target
costs one seek to the keyframe before it. Every returned frame has exactly the requested PTS (the same one
the analysis pass saw), so the time stored with a keyframe image is the time of its pixels. Display
rotation is applied, so images are upright.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from PIL import Image

from videopipe.config import LimitSettings
from videopipe.media.container import limit_decoder, open_media
from videopipe.media.decode import timed_frames
from videopipe.media.probe import DecodeGuard, VideoInfo

log = logging.getLogger(__name__)

# Decoding forward is cheaper than seeking when the next target is closer than this.
_FORWARD_DECODE_S = 2.0

_TRANSPOSE = {90: Image.Transpose.ROTATE_90, 180: Image.Transpose.ROTATE_180, 270: Image.Transpose.ROTATE_270}


@dataclass(slots=True)
class GrabbedFrame:
    pts: int
    t_s: float
    image: Image.Image  # RGB, upright


def upright(image: Image.Image, rotation: int) -> Image.Image:
    """Apply display rotation metadata (degrees counter-clockwise) to decoded pixels."""
    transpose = _TRANSPOSE.get(rotation % 360)
    return image.transpose(transpose) if transpose is not None else image


def grab_frames(
    info: VideoInfo, pts_list: Iterable[int], limits: LimitSettings | None = None
) -> Iterator[GrabbedFrame]:
    """Yield one full-resolution frame per requested PTS, in ascending PTS order."""
    targets = sorted(set(pts_list))
    if not targets:
        return
    limits = limits or LimitSettings()
    guard = DecodeGuard(info, limits, budget_only=True)
    container = open_media(info.path, limits)
    try:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        limit_decoder(stream, limits)

        def count(frame: Any) -> None:
            guard.decoded(frame.width, frame.height)

        tb = stream.time_base or info.time_base
        start_pts = round(info.start_time_s / float(tb)) if tb else 0
        forward_pts = _FORWARD_DECODE_S / float(tb)
        frames: Iterator[tuple[int, Any]] | None = None
        last_pts: int | None = None
        for target in targets:
            if frames is None or last_pts is None or target < last_pts or target - last_pts > forward_pts:
                container.seek(target, stream=stream, backward=True, any_frame=False)
                frames = timed_frames(container, stream, log.warning, on_decoded=count)
                last_pts = None
            found = None
            for pts, frame in frames:
                last_pts = pts
                if pts >= target:
                    found = (pts, frame)
                    break
            if found is None:
                log.warning(
                    "no frame at pts %d (%.3f s): the file ends earlier", target, (target - start_pts) * float(tb)
                )
                continue
            pts, frame = found
            if pts != target:
                log.warning("frame at pts %d requested, %d found", target, pts)
            yield GrabbedFrame(pts, float((pts - start_pts) * tb), upright(frame.to_image(), info.rotation))
    finally:
        container.close()
