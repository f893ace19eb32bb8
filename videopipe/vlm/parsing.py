"""Turning model answers into validated chapters, events, captions and tags.

Models answer in many shapes: fenced JSON, JSON with trailing commas, times as seconds, ``mm:ss.ff``,
``hh:mm:ss``, ``<12.5 seconds>``, or Qwen's dense-caption dicts (``{"00:23.00 - 00:48.00": "..."}``). Everything
here is lenient per item and strict per value: an item whose times cannot be read is dropped and counted, the
rest is kept. Times are clamped to the video, sorted, and overlaps merged.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

_TIME_RE = re.compile(
    r"^\s*<?\s*(?:(?P<h>\d+):)?(?P<m>\d+):(?P<s>\d+(?:[.,]\d+)?)\s*>?\s*$"
    r"|^\s*<?\s*(?P<sec>\d+(?:\.\d+)?)\s*(?:s|sec|secs|second|seconds)?\s*>?\s*$",
    re.IGNORECASE,
)
_RANGE_RE = re.compile(r"^\s*(?P<a>.+?)\s*(?:-|–|—|~|\bto\b)\s*(?P<b>.+?)\s*$")


class OutputParseError(ValueError):
    """The answer holds no usable JSON."""


def parse_time(value: Any) -> float:
    """Seconds from a number or a time string (``12.5``, ``12.5s``, ``<12.5 seconds>``, ``mm:ss.ff``, ``hh:mm:ss``)."""
    if isinstance(value, bool):
        raise ValueError(f"not a time: {value!r}")
    if isinstance(value, int | float):
        if value != value or value < 0:  # NaN or negative
            raise ValueError(f"not a time: {value!r}")
        return float(value)
    if not isinstance(value, str):
        raise ValueError(f"not a time: {value!r}")
    m = _TIME_RE.match(value)
    if not m:
        raise ValueError(f"not a time: {value!r}")
    if m.group("sec") is not None:
        return float(m.group("sec"))
    hours = int(m.group("h") or 0)
    seconds = float(m.group("s").replace(",", "."))
    if m.group("h") is not None and (int(m.group("m")) >= 60 or seconds >= 60):
        raise ValueError(f"not a time: {value!r}")
    return hours * 3600 + int(m.group("m")) * 60 + seconds


def parse_range(value: str) -> tuple[float, float]:
    """``"00:23.00 - 00:48.00"`` -> (23.0, 48.0)."""
    m = _RANGE_RE.match(value)
    if not m:
        raise ValueError(f"not a time range: {value!r}")
    return parse_time(m.group("a")), parse_time(m.group("b"))


def extract_json(text: str) -> Any:
    """The first JSON object or array in `text` (fenced or bare), tolerating trailing commas."""
    fenced = re.findall(r"```(?:json|JSON)?\s*(.*?)```", text, flags=re.DOTALL)
    for chunk in [*fenced, text]:
        for start, ch in enumerate(chunk):
            if ch not in "{[":
                continue
            for candidate in (chunk[start:], re.sub(r",\s*([}\]])", r"\1", chunk[start:])):
                try:
                    obj, _ = json.JSONDecoder().raw_decode(candidate)
                except json.JSONDecodeError:
                    continue
                if isinstance(obj, dict | list):
                    return obj
            break  # the first bracket did not start valid JSON: try the next chunk
    raise OutputParseError("the answer contains no JSON object")


class _Timed(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True)
    start_s: float = Field(alias="start")
    end_s: float = Field(alias="end")

    @field_validator("start_s", "end_s", mode="before")
    @classmethod
    def _time(cls, v: Any) -> float:
        return parse_time(v)


class Chapter(_Timed):
    title: str = Field(default="", max_length=300)
    summary: str = Field(default="", max_length=4000)


class Event(_Timed):
    label: str = Field(default="", max_length=200)
    description: str = Field(default="", max_length=4000)
    bbox: list[float] | None = Field(default=None, alias="bbox_2d")

    @field_validator("bbox", mode="before")
    @classmethod
    def _bbox(cls, v: Any) -> list[float] | None:
        if v in (None, [], ""):
            return None
        if not (isinstance(v, list) and len(v) == 4 and all(isinstance(x, int | float) for x in v)):
            raise ValueError("bbox_2d must be [x1, y1, x2, y2] on the 0-1000 grid")
        x1, y1, x2, y2 = (min(1000.0, max(0.0, float(x))) for x in v)
        return [min(x1, x2), min(y1, y2), max(x1, x2), max(y1, y2)]


@dataclass(slots=True)
class Answer:
    chapters: list[Chapter] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)
    captions: dict[str, str] = field(default_factory=dict)
    tags: list[str] = field(default_factory=list)
    dropped: int = 0  # items that were present but unreadable

    @property
    def empty(self) -> bool:
        return not (self.chapters or self.events or self.captions or self.tags)


def _items(raw: Any) -> list[Any]:
    if isinstance(raw, list):
        return raw
    if isinstance(raw, dict):  # dense-caption style {"00:23.00 - 00:48.00": "text"}
        out: list[Any] = []
        for key, value in raw.items():
            try:
                start, end = parse_range(str(key))
            except ValueError:
                out.append({"start": None, "end": None})
                continue
            text = value if isinstance(value, str) else json.dumps(value)
            out.append(
                {
                    "start": start,
                    "end": end,
                    "title": text[:80],
                    "summary": text,
                    "label": text[:80],
                    "description": text,
                }
            )
        return out
    return []


def parse_answer(text: str) -> Answer:
    """Parse a model answer. Raises `OutputParseError` when there is nothing usable at all."""
    data = extract_json(text)
    if isinstance(data, list):  # a bare list of timed items: treat as events
        data = {"events": data}
    answer = Answer()
    for item in _items(data.get("chapters")):
        try:
            answer.chapters.append(Chapter.model_validate(item))
        except ValidationError:
            answer.dropped += 1
    for item in _items(data.get("events")):
        try:
            answer.events.append(Event.model_validate(item))
        except ValidationError:
            answer.dropped += 1
    if not data.get("events") and not data.get("chapters"):
        for item in _items({k: v for k, v in data.items() if isinstance(k, str) and _RANGE_RE.match(k)}):
            try:
                answer.events.append(Event.model_validate(item))
            except ValidationError:
                answer.dropped += 1
    captions = data.get("captions")
    if isinstance(captions, dict):
        answer.captions = {str(k): str(v).strip() for k, v in captions.items() if isinstance(v, str | int | float)}
    elif isinstance(captions, list):
        answer.captions = {str(i + 1): str(v).strip() for i, v in enumerate(captions) if isinstance(v, str)}
    tags = data.get("tags")
    if isinstance(tags, list):
        seen: dict[str, None] = {}
        for tag in tags:
            if isinstance(tag, str) and tag.strip():
                seen.setdefault(tag.strip().lower()[:60], None)
        answer.tags = list(seen)
    if answer.empty:
        raise OutputParseError(
            f"the JSON has none of chapters/events/captions/tags ({answer.dropped} unreadable items)"
        )
    return answer


_T = TypeVar("_T", bound=_Timed)


def _clamped(items: list[_T], start_s: float, end_s: float, keep_instants: bool) -> list[_T]:
    """Items with times clamped into [start_s, end_s] (reversed ranges turned round), sorted by time."""
    kept = []
    for item in items:
        s, e = sorted((max(start_s, min(item.start_s, end_s)), max(start_s, min(item.end_s, end_s))))
        if e > s or keep_instants:
            kept.append(item.model_copy(update={"start_s": s, "end_s": e}))
    return sorted(kept, key=lambda item: (item.start_s, item.end_s))


def clamp_and_merge_chapters(chapters: list[Chapter], start_s: float, end_s: float) -> list[Chapter]:
    """Clamp to [start_s, end_s], sort, and resolve overlaps so chapters follow one another."""
    out: list[Chapter] = []
    for c in _clamped(chapters, start_s, end_s, keep_instants=False):
        if out and c.start_s < out[-1].end_s:
            prev = out[-1]
            if c.end_s <= prev.end_s:  # wholly inside the previous chapter: a sub-topic, dropped
                continue
            if c.start_s - prev.start_s < 0.5 * (prev.end_s - prev.start_s):
                out[-1] = prev.model_copy(update={"end_s": c.end_s})
                continue
            out[-1] = prev.model_copy(update={"end_s": c.start_s})
        out.append(c)
    return out


def clamp_and_merge_events(events: list[Event], start_s: float, end_s: float) -> list[Event]:
    """Clamp, sort, and merge overlapping events that carry the same label."""
    out: list[Event] = []
    for ev in _clamped(events, start_s, end_s, keep_instants=True):
        same = next((o for o in reversed(out) if o.label.lower() == ev.label.lower() and ev.start_s <= o.end_s), None)
        if same is not None:
            idx = out.index(same)
            out[idx] = same.model_copy(update={"end_s": max(same.end_s, ev.end_s)})
            continue
        out.append(ev)
    return out


def fmt_mmss(t_s: float) -> str:
    """``mm:ss.ff`` as Qwen's cookbook prompts use (minutes may exceed 59)."""
    minutes, seconds = divmod(t_s, 60)
    return f"{int(minutes):02d}:{seconds:05.2f}"
