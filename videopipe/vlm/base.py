"""The one interface every understanding backend implements, and the prompt it consumes."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from PIL import Image

from videopipe.vlm.planner import VisionSpec, estimate_text_tokens


@dataclass(slots=True)
class Prompt:
    """A chat prompt: system text, then (optionally) keyframes as one video with exact times, then user text.

    Frames are already at the planned size. With ``duplicate_frames`` each is sent twice so that its temporal
    group carries its own time.
    """

    system: str
    text: str
    frames: list[tuple[float, Image.Image]] = field(default_factory=list)
    duplicate_frames: bool = True
    # A JSON schema the answer must follow. Servers that can enforce it (vLLM: `response_format`) are sent it;
    # in-process generation is not constrained, so answers are always checked after parsing too.
    json_schema: dict[str, Any] | None = None

    def frame_indices_ms(self) -> list[int]:
        """The millisecond clock the processor gets (`fps=1000`): one index per frame actually sent."""
        per = 2 if self.duplicate_frames else 1
        return [round(t * 1000) for t, _ in self.frames for _ in range(per)]


@dataclass(slots=True)
class Completion:
    text: str
    prompt_tokens: int
    completion_tokens: int


class TokenCounter(Protocol):
    """What the planner needs from a backend: its vision settings and a way to count text tokens."""

    name: str
    spec: VisionSpec
    exact_token_counts: bool

    def count_text(self, text: str) -> int:
        """Tokens of a bare text fragment (e.g. a ``<12.5 seconds>`` marker)."""

    def count_prompt_text(self, prompt: Prompt) -> int:
        """Tokens of the whole prompt with the video as its single placeholder (no frames expanded)."""


# Chat-template tokens around two messages (role headers, <|im_start|>/<|im_end|>, assistant header).
_TEMPLATE_OVERHEAD_TOKENS = 24


def estimate_prompt_tokens(prompt: Prompt) -> int:
    """A high estimate of `TokenCounter.count_prompt_text` for when the model's tokenizer is not at hand."""
    placeholder = 3 if prompt.frames else 0
    return (
        estimate_text_tokens(prompt.system)
        + estimate_text_tokens(prompt.text)
        + placeholder
        + _TEMPLATE_OVERHEAD_TOKENS
    )


class EstimatingCounter:
    """Counts for planning without a model (``videopipe plan`` with no checkpoint or server)."""

    name = "estimate"
    exact_token_counts = False

    def __init__(self) -> None:
        self.spec = VisionSpec()

    def count_text(self, text: str) -> int:
        return estimate_text_tokens(text)

    def count_prompt_text(self, prompt: Prompt) -> int:
        return estimate_prompt_tokens(prompt)


class VLMBackend(TokenCounter, Protocol):
    model: str

    def generate(self, prompt: Prompt, max_new_tokens: int) -> Completion: ...

    def render(self, prompt: Prompt) -> str:
        """The exact prompt sent, with vision tokens or image payloads collapsed, for --dump-prompt."""
