"""Qwen3-VL: token planning, prompts, backends and answer parsing.

Backends (each imported only when chosen): ``transformers`` (in-process, `videopipe[vlm]`), ``openai`` (any
OpenAI-compatible server such as vLLM; needs only httpx), and ``none``. `select_backend` resolves ``auto``:
a configured URL wins, then a locally available checkpoint, then no model, and says why.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass

from videopipe.config import Settings
from videopipe.errors import ConfigError
from videopipe.vlm.base import Completion, Prompt, VLMBackend

__all__ = ["BackendChoice", "Completion", "Prompt", "VLMBackend", "select_backend"]


@dataclass(slots=True)
class BackendChoice:
    name: str  # "transformers", "openai" or "none"
    reason: str
    backend: VLMBackend | None


def _transformers_installed() -> bool:
    return all(importlib.util.find_spec(m) is not None for m in ("torch", "transformers"))


def select_backend(settings: Settings, requested: str | None = None) -> BackendChoice:
    wanted = requested or settings.vlm
    if wanted == "none":
        return BackendChoice("none", "no model requested (--vlm none)", None)
    if wanted == "openai" or (wanted == "auto" and settings.vlm_url):
        if not settings.vlm_url:
            raise ConfigError(
                "--vlm openai needs a server: pass --vlm-url http://HOST:8000/v1 or set VIDEOPIPE_VLM_URL"
            )
        from videopipe.vlm.openai_backend import OpenAIBackend

        reason = "requested" if wanted == "openai" else "a server URL is configured"
        return BackendChoice(
            "openai",
            f"{reason}: {settings.vlm_url}",
            OpenAIBackend(settings.vlm_url, settings.vlm_model, settings.understanding, api_key=settings.vlm_api_key),
        )
    if wanted in ("transformers", "auto"):
        if not _transformers_installed():
            if wanted == "transformers":
                raise ConfigError("--vlm transformers needs torch and transformers: pip install 'videopipe[vlm]'")
            return BackendChoice("none", "no server URL configured and torch/transformers are not installed", None)
        from videopipe.vlm.transformers_backend import TransformersBackend, checkpoint_available

        ok, why = checkpoint_available(settings.vlm_model)
        if not ok:
            if wanted == "transformers":
                raise ConfigError(f"--vlm transformers: {why}; pass --model PATH_OR_HUB_ID or set VIDEOPIPE_VLM_MODEL")
            return BackendChoice("none", f"no server URL configured and {why}", None)
        return BackendChoice("transformers", why, TransformersBackend(settings.vlm_model, settings.understanding))
    raise ConfigError(f"unknown VLM backend {wanted!r}; use auto, none, transformers or openai")
