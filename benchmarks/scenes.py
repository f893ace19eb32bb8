"""Scene-cut pass benchmark: videopipe's one-pass scan vs pure decode vs PySceneDetect, on the same file.

    python benchmarks/scenes.py --preset 720p10min     # 10-minute 1280x720 H.264, 25 fps
    python benchmarks/scenes.py --preset 1080p3min     # 3-minute 1920x1080 H.264, 30 fps
    python benchmarks/scenes.py --photos 600 --height 360  # dissolves, fades, short shots: real photographs

The file is generated once (cached in benchmarks/.media/) with hard cuts at known times: shots of 1.5-12 s,
each a textured scene panned by a moving camera with an object crossing it. Every method runs in this one
process on the same file; ratios are against the pure-decode run of the same invocation.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path

import av
import cv2
import numpy as np

from videopipe.analysis import run_pass
from videopipe.config import AnalysisSettings, Settings
from videopipe.media import probe
from videopipe.scenes import match_cuts
from videopipe.testing.media import shot_lengths, write_sample_video

PRESETS = {
    "720p10min": dict(width=1280, height=720, fps=25.0, duration_s=600.0, seed=10),
    "1080p3min": dict(width=1920, height=1080, fps=30.0, duration_s=180.0, seed=11),
    "small": dict(width=640, height=360, fps=25.0, duration_s=30.0, seed=12),
}
MEDIA = Path(__file__).parent / ".media"


def make_media(preset: str) -> tuple[Path, list[float], float]:
    p = PRESETS[preset]
    MEDIA.mkdir(exist_ok=True)
    path, truth_file = MEDIA / f"{preset}.mp4", MEDIA / f"{preset}.cuts.json"
    if not (path.exists() and truth_file.exists()):
        rng = np.random.default_rng(int(p["seed"]))
        shots = shot_lengths(float(p["duration_s"]), rng)
        print(f"generating {path} ({len(shots)} shots)...", file=sys.stderr)
        sample = write_sample_video(
            path,
            shots_s=shots,
            width=int(p["width"]),
            height=int(p["height"]),
            fps=float(p["fps"]),
            seed=int(p["seed"]),
            preset="veryfast",
        )
        truth_file.write_text(json.dumps({"cuts_s": sample.cut_times_s, "fps": sample.fps}))
    truth = json.loads(truth_file.read_text())
    return path, truth["cuts_s"], truth["fps"]


def pure_decode(path: Path) -> tuple[int, list[float]]:
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        n = sum(1 for _ in container.decode(stream))
    return n, []


def videopipe_pass(path: Path, skip_loop_filter: bool) -> tuple[int, list[float]]:
    settings = Settings(analysis=AnalysisSettings(skip_loop_filter=skip_loop_filter))
    result = run_pass(probe(path), settings)
    return result.frames, [s.start_s for s in result.scenes[1:]]


def pyscenedetect(path: Path, detector_name: str) -> tuple[int, list[float]]:
    from scenedetect import AdaptiveDetector, ContentDetector, HashDetector, HistogramDetector, detect

    detector = {
        "content": ContentDetector,
        "adaptive": AdaptiveDetector,
        "hash": HashDetector,
        "histogram": HistogramDetector,
    }[detector_name]()
    scenes = detect(str(path), detector)
    frames = scenes[-1][1].frame_num if scenes else 0
    return frames, [start.seconds for start, _ in scenes[1:]]


def measure(
    fn: Callable[[], tuple[int, list[float]]], track_memory: bool = False
) -> tuple[float, int, list[float], float]:
    if track_memory:
        tracemalloc.start()
    started = time.perf_counter()
    frames, cuts = fn()
    wall = time.perf_counter() - started
    peak_mb = 0.0
    if track_memory:
        peak_mb = tracemalloc.get_traced_memory()[1] / 1e6
        tracemalloc.stop()
    return wall, frames, cuts, peak_mb


def row_for(
    name: str,
    walls: list[float],
    frames: int,
    cuts: list[float] | None,
    duration_s: float,
    truth: list[float],
    fps: float,
) -> dict[str, object]:
    wall = statistics.median(walls)
    row: dict[str, object] = {
        "method": name,
        "runs": len(walls),
        "wall_s": round(wall, 2),
        "wall_spread_s": [round(min(walls), 2), round(max(walls), 2)],
        "frames": frames,
        "fps": round(frames / wall, 1),
        "x_realtime": round(duration_s / wall, 1),
    }
    if cuts is not None:
        tp, fp, fn_ = match_cuts(cuts, truth, tolerance_s=0.5 / fps)  # within one frame
        precision = tp / (tp + fp) if tp + fp else 0.0
        recall = tp / (tp + fn_) if tp + fn_ else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        row.update(precision=round(precision, 3), recall=round(recall, 3), f1=round(f1, 3))
    print(json.dumps(row), file=sys.stderr)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", choices=sorted(PRESETS), default="small")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved runs of decode and videopipe (median)")
    parser.add_argument("--skip-pyscenedetect", action="store_true")
    parser.add_argument("--json", action="store_true", help="print the result rows as JSON")
    args = parser.parse_args()
    cv2.setNumThreads(1)
    path, truth, fps = make_media(args.preset)
    info = probe(path)
    d = info.duration_s

    # Decode and the videopipe pass alternate, round after round, so drift in machine speed hits both alike.
    methods: list[tuple[str, Callable[[], tuple[int, list[float]]]]] = [
        ("pure decode (PyAV, threaded)", lambda: pure_decode(path)),
        ("videopipe pass", lambda: videopipe_pass(path, True)),
        ("videopipe pass, full deblocking", lambda: videopipe_pass(path, False)),
    ]
    walls: dict[str, list[float]] = {name: [] for name, _ in methods}
    frames: dict[str, int] = {}
    cuts: dict[str, list[float] | None] = {}
    for _ in range(args.rounds):
        for name, fn in methods:
            wall, n, found, _ = measure(fn)
            walls[name].append(wall)
            frames[name] = n
            cuts[name] = found if name.startswith("videopipe") else None
    rows = [row_for(name, walls[name], frames[name], cuts[name], d, truth, fps) for name, _ in methods]
    _, _, _, peak_mb = measure(lambda: videopipe_pass(path, True), track_memory=True)
    if not args.skip_pyscenedetect:
        for det in ("content", "adaptive", "hash", "histogram"):
            label = f"PySceneDetect detect(path, {det.capitalize()}Detector())"
            if det == "content":
                label += " [default]"
            wall, n, found, _ = measure(lambda det=det: pyscenedetect(path, det))  # type: ignore[misc]
            rows.append(row_for(label, [wall], n, found, d, truth, fps))
    decode_fps = float(rows[0]["fps"])  # type: ignore[arg-type]
    for row in rows:
        row["vs_decode"] = round(float(row["fps"]) / decode_fps, 2)  # type: ignore[arg-type]

    header = (
        f"{path.name}: {info.width}x{info.height} {info.codec}, {info.fps:g} fps, {d:.0f} s, "
        f"{len(truth)} cuts; {platform.machine()}, {os.cpu_count()} cores, "
        f"PyAV {av.__version__}, Python {platform.python_version()}"
    )
    if args.json:
        print(json.dumps({"file": header, "rows": rows, "python_peak_mb": peak_mb}, indent=2))
        return
    print(header)
    print(
        "| method | runs | frames/s (median) | wall s (min–max) | × real time | × pure decode "
        "| precision | recall | F1 |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        lo, hi = r["wall_spread_s"]  # type: ignore[misc]
        print(
            f"| {r['method']} | {r['runs']} | {r['fps']} | {r['wall_s']} ({lo}–{hi}) | {r['x_realtime']} | "
            f"{r['vs_decode']} | {r.get('precision', '')} | {r.get('recall', '')} | {r.get('f1', '')} |"
        )
    print(f"\npeak Python-side memory (tracemalloc) during one videopipe pass: {peak_mb:.1f} MB")


# --- Gradual transitions and short shots: footage from real photographs --------------------------------------
#
#     python benchmarks/scenes.py --photos 600             # 10 minutes, 1280x720, 25 fps (generated once, cached)
#     python benchmarks/scenes.py --photos 60 --transnet   # also TransNetV2 on the CPU (~20 frames/s)


def make_photo_media(seconds: int, width: int = 1280, height: int = 720) -> tuple[Path, dict[str, object]]:
    from videopipe.testing.photos import flash_frames_for, random_photo_shots, write_photo_footage

    MEDIA.mkdir(exist_ok=True)
    stem = f"photos{seconds}_{height}p"
    path, truth_file = MEDIA / f"{stem}.mp4", MEDIA / f"{stem}.truth.json"
    if not (path.exists() and truth_file.exists()):
        rng = np.random.default_rng(seconds)
        shots = random_photo_shots(float(seconds), 25.0, rng)
        flashes = flash_frames_for(shots, rng, every_s=20.0, fps=25.0)
        print(f"generating {path} ({len(shots)} shots)...", file=sys.stderr)
        f = write_photo_footage(path, shots, width=width, height=height, fps=25.0, seed=seconds, flash_frames=flashes)
        truth_file.write_text(
            json.dumps(
                {"cuts_s": f.cut_times_s, "transitions": f.transitions, "flashes_s": f.flash_times_s, "fps": 25.0}
            )
        )
    return path, json.loads(truth_file.read_text())


def score_boundaries(found: list[float], truth: dict[str, object], duration_s: float) -> dict[str, object]:
    fps = float(truth["fps"])  # type: ignore[arg-type]
    frame = 1 / fps
    spans = [(float(lo), float(hi)) for lo, hi, _ in truth["transitions"]]  # type: ignore[attr-defined]
    cuts = [float(c) for c in truth["cuts_s"]]  # type: ignore[attr-defined]
    in_span = [t for t in found if any(lo - frame <= t <= hi + frame for lo, hi in spans)]
    outside = [t for t in found if t not in in_span]
    recalled = sum(1 for lo, hi in spans if any(lo - frame <= t <= hi + frame for t in found))
    extra_in_span = len(in_span) - recalled  # a transition split in two counts as one false boundary
    tp, fp, fn = match_cuts(outside, cuts, tolerance_s=0.5 * frame)
    p = tp / (tp + fp) if tp + fp else 0.0
    r = tp / (tp + fn) if tp + fn else 0.0
    return {
        "gradual_recall": round(recalled / len(spans), 3) if spans else None,
        "false_per_10min": round((fp + max(0, extra_in_span)) * 600 / duration_s, 2),
        "cut_f1": round(2 * p * r / (p + r), 3) if p + r else 0.0,
    }


def photos_main(seconds: int, with_transnet: bool, rounds: int, height: int) -> None:
    path, truth = make_photo_media(seconds, height * 16 // 9, height)
    info = probe(path)
    d = info.duration_s
    n_trans = len(truth["transitions"])  # type: ignore[arg-type]
    rows: list[dict[str, object]] = []

    def gradual_pass(on: bool) -> tuple[int, list[float]]:
        from videopipe.config import SceneSettings

        result = run_pass(info, Settings(scenes=SceneSettings(gradual=on)))
        return result.frames, [s.start_s for s in result.scenes[1:]]

    methods: list[tuple[str, Callable[[], tuple[int, list[float]]]]] = [
        ("pure decode (PyAV, threaded)", lambda: pure_decode(path)),
        ("videopipe pass (cuts + dissolves/fades)", lambda: gradual_pass(True)),
        ("videopipe pass, hard cuts only (before)", lambda: gradual_pass(False)),
    ]
    walls: dict[str, list[float]] = {name: [] for name, _ in methods}
    cpus: dict[str, list[float]] = {name: [] for name, _ in methods}  # CPU time: steadier on a loaded machine
    found: dict[str, tuple[int, list[float]]] = {}
    for _ in range(rounds):
        for name, fn in methods:
            cpu0 = time.process_time()
            wall, n, cuts, _ = measure(fn)
            cpus[name].append(time.process_time() - cpu0)
            walls[name].append(wall)
            found[name] = (n, cuts)
    cpu_decode = statistics.median(cpus[methods[0][0]])
    for name, _ in methods:
        row: dict[str, object] = {"method": name, "wall_s": round(statistics.median(walls[name]), 2)}
        row["fps"] = round(found[name][0] / statistics.median(walls[name]), 1)
        row["cpu_vs_decode"] = round(cpu_decode / statistics.median(cpus[name]), 2)
        if not name.startswith("pure"):
            row.update(score_boundaries(found[name][1], truth, d))
        rows.append(row)
    wall, n, cuts, _ = measure(lambda: pyscenedetect(path, "adaptive"))
    rows.append({"method": "PySceneDetect AdaptiveDetector()", "wall_s": round(wall, 2), "fps": round(n / wall, 1)})
    rows[-1].update(score_boundaries(cuts, truth, d))
    if with_transnet:
        from videopipe.scenes_transnet import TransNetDetector

        det = TransNetDetector(threads=2)
        started = time.perf_counter()
        res = det.detect_file(path)
        wall = time.perf_counter() - started
        rows.append(
            {"method": "TransNetV2 (CPU, 2 threads)", "wall_s": round(wall, 2), "fps": round(res.frames / wall, 1)}
        )
        rows[-1].update(score_boundaries(res.cut_times_s, truth, d))
    decode_fps = float(rows[0]["fps"])  # type: ignore[arg-type]
    for row in rows:
        row["vs_decode"] = round(float(row["fps"]) / decode_fps, 2)  # type: ignore[arg-type]
    print(
        f"{path.name}: {info.width}x{info.height} {info.codec}, {info.fps:g} fps, {d:.0f} s, "
        f"{len(truth['cuts_s'])} hard cuts, {n_trans} dissolves/fades, {len(truth['flashes_s'])} one-frame flashes; "  # type: ignore[arg-type]
        f"{platform.machine()}, {os.cpu_count()} cores, PyAV {av.__version__}, Python {platform.python_version()}"
    )
    print(
        "| method | frames/s | × pure decode (wall) | × pure decode (CPU time) | gradual recall "
        "| false boundaries / 10 min | hard-cut F1 |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(
            f"| {r['method']} | {r['fps']} | {r['vs_decode']} | {r.get('cpu_vs_decode', '')} | "
            f"{r.get('gradual_recall', '')} | {r.get('false_per_10min', '')} | {r.get('cut_f1', '')} |"
        )


if __name__ == "__main__" and "--photos" in sys.argv:
    _ap = argparse.ArgumentParser()
    _ap.add_argument("--photos", type=int, required=True, help="seconds of photo footage")
    _ap.add_argument("--transnet", action="store_true")
    _ap.add_argument("--rounds", type=int, default=3)
    _ap.add_argument("--height", type=int, default=720, help="frame height (16:9)")
    _a = _ap.parse_args()
    cv2.setNumThreads(1)
    photos_main(_a.photos, _a.transnet, _a.rounds, _a.height)
    sys.exit(0)


if __name__ == "__main__":
    main()
