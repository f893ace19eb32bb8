"""A local HTTP server that speaks vLLM's OpenAI-compatible chat API: it records each request (so tests check
the exact wire format) and answers the way vLLM does, or as scripted. The one network boundary we mock."""

from __future__ import annotations

import json
import re
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

SCENE_LINE = re.compile(r"^S(\d+) (\d+:\d+\.\d+)-(\d+:\d+\.\d+)$", re.MULTILINE)


def completion(content: str, prompt_tokens: int = 1234, completion_tokens: int = 56) -> dict[str, Any]:
    return {
        "id": "chatcmpl-7f3e", "object": "chat.completion", "created": 1763700000, "model": "Qwen/Qwen3-VL-8B-Instruct",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": content, "reasoning_content": None,
                                             "tool_calls": []}, "logprobs": None, "finish_reason": "stop",
                     "stop_reason": None}],
        "usage": {"prompt_tokens": prompt_tokens, "total_tokens": prompt_tokens + completion_tokens,
                  "completion_tokens": completion_tokens, "prompt_tokens_details": None},
        "prompt_logprobs": None,
    }  # fmt: skip


def answer_like_a_model(body: dict[str, Any]) -> str:
    """A plausible Qwen3-VL answer to whatever prompt arrives: one chapter and caption per scene listed."""
    user = body["messages"][1]["content"]
    text = user if isinstance(user, str) else user[-1]["text"]
    if "described in consecutive parts" in text:  # the merge pass
        end = re.search(r"\((\d+:\d+\.\d+) long\)", text)
        assert end is not None
        return json.dumps(
            {
                "chapters": [
                    {"start": "00:00.00", "end": end.group(1), "title": "Whole video", "summary": "Everything, merged."}
                ],
                "tags": ["merged"],
            }
        )
    scenes = SCENE_LINE.findall(text)
    return "```json\n" + json.dumps({
        "chapters": [{"start": a, "end": b, "title": f"Shot {n}", "summary": f"Scene {n} pans slowly."}
                     for n, a, b in scenes],
        "events": [{"start": scenes[0][1], "end": scenes[0][2], "label": "object crosses",
                    "description": "A block moves", "bbox_2d": [100, 200, 300, 400]}],
        "captions": {f"S{n}": f"A tinted texture, shot {n}." for n, _, _ in scenes},
        "tags": ["synthetic", "camera pan"],
    }) + "\n```"  # fmt: skip


class FakeVLLM(ThreadingHTTPServer):
    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.requests: list[dict[str, Any]] = []
        self.paths: list[str] = []
        self.script: list[tuple[int, Any]] = []  # responses to give first; then answer like a model
        self.url = f"http://127.0.0.1:{self.server_address[1]}/v1"


class _Handler(BaseHTTPRequestHandler):
    server: FakeVLLM

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.server.requests.append(body)
        self.server.paths.append(self.path)
        assert self.headers["Content-Type"] == "application/json"
        status, payload = self.server.script.pop(0) if self.server.script else (200, None)
        if payload is None:
            payload = completion(answer_like_a_model(body))
        raw = payload.encode() if isinstance(payload, str) else json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)

    def log_message(self, *args: Any) -> None:
        pass
