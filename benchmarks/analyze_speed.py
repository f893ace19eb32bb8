"""`videopipe analyze` with no speech, OCR, motion or model, end to end, against pure decode of the same file.

    nice -n 10 .venv/bin/python benchmarks/analyze_speed.py                  # 180 s, 1280x720, 10-s GOPs
    nice -n 10 .venv/bin/python benchmarks/analyze_speed.py --gop-s 2        # 2-s GOPs (write_sample_video's default)
    nice -n 10 .venv/bin/python benchmarks/analyze_speed.py --seconds 30 --rounds 1   # a quick run

The file (cached in benchmarks/.media/) comes from `videopipe.testing.media.write_sample_video`: shots of 3-14 s
joined by hard cuts, textured scenes panned by a moving camera with an object crossing them, libx264 veryfast
CRF 23 with B-frames; `--gop-s 10` is x264's and FFmpeg's default keyframe interval (250 frames at 25 fps, plus
a keyframe at each cut), what cameras and most exports give.

In each round, interleaved:

- **pure decode**: PyAV, `thread_type="AUTO"`, every frame decoded, nothing else (the physical limit);
- **analyze**: `python -m videopipe analyze VIDEO --no-asr --no-ocr --no-motion --vlm none --no-library` in a
  child process, wall time from start to exit (interpreter start, imports, probe, the scan pass, keyframe grabs and
  JPEGs, writing analysis.json); the stage times it records say where the time went;
- **grabs alone**, in this process, for the keyframes that analyze chose: the forward sweep (`grab_frames`, what
  analyze uses) and the former seek per target (`method="seek"`), with the frames each decoded.

Medians over `--rounds` are printed with each one's ratio to the pure decode of the same round.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import av
import numpy as np

from videopipe.media import probe
from videopipe.media.grab import GrabStats, grab_frames
from videopipe.testing.media import shot_lengths, write_sample_video

MEDIA = Path(__file__).parent / ".media"
DECODE = "pure decode (PyAV, threaded, all frames)"
ANALYZE = "`videopipe analyze --no-asr --no-ocr --no-motion --vlm none --no-library`, wall"


def make_video(seconds: float, width: int, height: int, gop_s: float) -> Path:
    MEDIA.mkdir(exist_ok=True)
    path = MEDIA / f"analyze_{seconds:g}s_{height}p_gop{gop_s:g}.mp4"
    if not path.exists():
        print(f"generating {path}...", file=sys.stderr)
        shots = shot_lengths(seconds, np.random.default_rng(7), 3.0, 14.0)
        tmp = path.with_suffix(".part.mp4")
        write_sample_video(tmp, shots_s=shots, width=width, height=height, fps=25, seed=7, gop_s=gop_s)
        tmp.rename(path)
    return path


def pure_decode(path: Path) -> tuple[float, int]:
    started = time.perf_counter()
    n = 0
    with av.open(str(path)) as c:
        stream = c.streams.video[0]
        stream.thread_type = "AUTO"
        for _ in c.decode(stream):
            n += 1
    return time.perf_counter() - started, n


def run_analyze(path: Path) -> tuple[float, dict[str, Any]]:
    out = Path(tempfile.mkdtemp(prefix="vp-speed-"))
    cmd = [sys.executable, "-m", "videopipe", "analyze", str(path), "--out", str(out), "--quiet"]
    cmd += ["--no-asr", "--no-ocr", "--no-motion", "--vlm", "none", "--no-library"]
    env = {**os.environ, "VIDEOPIPE_DATA_DIR": str(out / "data")}
    try:
        started = time.perf_counter()
        subprocess.run(cmd, check=True, env=env, stdout=subprocess.DEVNULL)
        wall = time.perf_counter() - started
        doc = json.loads((out / "analysis.json").read_text())
    finally:
        shutil.rmtree(out, ignore_errors=True)
    return wall, doc


def startup() -> float:
    """Interpreter start and the CLI's imports, without any work (part of analyze's wall time)."""
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "videopipe", "analyze", "--help"], check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - started


def keyframe_pts(path: Path, doc: dict[str, Any]) -> list[int]:
    with av.open(str(path)) as c:
        stream = c.streams.video[0]
        tb = float(stream.time_base or 1)
        start = stream.start_time or 0
    return [start + round(k["t_s"] / tb) for k in doc["keyframes"]]


def time_grabs(path: Path, pts: list[int], method: str) -> tuple[float, GrabStats]:
    info = probe(path)
    stats = GrabStats()
    started = time.perf_counter()
    for g in grab_frames(info, pts, stats=stats, method=method):
        g.image.tobytes()  # what saving needs: the RGB pixels
    return time.perf_counter() - started, stats


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=180.0)
    parser.add_argument("--width", type=int, default=1280)
    parser.add_argument("--height", type=int, default=720)
    parser.add_argument("--gop-s", type=float, default=10.0)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    path = make_video(args.seconds, args.width, args.height, args.gop_s)

    rows: dict[str, list[float]] = {}
    ratios: dict[str, list[float]] = {}
    frames: dict[str, int] = {}
    stage_rows = {name: f"  of which: stage `{name}` (recorded in analysis.json)" for name in ("scan", "keyframes")}
    doc: dict[str, Any] = {}
    n_frames = 0

    def add(name: str, seconds: float, decode_s: float) -> None:
        rows.setdefault(name, []).append(seconds)
        ratios.setdefault(name, []).append(decode_s / seconds)

    for _ in range(args.rounds):
        decode_s, n_frames = pure_decode(path)
        add(DECODE, decode_s, decode_s)
        wall, doc = run_analyze(path)
        add(ANALYZE, wall, decode_s)
        for name, row in stage_rows.items():
            rows.setdefault(row, []).append(doc["run"]["stages"][name]["seconds"])
        add("  of which: interpreter start and CLI imports (`analyze --help`)", startup(), decode_s)
        pts = keyframe_pts(path, doc)
        for method, label in (("sweep", "forward sweep (now)"), ("seek", "seek per target (before)")):
            seconds, stats = time_grabs(path, pts, method)
            add(f"grabs alone, {label}", seconds, decode_s)
            frames[f"grabs alone, {label}"] = stats.frames_decoded

    print(
        f"{path.name}: {args.width}x{args.height} H.264, 25 fps, {args.seconds:g} s, {n_frames} frames, "
        f"GOP {args.gop_s:g} s, {len(doc['scenes'])} scenes, {len(doc['keyframes'])} keyframes"
    )
    print(f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, PyAV {av.__version__}")
    print("| what | runs | seconds (median, min–max) | speed, × pure decode | cost, in pure decodes | frames decoded |")
    print("|---|---:|---:|---:|---:|---:|")
    decode_median = statistics.median(rows[DECODE])
    for name, values in rows.items():
        med = statistics.median(values)
        whole = name in (DECODE, ANALYZE)
        speed = f"**{statistics.median(ratios[name]):.2f}**" if whole else ""
        cost = f"{med / decode_median:.2f}"
        decoded = frames.get(name, n_frames if name == DECODE else "")
        spread = f"{med:.2f} ({min(values):.2f}–{max(values):.2f})"
        print(f"| {name} | {len(values)} | {spread} | {speed} | {cost} | {decoded} |")


if __name__ == "__main__":
    main()
