"""Synthetic videos with known content, for the demo, the tests and the benchmarks.

Each video is a sequence of shots joined by hard cuts at exactly known presentation times. A shot is a
smooth random texture with its own tint, panned by a moving camera, with a bright object crossing it: enough
motion and texture that a naive frame-difference detector sees false cuts, while the true cuts are sharp.
Frames are built directly in YUV 4:2:0 with NumPy, so a 10-minute 720p file takes a couple of minutes to
encode on two cores.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import cast

import av
import cv2
import numpy as np


@dataclass(frozen=True, slots=True)
class SampleVideo:
    path: Path
    width: int
    height: int
    fps: float
    duration_s: float
    cut_times_s: list[float]  # presentation time of the first frame of every shot after the first
    frame_times_s: list[float] = field(repr=False)


class _Shot:
    """One shot: a panning camera over a tinted texture and an object moving across it."""

    def __init__(self, rng: np.random.Generator, width: int, height: int) -> None:
        self.w, self.h = width, height
        margin = 1.4
        cw, ch = int(width * margin) // 2 * 2, int(height * margin) // 2 * 2
        coarse = rng.random((max(2, ch // 48), max(2, cw // 48))).astype(np.float32)
        base = cv2.resize(coarse, (cw, ch), interpolation=cv2.INTER_CUBIC)
        detail = cv2.resize(rng.random((ch // 4, cw // 4)).astype(np.float32), (cw, ch), interpolation=cv2.INTER_LINEAR)
        mean, contrast = rng.uniform(60, 190), rng.uniform(40, 90)
        luma = mean + contrast * (base - 0.5) + 24 * (detail - 0.5)
        self.canvas_y = np.clip(luma, 16, 235).astype(np.uint8)
        tint_u, tint_v = rng.uniform(-40, 40), rng.uniform(-40, 40)
        chroma_base = cv2.resize(base, (cw // 2, ch // 2), interpolation=cv2.INTER_AREA)
        self.canvas_u = np.clip(128 + tint_u + 20 * (chroma_base - 0.5), 16, 240).astype(np.uint8)
        self.canvas_v = np.clip(128 + tint_v - 20 * (chroma_base - 0.5), 16, 240).astype(np.uint8)
        speed = rng.uniform(0.5, 4.0) * width / 1280
        angle = rng.uniform(0, 2 * math.pi)
        self.vx, self.vy = speed * math.cos(angle), speed * math.sin(angle)
        self.x0, self.y0 = rng.uniform(0, cw - width), rng.uniform(0, ch - height)
        self.obj = (int(width * rng.uniform(0.06, 0.15)), int(height * rng.uniform(0.08, 0.2)))
        self.obj_y = rng.uniform(0.1, 0.7) * height
        self.obj_speed = rng.uniform(2, 8) * width / 1280 * rng.choice([-1, 1])
        self.obj_luma = int(rng.choice([30, 230]))

    def frame(self, i: int) -> np.ndarray:
        """The i-th frame of this shot as a yuv420p (h*3/2, w) array."""
        ch, cw = self.canvas_y.shape
        x = int(_bounce(self.x0 + self.vx * i, cw - self.w)) // 2 * 2
        y = int(_bounce(self.y0 + self.vy * i, ch - self.h)) // 2 * 2
        out = np.empty((self.h * 3 // 2, self.w), np.uint8)
        out[: self.h] = self.canvas_y[y : y + self.h, x : x + self.w]
        ow, oh = self.obj
        ox = int((self.w / 2 + self.obj_speed * i) % (self.w + ow)) - ow
        oy = int(self.obj_y)
        out[max(0, oy) : oy + oh, max(0, ox) : max(0, ox + ow)] = self.obj_luma
        qh, qw = self.h // 2, self.w // 2
        u = self.canvas_u[y // 2 : y // 2 + qh, x // 2 : x // 2 + qw]
        v = self.canvas_v[y // 2 : y // 2 + qh, x // 2 : x // 2 + qw]
        chroma = out[self.h :].reshape(2, qh, qw)  # yuv420p: U plane then V plane, each (h/2, w/2)
        chroma[0], chroma[1] = u, v
        return out


def _bounce(pos: float, span: int) -> float:
    if span <= 0:
        return 0.0
    period = 2 * span
    p = pos % period
    return p if p <= span else period - p


def shot_lengths(total_s: float, rng: np.random.Generator, min_s: float = 1.5, max_s: float = 12.0) -> list[float]:
    out: list[float] = []
    left = total_s
    while left > 0:
        d = float(min(left, rng.uniform(min_s, max_s)))
        if left - d < min_s:
            d = left
        out.append(d)
        left -= d
    return out


def write_sample_video(
    path: str | Path,
    *,
    shots_s: Sequence[float] = (3.0, 2.0, 4.0, 3.0),
    width: int = 640,
    height: int = 360,
    fps: float = 25.0,
    seed: int = 0,
    codec: str = "libx264",
    crf: int = 23,
    preset: str = "veryfast",
    gop_s: float = 2.0,
    frame_durations_s: Callable[[int], float] | None = None,
    rotation: int = 0,
    audio: bool = False,
    faststart: bool = True,
    container_format: str | None = None,
    flashes_s: Sequence[float] = (),
    progress: Callable[[float], None] | None = None,
) -> SampleVideo:
    """Encode a video made of `shots_s` (seconds each) joined by hard cuts.

    `frame_durations_s(i)` makes the file variable-frame-rate: frame i lasts that long (the millisecond
    clock makes every time exact). `rotation` stores display-rotation metadata without turning the pixels.
    A frame at each time in `flashes_s` is replaced by a near-white one (a camera flash: not a cut).
    """
    path = Path(path)
    rng = np.random.default_rng(seed)
    vfr = frame_durations_s is not None
    time_base = Fraction(1, 1000) if vfr else Fraction(1, round(fps * 1000)) * 1000
    options = {"movflags": "+faststart"} if faststart and path.suffix in (".mp4", ".mov", ".m4v") else {}
    container = av.open(str(path), "w", format=container_format, options=options)
    stream = cast(av.VideoStream, container.add_stream(codec, rate=Fraction(fps).limit_denominator(1001)))
    stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
    stream.codec_context.time_base = time_base
    stream.codec_context.gop_size = max(1, round(gop_s * fps))
    if codec == "libx264":
        stream.codec_context.options = {"crf": str(crf), "preset": preset}
    if rotation:
        stream.set_display_rotation(rotation)
    audio_stream = container.add_stream("aac", rate=16000) if audio else None

    total_s = float(sum(shots_s))
    cut_times: list[float] = []
    frame_times: list[float] = []
    t = 0.0
    pts = 0
    frame_index = 0
    for shot_no in range(len(shots_s)):
        shot = _Shot(rng, width, height)
        shot_end = sum(shots_s[: shot_no + 1])
        i = 0
        first = True
        while t < shot_end - 1e-9:
            if first and shot_no:
                cut_times.append(float(pts * time_base))
            first = False
            pixels = shot.frame(i)
            now = float(pts * time_base)
            if any(0 <= now - f < 1 / fps for f in flashes_s):
                pixels[:height] = np.clip(pixels[:height].astype(np.int16) + 120, 0, 255).astype(np.uint8)
            frame = av.VideoFrame.from_numpy_buffer(pixels, format="yuv420p")
            frame.pts, frame.time_base = pts, time_base
            for packet in stream.encode(frame):
                container.mux(packet)
            frame_times.append(float(pts * time_base))
            step = frame_durations_s(frame_index) if frame_durations_s else 1 / fps
            frame_index += 1
            pts += max(1, round(step / time_base))
            t = float(pts * time_base)
            i += 1
            if progress:
                progress(min(1.0, t / total_s))
    for packet in stream.encode():
        container.mux(packet)
    if audio_stream is not None:
        _write_tone(container, audio_stream, duration_s=t)
    container.close()
    return SampleVideo(path, width, height, fps, t, cut_times, frame_times)


def _write_tone(
    container: av.container.OutputContainer,
    stream: av.AudioStream,
    duration_s: float,
    freq_hz: float = 440.0,
    amplitude: float = 0.2,
) -> None:
    rate = stream.codec_context.sample_rate or 16000
    samples = int(duration_s * rate)
    chunk = 1024
    for start in range(0, samples, chunk):
        n = min(chunk, samples - start)
        tt = (np.arange(start, start + n) / rate).astype(np.float32)
        data = (amplitude * np.sin(2 * np.pi * freq_hz * tt)).astype(np.float32).reshape(1, -1)
        frame = av.AudioFrame.from_ndarray(data, format="fltp", layout="mono")
        frame.sample_rate, frame.pts = rate, start
        for packet in stream.encode(frame):
            container.mux(packet)
    for packet in stream.encode():
        container.mux(packet)


def write_audio_only(path: str | Path, duration_s: float = 3.0) -> Path:
    """An audio-only file (AAC in MP4 by default), for bad-input tests and examples."""
    path = Path(path)
    container = av.open(str(path), "w", format="mp4" if path.suffix in (".mp4", ".m4a") else None)
    stream = container.add_stream("aac", rate=16000)
    _write_tone(container, stream, duration_s)
    container.close()
    return path


@dataclass(frozen=True, slots=True)
class Slide:
    title: str
    lines: tuple[str, ...]
    duration_s: float


@dataclass(frozen=True, slots=True)
class LectureVideo:
    path: Path
    duration_s: float
    slide_starts_s: list[float]
    narration: list[tuple[float, str]]  # (start time, text) of each spoken phrase


def speak(text: str, rate_wpm: int = 125, voice: str = "en-us") -> tuple[np.ndarray, int]:
    """Synthesise `text` with espeak-ng (Debian package espeak-ng): float32 mono samples and their rate."""
    import shutil
    import subprocess
    import tempfile

    exe = shutil.which("espeak-ng")
    if exe is None:
        raise RuntimeError("espeak-ng is not installed (apt-get install espeak-ng; scripts/install-system-deps.sh)")
    with tempfile.TemporaryDirectory() as tmp:
        wav = Path(tmp) / "say.wav"
        subprocess.run([exe, "-v", voice, "-s", str(rate_wpm), "-w", str(wav), text], check=True, capture_output=True)
        with av.open(str(wav)) as container:
            stream = container.streams.audio[0]
            rate = stream.codec_context.sample_rate
            chunks = [f.to_ndarray().astype(np.float32).reshape(-1) for f in container.decode(stream)]
    samples = np.concatenate(chunks)
    if samples.dtype != np.float32 or np.abs(samples).max(initial=0) > 2:
        samples = samples / 32768.0
    return samples.astype(np.float32), rate


def render_slide(slide: Slide, width: int, height: int, tint: int = 0) -> np.ndarray:
    """A plain slide (title, bullet lines) as an RGB array, with Pillow's bundled scalable font."""
    from PIL import Image, ImageDraw, ImageFont

    image = Image.new("RGB", (width, height), (250 - tint, 250, 245))
    draw = ImageDraw.Draw(image)
    title_font = ImageFont.load_default(size=max(12, height // 10))
    body_font = ImageFont.load_default(size=max(10, height // 18))
    draw.rectangle([0, 0, width, height // 6], fill=(30, 60, 120))
    draw.text((width // 20, height // 30), slide.title, font=title_font, fill=(255, 255, 255))
    for n, line in enumerate(slide.lines):
        draw.text((width // 12, height // 4 + n * height // 9), f"- {line}", font=body_font, fill=(20, 20, 20))
    return np.asarray(image)


def write_lecture_video(
    path: str | Path,
    slides: Sequence[Slide],
    narration: Sequence[tuple[float, str]],
    *,
    width: int = 1280,
    height: int = 720,
    fps: float = 25.0,
    audio_rate: int = 22050,
    progress: Callable[[float], None] | None = None,
) -> LectureVideo:
    """Slides (Pillow) cut at known times, narration (espeak-ng) spoken at known times, in one MP4."""
    path = Path(path)
    duration = float(sum(s.duration_s for s in slides))
    track = np.zeros(int(duration * audio_rate) + 1, np.float32)
    for start, text in narration:
        samples, rate = speak(text)
        if rate != audio_rate:
            positions = np.arange(0, samples.size, rate / audio_rate)
            samples = np.interp(positions, np.arange(samples.size), samples).astype(np.float32)
        begin = int(start * audio_rate)
        end = min(track.size, begin + samples.size)
        track[begin:end] += samples[: end - begin]

    container = av.open(str(path), "w", options={"movflags": "+faststart"})
    video = container.add_stream("libx264", rate=Fraction(fps).limit_denominator(1001))
    video.width, video.height, video.pix_fmt = width, height, "yuv420p"
    video.codec_context.options = {"crf": "23", "preset": "veryfast"}
    video.codec_context.gop_size = round(2 * fps)
    audio = container.add_stream("aac", rate=audio_rate)
    starts: list[float] = []
    frame_index = 0
    t_end = 0.0
    for n, slide in enumerate(slides):
        starts.append(frame_index / fps)
        t_end += slide.duration_s
        frame = av.VideoFrame.from_ndarray(render_slide(slide, width, height, tint=(n * 37) % 60), format="rgb24")
        while frame_index / fps < t_end - 1e-9:
            frame.pts = frame_index
            frame.time_base = Fraction(1, 1) / Fraction(fps).limit_denominator(1001)
            for packet in video.encode(frame):
                container.mux(packet)
            frame_index += 1
            if progress:
                progress(min(1.0, frame_index / fps / duration))
    for packet in video.encode():
        container.mux(packet)
    chunk = 1024
    for start in range(0, track.size, chunk):
        data = track[start : start + chunk].reshape(1, -1)
        aframe = av.AudioFrame.from_ndarray(np.ascontiguousarray(data), format="fltp", layout="mono")
        aframe.sample_rate, aframe.pts = audio_rate, start
        for packet in audio.encode(aframe):
            container.mux(packet)
    for packet in audio.encode():
        container.mux(packet)
    container.close()
    return LectureVideo(path, frame_index / fps, starts, list(narration))


@dataclass(frozen=True, slots=True)
class Visit:
    """An object crossing a fixed camera's view: enters at `enter_s`, gone at `leave_s`."""

    enter_s: float
    leave_s: float
    y: float = 0.5  # vertical centre, share of the height
    size: float = 0.15  # share of the height
    luma: int = 40


def write_fixed_camera_video(
    path: str | Path,
    visits: Sequence[Visit],
    *,
    duration_s: float = 12.0,
    width: int = 640,
    height: int = 360,
    fps: float = 25.0,
    noise: float = 2.0,
    seed: int = 0,
) -> Path:
    """A still, textured scene with sensor noise; objects cross it left to right during their visits."""
    path = Path(path)
    rng = np.random.default_rng(seed)
    coarse = rng.random((height // 40 + 2, width // 40 + 2)).astype(np.float32)
    background: np.ndarray = 70 + 110 * cv2.resize(coarse, (width, height), interpolation=cv2.INTER_CUBIC)
    container = av.open(str(path), "w", options={"movflags": "+faststart"})
    stream = container.add_stream("libx264", rate=Fraction(fps).limit_denominator(1001))
    stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
    stream.codec_context.options = {"crf": "23", "preset": "veryfast"}
    frames = round(duration_s * fps)
    chroma = np.full((height // 2, width // 2), 128, np.uint8)
    for i in range(frames):
        t = i / fps
        y = background + rng.normal(0, noise, background.shape).astype(np.float32)
        for v in visits:
            if v.enter_s <= t < v.leave_s:
                side = int(v.size * height)
                progress_ = (t - v.enter_s) / (v.leave_s - v.enter_s)
                # Enters at the left edge on its first frame, fully gone past the right edge at leave_s.
                x0 = int(-side + 1 + progress_ * (width + side - 1))
                cy = int(v.y * height)
                y[max(0, cy - side // 2) : cy + side // 2, max(0, x0) : max(0, x0 + side)] = v.luma
        # yuv420p as one (h*3/2, w) array: Y, then the U and V planes (each h/2 x w/2) row after row.
        flat_chroma = chroma.reshape(height // 4, width)
        planes = np.vstack([np.clip(y, 16, 235).astype(np.uint8), flat_chroma, flat_chroma])
        frame = av.VideoFrame.from_numpy_buffer(planes, format="yuv420p")
        frame.pts, frame.time_base = i, Fraction(1, 1) / Fraction(fps).limit_denominator(1001)
        for packet in stream.encode(frame):
            container.mux(packet)
    for packet in stream.encode():
        container.mux(packet)
    container.close()
    return path


DEMO_SLIDES = [
    Slide("Entropy and information", ("Shannon 1948", "measured in bits"), 7.0),
    Slide("How volcanoes erupt", ("magma chambers", "gas pressure"), 7.0),
    Slide("Telescopes and galaxies", ("mirrors and lenses", "distant galaxies"), 7.0),
    Slide("Questions and answers", ("thank you",), 5.0),
]
DEMO_NARRATION = [
    (0.8, "Entropy measures uncertainty in a message."),
    (7.8, "A volcano can erupt without warning."),
    (14.8, "The telescope revealed distant galaxies."),
    (21.8, "Thank you for listening."),
]


# Short lectures on one subject each (two slides, two spoken sentences) and a vocabulary that names the
# subjects: what the tagging tests and the tagging benchmark use (each video's true tag is known).
TOPIC_LECTURES: dict[str, tuple[tuple[str, tuple[str, ...], str], tuple[str, tuple[str, ...], str]]] = {
    "geology": (("How volcanoes erupt", ("magma chambers", "lava and ash"),
                 "Magma rises from deep below and the volcano erupts."),
                ("Earthquakes and rocks", ("plates move", "faults break"),
                 "Lava and ash cover the mountain after the eruption.")),
    "astronomy": (("Telescopes and galaxies", ("mirrors and lenses", "distant light"),
                   "The telescope collects light from distant galaxies."),
                  ("Stars and planets", ("orbits", "the solar system"),
                   "Planets orbit the star at the center of the system.")),
    "cooking": (("Baking bread at home", ("flour and yeast", "warm water"),
                 "Mix flour, water and yeast to make the dough."),
                ("Into the oven", ("hot oven", "golden crust"),
                 "Bake the bread in a hot oven until the crust is brown.")),
    "sports": (("Football tactics", ("passing", "defending"),
                "The striker passes the ball and scores a goal."),
               ("Winning the match", ("the team", "the final whistle"),
                "The team defends with four players at the back.")),
    "personal finance": (("Saving and interest", ("compound interest", "savings account"),
                          "Compound interest helps your savings grow every year."),
                         ("Budgets and loans", ("income", "monthly spending"),
                          "A budget tracks the money coming in and going out.")),
    "music": (("Playing the piano", ("keys", "major chords"),
               "Press the piano keys together to play a major chord."),
              ("Rhythm and songs", ("the drummer", "the beat"),
               "The drummer keeps the rhythm of the song.")),
    "medicine": (("The human heart", ("arteries", "blood flow"),
                  "The heart pumps blood through the arteries."),
                 ("Blood pressure", ("the doctor", "a cuff"),
                  "The doctor measures blood pressure with a cuff.")),
    "programming": (("Writing Python code", ("functions", "arguments"),
                     "A function takes arguments and returns a value."),
                    ("Loops and lists", ("for loops", "every item"),
                     "The loop repeats the code for every item in the list.")),
}  # fmt: skip
TOPIC_VOCABULARY = [
    ("geology", "volcanoes, earthquakes, rocks and the earth's crust"),
    ("astronomy", "stars, planets, galaxies and telescopes"),
    ("cooking", "recipes, baking, food and kitchens"),
    ("sports", "football, players, teams, matches and goals"),
    ("personal finance", "money, saving, interest, budgets and loans"),
    ("music", "instruments, songs, chords and rhythm"),
    ("medicine", "the human body, health, doctors and disease"),
    ("programming", "software, code, functions and computers"),
]


def write_topic_lecture(
    path: str | Path, topic: str, variant: int = 0, slide_s: float = 4.5, width: int = 480, height: int = 270
) -> LectureVideo:
    """A two-slide lecture on `topic` (a key of TOPIC_LECTURES). `variant` > 0 adds a part number to the slides,
    so many files on one topic differ in content (and are analysed separately)."""
    slides, narration = [], []
    for n, (title, lines, sentence) in enumerate(TOPIC_LECTURES[topic]):
        extra = (f"part {variant}",) if variant else ()
        slides.append(Slide(title, (*lines, *extra), slide_s))
        narration.append((n * slide_s + 0.5, sentence))
    return write_lecture_video(path, slides, narration, width=width, height=height)
