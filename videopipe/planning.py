"""`videopipe plan`: the token plan for a video, computed without running a model."""

from __future__ import annotations

import os
from typing import Any

from videopipe.analysis import AnalyzeOptions, build_document, run_pass
from videopipe.config import Settings
from videopipe.media import probe
from videopipe.understanding import WindowPlanner
from videopipe.vlm import select_backend
from videopipe.vlm.base import EstimatingCounter, TokenCounter


def plan_video(video: str | os.PathLike[str], settings: Settings, vlm: str | None = None) -> dict[str, Any]:
    info = probe(video, settings.limits)
    result = run_pass(info, settings)
    doc = build_document(result, {k.pts: f"keyframe-{k.pts}" for k in result.keyframes}, AnalyzeOptions())
    choice = select_backend(settings, vlm)
    counter: TokenCounter = choice.backend if choice.backend is not None else EstimatingCounter()
    windows = WindowPlanner(doc, counter, settings).windows()
    exact = "exact" if counter.exact_token_counts else "estimated"
    return {
        "video": doc["video"],
        "counter": f"{counter.name} ({exact} text token counts)",
        "backend": choice.name,
        "reason": choice.reason,
        "context_tokens": settings.understanding.context_tokens,
        "windows": [w.plan.to_json() | {"start_s": w.start_s, "end_s": w.end_s} for w in windows],
    }
