"""Prompt texts and their parts. Provider clients only move bytes; what we ask lives here."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from videopipe.vlm.parsing import fmt_mmss

SYSTEM = (
    "You are a precise video analyst. The video is given as keyframes; the text <t seconds> before each "
    "frame is that frame's exact time in seconds from the start of the video. Base every time you give on "
    "those markers. Answer with JSON only."
)

ANSWER_SHAPE = (
    '{"chapters": [{"start": "mm:ss.ff", "end": "mm:ss.ff", "title": "short title", '
    '"summary": "one or two sentences"}], '
    '"events": [{"start": "mm:ss.ff", "end": "mm:ss.ff", "label": "short label", '
    '"description": "what happens", "bbox_2d": [x1, y1, x2, y2]}], '
    '"captions": {"S1": "one-sentence caption of scene S1"}, "tags": ["lowercase tag"]}'
)

MERGE_SHAPE = (
    '{"chapters": [{"start": "mm:ss.ff", "end": "mm:ss.ff", "title": "short title", '
    '"summary": "one or two sentences"}], "tags": ["lowercase tag"]}'
)

RETRY = (
    "Your previous answer could not be read as JSON of the requested shape. Answer again with only the JSON "
    "object, no other text."
)


def timed_lines(
    items: Sequence[dict[str, Any]],
    start_s: float,
    end_s: float,
    text_key: str = "text",
    time_key: str = "start_s",
    limit_chars: int = 20000,
) -> list[str]:
    """``[mm:ss.ff] text`` lines for the items inside [start_s, end_s), at most `limit_chars` in all."""
    lines, used = [], 0
    for item in items:
        t = float(item.get(time_key, item.get("t_s", 0.0)))
        text = " ".join(str(item.get(text_key, "")).split())
        if not text or not (start_s <= t < end_s):
            continue
        line = f"[{fmt_mmss(t)}] {text}"
        used += len(line) + 1
        if used > limit_chars:
            lines.append("[...]")
            break
        lines.append(line)
    return lines


def window_text(
    *,
    name: str,
    start_s: float,
    end_s: float,
    duration_s: float,
    scenes: Sequence[dict[str, Any]],
    transcript: Sequence[dict[str, Any]] = (),
    ocr: Sequence[dict[str, Any]] = (),
    language: str = "English",
) -> str:
    """The user text after the keyframes of one window (the whole video when it fits)."""
    whole = start_s <= 0 and end_s >= duration_s
    span = "the whole video" if whole else f"the part from {fmt_mmss(start_s)} to {fmt_mmss(end_s)}"
    parts = [
        f"These are keyframes of {span} of '{name}' (total length {fmt_mmss(duration_s)}).",
        "Scenes (id, start-end):",
        *(f"S{s['index'] + 1} {fmt_mmss(s['start_s'])}-{fmt_mmss(s['end_s'])}" for s in scenes),
    ]
    speech = timed_lines(transcript, start_s, end_s)
    if speech:
        parts += ["Transcript (timed):", *speech]
    screen = timed_lines(ocr, start_s, end_s, time_key="t_s")
    if screen:
        parts += ["On-screen text (timed):", *screen]
    parts += [
        "Task: describe this video in JSON with exactly this shape:",
        ANSWER_SHAPE,
        f"Chapters cover {fmt_mmss(start_s)} to {fmt_mmss(end_s)} in order without overlapping. Events are "
        "notable actions or moments with their start and end; bbox_2d is optional, on a 0-1000 grid. Give one "
        "caption per scene id. Use 'mm:ss.ff' format for time depiction. "
        f"Write titles, summaries and captions in {language}.",
    ]
    return "\n".join(parts)


def merge_text(*, name: str, duration_s: float, windows: Sequence[dict[str, Any]], language: str = "English") -> str:
    """Text-only pass over the per-window results of a video longer than the context (summary chaining)."""
    parts = [f"'{name}' ({fmt_mmss(duration_s)} long) was described in consecutive parts:"]
    for w in windows:
        parts.append(f"Part {fmt_mmss(w['start_s'])}-{fmt_mmss(w['end_s'])}:")
        for c in w["chapters"]:
            parts.append(f"- {fmt_mmss(c['start_s'])}-{fmt_mmss(c['end_s'])} {c['title']}: {c['summary']}")
    parts += [
        "Task: merge these into chapters for the whole video, in JSON with exactly this shape:",
        MERGE_SHAPE,
        f"Chapters cover 00:00.00 to {fmt_mmss(duration_s)} in order without overlapping; join parts that "
        f"continue the same topic. Use 'mm:ss.ff' format for time depiction. Write in {language}.",
    ]
    return "\n".join(parts)
