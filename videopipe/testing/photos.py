"""Footage made from real photographs (scikit-image's data): camera pans and zooms across real pictures, joined
by hard cuts, dissolves and fades through black or white, with short shots (2-10 frames) and one-frame flashes.

The truth comes with the file: hard-cut times, each gradual transition's span and the flash times, so scene
detectors can be scored on it (`tests/test_scenes.py`, `benchmarks/scenes.py`). Needs `scikit-image` (dev extra).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Literal, cast

import av
import cv2
import numpy as np

Join = Literal["cut", "dissolve", "fade_black", "fade_white"]
PHOTO_NAMES = (
    "astronaut",
    "chelsea",
    "coffee",
    "rocket",
    "hubble_deep_field",
    "immunohistochemistry",
    "retina",
    "stereo_motorcycle",
    "camera",
    "coins",
    "moon",
    "grass",
)


@functools.lru_cache(maxsize=16)
def photo(name: str) -> np.ndarray:
    """A real photograph from scikit-image's data, as RGB uint8."""
    import skimage.data  # lazy: a dev-only dependency

    image = getattr(skimage.data, name)()
    if isinstance(image, tuple):  # stereo pairs
        image = image[0]
    image = np.asarray(image)
    if image.ndim == 2:
        image = np.repeat(image[:, :, None], 3, axis=2)
    return np.ascontiguousarray(image[:, :, :3]).astype(np.uint8)


@dataclass(frozen=True, slots=True)
class PhotoShot:
    """`frames` frames of one photograph; the camera moves from one crop to another (pan and zoom)."""

    name: str
    frames: int
    # Crop centre (fractions of the picture) and zoom (1 = the largest crop of the output's aspect).
    start: tuple[float, float, float] = (0.45, 0.5, 1.25)
    end: tuple[float, float, float] = (0.55, 0.5, 1.35)
    join: Join = "cut"  # how this shot begins (ignored for the first)
    join_frames: int = 0  # length of a dissolve, or of each half of a fade


@dataclass(slots=True)
class PhotoFootage:
    path: Path
    width: int
    height: int
    fps: float
    duration_s: float
    frame_count: int
    cut_times_s: list[float]  # first frame of each shot that starts with a hard cut
    # (first blended frame, end of the last blended frame, kind) of each dissolve or fade
    transitions: list[tuple[float, float, str]] = field(default_factory=list)
    flash_times_s: list[float] = field(default_factory=list)


class _Camera:
    def __init__(self, shot: PhotoShot, width: int, height: int, length: int, noise: np.random.Generator) -> None:
        image = photo(shot.name)
        scale = min(1.0, 2.5 * max(width / image.shape[1], height / image.shape[0]))
        if scale < 1.0:  # no need to warp from far more pixels than the output has
            image = cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        self.image = image.astype(np.float32)
        self.grain = [noise.normal(0, 2.0, (height, width, 3)).astype(np.float32) for _ in range(4)]
        self.shot, self.width, self.height, self.length, self.noise = shot, width, height, max(1, length), noise

    def frame(self, i: int) -> np.ndarray:
        a = min(1.0, max(0.0, i / max(1, self.length - 1)))
        cx, cy, zoom = (s + (e - s) * a for s, e in zip(self.shot.start, self.shot.end, strict=True))
        ih, iw = self.image.shape[:2]
        aspect = self.width / self.height
        cw = min(iw, ih * aspect) / zoom
        ch = cw / aspect
        x0 = float(np.clip(cx * iw - cw / 2, 0, iw - cw))
        y0 = float(np.clip(cy * ih - ch / 2, 0, ih - ch))
        # Sub-pixel crop through an affine warp: a smooth camera move, not one that jumps pixel by pixel.
        sx, sy = self.width / cw, self.height / ch
        m = np.array([[sx, 0, -x0 * sx], [0, sy, -y0 * sy]], dtype=np.float32)
        out = np.asarray(cv2.warpAffine(self.image, m, (self.width, self.height), flags=cv2.INTER_LINEAR), np.float32)
        return out + self.grain[int(self.noise.integers(0, len(self.grain)))]  # sensor noise


def write_photo_footage(
    path: str | Path,
    shots: Sequence[PhotoShot],
    *,
    width: int = 640,
    height: int = 360,
    fps: float = 25.0,
    seed: int = 0,
    flash_frames: Sequence[int] = (),
    crf: int = 23,
    preset: str = "veryfast",
    gop_s: float = 2.0,
) -> PhotoFootage:
    """Encode `shots` (H.264, yuv420p). A dissolve overlaps the two shots' frames; a fade takes `join_frames`
    frames out of the end of one shot (to black or white) and as many from the start of the next. Frame indexes
    in `flash_frames` are replaced by a near-white picture for one frame (a camera flash: not a boundary)."""
    path = Path(path)
    noise = np.random.default_rng(seed)
    # Build the frame list: each output frame is a list of (shot number, local frame, weight) plus a colour
    # weight (fades).
    plan: list[tuple[list[tuple[int, int, float]], float, float]] = []  # (layers, fade weight, fade colour)
    starts: list[int] = []
    transitions: list[tuple[int, int, str]] = []
    cut_frames: list[int] = []
    for n, shot in enumerate(shots):
        join = shot.join if n else "cut"
        k = shot.join_frames if join != "cut" else 0
        if join == "dissolve" and k:
            start = len(plan) - k
            for j in range(k):
                w = (j + 1) / (k + 1)
                layers, _, _ = plan[start + j]
                plan[start + j] = ([(s, f, wt * (1 - w)) for s, f, wt in layers] + [(n, j, w)], 0.0, 0.0)
            transitions.append((start, start + k, "dissolve"))
            starts.append(start)
            local0 = k
        elif join in ("fade_black", "fade_white") and k:
            colour = 0.0 if join == "fade_black" else 255.0
            start = len(plan) - k
            for j in range(k):
                layers, _, _ = plan[start + j]
                plan[start + j] = (layers, (j + 1) / (k + 1), colour)
            for j in range(k):
                plan.append(([(n, j, 1.0)], 1 - (j + 1) / (k + 1), colour))
            transitions.append((start, start + 2 * k, join))
            starts.append(len(plan) - k)
            local0 = k
        else:
            if n:
                cut_frames.append(len(plan))
            starts.append(len(plan))
            local0 = 0
        for j in range(local0, shot.frames):
            plan.append(([(n, j, 1.0)], 0.0, 0.0))

    cameras = [_Camera(s, width, height, s.frames, noise) for s in shots]
    time_base = Fraction(1, round(fps * 1000)) * 1000
    container = av.open(str(path), "w", options={"movflags": "+faststart"} if path.suffix == ".mp4" else {})
    stream = container.add_stream("libx264", rate=Fraction(fps).limit_denominator(1001))
    stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
    stream.codec_context.time_base = time_base
    stream.codec_context.gop_size = max(1, round(gop_s * fps))
    stream.codec_context.options = {"crf": str(crf), "preset": preset}
    flashes = set(flash_frames)
    times: list[float] = []
    for i, (layers, fade, colour) in enumerate(plan):
        pixels = np.zeros((height, width, 3), np.float32)
        for s, f, wt in layers:
            pixels += wt * cameras[s].frame(f)
        if fade:
            pixels = (1 - fade) * pixels + fade * colour
        if i in flashes:
            pixels = 0.25 * pixels + 0.75 * 250.0
        frame = av.VideoFrame.from_ndarray(np.clip(pixels, 0, 255).astype(np.uint8), format="rgb24")
        frame = frame.reformat(format="yuv420p")
        frame.pts, frame.time_base = round(i / fps / time_base), time_base
        times.append(float(frame.pts * time_base))
        for packet in stream.encode(frame):
            container.mux(packet)
    for packet in stream.encode():
        container.mux(packet)
    container.close()
    step = 1 / fps
    duration = len(plan) * step

    def t(i: int) -> float:
        return times[i] if i < len(times) else duration

    return PhotoFootage(
        path=path,
        width=width,
        height=height,
        fps=fps,
        duration_s=duration,
        frame_count=len(plan),
        cut_times_s=[t(i) for i in cut_frames],
        transitions=[(t(s), t(e), kind) for s, e, kind in transitions],
        flash_times_s=[t(i) for i in sorted(flashes) if i < len(plan)],
    )


def random_photo_shots(
    duration_s: float,
    fps: float,
    rng: np.random.Generator,
    *,
    gradual_share: float = 0.5,
    short_share: float = 0.15,
) -> list[PhotoShot]:
    """A random edit of real photographs about `duration_s` long: shots of 1.5-10 s (and short ones of 2-10
    frames), slow pans and zooms, about `gradual_share` of the joins dissolves or fades (0.3-1.2 s)."""
    shots: list[PhotoShot] = []
    total = 0
    target = round(duration_s * fps)
    previous = ""
    while total < target:
        name = str(rng.choice([p for p in PHOTO_NAMES if p != previous]))
        previous = name
        short = bool(shots) and shots[-1].frames > 10 and rng.random() < short_share
        frames = int(rng.integers(2, 11)) if short else round(float(rng.uniform(1.5, 10.0)) * fps)
        frames = min(frames, max(2, target - total))
        join: Join = "cut"
        k = 0
        if shots and not short and shots[-1].frames > 2.5 * fps and rng.random() < gradual_share:
            join = cast(Join, str(rng.choice(["dissolve", "dissolve", "fade_black", "fade_white"])))
            k = round(float(rng.uniform(0.3, 1.2)) * fps)
            if join != "dissolve":
                k = max(3, k // 2)
            if frames <= 2 * k + fps:
                frames = round(2 * k + fps)
        start = (float(rng.uniform(0.3, 0.7)), float(rng.uniform(0.35, 0.65)), float(rng.uniform(1.1, 1.6)))
        drift = float(rng.uniform(0.02, 0.12)) * frames / (5 * fps)  # slow camera: a few % of the picture per s
        angle = float(rng.uniform(0, 2 * np.pi))
        end = (
            start[0] + drift * float(np.cos(angle)),
            start[1] + drift * float(np.sin(angle)),
            start[2] * float(rng.uniform(0.95, 1.1)),
        )
        shots.append(PhotoShot(name, frames, start, end, join, k))
        total += frames - (k if join == "dissolve" else 0)
    return shots


def flash_frames_for(shots: Sequence[PhotoShot], rng: np.random.Generator, every_s: float, fps: float) -> list[int]:
    """Frame indexes for one-frame flashes, about one per `every_s`, each at least half a second from any join."""
    joins: list[int] = []
    pos = 0
    for n, shot in enumerate(shots):
        if n:
            joins.append(pos - (shot.join_frames if shot.join == "dissolve" else 0))
            pos = joins[-1]
        pos += shot.frames
    total = pos
    margin = round(0.5 * fps) + max((s.join_frames for s in shots), default=0)
    out: list[int] = []
    for _ in range(int(total / fps / every_s)):
        for _try in range(50):
            f = int(rng.integers(0, total))
            if all(abs(f - j) > margin for j in joins) and margin < f < total - margin:
                out.append(f)
                break
    return sorted(set(out))
