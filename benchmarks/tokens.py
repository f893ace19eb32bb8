"""Qwen3-VL prompt tokens: videopipe's planner vs uniform 2 fps sampling at the same frame size.

    python benchmarks/tokens.py            # 1-hour and 2-hour timelines

Keyframes come from videopipe's real analysis pass over the 10-minute 720p benchmark file
(benchmarks/.media/720p10min.mp4, made by scenes.py; 88 shots of 1.5-12 s), repeated end to end to make 1-
and 2-hour timelines with their scenes and keyframes. The planner then plans the whole prompt (scene list,
instructions, keyframes at their exact times, each duplicated) for a 262,144-token context; uniform 2 fps
sends 2 frames per second as consecutive temporal pairs (one group per second) at the same frame size.

Text tokens are counted with a Qwen-like rule: about 3 characters per token for prose, and one token per
digit in the ``<X.X seconds>`` markers (Qwen's tokenizer splits numbers into single digits); the same counter
serves both methods, so the comparison does not depend on it.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from videopipe.analysis import AnalyzeOptions, build_document, run_pass
from videopipe.config import Settings
from videopipe.media import probe
from videopipe.understanding import WindowPlanner
from videopipe.vlm.base import EstimatingCounter
from videopipe.vlm.planner import group_times, timestamp_text

sys.path.insert(0, str(Path(__file__).parent))
from scenes import make_media


class QwenLikeCounter(EstimatingCounter):
    name = "qwen-like estimate"

    def count_text(self, text: str) -> int:
        if text.startswith("<") and text.endswith(" seconds>"):
            digits = sum(ch.isdigit() for ch in text)
            return digits + 4  # "<", ".", " seconds", ">"
        return super().count_text(text)


def tiled_document(doc: dict, repeats: int) -> dict:
    period = doc["video"]["duration_s"]
    scenes, keyframes = [], []
    for r in range(repeats):
        offset = r * period
        for s in doc["scenes"]:
            scenes.append(dict(s, index=len(scenes), start_s=s["start_s"] + offset, end_s=s["end_s"] + offset))
        base = len(scenes) - len(doc["scenes"])
        for k in doc["keyframes"]:
            keyframes.append(dict(k, t_s=k["t_s"] + offset, scene_index=base + k["scene_index"]))
    video = dict(doc["video"], duration_s=period * repeats)
    return dict(doc, video=video, scenes=scenes, keyframes=keyframes)


def main() -> None:
    path, _, _ = make_media("720p10min")
    info = probe(path)
    result = run_pass(info, Settings())
    doc = build_document(result, {k.pts: f"kf{k.pts}.jpg" for k in result.keyframes}, AnalyzeOptions())
    counter = QwenLikeCounter()
    rows = []
    for hours, frame_tokens in ((1, 160), (2, 160), (1, 112), (2, 112)):
        settings = Settings(understanding={"max_frame_tokens": frame_tokens})  # type: ignore[arg-type]
        long_doc = tiled_document(doc, 6 * hours)
        [window, *rest] = WindowPlanner(long_doc, counter, settings).windows()
        plan = window.plan
        duration = long_doc["video"]["duration_s"]
        uniform_times = group_times([i / 2 for i in range(int(duration * 2))], duplicate=False)
        per_group = plan.tokens_per_group + 2
        uniform_vision = sum(per_group + counter.count_text(timestamp_text(t)) for t in uniform_times)
        uniform_total = plan.text_tokens - 1 + uniform_vision
        rows.append({
            "video": f"{hours} h", "scenes": len(long_doc["scenes"]), "keyframes": len(long_doc["keyframes"]),
            "frame_size": f"{plan.width}x{plan.height}", "tokens_per_frame": plan.tokens_per_group,
            "planner_windows": 1 + len(rest), "planner_keyframes_sent": len(plan.frames),
            "scenes_covered": f"{plan.scenes_covered}/{len(long_doc['scenes'])}",
            "planner_prompt_tokens": plan.prompt_tokens, "planner_fits_256k": plan.prompt_tokens <= 262_144,
            "uniform_2fps_groups": len(uniform_times), "uniform_2fps_prompt_tokens": uniform_total,
            "uniform_fits_256k": uniform_total <= 262_144,
            "saving": round(1 - plan.prompt_tokens / uniform_total, 3),
        })  # fmt: skip
    if "--json" in sys.argv:
        print(json.dumps(rows, indent=2))
        return
    print(
        "| video | scenes | keyframes sent (of) | frame size (tokens) | planner prompt tokens | fits 256K "
        "| uniform 2 fps tokens | fits 256K | fewer tokens |"
    )
    print("|---|---:|---:|---|---:|---|---:|---|---:|")
    for r in rows:
        print(
            f"| {r['video']} | {r['scenes']} (covered {r['scenes_covered']}) | {r['planner_keyframes_sent']} "
            f"({r['keyframes']}) | {r['frame_size']} ({r['tokens_per_frame']}) | {r['planner_prompt_tokens']:,} | "
            f"{'yes' if r['planner_fits_256k'] else 'no'} | {r['uniform_2fps_prompt_tokens']:,} | "
            f"{'yes' if r['uniform_fits_256k'] else 'no'} | {r['saving']:.1%} |"
        )


if __name__ == "__main__":
    main()
