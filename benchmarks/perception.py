"""Speech on real voices, and the whole perception stage on a 10-minute 720p lecture, on this machine.

    python benchmarks/perception.py                 # both parts (10-minute lecture)
    python benchmarks/perception.py --part speech   # word error rates and language detection only
    python benchmarks/perception.py --part lecture --minutes 2

Speech: the real recorded voices inside the moonshine-voice wheel (videopipe.testing.voices; texts published by
moonshine) transcribed alone, inside the issue's ~97-s talk (four recordings joined with pauses) and inside a
10-minute talk of the same voices; WER against the published texts. Three decoders in the same run:
videopipe's (pause-aligned windows, coverage check) with tiny.en and with base, and faster-whisper's own batched
VAD pipeline (videopipe's decoder before, the baseline). Language detection on German and French made with
espeak-ng (synthetic voices: no package found ships non-English recordings).

Lecture: 12 slides (Pillow) over the 10-minute talk of real voices, 1280x720, 25 fps, AAC (cached in
benchmarks/.media/). `videopipe.analysis.analyze` runs every perception stage of the lecture profile with no VLM;
the per-stage times it records are printed with the total wall time as a multiple of real time.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from videopipe.analysis import AnalyzeOptions, analyze
from videopipe.config import Settings
from videopipe.testing.scoring import wer
from videopipe.testing.voices import (
    SAMPLE_RATE,
    TWO_CITIES,
    Talk,
    Utterance,
    build_talk,
    foreign_speech,
    load,
    words_within,
    write_talk_video,
)

MEDIA = Path(__file__).parent / ".media"
THREADS = 2


def talk_wer(talk: Talk, transcript: list[dict[str, Any]]) -> tuple[float, int, int]:
    """WER over every recording in `talk` with a published text, words found by time; (WER, errors, words)."""
    errors = words = 0
    for u in talk.utterances:
        if u.text is None:
            continue
        n = len(u.text.split())
        errors += round(wer(u.text, words_within(transcript, u.start_s, u.end_s)) * n)
        words += n
    return errors / max(1, words), errors, words


class Baseline:
    """faster-whisper's own batched pipeline with its VAD (videopipe's speech decoder until this change)."""

    name = "faster-whisper batched (before)"

    def __init__(self) -> None:
        from videopipe.perception.asr import FasterWhisper

        self.model = FasterWhisper(threads=THREADS)._load()

    def transcribe(self, samples: np.ndarray) -> list[dict[str, Any]]:
        from faster_whisper import BatchedInferencePipeline

        parts, _ = BatchedInferencePipeline(model=self.model).transcribe(
            samples, word_timestamps=True, beam_size=5, batch_size=8
        )
        return [{"words": [{"text": w.word.strip(), "start_s": w.start, "end_s": w.end} for w in p.words or []]}
                for p in parts]  # fmt: skip


class Videopipe:
    def __init__(self, model: str) -> None:
        from videopipe.perception.asr import FasterWhisper

        self.name = f"videopipe {model}"
        self.recognizer = FasterWhisper(model, threads=THREADS, beam_size=5, cache_dir=Settings().data_dir / "models")
        self.recognizer._load()
        self.last: Any = None

    def transcribe(self, samples: np.ndarray) -> list[dict[str, Any]]:
        self.last = self.recognizer.transcribe([(0.0, samples)])
        return [s.to_json() for s in self.last.segments]


def speech(long_minutes: float, base_long: bool) -> None:
    print("## speech: WER on real recordings (published texts), same run\n")
    cases = [
        ("two_cities alone", Talk(load("two_cities"), [Utterance(0.0, 45.0, "two_cities", TWO_CITIES, True)])),
        ("the issue's talk (4 recordings, pauses)", build_talk(0, synthetic=True, seed=3)),
        (f"{long_minutes:g}-minute talk of real voices", build_talk(long_minutes * 60, seed=7)),
    ]
    decoders: list[Any] = [Baseline(), Videopipe("bundled:tiny.en"), Videopipe("bundled:base")]
    print("| audio | decoder | WER | words missing or wrong / words | seconds | × real time | warnings |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for label, talk in cases:
        for d in decoders:
            if d.name.endswith("base") and "minute" in label and not base_long:
                continue
            started = time.perf_counter()
            transcript = d.transcribe(talk.samples)
            seconds = time.perf_counter() - started
            rate, errors, words = talk_wer(talk, transcript)
            warnings = len(d.last.warnings) if isinstance(d, Videopipe) else "-"
            print(f"| {label} ({talk.duration_s:.0f} s) | {d.name} | {rate:.3f} | {errors}/{words} | {seconds:.1f} | "
                  f"{talk.duration_s / seconds:.1f} | {warnings} |")  # fmt: skip
            sys.stdout.flush()
    print("\n## speech: language detection (videopipe bundled:base; espeak-ng voices, synthetic)\n")
    base = decoders[2]
    print("| sample | detected (file) | segment languages | seconds |")
    print("|---|---|---|---:|")
    gap = np.zeros(2 * SAMPLE_RATE, np.float32)
    samples = {
        "German (espeak-ng)": foreign_speech("de"),
        "French (espeak-ng)": foreign_speech("fr"),
        "German + two_cities (real) + French": np.concatenate(
            [foreign_speech("de"), gap, load("two_cities"), gap, foreign_speech("fr")]
        ),
    }
    for label, x in samples.items():
        started = time.perf_counter()
        base.transcribe(x)
        seconds = time.perf_counter() - started
        langs = " ".join(dict.fromkeys(s.language or "?" for s in base.last.segments))
        print(f"| {label} ({x.size / SAMPLE_RATE:.0f} s) | {base.last.language} | {langs} | {seconds:.1f} |")


def make_lecture(minutes: float) -> tuple[Path, Talk]:
    MEDIA.mkdir(exist_ok=True)
    talk = build_talk(minutes * 60, seed=7)
    path = MEDIA / f"voices-lecture{minutes:g}min.mp4"
    if not path.exists():
        print(f"generating {path} ({talk.duration_s:.0f} s)...", file=sys.stderr)
        tmp = path.with_suffix(".part.mp4")
        write_talk_video(tmp, talk, width=1280, height=720, fps=25, slides=12)
        tmp.rename(path)
    return path, talk


def lecture(minutes: float) -> None:
    path, talk = make_lecture(minutes)
    out = Path(tempfile.mkdtemp(prefix="vp-bench-"))
    try:
        started = time.perf_counter()
        doc = analyze(path, out, Settings(), AnalyzeOptions.for_profile("lecture", vlm="none"))
        wall = time.perf_counter() - started
    finally:
        shutil.rmtree(out, ignore_errors=True)
    duration = doc["video"]["duration_s"]
    stages = doc["run"]["stages"]
    names = [n for n in ("scan", "keyframes", "speech", "ocr") if n in stages]
    print(f"\n## lecture: {path.name}: {doc['video']['width']}x{doc['video']['height']}, {duration:.0f} s, "
          f"{len(doc['scenes'])} scenes, {len(doc['keyframes'])} keyframes, {len(doc['transcript'])} transcript "
          f"segments, {len(doc['ocr'])} OCR lines")  # fmt: skip
    sp = stages["speech"]
    print(f"speech: {sp.get('model')}, beam {sp.get('beam_size')}, language {sp.get('language')}, "
          f"speech covered {sp.get('speech_covered')}, windows decoded again {sp.get('redecoded_windows')}, "
          f"warnings {len(sp.get('warnings', []))}")  # fmt: skip
    print(f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}\n")
    print("| stage | seconds | × real time |")
    print("|---|---:|---:|")
    for name in names:
        seconds = stages[name].get("seconds")
        print(f"| {name} | {seconds} | {duration / seconds:.0f} |" if seconds else f"| {name} | - | - |")
    print(f"| **whole perception (wall, incl. probe and writing)** | **{wall:.1f}** | **{duration / wall:.1f}** |")
    rate, errors, words = talk_wer(talk, doc["transcript"])
    print(f"\nWER of the lecture's transcript against the published texts: {rate:.3f} ({errors}/{words})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--part", choices=["speech", "lecture", "all"], default="all")
    parser.add_argument("--base-long", action="store_true", help="also run base on the long talk (slow)")
    args = parser.parse_args()
    if args.part in ("speech", "all"):
        speech(args.minutes, args.base_long)
    if args.part in ("lecture", "all"):
        lecture(args.minutes)


if __name__ == "__main__":
    main()
