"""Tags from Qwen3-VL: the video's keyframes at exact times with what is said and shown, one pass, the answer
constrained to the vocabulary (JSON schema with an enum where the server enforces it; checked here always)."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from PIL import Image

from videopipe.ask import fetch_keyframes, resized
from videopipe.config import Settings
from videopipe.errors import VLMError
from videopipe.storage import BlobStore
from videopipe.tagging import TAG_SYSTEM, Label, TagScore, parse_vlm_tags, tag_instructions, tag_schema
from videopipe.vlm import Prompt, select_backend
from videopipe.vlm.parsing import fmt_mmss
from videopipe.vlm.planner import FrameCandidate, TokenPlanner
from videopipe.vlm.prompts import timed_lines


def vlm_tags(
    settings: Settings,
    store: BlobStore,
    document: Callable[[], dict[str, Any]],
    labels: Sequence[Label] | None,
    top_k: int,
    vlm: str,
) -> list[TagScore] | None:
    """The model's tags, or None when no model is available (the caller tags without one). `document`: the
    video's analysis document (read only when a model is there).
    Raises VLMError when the model fails or answers nothing usable (twice: it is asked once more)."""
    choice = select_backend(settings, vlm)
    backend = choice.backend
    if backend is None:
        return None
    doc = document()
    duration = float(doc["video"]["duration_s"] or 0.0)
    size = (int(doc["video"]["width"] or 640), int(doc["video"]["height"] or 360))
    parts = [f"Video: {Path(doc['video']['path']).name}, {fmt_mmss(duration)} long."]
    said = timed_lines(doc.get("transcript", []), 0.0, duration + 1, limit_chars=8000)
    shown = timed_lines(doc.get("ocr", []), 0.0, duration + 1, time_key="t_s", limit_chars=4000)
    if said:
        parts += ["Transcript:", *said]
    if shown:
        parts += ["On-screen text:", *shown]
    parts.append(tag_instructions(labels, top_k))
    text = "\n".join(parts)
    u = settings.understanding
    planner = TokenPlanner(backend.count_text, backend.spec)
    probe = Prompt(TAG_SYSTEM, text, frames=[(0.0, Image.new("RGB", (32, 32)))])
    candidates = [FrameCandidate(k["t_s"], k["scene_index"], k.get("score", 0.0), k["index"]) for k in doc["keyframes"]]
    plan = planner.plan(candidates, size, backend.count_prompt_text(probe), u)
    workdir = Path(tempfile.mkdtemp(prefix="vp-tags-"))
    try:
        images = fetch_keyframes(store, doc, workdir)
        frames = [(c.t_s, resized(images[int(c.ref)], plan.width, plan.height)) for c in plan.frames]
        prompt = Prompt(TAG_SYSTEM, text, frames, u.duplicate_frames, json_schema=tag_schema(labels))
        try:
            return parse_vlm_tags(backend.generate(prompt, 400).text, labels, duration, top_k)
        except VLMError:  # unreadable or empty: once more
            retry = Prompt(TAG_SYSTEM, text + "\nAnswer with the JSON object only.", frames, u.duplicate_frames,
                           json_schema=tag_schema(labels))  # fmt: skip
            return parse_vlm_tags(backend.generate(retry, 400).text, labels, duration, top_k)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
