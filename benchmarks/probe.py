"""What checking an upload costs: the hardened probe (packet scan, limits, one frame) in-process and in its
limited child process, beside the plain open it replaced (container header + first frame) in the same run.

    python benchmarks/probe.py                    # 10-min and 60-min 1280x720 files (ffmpeg testsrc2, ~40 s to make)
    python benchmarks/probe.py --minutes 10,120   # other lengths

Files are made once with the ffmpeg CLI (cached in benchmarks/.media/): 1280x720 H.264 at 30 fps with AAC audio.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import av

from videopipe.config import LimitSettings
from videopipe.media import probe
from videopipe.media.isolate import probe_isolated

MEDIA = Path(__file__).parent / ".media"


def make(minutes: int) -> Path:
    path = MEDIA / f"probe-{minutes}min.mp4"
    if not path.exists():
        MEDIA.mkdir(exist_ok=True)
        seconds = str(minutes * 60)
        subprocess.run(
            ["ffmpeg", "-loglevel", "error", "-y", "-f", "lavfi", "-i", f"testsrc2=size=1280x720:rate=30:d={seconds}",
             "-f", "lavfi", "-i", f"sine=d={seconds}", "-c:v", "libx264", "-preset", "ultrafast", "-g", "60",
             "-c:a", "aac", "-b:a", "32k", str(path) + ".part.mp4"],
            check=True,
        )  # fmt: skip
        os.replace(str(path) + ".part.mp4", path)
    return path


def plain_open(path: Path) -> None:
    """The old probe's costly part: open with FFmpeg's defaults, decode the first frame."""
    with av.open(str(path)) as c:
        stream = c.streams.video[0]
        for packet in c.demux(stream):
            if packet.decode():
                return


def timed(fn: Callable[[], object], rounds: int) -> list[float]:
    out = []
    for _ in range(rounds):
        start = time.perf_counter()
        fn()
        out.append(time.perf_counter() - start)
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--minutes", default="10,60")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    limits = LimitSettings()
    print(f"{platform.machine()}, {os.cpu_count()} cores, Python {sys.version.split()[0]}, PyAV {av.__version__}")
    print(
        "| file | size | plain open + 1 frame (baseline) | probe in-process | probe in a limited child "
        "| child / baseline |"
    )
    print("|---|---:|---:|---:|---:|---:|")
    for minutes in (int(m) for m in args.minutes.split(",")):
        path = make(minutes)
        runs = {
            "plain": timed(lambda p=path: plain_open(p), args.rounds),
            "probe": timed(lambda p=path: probe(p, limits), args.rounds),
            "child": timed(lambda p=path: probe_isolated(p, limits), args.rounds),
        }
        med = {k: statistics.median(v) for k, v in runs.items()}
        cells = [f"{med[k]:.3f} s ({min(v):.3f}–{max(v):.3f})" for k, v in runs.items()]
        size = f"{path.stat().st_size / 1e6:.0f} MB"
        print(f"| {minutes} min 720p30 | {size} | {' | '.join(cells)} | {med['child'] / med['plain']:.0f} |")


if __name__ == "__main__":
    main()
