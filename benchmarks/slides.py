"""Slide changes inside one template, and titles read, on generated lecture decks (light, dark, serif themes).

    nice -n 10 .venv/bin/python benchmarks/slides.py                 # 3 decks of 24 slides, 720p (~6 min)
    nice -n 10 .venv/bin/python benchmarks/slides.py --slides 10 --no-rapidocr   # a quick look

1. **Slide changes**: each deck (`videopipe.testing.decks.lecture_deck`, 1280x720 H.264 CRF 23, a wandering
   mouse pointer; the fourth with the speaker's webcam inset, never still) goes through pure decode, the
   shared pass without the slide detector (hard cuts only: what the general profile sees), the shared pass
   with it (the lecture profile), and PySceneDetect's AdaptiveDetector and ContentDetector, all in this one
   process. A new slide counts as found when a scene starts within 1 s of it; a build-up step when the
   detector reports a step within 1 s of it.
2. **OCR**: every slide's final state rendered at 1920x1080, 1280x720 and 854x480 in each theme, read by
   tesseract with the preprocessing as it was (row-median inversion of dark rows, kept here as the baseline)
   and as it is now, and by RapidOCR (720p only: it is slow). Character error rate of the title (against the
   best-matching line read) and of every other line; seconds per frame.
3. **End to end**: `analyze` with the lecture profile (no speech) on each deck: chapters, and the share of
   titles found in the OCR lines (CER <= 0.05).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import av
import numpy as np
from PIL import Image

from videopipe.analysis import AnalyzeOptions, analyze
from videopipe.config import Settings
from videopipe.media.probe import probe
from videopipe.perception import ocr as ocr_module
from videopipe.perception.slides import SlideDetector
from videopipe.scan import run_pass
from videopipe.testing.decks import THEMES, DeckVideo, lecture_deck, render_deck_slide, write_deck_video
from videopipe.testing.scoring import cer


def match(
    truth: Sequence[float], found: Sequence[float], tol: float = 1.0, log: dict[str, Any] | None = None
) -> tuple[int, int, list[float]]:
    """(matched, false, delays): each truth matched to the nearest unused found time within `tol`. `log` gets
    the truth times missed and the found times that match nothing."""
    used: set[int] = set()
    delays = []
    missed = []
    for t in truth:
        best = min((i for i in range(len(found)) if i not in used and abs(found[i] - t) <= tol),
                   key=lambda i: abs(found[i] - t), default=None)  # fmt: skip
        if best is not None:
            used.add(best)
            delays.append(found[best] - t)
        else:
            missed.append(round(t, 2))
    if log is not None:
        log.setdefault("missed_at", []).extend(missed)
        log.setdefault("false_at", []).extend(round(f, 2) for i, f in enumerate(found) if i not in used)
    return len(used), len(found) - len(used), delays


def timed(fn: Callable[[], Any]) -> tuple[Any, float]:
    started = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - started


def pure_decode(path: Path) -> int:
    with av.open(str(path)) as c:
        s = c.streams.video[0]
        s.thread_type = "AUTO"
        return sum(1 for _ in c.decode(s))


def detection(decks: list[DeckVideo]) -> list[dict[str, Any]]:
    rows: dict[str, dict[str, Any]] = {}
    settings = Settings()

    def add(method: str, deck: DeckVideo, seconds: float, cuts: list[float], builds: list[float] | None) -> None:
        r = rows.setdefault(method, {"method": method, "s": 0.0, "video_s": 0.0, "slides": 0, "found": 0,
                                     "false": 0, "delays": [], "builds": 0, "builds_found": 0})  # fmt: skip
        truth = [c.t_s for c in deck.changes if c.kind == "slide"]
        found, false, delays = match(truth, cuts, log=r if method.startswith("...") else None)
        r["s"] += seconds
        r["video_s"] += deck.duration_s
        r["slides"] += len(truth)
        r["found"] += found
        r["false"] += false
        r["delays"] += delays
        truth_builds = [c.t_s for c in deck.changes if c.kind == "build"]
        r["builds"] += len(truth_builds)
        if builds is not None:
            r["builds_found"] += match(truth_builds, builds)[0]
        else:
            r["builds_found"] = None

    for deck in decks:
        info = probe(deck.path, settings.limits)
        _, decode_s = timed(lambda deck=deck: pure_decode(deck.path))
        add("pure decode (PyAV, threaded)", deck, decode_s, [], None)
        plain, plain_s = timed(lambda info=info: run_pass(info, settings))
        add(
            "videopipe pass, hard cuts only (general profile)",
            deck,
            plain_s,
            [s.start_s for s in plain.scenes[1:]],
            None,
        )
        detector = SlideDetector(settings.slides)
        slides, slides_s = timed(lambda info=info, detector=detector: run_pass(info, settings, slides=detector))
        add("videopipe pass + slide detector (lecture profile)", deck, slides_s,
            [s.start_s for s in slides.scenes[1:]], [c.t_s for c in detector.build_steps])  # fmt: skip
        add(f"... of which {deck.path.stem}", deck, slides_s,
            [s.start_s for s in slides.scenes[1:]], [c.t_s for c in detector.build_steps])  # fmt: skip
        try:
            from scenedetect import AdaptiveDetector, ContentDetector, detect
        except ImportError:
            continue
        for name, make in (("AdaptiveDetector", AdaptiveDetector), ("ContentDetector", ContentDetector)):
            scenes, sd_s = timed(lambda make=make, deck=deck: detect(str(deck.path), make()))
            add(f"PySceneDetect {name}()", deck, sd_s, [s[0].seconds for s in scenes[1:]], None)
    decode_s = rows["pure decode (PyAV, threaded)"]["s"]
    out = []
    for r in rows.values():
        r["x_decode"] = round(decode_s / r["s"], 2) if not r["method"].startswith("...") else None
        r["x_real_time"] = round(r["video_s"] / r["s"], 1)
        r["recall"] = round(r["found"] / r["slides"], 3) if r["slides"] else None
        r["median_delay_s"] = round(statistics.median(r["delays"]), 2) if r["delays"] else None
        r["false_per_10min"] = round(r["false"] / r["video_s"] * 600, 1)
        r["s"] = round(r["s"], 1)
        out.append(r)
    return out


def _prepare_before(image: Image.Image) -> Image.Image:
    """The preprocessing as it was: grey, at most 1280 wide, rows with a dark median inverted."""
    gray = ocr_module._cap_width(image.convert("L"))
    pixels = np.asarray(gray)
    dark_rows = np.median(pixels, axis=1) < 110
    if not dark_rows.any():
        return gray
    flipped = pixels.copy()
    flipped[dark_rows] = 255 - pixels[dark_rows]
    return Image.fromarray(flipped)


def _clean_before(text: str) -> str:
    lines = (" ".join(line.split()) for line in text.splitlines())
    return "\n".join(line for line in lines if sum(ch.isalnum() for ch in line) >= 2)


def ocr_table(slides: Sequence[Any], rapidocr: bool) -> list[dict[str, Any]]:
    from videopipe.perception.ocr import make_reader

    sizes = {"1080p": (1920, 1080), "720p": (1280, 720), "480p": (854, 480)}
    images = [(res, theme, s, render_deck_slide(s, THEMES[theme], n, len(s.bullets), *sizes[res]))
              for res in sizes for theme in THEMES for n, s in enumerate(slides)]  # fmt: skip
    prepare, clean = ocr_module._prepare, ocr_module.clean_text
    methods: list[tuple[str, Callable[[], Any], set[str]]] = [
        ("tesseract, preprocessing before", lambda: make_reader("tesserocr"), set(sizes)),
        ("tesseract, preprocessing now (default)", lambda: make_reader("tesserocr"), set(sizes)),
    ]
    if rapidocr:
        methods.append(("RapidOCR (PP-OCR ONNX, 2 threads)", lambda: make_reader("rapidocr"), {"720p"}))
    rows = []
    for name, make, resolutions in methods:
        before = "before" in name
        ocr_module._prepare = _prepare_before if before else prepare  # type: ignore[assignment]
        ocr_module.clean_text = _clean_before if before else clean  # type: ignore[assignment]
        try:
            reader = make()
            for res in sizes:
                if res not in resolutions:
                    continue
                titles, bodies, secs, bad, exact = [], [], 0.0, [], 0
                for r, theme, s, pixels in images:
                    if r != res:
                        continue
                    (text, _), took = timed(lambda p=pixels, r=reader: r.read(Image.fromarray(p)))
                    secs += took
                    titles.append(cer(s.title.lower(), text.lower()))
                    exact += cer(s.title, text) <= 0.05
                    bodies += [cer(line, text) for line in (*s.bullets, *s.code)]
                    if titles[-1] > 0.05:
                        bad.append(f"{theme}:{s.title!r}->{text.splitlines()[:1]}")
                rows.append({"method": name, "res": res, "frames": len(titles),
                             "title_cer_mean": round(statistics.mean(titles), 3),
                             "title_cer_max": round(max(titles), 3),
                             "titles_ok": f"{sum(c <= 0.05 for c in titles)}/{len(titles)}",
                             "titles_ok_case": f"{exact}/{len(titles)}",
                             "line_cer_mean": round(statistics.mean(bodies), 3),
                             "s_per_frame": round(secs / len(titles), 3), "misread": bad[:4]})  # fmt: skip
        finally:
            ocr_module._prepare, ocr_module.clean_text = prepare, clean  # type: ignore[assignment]
    return rows


def end_to_end(decks: list[DeckVideo], out: Path) -> list[dict[str, Any]]:
    rows = []
    for deck in decks:
        opts = AnalyzeOptions.for_profile("lecture", vlm="none", no_asr=True)
        doc, secs = timed(lambda deck=deck, opts=opts: analyze(deck.path, out / deck.path.stem, Settings(), opts))
        ends = [*deck.slide_starts_s[1:], deck.duration_s]
        ok = 0
        for n, slide in enumerate(deck.slides):
            text = "\n".join(
                line["text"] for line in doc["ocr"] if deck.slide_starts_s[n] - 0.5 <= line["t_s"] < ends[n]
            )
            ok += cer(slide.title.lower(), text.lower()) <= 0.05
        rows.append({"deck": deck.path.stem, "slides": len(deck.slides), "scenes": len(doc["scenes"]),
                     "chapters": len(doc["chapters"]), "keyframes": len(doc["keyframes"]),
                     "titles_read": f"{ok}/{len(deck.slides)}", "ocr_s": doc["run"]["stages"]["ocr"].get("seconds"),
                     "analyze_s": round(secs, 1), "slides_stage": doc["run"]["stages"]["slides"]})  # fmt: skip
    return rows


def table(rows: list[dict[str, Any]], keys: list[str]) -> str:
    lines = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    lines += ["| " + " | ".join("" if r.get(k) is None else str(r.get(k)) for k in keys) + " |" for r in rows]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--slides", type=int, default=24)
    ap.add_argument("--no-rapidocr", action="store_true")
    ap.add_argument("--skip", default="", help="comma-separated parts to skip: detect,ocr,e2e")
    args = ap.parse_args()
    skip = set(args.skip.split(",")) - {""}
    slides = lecture_deck(args.slides)
    print(f"{platform.machine()}, {len(os.sched_getaffinity(0))} cores, Python {platform.python_version()},"
          f" PyAV {av.__version__}; {args.slides} slides a deck", file=sys.stderr)  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        decks = []
        if not {"detect", "e2e"} <= skip:
            for theme, speaker in [*((t, False) for t in THEMES), ("light", True)]:
                started = time.perf_counter()
                name = f"{theme}{'-speaker' if speaker else ''}"
                decks.append(write_deck_video(Path(tmp, f"{name}.mp4"), slides, theme=theme, speaker=speaker))
                d = decks[-1]
                print(f"{name}: {d.duration_s:.0f} s, {sum(c.kind == 'slide' for c in d.changes)} new slides, "
                      f"{sum(c.kind == 'build' for c in d.changes)} build-up steps, written in "
                      f"{time.perf_counter() - started:.0f} s", file=sys.stderr)  # fmt: skip
        if "detect" not in skip:
            print("\n## Slide changes (found: a scene starts within 1 s)\n")
            print(table(detection(decks), ["method", "slides", "found", "recall", "median_delay_s", "false",
                                           "false_per_10min", "builds", "builds_found", "s", "x_real_time",
                                           "x_decode", "missed_at", "false_at"]))  # fmt: skip
        if "ocr" not in skip:
            print("\n## OCR of slide titles and lines (rendered slides, 3 themes)\n")
            keys = ["method", "res", "frames", "title_cer_mean", "title_cer_max", "titles_ok", "titles_ok_case",
                    "line_cer_mean", "s_per_frame", "misread"]  # fmt: skip
            print(table(ocr_table(slides, not args.no_rapidocr), keys))
        if "e2e" not in skip:
            print("\n## analyze, lecture profile (no speech)\n")
            print(table(end_to_end(decks, Path(tmp, "out")), ["deck", "slides", "scenes", "chapters", "keyframes",
                        "titles_read", "ocr_s", "analyze_s", "slides_stage"]))  # fmt: skip


if __name__ == "__main__":
    main()
