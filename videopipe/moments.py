"""Moments: the searchable unit. A scene, or a window of about `moment_window_s` inside a long scene (cut at
transcript sentence boundaries), with its caption (VLM), what is said, what is on screen, and a keyframe."""

from __future__ import annotations

from typing import Any


def build_moments(doc: dict[str, Any], window_s: float = 60.0) -> list[dict[str, Any]]:
    moments: list[dict[str, Any]] = []
    transcript = sorted(doc.get("transcript", []), key=lambda t: t["start_s"])
    ocr = sorted(doc.get("ocr", []), key=lambda o: o["t_s"])
    keyframes = [{**k, "index": n} for n, k in enumerate(doc.get("keyframes", []))]  # position = stored index
    for scene in doc.get("scenes", []):
        start, end = float(scene["start_s"]), float(scene["end_s"])
        for w_start, w_end in _windows(start, end, transcript, window_s):
            speech = " ".join(t["text"].strip() for t in transcript if w_start <= t["start_s"] < w_end)
            shown = [o for o in ocr if w_start <= o["t_s"] < w_end]
            if not shown:  # a slide put up earlier in the scene is still on screen
                earlier = [o for o in ocr if start <= o["t_s"] < w_start]
                shown = earlier[-1:]
            screen = " ".join(dict.fromkeys(o["text"].replace("\n", " ").strip() for o in shown))
            in_window = [k for k in keyframes if w_start <= k["t_s"] < w_end]
            in_scene = [k for k in keyframes if k.get("scene_index") == scene["index"]]
            chosen = in_window or in_scene
            keyframe = chosen[0] if chosen else None
            moments.append({
                "start_s": round(w_start, 3), "end_s": round(w_end, 3), "caption": scene.get("caption") or "",
                "speech": speech, "screen_text": screen,
                "keyframe_index": keyframe["index"] if keyframe is not None else None,
            })  # fmt: skip
    return moments


def _windows(start: float, end: float, transcript: list[dict[str, Any]], window_s: float) -> list[tuple[float, float]]:
    """Split [start, end) into windows of about `window_s`, each cut where a sentence starts."""
    if end - start <= window_s * 1.5:
        return [(start, end)]
    cuts = [start]
    sentence_starts = [t["start_s"] for t in transcript if start < t["start_s"] < end]
    while end - cuts[-1] > window_s * 1.5:
        target = cuts[-1] + window_s
        near = [s for s in sentence_starts if cuts[-1] + window_s / 2 <= s <= cuts[-1] + window_s * 1.5]
        cuts.append(min(near, key=lambda s: abs(s - target)) if near else target)
    return list(zip(cuts, [*cuts[1:], end], strict=True))


def moment_text(m: dict[str, Any] | Any) -> str:
    """What gets embedded and matched for a moment: caption, then on-screen text, then speech."""
    get = m.get if isinstance(m, dict) else lambda k, d="": getattr(m, k, d)
    parts = [get("caption", ""), get("screen_text", ""), get("speech", "")]
    return " \n".join(p.strip() for p in parts if p and p.strip())
