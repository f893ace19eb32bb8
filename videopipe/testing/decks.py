"""Slide decks built the way people build them, rendered to video, with the truth about every change.

One template per deck: the same title bar, background, logo and footer on every slide (only the slide number
in the corner changes), and only the words changing between slides. Some slides build up, one bullet at a
time; some are a large one-word section title; some show code in a monospace font; one shows a photograph
(scikit-image's real pictures, when installed). Themes: a light one (dark text on white, blue bar), a dark one
(light text on near-black) and a serif one. Between slides a hard cut, or on some slides a short cross-fade as
presentation software makes it. A mouse pointer wanders now and then, as in a screen recording.

Fonts: DejaVu (Debian's fonts-dejavu-core) when installed, else Pillow's bundled scalable font for every role.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np
from PIL import Image, ImageDraw, ImageFont

_FONT_DIRS = ("/usr/share/fonts/truetype/dejavu", "/usr/share/fonts/dejavu", "/usr/share/fonts/TTF")
_FONT_FILES = {
    "sans": "DejaVuSans.ttf",
    "sans-bold": "DejaVuSans-Bold.ttf",
    "serif": "DejaVuSerif.ttf",
    "serif-bold": "DejaVuSerif-Bold.ttf",
    "condensed-bold": "DejaVuSansCondensed-Bold.ttf",
    "mono": "DejaVuSansMono.ttf",
}

Font = ImageFont.FreeTypeFont | ImageFont.ImageFont


def font(role: str, size: int) -> Font:
    """A font for `role` (sans, sans-bold, serif, serif-bold, condensed-bold, mono) at `size` pixels."""
    name = _FONT_FILES[role]
    for folder in _FONT_DIRS:
        path = Path(folder, name)
        if path.exists():
            return ImageFont.truetype(str(path), size)
    return ImageFont.load_default(size=size)


@dataclass(frozen=True, slots=True)
class Theme:
    name: str
    background: tuple[int, int, int]
    bar: tuple[int, int, int]
    title_colour: tuple[int, int, int]
    text_colour: tuple[int, int, int]
    accent: tuple[int, int, int]
    title_font: str = "sans-bold"
    body_font: str = "sans"


LIGHT = Theme("light", (255, 255, 255), (24, 62, 128), (255, 255, 255), (30, 30, 30), (230, 120, 20))
DARK = Theme("dark", (22, 24, 30), (22, 24, 30), (250, 250, 250), (215, 220, 225), (80, 180, 250), "condensed-bold")
SERIF = Theme(
    "serif", (246, 242, 232), (246, 242, 232), (120, 30, 30), (40, 35, 30), (120, 30, 30), "serif-bold", "serif"
)
THEMES = {t.name: t for t in (LIGHT, DARK, SERIF)}


@dataclass(frozen=True, slots=True)
class DeckSlide:
    """One slide. `build`: the bullets appear one at a time, `step_s` apart (the title and first bullet first).
    `section`: a large title alone in the middle. `code`: lines in monospace under the title. `photo`: a real
    photograph on the right (scikit-image's data name)."""

    title: str
    bullets: tuple[str, ...] = ()
    duration_s: float = 4.0
    build: bool = False
    step_s: float = 2.0
    section: bool = False
    code: tuple[str, ...] = ()
    photo: str | None = None
    fade_in_s: float = 0.0  # cross-fade from the previous slide (0: a hard cut)

    def states(self) -> list[tuple[float, int]]:
        """(offset from the slide's start, bullets shown) for each state the slide goes through."""
        if not self.build or len(self.bullets) < 2:
            return [(0.0, len(self.bullets))]
        return [(n * self.step_s, n + 1) for n in range(len(self.bullets))]

    @property
    def total_s(self) -> float:
        return max(self.duration_s, self.states()[-1][0] + self.step_s)


@dataclass(frozen=True, slots=True)
class DeckChange:
    t_s: float  # presentation time of the first frame that differs (the start of a fade)
    kind: str  # "slide" (new slide: a chapter candidate) or "build" (content added to the same slide)
    slide: int  # the slide's number in the deck (0-based)


@dataclass(frozen=True, slots=True)
class DeckVideo:
    path: Path
    duration_s: float
    width: int
    height: int
    theme: str
    slides: tuple[DeckSlide, ...]
    slide_starts_s: list[float]
    changes: list[DeckChange] = field(repr=False)  # every slide change and build-up step after the first frame

    def text_of(self, slide: int) -> str:
        """Everything the slide finally shows, lines joined by newlines (the footer aside)."""
        s = self.slides[slide]
        return "\n".join([s.title, *s.bullets, *s.code])


DECK_TEXT: tuple[DeckSlide, ...] = (
    DeckSlide("Plate Tectonics and Volcanism", ("Why the ground moves", "Where volcanoes form", "How we measure it")),
    DeckSlide("Volcanoes", section=True, duration_s=3.0),
    DeckSlide(
        "Three kinds of plate boundary",
        ("Divergent: plates move apart", "Convergent: one plate sinks", "Transform: plates slide past"),
        build=True,
        step_s=2.0,
    ),
    DeckSlide(
        "Where magma comes from", ("Melting in the mantle wedge", "Water lowers the melting point"), fade_in_s=0.5
    ),
    DeckSlide(
        "Reading the seismometer",
        code=("import numpy as np", "trace = np.loadtxt('station.csv')", "peaks = find_peaks(trace, height=3.5)"),
    ),
    DeckSlide("Where magma rises", ("Hot spots under Hawaii", "Ridges under the oceans"), photo="rocket"),
    DeckSlide("Summary", section=True, duration_s=3.0),
    DeckSlide("Questions", ("Office hours on Thursday", "Reading: chapter four"), duration_s=3.5),
)


def render_deck_slide(
    slide: DeckSlide, theme: Theme, number: int, shown: int, width: int = 1280, height: int = 720
) -> np.ndarray:
    """One state of a slide (the first `shown` bullets) in the deck's template, as an RGB array."""
    u = height / 720
    image = Image.new("RGB", (width, height), theme.background)
    draw = ImageDraw.Draw(image)
    bar_h = round(110 * u)
    draw.rectangle([0, 0, width, bar_h], fill=theme.bar)
    draw.rectangle([0, bar_h, width, bar_h + max(2, round(4 * u))], fill=theme.accent)
    # The logo: the same on every slide (a ring and a triangle in the accent colour).
    cx, cy, r = width - round(70 * u), round(55 * u), round(30 * u)
    draw.ellipse([cx - r, cy - r, cx + r, cy + r], outline=theme.accent, width=max(2, round(5 * u)))
    draw.polygon([(cx, cy - r // 2), (cx - r // 2, cy + r // 3), (cx + r // 2, cy + r // 3)], fill=theme.accent)
    # The footer: the course (fixed) and the slide number (the one thing that changes with every slide).
    small = font(theme.body_font, round(18 * u))
    draw.line([(round(40 * u), height - round(48 * u)), (width - round(40 * u), height - round(48 * u))],
              fill=theme.accent, width=max(1, round(2 * u)))  # fmt: skip
    draw.text((round(40 * u), height - round(38 * u)), "GEO 101  Earth Science", font=small, fill=theme.text_colour)
    draw.text((width - round(80 * u), height - round(38 * u)), str(number + 1), font=small, fill=theme.text_colour)
    if slide.section:
        big = font(theme.title_font, round(110 * u))
        box = draw.textbbox((0, 0), slide.title, font=big)
        x = (width - (box[2] - box[0])) // 2
        y = (height - (box[3] - box[1])) // 2
        draw.text((x, y), slide.title, font=big, fill=theme.text_colour if theme.bar == theme.background else theme.bar)
        return np.asarray(image)
    title = font(theme.title_font, round(46 * u))
    draw.text((round(48 * u), round(30 * u)), slide.title, font=title, fill=theme.title_colour)
    body = font(theme.body_font, round(34 * u))
    y = round(160 * u)
    if slide.photo:
        photo = _photo(slide.photo)
        if photo is not None:
            side = round(380 * u)
            photo = photo.resize((side, round(side * photo.height / photo.width)), Image.Resampling.LANCZOS)
            image.paste(photo, (width - side - round(60 * u), round(150 * u)))
    for line in slide.bullets[:shown]:
        draw.ellipse([round(60 * u), y + round(12 * u), round(72 * u), y + round(24 * u)], fill=theme.accent)
        draw.text((round(92 * u), y), line, font=body, fill=theme.text_colour)
        y += round(62 * u)
    if slide.code:
        mono = font("mono", round(28 * u))
        box_bg = tuple(min(255, max(0, c + (18 if sum(theme.background) < 300 else -14))) for c in theme.background)
        top = y + round(10 * u)
        bottom = top + round(48 * u) * len(slide.code) + round(30 * u)
        draw.rectangle([round(48 * u), top, width - round(48 * u), bottom], fill=box_bg)
        for n, line in enumerate(slide.code):
            draw.text((round(70 * u), top + round(15 * u) + n * round(48 * u)), line, font=mono, fill=theme.text_colour)
    return np.asarray(image)


def _photo(name: str) -> Image.Image | None:
    try:
        from skimage import data
    except ImportError:
        return None
    pixels = getattr(data, name)()
    if pixels.ndim == 2:
        pixels = np.stack([pixels] * 3, axis=-1)
    return Image.fromarray(np.ascontiguousarray(pixels[..., :3]))


def _speaker_source(width: int, height: int) -> np.ndarray:
    """The picture the webcam inset pans over: a real photograph (scikit-image's astronaut) or, without
    scikit-image, a smooth random texture, a little larger than the inset."""
    w = round(width * 0.24)
    h = w * 9 // 16
    photo = _photo("astronaut")
    if photo is None:
        rng = np.random.default_rng(1)
        coarse = (rng.random((8, 12, 3)) * 255).astype(np.uint8)
        photo = Image.fromarray(coarse).resize((64, 48), Image.Resampling.BICUBIC)
    return np.asarray(photo.convert("RGB").resize((w + 40, h + 40), Image.Resampling.LANCZOS))


def _paste_speaker(frame: np.ndarray, source: np.ndarray, t_s: float, rng: np.random.Generator) -> None:
    """The webcam inset at time `t_s`, drawn into `frame` in place (bottom right, above the footer)."""
    import math

    h, w = source.shape[0] - 40, source.shape[1] - 40
    dx = round(20 + 8 * math.sin(2 * math.pi * t_s / 2.3) + 5 * math.sin(2 * math.pi * t_s / 0.9))
    dy = round(20 + 6 * math.sin(2 * math.pi * t_s / 1.7 + 1.0) + 3 * math.sin(2 * math.pi * t_s / 0.7))
    view = source[dy : dy + h, dx : dx + w].astype(np.int16) + rng.normal(0, 3, (h, w, 1)).astype(np.int16)
    y0 = frame.shape[0] - h - round(frame.shape[0] * 0.09)
    x0 = frame.shape[1] - w - round(frame.shape[1] * 0.03)
    frame[y0 : y0 + h, x0 : x0 + w] = np.clip(view, 0, 255).astype(np.uint8)


def _pointer(frame: np.ndarray, x: int, y: int, scale: float) -> None:
    """A mouse pointer (white arrow, dark outline) drawn into `frame` in place."""
    h = round(22 * scale)
    for row in range(h):
        w = max(1, row * 11 // 16)
        ys, xs = y + row, slice(x, x + w)
        if 0 <= ys < frame.shape[0]:
            frame[ys, xs] = 255
            frame[ys, x : x + 1] = 0
            frame[ys, x + w - 1 : x + w] = 0


def write_deck_video(
    path: str | Path,
    slides: Sequence[DeckSlide] = DECK_TEXT,
    *,
    theme: str = "light",
    width: int = 1280,
    height: int = 720,
    fps: float = 25.0,
    crf: int = 23,
    pointer: bool = True,
    speaker: bool = False,
    progress: Callable[[float], None] | None = None,
) -> DeckVideo:
    """Encode `slides` in one template (`theme`), H.264 like a screen recording; returns the truth. `speaker`:
    a webcam inset in the bottom-right corner, never still (a real photograph swaying as a hand-held camera
    would, with sensor noise), as recorded talks show the speaker."""
    inset = _speaker_source(width, height) if speaker else None
    path = Path(path)
    th = THEMES[theme]
    timeline: list[tuple[float, int, int]] = []  # (start, slide, bullets shown)
    starts: list[float] = []
    t = 0.0
    for n, slide in enumerate(slides):
        starts.append(t)
        for offset, shown in slide.states():
            timeline.append((t + offset, n, shown))
        t += slide.total_s
    duration = t
    n_frames = round(duration * fps)
    frame_t = [i / fps for i in range(n_frames)]

    def first_frame_at(t_s: float) -> float:
        return next(ft for ft in frame_t if ft >= t_s - 1e-9)

    changes: list[DeckChange] = []
    for (start, n, _shown), (_, prev_n, _) in zip(timeline[1:], timeline[:-1], strict=True):
        kind = "slide" if n != prev_n else "build"
        fade = slides[n].fade_in_s if kind == "slide" else 0.0
        changes.append(DeckChange(first_frame_at(start - fade), kind, n))

    rendered: dict[tuple[int, int], np.ndarray] = {}

    def state_image(n: int, shown: int) -> np.ndarray:
        key = (n, shown)
        if key not in rendered:
            rendered[key] = render_deck_slide(slides[n], th, n, shown, width, height)
        return rendered[key]

    container = av.open(str(path), "w", options={"movflags": "+faststart"})
    stream: Any = container.add_stream("libx264", rate=Fraction(fps).limit_denominator(1001))
    stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
    stream.codec_context.options = {"crf": str(crf), "preset": "veryfast"}
    stream.codec_context.gop_size = round(4 * fps)
    rng = np.random.default_rng(7)
    px, py = width * 0.6, height * 0.6
    vx = vy = 0.0
    state = 0
    for i, ft in enumerate(frame_t):
        while state + 1 < len(timeline) and timeline[state + 1][0] <= ft + 1e-9:
            state += 1
        _, n, shown = timeline[state]
        pixels = state_image(n, shown)
        # A cross-fade into the next slide, when that slide asks for one.
        if state + 1 < len(timeline):
            nxt_start, nxt_n, nxt_shown = timeline[state + 1]
            nxt_fade = slides[nxt_n].fade_in_s if nxt_n != n else 0.0
            if nxt_fade and ft >= nxt_start - nxt_fade - 1e-9:
                a = (ft - (nxt_start - nxt_fade)) / nxt_fade
                mixed = (1 - a) * pixels.astype(np.float32) + a * state_image(nxt_n, nxt_shown).astype(np.float32)
                pixels = mixed.astype(np.uint8)
        if pointer:
            # The pointer moves in bursts (someone pointing at a line), still most of the time.
            if rng.random() < 0.03:
                vx, vy = rng.uniform(-12, 12) * width / 1280, rng.uniform(-6, 6) * height / 720
            elif rng.random() < 0.1:
                vx = vy = 0.0
            px = float(np.clip(px + vx, 0, width - 20))
            py = float(np.clip(py + vy, 0, height - 30))
            pixels = pixels.copy()
            _pointer(pixels, int(px), int(py), height / 720)
        if inset is not None:
            pixels = pixels.copy() if not pointer else pixels
            _paste_speaker(pixels, inset, ft, rng)
        frame = av.VideoFrame.from_ndarray(pixels, format="rgb24")
        frame.pts = i
        frame.time_base = Fraction(1, 1) / Fraction(fps).limit_denominator(1001)
        for packet in stream.encode(frame):
            container.mux(packet)
        if progress:
            progress((i + 1) / n_frames)
    for packet in stream.encode():
        container.mux(packet)
    container.close()
    return DeckVideo(path, n_frames / fps, width, height, theme, tuple(slides), starts, changes)


_TOPICS = (
    ("Ocean currents", ("Wind drives the surface", "Salt and heat drive the deep", "Gyres circle each basin")),
    ("Glaciers", ("Snow turns to ice", "Ice flows downhill", "Moraines mark the edge")),
    ("The water cycle", ("Evaporation from the sea", "Clouds and rain", "Rivers return the water")),
    ("Earthquakes", ("Faults store strain", "Waves travel through rock", "Magnitude is logarithmic")),
    ("Rock types", ("Igneous from melt", "Sedimentary from layers", "Metamorphic from heat")),
    ("Weather fronts", ("Cold air pushes under", "Warm air rises over", "Rain along the front")),
    ("Soil", ("Minerals and humus", "Horizons in a profile", "Erosion by water and wind")),
    ("Climate records", ("Tree rings", "Ice cores", "Ocean sediments")),
    ("Rivers", ("Meanders and oxbow lakes", "Deltas at the mouth", "Floods build the plain")),
    ("Deserts", ("Little rain", "Dunes move with the wind", "Cold deserts too")),
    ("Atmosphere", ("Troposphere", "Stratosphere and ozone", "Pressure falls with height")),
    ("Tides", ("The pull of the Moon", "Spring and neap tides", "Two highs a day")),
)
_SECTIONS = ("Oceans", "Ice", "Weather", "Rocks", "Climate", "Review")
_CODE = (
    ("data = load('station.csv')", "mean = data.mean(axis=0)", "print(round(mean, 2))"),
    ("for year in range(1990, 2020):", "    rain[year] = total(year)", "plot(rain)"),
)


def lecture_deck(slides: int = 24, seed: int = 0) -> tuple[DeckSlide, ...]:
    """A lecture of `slides` slides in one template: topics with bullets (every third builds up, every fifth is
    entered by a cross-fade, some show a photograph), a one-word section title every sixth, code now and then."""
    rng = np.random.default_rng(seed)
    out: list[DeckSlide] = [DECK_TEXT[0]]
    n = 0
    while len(out) < slides:
        k = len(out)
        if k % 6 == 0:
            out.append(DeckSlide(_SECTIONS[(k // 6) % len(_SECTIONS)], section=True, duration_s=3.0))
        elif k % 7 == 3:
            out.append(DeckSlide("Working with the data", code=_CODE[(k // 7) % len(_CODE)], duration_s=5.0))
        else:
            title, bullets = _TOPICS[n % len(_TOPICS)]
            n += 1
            out.append(
                DeckSlide(
                    title if n <= len(_TOPICS) else f"{title} revisited",
                    bullets,
                    duration_s=float(rng.uniform(4.0, 9.0)),
                    build=k % 3 == 0,
                    step_s=float(rng.uniform(1.5, 3.0)),
                    fade_in_s=0.5 if k % 5 == 0 else 0.0,
                    photo=("rocket", "coffee", "astronaut")[k % 3] if k % 8 == 5 else None,
                )
            )
    return tuple(out)
