"""Any OpenAI-compatible chat server: vLLM (the production path), SGLang, DashScope...

Two wire formats, chosen by ``understanding.openai_mode``:

``video`` (vLLM >= 0.20, started with ``--trust-request-mm-kwargs`` from 0.31): the keyframes travel as one
``video_url`` whose data URL lists the JPEG frames (``data:video/jpeg;base64,<f1>,<f2>,...``), and the request's
``media_io_kwargs.video`` gives the millisecond clock: ``fps=1000``, ``frames_indices`` in ms,
``total_num_frames``, ``num_frames=-1`` (else vLLM keeps only 32 frames, silently) and
``do_sample_frames=false``. The model then sees the same ``<t seconds>`` markers as in-process.

``images`` (any server): ``<t seconds>`` text parts interleaved with ``image_url`` parts. Works everywhere, at
a higher token cost and with a weaker sense of time.

Transient failures (connection refused, timeouts, 429/5xx) are retried with exponential backoff; refusals
(context too long, too many images, unknown model) become `VLMRequestRejected` with the server's reason and
what to change.
"""

from __future__ import annotations

import base64
import io
import json
import logging
import re
import time
from typing import Any

import httpx

from videopipe.config import UnderstandingSettings
from videopipe.errors import VLMRequestRejected, VLMUnavailable
from videopipe.vlm.base import Completion, Prompt, estimate_prompt_tokens
from videopipe.vlm.planner import VisionSpec, estimate_text_tokens, timestamp_text

log = logging.getLogger(__name__)

_RETRY_STATUS = {408, 429, 500, 502, 503, 504}


def jpeg_b64(image: Any, quality: int = 90) -> str:
    buf = io.BytesIO()
    image.convert("RGB").save(buf, "JPEG", quality=quality)
    return base64.b64encode(buf.getvalue()).decode("ascii")


class OpenAIBackend:
    name = "openai"
    exact_token_counts = False

    def __init__(
        self,
        base_url: str,
        model: str,
        settings: UnderstandingSettings,
        api_key: str | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.settings = settings
        self.spec = VisionSpec()
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._client = httpx.Client(
            base_url=self.base_url,
            headers=headers,
            transport=transport,
            timeout=httpx.Timeout(settings.timeout_s, connect=10.0),
        )
        self._last_body: dict[str, Any] | None = None

    # -- counting (estimates: the server's tokenizer is not here) ----------------------------------------
    def count_text(self, text: str) -> int:
        return estimate_text_tokens(text)

    def count_prompt_text(self, prompt: Prompt) -> int:
        return estimate_prompt_tokens(prompt)

    # -- wire format -----------------------------------------------------------------------------------
    def request_body(self, prompt: Prompt, max_new_tokens: int) -> dict[str, Any]:
        body: dict[str, Any] = {"model": self.model, "max_tokens": max_new_tokens, "temperature": 0.0}
        system = {"role": "system", "content": prompt.system}
        if prompt.json_schema is not None:  # structured output (vLLM enforces it with guided decoding)
            schema = {"name": "answer", "schema": prompt.json_schema, "strict": True}
            body["response_format"] = {"type": "json_schema", "json_schema": schema}
        if not prompt.frames:
            body["messages"] = [system, {"role": "user", "content": prompt.text}]
            return body
        content: list[dict[str, Any]] = []
        if self.settings.openai_mode == "video":
            per = 2 if prompt.duplicate_frames else 1
            frames = [jpeg_b64(image) for _, image in prompt.frames for _ in range(per)]
            indices = prompt.frame_indices_ms()
            content.append({"type": "video_url", "video_url": {"url": "data:video/jpeg;base64," + ",".join(frames)}})
            body["media_io_kwargs"] = {"video": {
                "num_frames": -1, "fps": 1000.0, "frames_indices": indices, "total_num_frames": max(indices) + 1,
                "duration": (max(indices) + 1) / 1000.0, "do_sample_frames": False,
            }}  # fmt: skip
        else:
            for t_s, image in prompt.frames:
                content.append({"type": "text", "text": timestamp_text(t_s)})
                content.append({"type": "image_url", "image_url": {"url": "data:image/jpeg;base64," + jpeg_b64(image)}})
        content.append({"type": "text", "text": prompt.text})
        body["messages"] = [system, {"role": "user", "content": content}]
        return body

    def render(self, prompt: Prompt) -> str:
        body = self._last_body or self.request_body(prompt, self.settings.max_new_tokens)
        text = json.dumps(body, indent=2, ensure_ascii=False)
        text = re.sub(
            r"data:video/jpeg;base64,[A-Za-z0-9+/=,]+",
            lambda m: f"data:video/jpeg;base64,<{m.group(0).count(',')} JPEG frames>",
            text,
        )
        return re.sub(r"data:image/jpeg;base64,[A-Za-z0-9+/=]+", "data:image/jpeg;base64,<JPEG>", text)

    # -- transport -------------------------------------------------------------------------------------
    def generate(self, prompt: Prompt, max_new_tokens: int) -> Completion:
        body = self.request_body(prompt, max_new_tokens)
        self._last_body = body
        data = self._post("/chat/completions", body)
        try:
            text = data["choices"][0]["message"]["content"] or ""
            usage = data.get("usage") or {}
        except (KeyError, IndexError, TypeError):
            raise VLMUnavailable(
                f"{self.base_url} answered with something that is not a chat completion: {json.dumps(data)[:200]}"
            ) from None
        return Completion(
            text=text,
            prompt_tokens=int(usage.get("prompt_tokens", 0)),
            completion_tokens=int(usage.get("completion_tokens", 0)),
        )

    def _post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        s = self.settings
        last = ""
        for attempt in range(s.max_retries + 1):
            if attempt:
                delay = s.retry_backoff_s * 2 ** (attempt - 1)
                log.warning("VLM request failed (%s); retry %d of %d in %.1f s", last, attempt, s.max_retries, delay)
                time.sleep(delay)
            try:
                response = self._client.post(path, json=body)
            except httpx.TimeoutException:
                last = f"no answer within {s.timeout_s:g} s"
                continue
            except httpx.TransportError as exc:
                last = f"cannot connect ({type(exc).__name__})"
                continue
            if response.status_code in _RETRY_STATUS:
                last = f"HTTP {response.status_code}: {_server_message(response)}"
                retry_after = response.headers.get("retry-after", "")
                if retry_after.isdigit():
                    time.sleep(min(30, int(retry_after)))
                continue
            if response.status_code >= 400:
                raise _rejection(response, self.base_url, self.model)
            try:
                parsed: dict[str, Any] = response.json()
            except ValueError:
                raise VLMUnavailable(
                    f"{self.base_url} answered HTTP {response.status_code} with non-JSON "
                    f"content: {response.text[:200]!r}"
                ) from None
            return parsed
        raise VLMUnavailable(
            f"the VLM server at {self.base_url} is unavailable after {s.max_retries + 1} attempts "
            f"({last}); start it (vllm serve MODEL) or check VIDEOPIPE_VLM_URL, or use --vlm none"
        )


def _server_message(response: httpx.Response) -> str:
    try:
        data = response.json()
    except ValueError:
        return response.text[:300] or response.reason_phrase
    if isinstance(data, dict):
        err = data.get("error")
        if isinstance(err, dict) and err.get("message"):
            return str(err["message"])
        if isinstance(err, str):
            return err
        if data.get("message"):
            return str(data["message"])
    return json.dumps(data)[:300]


def _rejection(response: httpx.Response, base_url: str, model: str) -> VLMRequestRejected:
    message = _server_message(response)
    low = message.lower()
    status = response.status_code
    if status in (401, 403):
        hint = "the server wants an API key: set VIDEOPIPE_VLM_API_KEY"
    elif status == 404 or ("model" in low and ("does not exist" in low or "not found" in low)):
        hint = f"the server does not serve '{model}': set VIDEOPIPE_VLM_MODEL to the name it serves"
    elif "context length" in low or "too long" in low or "max_model_len" in low or "maximum model length" in low:
        hint = (
            "the prompt is longer than the server's context: start vLLM with a larger --max-model-len or lower "
            "VIDEOPIPE_UNDERSTANDING__CONTEXT_TOKENS to match it"
        )
    elif "at most" in low or ("limit" in low and ("image" in low or "video" in low)):
        hint = 'the server limits media per prompt: start vLLM with --limit-mm-per-prompt \'{"video":1,"image":...}\''
    elif "media_io_kwargs" in low or "video_url" in low or "mm_kwargs" in low:
        hint = (
            "the server does not take per-request video settings: start vLLM >= 0.20 with "
            "--trust-request-mm-kwargs, or set VIDEOPIPE_UNDERSTANDING__OPENAI_MODE=images"
        )
    else:
        hint = "see the server's message"
    return VLMRequestRejected(f"{base_url} refused the request (HTTP {status}: {message}); {hint}")
