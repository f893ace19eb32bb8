"""A talk of real voices: the human speech recordings inside the ``moonshine-voice`` wheel (MIT), joined with
pauses of varying length and level, the way a lecture or an interview sounds, with the words and times known.

The recordings (their texts are published in the moonshine repository):

- ``two_cities.wav``: a 44-s reading of the opening paragraph of A Tale of Two Cities (real voice);
- ``beckett.wav``: "Ever tried. Ever failed. No matter. Try again. Fail again. Fail better." (real voice);
- ``clone-test.wav``: a 4-s real voice whose text is not published (kept in the talk, left out of word counts);
- ``endgame_nagg_nell.wav``: synthetic dialogue (a TTS voice; only with ``synthetic=True``).

A non-English sample does not ship in any package found: :func:`foreign_speech` synthesises German or French
with espeak-ng (a synthetic voice; it says so).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from fractions import Fraction
from functools import cache
from pathlib import Path

import av
import numpy as np

SAMPLE_RATE = 16_000

TWO_CITIES = (
    "It was the best of times, it was the worst of times, it was the age of wisdom, it was the age of "
    "foolishness, it was the epoch of belief, it was the epoch of incredulity, it was the season of Light, it "
    "was the season of Darkness, it was the spring of hope, it was the winter of despair, we had everything "
    "before us, we had nothing before us, we were all going direct to Heaven, we were all going direct the "
    "other way - in short, the period was so far like the present period, that some of its noisiest "
    "authorities insisted on its being received, for good or for evil, in the superlative degree of "
    "comparison only."
)
BECKETT = "Ever tried. Ever failed. No matter. Try again. Fail again. Fail better."

# name -> (file, published text or None, real human voice)
RECORDINGS: dict[str, tuple[str, str | None, bool]] = {
    "two_cities": ("two_cities.wav", TWO_CITIES, True),
    "beckett": ("beckett.wav", BECKETT, True),
    "clone": ("clone-test.wav", None, True),
    "endgame": ("endgame_nagg_nell.wav", None, False),
}

FOREIGN = {
    "de": "Guten Morgen. Heute sprechen wir über die Geschichte der Stadt und über das Wetter in den Bergen. "
          "Die Kinder spielen im Garten, und wir trinken zusammen einen Kaffee.",
    "fr": "Mesdames et messieurs, bienvenue. Nous allons commencer la présentation dans quelques minutes. "
          "Je m'appelle Marie. J'habite à Paris depuis dix ans, et je travaille dans une petite librairie près "
          "de la gare.",
}  # fmt: skip


@dataclass(frozen=True, slots=True)
class Utterance:
    start_s: float
    end_s: float
    name: str
    text: str | None  # the published text; None when there is none
    real: bool


@dataclass(frozen=True, slots=True)
class Talk:
    samples: np.ndarray  # float32 mono, 16 kHz
    utterances: list[Utterance]

    @property
    def duration_s(self) -> float:
        return self.samples.size / SAMPLE_RATE


def assets() -> Path:
    try:
        moonshine_voice = importlib.import_module("moonshine_voice")  # assets only here: no type information
    except ImportError:
        raise RuntimeError(
            "the real speech recordings need the moonshine-voice package: pip install -e '.[dev]'"
        ) from None
    return Path(moonshine_voice.__file__ or ".").parent / "assets"


@cache
def load(name: str) -> np.ndarray:
    """One recording as float32 mono samples at 16 kHz."""
    return read_audio(assets() / RECORDINGS[name][0])


def read_audio(path: str | Path) -> np.ndarray:
    resampler = av.AudioResampler(format="flt", layout="mono", rate=SAMPLE_RATE)
    out: list[np.ndarray] = []
    with av.open(str(path)) as container:
        for frame in container.decode(audio=0):
            out.extend(o.to_ndarray().reshape(-1) for o in resampler.resample(frame))
        out.extend(o.to_ndarray().reshape(-1) for o in resampler.resample(None))
    return np.concatenate(out).astype(np.float32)


def build_talk(
    target_s: float = 97.0,
    order: tuple[str, ...] = ("beckett", "clone", "two_cities"),
    pause_s: tuple[float, float] = (1.5, 3.0),
    synthetic: bool = False,
    seed: int = 0,
) -> Talk:
    """Recordings from `order` (plus the synthetic dialogue if asked) one after another, round and round
    until `target_s`, with a pause of `pause_s` (uniform) between them, each at its own level (±6 dB), over a
    quiet room tone (-60 dBFS). The first pass plays each recording once, whatever `target_s`."""
    rng = np.random.default_rng(seed)
    names = [*order, *(["endgame"] if synthetic else [])]
    pieces: list[np.ndarray] = [np.zeros(int(0.5 * SAMPLE_RATE), np.float32)]
    utterances: list[Utterance] = []
    t = pieces[0].size
    n = 0
    while n < len(names) or t / SAMPLE_RATE < target_s:
        name = names[n % len(names)]
        voice = load(name) * float(10 ** (rng.uniform(-6, 6) / 20))
        pieces.append(voice.astype(np.float32))
        _, text, real = RECORDINGS[name]
        utterances.append(Utterance(t / SAMPLE_RATE, (t + voice.size) / SAMPLE_RATE, name, text, real))
        gap = np.zeros(int(rng.uniform(*pause_s) * SAMPLE_RATE), np.float32)
        pieces.append(gap)
        t += voice.size + gap.size
        n += 1
    samples = np.concatenate(pieces)
    samples += rng.normal(0, 1e-3, samples.size).astype(np.float32)  # room tone
    return Talk(np.clip(samples, -1, 1).astype(np.float32), utterances)


def foreign_speech(language: str, rate_wpm: int = 140) -> np.ndarray:
    """German ("de") or French ("fr") speech synthesised by espeak-ng (synthetic voice), 16 kHz float32."""
    from videopipe.testing.media import speak

    samples, rate = speak(FOREIGN[language], rate_wpm=rate_wpm, voice=language)
    if rate != SAMPLE_RATE:
        positions = np.arange(0, samples.size, rate / SAMPLE_RATE)
        samples = np.interp(positions, np.arange(samples.size), samples).astype(np.float32)
    return samples.astype(np.float32)


def write_talk_video(
    path: str | Path, talk: Talk, *, width: int = 320, height: int = 180, fps: float = 5.0, slides: int = 1
) -> Path:
    """`talk` as the sound of an MP4 whose pictures are `slides` plain slides (Pillow), shown in turn."""
    from videopipe.testing.media import Slide, render_slide

    path = Path(path)
    container = av.open(str(path), "w")
    video = container.add_stream("libx264", rate=Fraction(fps).limit_denominator(1001))
    video.width, video.height, video.pix_fmt = width, height, "yuv420p"
    video.codec_context.options = {"crf": "28", "preset": "veryfast"}
    audio = container.add_stream("aac", rate=SAMPLE_RATE)
    n_frames = int(np.ceil(talk.duration_s * fps))
    per_slide = n_frames / max(1, slides)
    images = [render_slide(Slide(f"Part {i + 1} of the talk", ("voices",), talk.duration_s / slides), width, height)
              for i in range(max(1, slides))]  # fmt: skip
    for i in range(n_frames):
        frame = av.VideoFrame.from_ndarray(images[min(len(images) - 1, int(i / per_slide))], format="rgb24")
        frame.pts = i
        frame.time_base = Fraction(1, 1) / Fraction(fps).limit_denominator(1001)
        for packet in video.encode(frame):
            container.mux(packet)
    for packet in video.encode():
        container.mux(packet)
    for start in range(0, talk.samples.size, 1024):
        data = np.ascontiguousarray(talk.samples[start : start + 1024].reshape(1, -1))
        aframe = av.AudioFrame.from_ndarray(data, format="fltp", layout="mono")
        aframe.sample_rate, aframe.pts = SAMPLE_RATE, start
        for packet in audio.encode(aframe):
            container.mux(packet)
    for packet in audio.encode():
        container.mux(packet)
    container.close()
    return path


def words_within(segments: list[dict[str, object]], start_s: float, end_s: float, slack_s: float = 0.5) -> str:
    """The transcript's words (document form) whose middle lies in [start_s - slack, end_s + slack]."""
    out: list[str] = []
    for seg in segments:
        for w in seg["words"]:  # type: ignore[attr-defined]
            mid = (w["start_s"] + w["end_s"]) / 2
            if start_s - slack_s <= mid <= end_s + slack_s:
                out.append(w["text"])
    return " ".join(out)
