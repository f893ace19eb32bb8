"""Perception stage timing on a 10-minute, 720p lecture-style video, on this machine.

    python benchmarks/perception.py                 # 10 min, 1280x720, all stages (general profile)
    python benchmarks/perception.py --minutes 2     # a quicker run

The video (cached in benchmarks/.media/) has 12 slides rendered with Pillow and near-continuous narration
synthesised with espeak-ng (a sentence every ~4 s). `videopipe.analysis.analyze` runs every perception stage
(decode pass with cuts, keyframe scoring and motion; full-resolution keyframe grabs; speech; OCR) with no VLM,
and the per-stage times it records are printed with the total wall time as a multiple of real time.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

from videopipe.analysis import AnalyzeOptions, analyze
from videopipe.config import Settings
from videopipe.testing.media import Slide, write_lecture_video

MEDIA = Path(__file__).parent / ".media"
TOPICS = [
    ("Entropy and information", ["Entropy measures the uncertainty of a source.",
                                 "A fair coin carries one bit.",
                                 "Compression cannot beat the entropy of the data."]),
    ("How volcanoes erupt", ["Magma rises through cracks in the crust.",
                             "Gas pressure drives the eruption.",
                             "Ash clouds can travel for thousands of kilometres."]),
    ("Elephant family life", ["Elephants live in family groups led by the oldest female.",
                              "They remember water holes for decades.",
                              "Calves are raised by the whole herd."]),
    ("Telescopes and galaxies", ["A telescope gathers light with a mirror or a lens.",
                                 "Distant galaxies look red because space expands.",
                                 "Bigger mirrors see fainter stars."]),
    ("Photosynthesis", ["Plants turn light, water and carbon dioxide into sugar.",
                        "Chlorophyll absorbs red and blue light.",
                        "Oxygen is released as a by-product."]),
    ("The water cycle", ["Water evaporates from the oceans.",
                         "Clouds form when the vapour cools.",
                         "Rain returns the water to rivers and seas."]),
]  # fmt: skip


def narration_for(minutes: float) -> list[tuple[float, str]]:
    duration = minutes * 60
    slide_s = duration / 12
    narration: list[tuple[float, str]] = []
    t = 0.5
    while t < duration - 4:
        topic = TOPICS[int(t // slide_s) % len(TOPICS)][1]
        narration.append((t, topic[len(narration) % len(topic)]))
        t += 4.2
    return narration


def word_recall(spoken: list[str], heard: list[str]) -> float:
    """Share of spoken words (multiset, case and punctuation folded) that appear in the transcript."""
    from collections import Counter

    def words(texts: list[str]) -> Counter[str]:
        return Counter("".join(ch for ch in w.lower() if ch.isalnum()) for t in texts for w in t.split())

    want, got = words(spoken), words(heard)
    return sum(min(n, got[w]) for w, n in want.items()) / max(1, sum(want.values()))


def make_lecture(minutes: float) -> Path:
    MEDIA.mkdir(exist_ok=True)
    path = MEDIA / f"lecture{minutes:g}min.mp4"
    if path.exists():
        return path
    duration = minutes * 60
    n_slides = 12
    slide_s = duration / n_slides
    slides = [Slide(TOPICS[i % len(TOPICS)][0] + ("" if i < len(TOPICS) else " (continued)"),
                    ("key idea", "worked example"), slide_s) for i in range(n_slides)]  # fmt: skip
    narration = narration_for(minutes)
    print(f"generating {path}: {n_slides} slides, {len(narration)} sentences...", file=sys.stderr)
    write_lecture_video(path, slides, narration, width=1280, height=720, fps=25)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    path = make_lecture(args.minutes)
    out = Path(tempfile.mkdtemp(prefix="vp-bench-"))
    try:
        started = time.perf_counter()
        doc = analyze(path, out, Settings(), AnalyzeOptions.for_profile("general", vlm="none"))
        wall = time.perf_counter() - started
    finally:
        shutil.rmtree(out, ignore_errors=True)
    duration = doc["video"]["duration_s"]
    stages = doc["run"]["stages"]
    rows = [(name, stages[name].get("seconds")) for name in ("scan", "keyframes", "speech", "ocr")]
    result = {
        "file": f"{path.name}: {doc['video']['width']}x{doc['video']['height']}, {duration:.0f} s, "
                f"{len(doc['scenes'])} scenes, {len(doc['keyframes'])} keyframes, {len(doc['transcript'])} "
                f"transcript segments, {len(doc['ocr'])} OCR lines, {len(doc['events'])} motion events",
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
        "stages": {name: s for name, s in rows},
        "word_recall": round(word_recall([t for _, t in narration_for(args.minutes)],
                                         [seg["text"] for seg in doc["transcript"]]), 3),
        "wall_s": round(wall, 2), "x_realtime": round(duration / wall, 1),
    }  # fmt: skip
    if args.json:
        print(json.dumps(result, indent=2))
        return
    print(result["file"])
    beam = doc["run"]["stages"]["speech"].get("beam_size")
    print(f"speech: {doc['run']['stages']['speech'].get('model')}, beam {beam}")
    print(result["machine"])
    print("| stage | seconds | × real time |")
    print("|---|---:|---:|")
    for name, seconds in rows:
        print(f"| {name} | {seconds} | {duration / seconds:.0f} |" if seconds else f"| {name} | - | - |")
    print(f"| **whole perception (wall, incl. probe and writing)** | **{wall:.1f}** | **{duration / wall:.1f}** |")
    print(f"\nspoken words found in the transcript (recall): {result['word_recall']:.1%}")


if __name__ == "__main__":
    main()
