"""Results as files players and spreadsheets read: WebVTT (chapters, captions), SubRip and CSV (events, tags)."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from videopipe.timefmt import fmt_time


def _clock(t: float, sep: str) -> str:
    return fmt_time(max(0.0, t)).replace(".", sep)


def _cue_text(text: str) -> str:
    """One or more non-empty lines with no '-->' and WebVTT's three special characters escaped."""
    text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace("-->", "\u2192")
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return "\n".join(lines) or "\u2026"


def _spans(items: Iterable[Mapping[str, Any]]) -> list[tuple[float, float, Mapping[str, Any]]]:
    """Time-ordered cues with positive length (players drop zero-length cues; chapters must not overlap)."""
    out = []
    for item in sorted(items, key=lambda i: (i["start_s"], i["end_s"])):
        start, end = float(item["start_s"]), float(item["end_s"])
        out.append((start, max(end, start + 0.001), item))
    return out


def webvtt(cues: Iterable[tuple[float, float, str]], ids: bool = True) -> str:
    parts = ["WEBVTT", ""]
    for n, (start, end, text) in enumerate(cues, 1):
        if ids:
            parts.append(str(n))
        parts += [f"{_clock(start, '.')} --> {_clock(end, '.')}", _cue_text(text), ""]
    return "\n".join(parts)


def chapters_vtt(chapters: Iterable[Mapping[str, Any]]) -> str:
    """A chapters track for HTML5 `<track kind="chapters">`: one cue per chapter, titled, never overlapping."""
    spans = _spans(chapters)
    cues = []
    for n, (start, end, ch) in enumerate(spans):
        if n + 1 < len(spans):
            end = min(end, spans[n + 1][0]) if spans[n + 1][0] > start else end
        cues.append((start, max(end, start + 0.001), str(ch.get("title") or f"Chapter {n + 1}")))
    return webvtt(cues)


def transcript_vtt(segments: Iterable[Mapping[str, Any]]) -> str:
    return webvtt((start, end, str(seg["text"])) for start, end, seg in _spans(segments))


def transcript_srt(segments: Iterable[Mapping[str, Any]]) -> str:
    parts = []
    for n, (start, end, seg) in enumerate(_spans(segments), 1):
        text = "\n".join(line.strip() for line in str(seg["text"]).splitlines() if line.strip()) or "\u2026"
        parts += [str(n), f"{_clock(start, ',')} --> {_clock(end, ',')}", text, ""]
    return "\n".join(parts)


def safe_cell(value: Any) -> str:
    """A CSV cell that a spreadsheet will not run as a formula (OWASP: model output and file names are
    untrusted; a leading =, +, -, @, tab or CR gets a quote in front)."""
    text = str(value)
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


def events_csv(events: Iterable[Mapping[str, Any]]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["start_s", "end_s", "start", "end", "label", "description", "source"])
    for start, _end, e in _spans(events):
        writer.writerow([f"{start:.3f}", f"{float(e['end_s']):.3f}", _clock(start, "."), _clock(float(e["end_s"]), "."),
                         safe_cell(e.get("label", "")), safe_cell(e.get("description", "")),
                         e.get("source", "")])  # fmt: skip
    return out.getvalue()


CSV_COLUMNS = ["video", "video_id", "tag", "score", "source", "support"]


def tags_csv(rows: Iterable[tuple[str, str | None, Sequence[dict[str, Any]]]]) -> str:
    """One row per (video, tag): `support` is the supporting time ranges as ``start-end`` seconds, ``;``-joined."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for video, video_id, tags in rows:
        for t in tags:
            spans = ";".join(f"{s['start_s']:.3f}-{s['end_s']:.3f}" for s in t.get("support", []))
            writer.writerow([safe_cell(video), video_id or "", safe_cell(t["tag"]), f"{t['score']:.4f}",
                             t.get("source", ""), spans])  # fmt: skip
    return out.getvalue()
