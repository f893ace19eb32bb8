"""Batch tagging throughput: N short lectures of known subjects tagged in-process (`videopipe tag`'s path).

    python benchmarks/tagging.py                 # 100 videos
    python benchmarks/tagging.py --videos 20

Videos: `videopipe.testing.media.write_topic_lecture`, 9 s each at 480x270 (two slides, two sentences spoken by
espeak-ng), eight subjects in turn, every file different (a part number on the slides). Vocabulary: the eight
subjects with one-line descriptions (`TOPIC_VOCABULARY`). No VLM: zero-shot tags from the bundled MiniLM.

Three runs in one process, one after another, on a fresh library:
1. analyse + tag every file (what a first `videopipe tag` does): files/minute;
2. the same files with a second vocabulary: the analysis is reused, only tagging runs (the baseline that
   shows what tagging itself costs);
3. how many files had their true subject first, and among the top 3.
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--videos", type=int, default=100)
    args = parser.parse_args()

    from videopipe.config import Settings
    from videopipe.services import open_services
    from videopipe.tagging import Label
    from videopipe.testing.media import TOPIC_LECTURES, TOPIC_VOCABULARY, write_topic_lecture

    work = Path(tempfile.mkdtemp(prefix="vp-bench-tag-"))
    try:
        topics = list(TOPIC_LECTURES)
        files: list[tuple[Path, str]] = []
        t = time.perf_counter()
        for n in range(args.videos):
            topic = topics[n % len(topics)]
            path = work / "videos" / f"{n:03d}-{topic.replace(' ', '-')}.mp4"
            path.parent.mkdir(exist_ok=True)
            write_topic_lecture(path, topic, variant=n + 1)
            files.append((path, topic))
        print(f"generated {len(files)} videos in {time.perf_counter() - t:.1f} s", flush=True)

        settings = Settings(data_dir=work / "data", vlm="none")
        batches = open_services(settings, dispatch="none", migrate=True).batches
        labels = [Label(tag, desc) for tag, desc in TOPIC_VOCABULARY]
        sources = [str(p) for p, _ in files]
        options = {"profile": "lecture"}

        def run(vocabulary: list[Label]) -> tuple[float, str]:
            batch_id = batches.create("default", sources, vocabulary, top_k=3, options=options)
            t0 = time.perf_counter()
            batches.run_inline("default", batch_id)
            return time.perf_counter() - t0, batch_id

        first_s, first_id = run(labels)
        info = batches.describe("default", first_id)
        truth = {str(p): topic for p, topic in files}
        top1 = sum(1 for i in info["items"] if i["tags"] and i["tags"][0]["tag"] == truth[i["source"]])
        top3 = sum(1 for i in info["items"] if truth[i["source"]] in [t["tag"] for t in i["tags"][:3]])
        second_s, second_id = run([Label(tag) for tag, _ in TOPIC_VOCABULARY[::-1]])
        reused = sum(1 for i in batches.describe("default", second_id)["items"] if i["reused"])
        result = {
            "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
            "videos": len(files), "video_s": 9.0,
            "analyse_and_tag_s": round(first_s, 1),
            "analyse_and_tag_files_per_min": round(len(files) / first_s * 60, 1),
            "failed": info["counts"]["failed"], "top1": top1, "top3": top3,
            "tag_only_s": round(second_s, 1), "tag_only_files_per_min": round(len(files) / second_s * 60, 1),
            "reused_in_second_run": reused,
        }  # fmt: skip
        print("RESULT " + json.dumps(result), flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
