"""Chapters, events, scene captions and tags for an analysed video.

With a model: keyframes (chosen by the token planner) and timed transcript/on-screen text go to Qwen3-VL in
one prompt when the plan fits the context; otherwise the video is split into windows at scene boundaries,
each window is described, and a text-only pass merges the windows' chapters (summary chaining). Answers are
parsed leniently, checked, clamped to the video; an unreadable answer is retried once, and garbage never
stops the analysis: it is recorded and the extractive chapters stand in.

Without a model: extractive chapters (groups of scenes titled from on-screen text or speech when present,
else "Scene N at hh:mm:ss"), marked ``"source": "extractive"``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image

from videopipe.config import Settings
from videopipe.errors import VLMError, VLMUnavailable
from videopipe.progress import NullProgress, Progress
from videopipe.timefmt import fmt_time
from videopipe.vlm import BackendChoice, VLMBackend
from videopipe.vlm.base import Prompt, TokenCounter
from videopipe.vlm.parsing import (
    Answer,
    OutputParseError,
    clamp_and_merge_chapters,
    clamp_and_merge_events,
    parse_answer,
)
from videopipe.vlm.planner import FrameCandidate, Plan, TokenPlanner
from videopipe.vlm.prompts import RETRY, SYSTEM, merge_text, window_text

log = logging.getLogger(__name__)


@dataclass(slots=True)
class Window:
    scenes: list[dict[str, Any]]
    plan: Plan
    text: str

    @property
    def start_s(self) -> float:
        return float(self.scenes[0]["start_s"])

    @property
    def end_s(self) -> float:
        return float(self.scenes[-1]["end_s"])


@dataclass(slots=True)
class UnderstandingResult:
    chapters: list[dict[str, Any]]
    events: list[dict[str, Any]]
    captions: dict[int, str]
    tags: list[str]
    vlm: dict[str, Any]
    prompts: list[str] = field(default_factory=list)


def _r(t: float) -> float:
    return round(t, 3)


# -- without a model -----------------------------------------------------------------------------------
def _first_text(items: Sequence[dict[str, Any]], start_s: float, end_s: float, time_key: str) -> str | None:
    for item in items:
        t = float(item.get(time_key, item.get("t_s", 0.0)))
        text = " ".join(str(item.get("text", "")).split())
        if start_s <= t < end_s and text:
            first_line = str(item.get("text", "")).strip().splitlines()[0].strip()
            return (first_line or text)[:80]
    return None


def _slide_groups(doc: dict[str, Any]) -> list[list[dict[str, Any]]] | None:
    """Scenes grouped by the slide on screen: a new OCR reading (a slide change) starts a chapter."""
    starts = {line["scene_index"] for line in doc.get("ocr", []) if "scene_index" in line}
    if not starts:
        return None
    groups: list[list[dict[str, Any]]] = []
    for scene in doc["scenes"]:
        if not groups or scene["index"] in starts:
            groups.append([scene])
        else:
            groups[-1].append(scene)
    return groups


def _time_groups(scenes: list[dict[str, Any]], duration: float) -> list[list[dict[str, Any]]]:
    """Scenes grouped into chapters of roughly duration/8 (10 s to 5 min)."""
    target = min(300.0, max(10.0, duration / 8))
    groups: list[list[dict[str, Any]]] = []
    current: list[dict[str, Any]] = []
    for scene in scenes:
        current.append(scene)
        if current[-1]["end_s"] - current[0]["start_s"] >= target:
            groups.append(current)
            current = []
    if current:
        if groups and current[-1]["end_s"] - current[0]["start_s"] < target / 2:
            groups[-1].extend(current)
        else:
            groups.append(current)
    return groups


def extractive_chapters(doc: dict[str, Any]) -> list[dict[str, Any]]:
    """Chapters without a model: one per slide when there is on-screen text (lectures), else groups of scenes
    by length; titled from the slide or the speech, else by position."""
    scenes = doc["scenes"]
    if not scenes:
        return []
    groups = _slide_groups(doc) or _time_groups(scenes, float(doc["video"]["duration_s"]))
    chapters = []
    for group in groups:
        start, end = float(group[0]["start_s"]), float(group[-1]["end_s"])
        title = (_first_text(doc.get("ocr", []), start, end, "t_s")
                 or _first_text(doc.get("transcript", []), start, end, "start_s")
                 or f"Scene {group[0]['index'] + 1} at {fmt_time(start)[:8]}")  # fmt: skip
        speech = " ".join(
            str(seg.get("text", "")).strip() for seg in doc.get("transcript", []) if start <= seg["start_s"] < end
        )
        chapters.append({"start_s": _r(start), "end_s": _r(end), "start": fmt_time(start), "end": fmt_time(end),
                         "title": title, "summary": speech[:400], "source": "extractive"})  # fmt: skip
    return chapters


# -- with a model --------------------------------------------------------------------------------------
class WindowPlanner:
    """Splits a video into prompts that fit the context: the whole video when its plan fits, else windows
    at scene boundaries, each as long as fits."""

    def __init__(
        self, doc: dict[str, Any], counter: TokenCounter, settings: Settings, warn: Callable[[str], None] | None = None
    ) -> None:
        self.doc = doc
        self.counter = counter
        self.u = settings.understanding
        self.warn = warn or log.warning
        self.planner = TokenPlanner(counter.count_text, counter.spec)
        self.duration = float(doc["video"]["duration_s"])
        self.name = Path(doc["video"]["path"]).name
        self.source_size = (int(doc["video"]["width"]), int(doc["video"]["height"]))

    def _candidates(self, scenes: Sequence[dict[str, Any]]) -> list[FrameCandidate]:
        ids = {s["index"] for s in scenes}
        return [FrameCandidate(k["t_s"], k["scene_index"], k.get("score", 0.0), k.get("image"))
                for k in self.doc["keyframes"] if k["scene_index"] in ids]  # fmt: skip

    def _window_text(self, scenes: Sequence[dict[str, Any]]) -> str:
        return window_text(
            name=self.name, start_s=scenes[0]["start_s"], end_s=scenes[-1]["end_s"], duration_s=self.duration,
            scenes=scenes, transcript=self.doc.get("transcript", []), ocr=self.doc.get("ocr", []),
            language=self.u.language,
        )  # fmt: skip

    def plan_window(self, scenes: Sequence[dict[str, Any]]) -> Window:
        text = self._window_text(scenes)
        probe_prompt = Prompt(SYSTEM, text, frames=[(0.0, Image.new("RGB", (32, 32)))])
        text_tokens = self.counter.count_prompt_text(probe_prompt)
        plan = self.planner.plan(self._candidates(scenes), self.source_size, text_tokens, self.u)
        return Window(list(scenes), plan, text)

    def windows(self) -> list[Window]:
        scenes = self.doc["scenes"]
        whole = self.plan_window(scenes)
        if whole.plan.fits:
            return [whole]
        out: list[Window] = []
        i = 0
        while i < len(scenes):
            lo, hi = i, len(scenes) - 1  # the largest j such that scenes[i..j] fits
            best: Window | None = None
            while lo <= hi:
                mid = (lo + hi) // 2
                window = self.plan_window(scenes[i : mid + 1])
                if window.plan.fits:
                    best, lo = window, mid + 1
                else:
                    hi = mid - 1
            if best is None:  # a single scene too large even alone: send it anyway and let the server judge
                best = self.plan_window(scenes[i : i + 1])
                self.warn(f"scene {i + 1} does not fit the context even alone; sending its best keyframe only")
            out.append(best)
            i += len(best.scenes)
        return out


class Understanding:
    def __init__(
        self,
        doc: dict[str, Any],
        base_dir: Path,
        backend: VLMBackend,
        settings: Settings,
        warn: Callable[[str], None] | None = None,
    ) -> None:
        self.doc = doc
        self.base_dir = base_dir
        self.backend = backend
        self.u = settings.understanding
        self.windows = WindowPlanner(doc, backend, settings, warn)
        self.duration = self.windows.duration
        self.name = self.windows.name
        self.prompts: list[str] = []
        self.errors: list[str] = []
        self.prompt_tokens = 0
        self.completion_tokens = 0
        self.frames_sent = 0

    def _frames(self, plan: Plan) -> list[tuple[float, Image.Image]]:
        frames = []
        for c in plan.frames:
            with Image.open(self.base_dir / str(c.ref)) as image:
                frames.append((c.t_s, image.convert("RGB").resize((plan.width, plan.height), Image.Resampling.BICUBIC)))
        return frames

    def ask(self, prompt: Prompt) -> Answer | None:
        """Generate and parse; one retry on an unreadable answer; None when both fail (recorded)."""
        for attempt in range(2):
            completion = self.backend.generate(prompt, self.u.max_new_tokens)
            self.prompts.append(self.backend.render(prompt))
            self.prompt_tokens += completion.prompt_tokens
            self.completion_tokens += completion.completion_tokens
            try:
                return parse_answer(completion.text)
            except OutputParseError as exc:
                snippet = " ".join(completion.text.split())[:80]
                self.errors.append(f"unreadable answer (attempt {attempt + 1}): {exc}: {snippet!r}")
                prompt = Prompt(prompt.system, prompt.text + "\n" + RETRY, prompt.frames, prompt.duplicate_frames)
        return None

    def run(self, progress: Progress) -> UnderstandingResult:
        windows = self.windows.windows()
        progress.start("understand", len(windows) + (1 if len(windows) > 1 else 0))
        chapters: list[dict[str, Any]] = []
        events: list[dict[str, Any]] = []
        captions: dict[int, str] = {}
        tags: dict[str, None] = {}
        window_results = []
        for n, window in enumerate(windows, start=1):
            frames = self._frames(window.plan)
            self.frames_sent += len(frames)
            answer = self.ask(Prompt(SYSTEM, window.text, frames, window.plan.duplicate_frames))
            progress.update(n)
            if answer is None:
                continue
            w_chapters = clamp_and_merge_chapters(answer.chapters, window.start_s, window.end_s)
            w_events = clamp_and_merge_events(answer.events, window.start_s, window.end_s)
            window_results.append(
                {"start_s": window.start_s, "end_s": window.end_s, "chapters": [c.model_dump() for c in w_chapters]}
            )
            chapters += [self._chapter(c.start_s, c.end_s, c.title, c.summary) for c in w_chapters]
            events += [self._event(e) for e in w_events]
            known = {s["index"] for s in window.scenes}
            for key, caption in answer.captions.items():
                index = _scene_index(key)
                if index in known and caption:
                    captions[index] = caption[:500]
            tags.update(dict.fromkeys(answer.tags))
            if answer.dropped:
                self.errors.append(f"{answer.dropped} unreadable items dropped from window {n}")
        if len(windows) > 1 and window_results:
            merged = self.ask(
                Prompt(
                    SYSTEM,
                    merge_text(
                        name=self.name, duration_s=self.duration, windows=window_results, language=self.u.language
                    ),
                )
            )
            progress.update(len(windows) + 1)
            if merged is not None and merged.chapters:
                chapters = [
                    self._chapter(c.start_s, c.end_s, c.title, c.summary)
                    for c in clamp_and_merge_chapters(merged.chapters, 0.0, self.duration)
                ]
                tags.update(dict.fromkeys(merged.tags))
        if not chapters:
            chapters = extractive_chapters(self.doc)
            self.errors.append("the model gave no usable chapters; extractive chapters stand in")
        events.sort(key=lambda e: (e["start_s"], e["end_s"]))
        return UnderstandingResult(chapters, events, captions, list(tags), self._vlm_info(windows), self.prompts)

    def _chapter(self, start: float, end: float, title: str, summary: str) -> dict[str, Any]:
        return {"start_s": _r(start), "end_s": _r(end), "start": fmt_time(start), "end": fmt_time(end),
                "title": title.strip() or f"Chapter at {fmt_time(start)[:8]}", "summary": summary.strip(),
                "source": "vlm"}  # fmt: skip

    def _event(self, e: Any) -> dict[str, Any]:
        return {"start_s": _r(e.start_s), "end_s": _r(e.end_s), "start": fmt_time(e.start_s),
                "end": fmt_time(e.end_s), "label": e.label.strip(), "description": e.description.strip(),
                "bbox": e.bbox, "source": "vlm"}  # fmt: skip

    def _vlm_info(self, windows: list[Window]) -> dict[str, Any]:
        return {
            "backend": self.backend.name, "model": self.backend.model, "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens, "frames": self.frames_sent, "windows": len(windows),
            "plan": [w.plan.to_json() | {"start_s": w.start_s, "end_s": w.end_s} for w in windows],
            "errors": self.errors,
        }  # fmt: skip


def _scene_index(key: str) -> int:
    digits = "".join(ch for ch in str(key) if ch.isdigit())
    return int(digits) - 1 if digits else -1


def understand(
    doc: dict[str, Any],
    base_dir: Path,
    choice: BackendChoice,
    settings: Settings,
    progress: Progress | None = None,
    warn: Callable[[str], None] | None = None,
    *,
    fallback: bool = True,
) -> UnderstandingResult:
    """Fill chapters/events/captions/tags for an analysis document whose keyframes live under `base_dir`.
    A model that fails falls back to extractive chapters (the failure reported in ``vlm``), except, with
    `fallback=False`, a model server that cannot be reached: that raises `VLMUnavailable`, worth a retry."""
    progress = progress or NullProgress()
    if choice.backend is None:
        info = {"backend": "none", "model": None, "prompt_tokens": 0, "completion_tokens": 0, "frames": 0,
                "reason": choice.reason}  # fmt: skip
        return UnderstandingResult(extractive_chapters(doc), [], {}, [], info)
    runner = Understanding(doc, base_dir, choice.backend, settings, warn)
    try:
        result = runner.run(progress)
    except VLMError as exc:
        if not fallback and isinstance(exc, VLMUnavailable):
            raise
        info = runner._vlm_info([]) | {"error": exc.message, "error_type": exc.type}
        return UnderstandingResult(
            extractive_chapters(doc), [], {}, [], info | {"reason": choice.reason}, runner.prompts
        )
    result.vlm["reason"] = choice.reason
    return result
