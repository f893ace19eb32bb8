"""Qwen3-VL in-process with Hugging Face transformers (dense and MoE checkpoints, local path or hub id).

The model loads once, lazily, behind a lock, and stays cached for the process. Keyframes go in as one video
with a millisecond clock (``fps=1000``, ``frames_indices`` = milliseconds, ``do_sample_frames=False``), so the
processor prints each group's exact time; the frames arrive already at the planned size and the processor is
given a pixel budget that keeps that size, so the planner's token count is exact.
"""

from __future__ import annotations

import logging
import os
import re
import threading
from pathlib import Path
from typing import Any

import numpy as np

from videopipe.config import UnderstandingSettings
from videopipe.errors import ConfigError, VLMUnavailable
from videopipe.vlm.base import Completion, Prompt
from videopipe.vlm.planner import VisionSpec

log = logging.getLogger(__name__)

NATIVE_CONTEXT = 262_144
_CACHE: dict[tuple[Any, ...], Any] = {}
_CACHE_LOCK = threading.Lock()


def checkpoint_available(model: str) -> tuple[bool, str]:
    """Whether `model` can be loaded without a network: a local directory, or a hub id already cached."""
    path = Path(model).expanduser()
    if path.is_dir():
        if (path / "config.json").exists():
            return True, f"local checkpoint {path}"
        return False, f"{path} has no config.json"
    if model.startswith(("/", ".", "~")) or model.count("/") > 1:
        return False, f"no local checkpoint at {path}"
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return False, "huggingface_hub is not installed"
    try:
        cached = try_to_load_from_cache(model, "config.json")
    except ValueError:  # not a valid hub id either
        return False, f"{model} is neither a checkpoint directory nor a hub id"
    if isinstance(cached, str):
        return True, f"{model} found in the Hugging Face cache"
    return False, f"no local checkpoint for {model} (not a directory, not in the Hugging Face cache)"


def rope_for_context(text_config: dict[str, Any], context_tokens: int) -> dict[str, Any] | None:
    """YaRN settings for contexts past the native 262,144 tokens (factor 2-3: MRoPE positions grow slowly)."""
    if context_tokens <= NATIVE_CONTEXT:
        return None
    current = dict(text_config.get("rope_parameters") or text_config.get("rope_scaling") or {})
    factor = 2.0 if context_tokens <= 2 * NATIVE_CONTEXT else 3.0
    current.update(
        rope_type="yarn", factor=factor, original_max_position_embeddings=NATIVE_CONTEXT,
        mrope_section=current.get("mrope_section", [24, 20, 20]), mrope_interleaved=True,
    )  # fmt: skip
    return current


class TransformersBackend:
    name = "transformers"
    exact_token_counts = True

    def __init__(self, model: str, settings: UnderstandingSettings) -> None:
        self.model = model
        self.settings = settings
        self._lock = threading.Lock()
        self.last_prompt_text: str | None = None
        import transformers

        major, minor = (int(x) for x in re.findall(r"\d+", transformers.__version__)[:2])
        replaced = 1 if (major, minor) >= (5, 10) else 3
        self.spec = VisionSpec(replaced_placeholder_tokens=replaced)

    # -- loading ---------------------------------------------------------------------------------------
    def _processor(self) -> Any:
        """The processor alone (tokenizer and video processor): enough for planning, no weights loaded."""
        key = ("processor", self.model)
        with _CACHE_LOCK:
            if key not in _CACHE:
                self._check_checkpoint()
                from transformers import AutoProcessor

                _CACHE[key] = AutoProcessor.from_pretrained(self.model)
            return _CACHE[key]

    def _check_checkpoint(self) -> None:
        ok, why = checkpoint_available(self.model)
        if not ok:
            raise VLMUnavailable(
                f"cannot load Qwen3-VL: {why}; download it (huggingface-cli download MODEL) "
                "or point VIDEOPIPE_VLM_MODEL at a local checkpoint"
            )

    def _load(self) -> tuple[Any, Any]:
        processor = self._processor()
        s = self.settings
        key = ("model", self.model, s.device, s.dtype, s.context_tokens)
        with _CACHE_LOCK:
            if key in _CACHE:
                return processor, _CACHE[key]
            import torch
            from transformers import AutoConfig, AutoModelForImageTextToText

            torch.set_num_threads(s.threads or os.cpu_count() or 1)
            config = AutoConfig.from_pretrained(self.model)
            if getattr(config, "model_type", "") not in ("qwen3_vl", "qwen3_vl_moe"):
                raise ConfigError(
                    f"{self.model} is a '{config.model_type}' model; videopipe drives Qwen3-VL "
                    "(qwen3_vl or qwen3_vl_moe checkpoints)"
                )
            rope = rope_for_context(config.text_config.to_dict(), s.context_tokens)
            if rope is not None:
                key_name = "rope_parameters" if hasattr(config.text_config, "rope_parameters") else "rope_scaling"
                setattr(config.text_config, key_name, rope)
                config.text_config.max_position_embeddings = s.context_tokens
            device = s.device if s.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")
            if s.dtype != "auto":
                dtype = getattr(torch, s.dtype)
            else:
                dtype = torch.bfloat16 if device.startswith("cuda") else torch.float32
            log.info("loading %s on %s (%s)", self.model, device, dtype)
            model = AutoModelForImageTextToText.from_pretrained(self.model, config=config, dtype=dtype).to(device)
            model.eval()
            _CACHE[key] = model
            return processor, model

    # -- counting --------------------------------------------------------------------------------------
    def _messages(self, prompt: Prompt) -> list[dict[str, Any]]:
        user: list[dict[str, Any]] = [{"type": "video"}] if prompt.frames else []
        user.append({"type": "text", "text": prompt.text})
        return [
            {"role": "system", "content": [{"type": "text", "text": prompt.system}]},
            {"role": "user", "content": user},
        ]

    def _template(self, prompt: Prompt) -> str:
        processor = self._processor()
        text: str = processor.apply_chat_template(self._messages(prompt), add_generation_prompt=True, tokenize=False)
        return text

    def count_text(self, text: str) -> int:
        processor = self._processor()
        return len(processor.tokenizer(text, add_special_tokens=False)["input_ids"])

    def count_prompt_text(self, prompt: Prompt) -> int:
        processor = self._processor()
        return len(processor.tokenizer(self._template(prompt))["input_ids"])

    # -- running ---------------------------------------------------------------------------------------
    def inputs(self, prompt: Prompt) -> Any:
        """The processor's output for `prompt` (exposed for tests: ``len(inputs.input_ids[0])``)."""
        processor, model = self._load()
        text = self._template(prompt)
        if not prompt.frames:
            return processor(text=[text], return_tensors="pt").to(model.device)
        per = 2 if prompt.duplicate_frames else 1
        arrays = [np.asarray(image.convert("RGB")) for _, image in prompt.frames for _ in range(per)]
        video = np.stack(arrays)
        indices = prompt.frame_indices_ms()
        pixels = video.shape[0] * video.shape[1] * video.shape[2]
        kwargs: dict[str, Any] = {
            "video_metadata": [{"fps": 1000.0, "frames_indices": indices, "total_num_frames": max(indices) + 1}],
            "do_sample_frames": False,
            # A budget that keeps the planned frame size exactly (smart_resize leaves multiples of 32 alone).
            "size": {"shortest_edge": min(pixels, 2 * 32 * 32), "longest_edge": pixels},
        }
        if hasattr(processor.video_processor, "cap_pixels_per_frame"):
            kwargs["cap_pixels_per_frame"] = False
        return processor(text=[text], videos=[video], return_tensors="pt", **kwargs).to(model.device)

    def generate(self, prompt: Prompt, max_new_tokens: int) -> Completion:
        import torch

        processor, model = self._load()
        with self._lock:
            inputs = self.inputs(prompt)
            try:
                with torch.inference_mode():
                    out = model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False)
            except torch.OutOfMemoryError as exc:
                raise VLMUnavailable(
                    f"out of memory running {self.model} ({exc}); lower "
                    "VIDEOPIPE_UNDERSTANDING__CONTEXT_TOKENS or use a smaller model"
                ) from None
        prompt_ids = inputs["input_ids"][0]
        new_ids = out[0, prompt_ids.shape[0] :]
        self.last_prompt_text = collapse_vision_tokens(processor.tokenizer.decode(prompt_ids))
        text = processor.tokenizer.decode(new_ids, skip_special_tokens=True)
        return Completion(text=text, prompt_tokens=int(prompt_ids.shape[0]), completion_tokens=int(new_ids.shape[0]))

    def render(self, prompt: Prompt) -> str:
        if self.last_prompt_text is not None:
            return self.last_prompt_text
        return collapse_vision_tokens(self._processor().tokenizer.decode(self.inputs(prompt)["input_ids"][0]))


def collapse_vision_tokens(text: str) -> str:
    """``<|video_pad|><|video_pad|>...`` -> ``<|video_pad|>×112`` (and the same for image pads)."""
    return re.sub(
        r"(<\|(?:video|image)_pad\|>)(?:\1)+", lambda m: f"{m.group(1)}×{len(m.group(0)) // len(m.group(1))}", text
    )
