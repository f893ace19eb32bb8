"""The token planner: which keyframes go to Qwen3-VL, at what size, so the prompt fits the context.

Qwen3-VL's cost, exactly (see shared notes/qwen3-vl.md): frames are resized to multiples of 32 px; each
temporal group of 2 frames costs one token per 32x32 pixels, plus ``<|vision_start|>`` and ``<|vision_end|>``,
plus the tokens of its ``<X.X seconds>`` text. With ``duplicate_frames`` every keyframe is sent twice so its
group's time is its own exact time; otherwise neighbouring keyframes share a group (half the tokens, the
group shows their mean time).

The planner sends frames at exactly the size it plans (and tells the processor a pixel budget that keeps that
size), so its count is not an estimate: with a backend that can count text tokens exactly (the transformers
backend), ``Plan.prompt_tokens`` equals ``len(input_ids)``. Choice, in order:

1. every keyframe, at the largest frame size from ``max_frame_tokens`` down to ``min_frame_tokens`` that fits;
2. at the smallest size, the best keyframe of every scene plus as many others as fit, best score first;
3. otherwise the plan does not fit (``fits=False``): the caller splits the video into windows at scene
   boundaries and plans each.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from videopipe.config import UnderstandingSettings

TextCounter = Callable[[str], int]


@dataclass(frozen=True, slots=True)
class VisionSpec:
    """The processor settings the cost depends on (Qwen3-VL defaults)."""

    patch_size: int = 16
    merge_size: int = 2
    temporal_patch_size: int = 2
    # How many chat-template tokens the processor replaces with the expanded video: transformers >= 5.10
    # replaces only <|video_pad|> (1), earlier versions the whole <|vision_start|><|video_pad|><|vision_end|> (3).
    replaced_placeholder_tokens: int = 1

    @property
    def factor(self) -> int:
        return self.patch_size * self.merge_size


@dataclass(frozen=True, slots=True)
class FrameCandidate:
    t_s: float
    scene_index: int
    score: float = 0.0
    ref: Any = field(default=None, compare=False)  # what the caller needs to load the image (a path, ...)


@dataclass(slots=True)
class Plan:
    width: int
    height: int
    frames: list[FrameCandidate]
    duplicate_frames: bool
    group_times_s: list[float]
    tokens_per_group: int
    vision_tokens: int  # the expanded video: pads, start/end tokens and timestamp texts
    text_tokens: int  # everything else in the prompt (chat template, instructions, transcript lines)
    prompt_tokens: int
    budget_tokens: int  # context minus room for the answer
    fits: bool
    candidates: int
    scenes: int
    scenes_covered: int

    @property
    def sent_frames(self) -> int:
        """Frames actually sent (keyframes, each twice when duplicated)."""
        return 2 * len(self.frames) if self.duplicate_frames else len(self.frames)

    def to_json(self) -> dict[str, Any]:
        return {
            "fits": self.fits,
            "frame_size": [self.width, self.height],
            "keyframes": len(self.frames),
            "keyframes_available": self.candidates,
            "frames_sent": self.sent_frames,
            "duplicate_frames": self.duplicate_frames,
            "groups": len(self.group_times_s),
            "tokens_per_group": self.tokens_per_group,
            "vision_tokens": self.vision_tokens,
            "text_tokens": self.text_tokens,
            "prompt_tokens": self.prompt_tokens,
            "budget_tokens": self.budget_tokens,
            "scenes": self.scenes,
            "scenes_covered": self.scenes_covered,
            "frame_times_s": [round(f.t_s, 3) for f in self.frames],
        }


def timestamp_text(t_s: float) -> str:
    """Exactly what the Qwen3-VL processor writes before a temporal group."""
    return f"<{t_s:.1f} seconds>"


def frame_size_for_tokens(tokens: int, width: int, height: int, factor: int = 32) -> tuple[int, int]:
    """The (w, h), multiples of `factor`, with about `tokens` tokens per frame and the source's aspect ratio,
    never larger than the source (rounded down to the grid)."""
    aspect = width / height
    h = max(1, round(math.sqrt(tokens / aspect))) * factor
    w = max(1, round(math.sqrt(tokens * aspect))) * factor
    max_w = max(factor, width // factor * factor)
    max_h = max(factor, height // factor * factor)
    if w > max_w or h > max_h:
        scale = min(max_w / w, max_h / h)
        w = max(factor, int(w * scale) // factor * factor)
        h = max(factor, int(h * scale) // factor * factor)
    return w, h


def size_ladder(width: int, height: int, settings: UnderstandingSettings, factor: int = 32) -> list[tuple[int, int]]:
    sizes: list[tuple[int, int]] = []
    tokens = float(settings.max_frame_tokens)
    while True:
        size = frame_size_for_tokens(max(1, round(tokens)), width, height, factor)
        if size not in sizes:
            sizes.append(size)
        if tokens <= settings.min_frame_tokens:
            break
        tokens = max(settings.min_frame_tokens, tokens * 0.8)
    return sizes


def group_times(times: Sequence[float], duplicate: bool) -> list[float]:
    """The time the processor will print for each temporal group (pairs averaged, odd tail repeated)."""
    if duplicate:
        return list(times)
    out = []
    for i in range(0, len(times), 2):
        pair = times[i : i + 2]
        out.append((pair[0] + pair[-1]) / 2)
    return out


class TokenPlanner:
    """Plans prompts for one backend (its text counter and vision settings)."""

    def __init__(self, count_text: TextCounter, spec: VisionSpec | None = None) -> None:
        self.spec = spec or VisionSpec()
        self._count = functools.lru_cache(maxsize=65536)(count_text)

    def vision_tokens(self, times: Sequence[float], width: int, height: int, duplicate: bool) -> int:
        f = self.spec.factor
        per_group = (width // f) * (height // f) + 2
        return sum(per_group + self._count(timestamp_text(t)) for t in group_times(times, duplicate))

    def plan(
        self,
        candidates: Sequence[FrameCandidate],
        source_size: tuple[int, int],
        text_tokens: int,
        settings: UnderstandingSettings,
    ) -> Plan:
        """`text_tokens`: the prompt's tokens outside the video, counted with the video placeholder in place."""
        budget = settings.context_tokens - settings.max_new_tokens
        duplicate = settings.duplicate_frames
        ordered = sorted(candidates, key=lambda c: c.t_s)
        ladder = size_ladder(*source_size, settings, self.spec.factor)

        def cost(frames: Sequence[FrameCandidate], size: tuple[int, int]) -> int:
            vision = self.vision_tokens([c.t_s for c in frames], *size, duplicate)
            return text_tokens - self.spec.replaced_placeholder_tokens + vision

        chosen: list[FrameCandidate] = ordered
        size = ladder[0]
        for size in ladder:
            if cost(ordered, size) <= budget:
                break
        else:
            chosen = self._fit_at(ordered, size, budget, cost)
        scenes = len({c.scene_index for c in candidates})
        fits = cost(chosen, size) <= budget
        return self._make_plan(chosen, size, duplicate, text_tokens, budget, len(candidates), scenes, fits)

    def _fit_at(
        self,
        ordered: list[FrameCandidate],
        size: tuple[int, int],
        budget: int,
        cost: Callable[[Sequence[FrameCandidate], tuple[int, int]], int],
    ) -> list[FrameCandidate]:
        best: dict[int, FrameCandidate] = {}
        for c in ordered:
            if c.scene_index not in best or c.score > best[c.scene_index].score:
                best[c.scene_index] = c
        required = set(map(id, best.values()))
        chosen = [c for c in ordered if id(c) in required]
        if cost(chosen, size) > budget:
            return chosen
        extras = sorted((c for c in ordered if id(c) not in required), key=lambda c: -c.score)
        f = self.spec.factor
        per_frame = (size[0] // f) * (size[1] // f) + 2
        used = cost(chosen, size)
        keep: set[int] = set(required)
        for c in extras:  # each extra adds one group when duplicating; pairing is re-costed at the end
            extra = per_frame + self._count(timestamp_text(c.t_s))
            if used + extra > budget:
                continue
            used += extra
            keep.add(id(c))
        chosen = [c for c in ordered if id(c) in keep]
        while cost(chosen, size) > budget and len(chosen) > len(required):  # pairing can shift a few tokens
            drop = min((c for c in chosen if id(c) not in required), key=lambda c: c.score)
            chosen.remove(drop)
        return chosen

    def _make_plan(
        self,
        frames: list[FrameCandidate],
        size: tuple[int, int],
        duplicate: bool,
        text_tokens: int,
        budget: int,
        candidates: int,
        scenes: int,
        fits: bool,
    ) -> Plan:
        times = [c.t_s for c in frames]
        vision = self.vision_tokens(times, *size, duplicate)
        f = self.spec.factor
        return Plan(
            width=size[0], height=size[1], frames=frames, duplicate_frames=duplicate,
            group_times_s=group_times(times, duplicate), tokens_per_group=(size[0] // f) * (size[1] // f),
            vision_tokens=vision, text_tokens=text_tokens,
            prompt_tokens=text_tokens - self.spec.replaced_placeholder_tokens + vision,
            budget_tokens=budget, fits=fits, candidates=candidates,
            scenes=scenes,
            scenes_covered=len({c.scene_index for c in frames}),
        )  # fmt: skip


def estimate_text_tokens(text: str) -> int:
    """A deliberately high estimate (about 3 characters a token) for servers whose tokenizer we lack."""
    return math.ceil(len(text.encode("utf-8")) / 3)
