"""The OpenAI-compatible backend against a local HTTP server that checks vLLM's wire format and answers
the way vLLM does (completions, usage, and its error bodies)."""

from __future__ import annotations

import base64
import io
import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from tests.support.cli import run_cli
from tests.support.fake_vllm import FakeVLLM, completion
from videopipe.analysis import AnalyzeOptions, analyze
from videopipe.config import Settings, UnderstandingSettings
from videopipe.errors import VLMRequestRejected, VLMUnavailable
from videopipe.testing.media import SampleVideo
from videopipe.understanding import WindowPlanner
from videopipe.vlm.base import Prompt
from videopipe.vlm.openai_backend import OpenAIBackend
from videopipe.vlm.parsing import fmt_mmss
from videopipe.vlm.prompts import SYSTEM

CONTEXT_ERROR = (
    "This model's maximum context length is 32768 tokens. However, you requested 40000 tokens "
    "(38000 in the messages, 2000 in the completion). Please reduce the length of the messages or "
    "completion."
)


@pytest.fixture
def server() -> Iterator[FakeVLLM]:
    srv = FakeVLLM()
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()


def _settings(server_url: str, **understanding: Any) -> Settings:
    opts = {"max_retries": 2, "retry_backoff_s": 0.0, "timeout_s": 20.0, **understanding}
    return Settings(
        vlm_url=server_url, vlm_model="Qwen/Qwen3-VL-8B-Instruct", understanding=UnderstandingSettings(**opts)
    )


def vlm_only() -> AnalyzeOptions:
    """Only the understanding stage besides the scan: speech, OCR and motion are tested elsewhere."""
    return AnalyzeOptions(vlm="openai", asr=False, ocr=False, motion=False)


def _jpeg_size(b64: str) -> tuple[int, int]:
    with Image.open(io.BytesIO(base64.b64decode(b64))) as im:
        assert im.format == "JPEG"
        return im.size


def test_video_mode_sends_exact_frame_times_and_results_land(
    shots_video: SampleVideo, server: FakeVLLM, tmp_path: Path
) -> None:
    settings = _settings(server.url)
    doc = analyze(shots_video.path, tmp_path / "o", settings, vlm_only())
    [body] = server.requests
    assert server.paths == ["/v1/chat/completions"]
    assert body["model"] == "Qwen/Qwen3-VL-8B-Instruct" and body["temperature"] == 0.0
    assert body["max_tokens"] == settings.understanding.max_new_tokens
    system, user = body["messages"]
    assert system == {"role": "system", "content": SYSTEM}
    assert user["role"] == "user" and [p["type"] for p in user["content"]] == ["video_url", "text"]
    url = user["content"][0]["video_url"]["url"]
    assert url.startswith("data:video/jpeg;base64,")
    frames = url.removeprefix("data:video/jpeg;base64,").split(",")
    times_ms = [round(k["t_s"] * 1000) for k in doc["keyframes"]]
    assert len(frames) == 2 * len(times_ms)  # each keyframe twice: its own temporal group, its own time
    plan = doc["vlm"]["plan"][0]
    assert {_jpeg_size(f) for f in frames} == {tuple(plan["frame_size"])}
    assert body["media_io_kwargs"] == {"video": {
        "num_frames": -1, "fps": 1000.0, "frames_indices": [ms for ms in times_ms for _ in range(2)],
        "total_num_frames": times_ms[-1] + 1, "duration": (times_ms[-1] + 1) / 1000, "do_sample_frames": False,
    }}  # fmt: skip
    assert "Scenes (id, start-end):" in user["content"][1]["text"]

    assert doc["vlm"]["backend"] == "openai" and doc["vlm"]["prompt_tokens"] == 1234
    assert doc["vlm"]["completion_tokens"] == 56 and doc["vlm"]["errors"] == []
    assert [c["title"] for c in doc["chapters"]] == [f"Shot {n}" for n in range(1, len(doc["scenes"]) + 1)]
    assert all(c["source"] == "vlm" for c in doc["chapters"])
    assert [c["start_s"] for c in doc["chapters"]] == pytest.approx([s["start_s"] for s in doc["scenes"]], abs=0.01)
    assert doc["events"][0]["bbox"] == [100.0, 200.0, 300.0, 400.0] and doc["events"][0]["label"] == "object crosses"
    assert all(s["caption"].startswith("A tinted texture") for s in doc["scenes"])
    assert doc["tags"] == ["synthetic", "camera pan"]


def test_images_mode_interleaves_time_markers(shots_video: SampleVideo, server: FakeVLLM, tmp_path: Path) -> None:
    doc = analyze(shots_video.path, tmp_path / "o", _settings(server.url, openai_mode="images"), vlm_only())
    [body] = server.requests
    parts = body["messages"][1]["content"]
    assert "media_io_kwargs" not in body
    markers = [p["text"] for p in parts[:-1:2]]
    assert markers == [f"<{k['t_s']:.1f} seconds>" for k in doc["keyframes"]]
    assert all(
        p["type"] == "image_url" and p["image_url"]["url"].startswith("data:image/jpeg;base64,") for p in parts[1:-1:2]
    )
    assert parts[-1]["type"] == "text"


def test_transient_errors_are_retried(server: FakeVLLM) -> None:
    server.script = [
        (503, {"error": {"message": "Service Unavailable", "type": "ServiceUnavailableError", "code": 503}}),
        (429, "rate limited"),
    ]
    backend = OpenAIBackend(server.url, "m", _settings(server.url).understanding)
    out = backend.generate(Prompt("sys", "S1 00:00.00-00:01.00"), 64)
    assert len(server.requests) == 3 and "Shot 1" in out.text


@pytest.mark.parametrize("error_body", [
    {"error": {"message": CONTEXT_ERROR, "type": "BadRequestError", "param": None, "code": 400}},
    {"object": "error", "message": CONTEXT_ERROR, "type": "BadRequestError", "param": None, "code": 400},
])  # fmt: skip
def test_context_too_long_is_refused_with_what_to_change(error_body: dict[str, Any], server: FakeVLLM) -> None:
    server.script = [(400, error_body)]
    backend = OpenAIBackend(server.url, "m", _settings(server.url).understanding)
    with pytest.raises(VLMRequestRejected, match=r"maximum context length is 32768.*--max-model-len"):
        backend.generate(Prompt("sys", "text"), 64)
    assert len(server.requests) == 1  # a refusal is not retried


def test_unknown_model_is_named(server: FakeVLLM) -> None:
    server.script = [
        (404, {"error": {"message": "The model `m` does not exist.", "type": "NotFoundError", "code": 404}})
    ]
    with pytest.raises(VLMRequestRejected, match="VIDEOPIPE_VLM_MODEL"):
        OpenAIBackend(server.url, "m", _settings(server.url).understanding).generate(Prompt("s", "t"), 8)


def test_server_down_is_unavailable_after_retries() -> None:
    settings = _settings("http://127.0.0.1:9/v1")  # discard port: nothing listens
    with pytest.raises(VLMUnavailable, match=r"127\.0\.0\.1:9/v1 is unavailable after 3 attempts"):
        OpenAIBackend(settings.vlm_url or "", "m", settings.understanding).generate(Prompt("s", "t"), 8)


def test_cli_refusal_exits_2_and_keeps_the_perception_results(
    shots_video: SampleVideo, server: FakeVLLM, tmp_path: Path
) -> None:
    server.script = [(400, {"error": {"message": CONTEXT_ERROR, "type": "BadRequestError", "code": 400}})]
    proc = run_cli(
        "analyze", str(shots_video.path), "--vlm", "openai", "--vlm-url", server.url, "--out", "o", cwd=tmp_path
    )
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "--max-model-len" in proc.stderr and "extractive chapters were written" in proc.stderr
    doc = json.loads((tmp_path / "o" / "analysis.json").read_text())
    assert doc["vlm"]["error_type"] == "vlm-request-rejected"
    assert doc["chapters"] and doc["chapters"][0]["source"] == "extractive"


def test_auto_with_a_dead_server_warns_and_falls_back(shots_video: SampleVideo, tmp_path: Path) -> None:
    proc = run_cli(
        "analyze",
        str(shots_video.path),
        "--out",
        "o",
        cwd=tmp_path,
        env={"VIDEOPIPE_VLM_URL": "http://127.0.0.1:9/v1", "VIDEOPIPE_UNDERSTANDING__MAX_RETRIES": "0"},
    )
    assert proc.returncode == 0, proc.stderr
    assert "unavailable after 1 attempts" in proc.stderr
    doc = json.loads((tmp_path / "o" / "analysis.json").read_text())
    assert doc["vlm"]["backend"] == "openai" and doc["chapters"][0]["source"] == "extractive"


def test_an_unreadable_answer_is_retried_once(shots_video: SampleVideo, server: FakeVLLM, tmp_path: Path) -> None:
    server.script = [(200, completion("Sure! The video shows some textures moving around."))]
    doc = analyze(shots_video.path, tmp_path / "o", _settings(server.url), vlm_only())
    assert len(server.requests) == 2
    assert "could not be read as JSON" in server.requests[1]["messages"][1]["content"][-1]["text"]
    assert doc["chapters"][0]["source"] == "vlm"
    assert any("attempt 1" in e for e in doc["vlm"]["errors"])


def test_long_video_windows_then_a_text_only_merge(shots_video: SampleVideo, server: FakeVLLM, tmp_path: Path) -> None:
    base = analyze(
        shots_video.path, tmp_path / "base", Settings(), AnalyzeOptions(vlm="none", asr=False, ocr=False, motion=False)
    )
    fixed = {"max_frame_tokens": 40, "min_frame_tokens": 40, "max_new_tokens": 256}
    probe_settings = _settings(server.url, **fixed)
    backend = OpenAIBackend(server.url, "m", probe_settings.understanding)
    whole = WindowPlanner(base, backend, probe_settings).windows()[0]
    settings = _settings(server.url, **fixed, context_tokens=whole.plan.prompt_tokens + 256 - 1)
    doc = analyze(shots_video.path, tmp_path / "o", settings, vlm_only())
    windows = doc["vlm"]["windows"]
    assert windows >= 2 and len(server.requests) == windows + 1
    for body in server.requests[:-1]:
        assert body["messages"][1]["content"][0]["type"] == "video_url"
    merge = server.requests[-1]["messages"][1]["content"]
    assert isinstance(merge, str) and merge.count("Part ") == windows  # text only: the windows' chapters
    assert [c["title"] for c in doc["chapters"]] == ["Whole video"]
    assert doc["chapters"][0]["end_s"] == pytest.approx(doc["video"]["duration_s"], abs=0.01)
    assert "merged" in doc["tags"] and len(doc["events"]) == windows
    assert fmt_mmss(doc["video"]["duration_s"]) in merge
