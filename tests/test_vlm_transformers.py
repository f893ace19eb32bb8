"""The transformers backend end to end on a tiny random-weight Qwen3-VL (real processor and model classes)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from tests.support.cli import run_cli
from videopipe.analysis import AnalyzeOptions, analyze
from videopipe.config import Settings, UnderstandingSettings
from videopipe.testing.media import SampleVideo
from videopipe.understanding import Window, WindowPlanner
from videopipe.vlm.base import Prompt
from videopipe.vlm.prompts import SYSTEM
from videopipe.vlm.transformers_backend import TransformersBackend

MARKER = re.compile(r"<(\d+\.\d) seconds>")


@pytest.fixture(scope="module")
def analysed(shots_video: SampleVideo, tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], Path]:
    out = tmp_path_factory.mktemp("analysed")
    doc = analyze(shots_video.path, out, Settings(), AnalyzeOptions(vlm="none", asr=False, ocr=False, motion=False))
    # Timed speech and on-screen text, as the perception stages will provide, so they are counted too.
    doc["transcript"] = [
        {"start_s": 1.0, "end_s": 2.5, "text": "we define the entropy of a source"},
        {"start_s": 9.0, "end_s": 11.0, "text": "now the second law"},
    ]
    doc["ocr"] = [{"t_s": 3.2, "text": "Entropy\nH(X) = -sum p log p", "confidence": 0.9}]
    return doc, out


def _prompt(window: Window, base: Path) -> Prompt:
    frames = []
    for c in window.plan.frames:
        with Image.open(base / str(c.ref)) as im:
            frames.append((c.t_s, im.convert("RGB").resize((window.plan.width, window.plan.height))))
    return Prompt(SYSTEM, window.text, frames, window.plan.duplicate_frames)


VARIANTS = {
    "default": UnderstandingSettings(),
    "paired frames": UnderstandingSettings(duplicate_frames=False),
    "tiny frames": UnderstandingSettings(max_frame_tokens=4, min_frame_tokens=1),
    "extra keyframes dropped": UnderstandingSettings(
        context_tokens=1316, max_new_tokens=16, max_frame_tokens=12, min_frame_tokens=12
    ),
}


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_planned_tokens_equal_the_processors_input_ids(
    variant: str, tiny_qwen: Path, analysed: tuple[dict[str, Any], Path]
) -> None:
    doc, base = analysed
    settings = Settings(understanding=VARIANTS[variant])
    backend = TransformersBackend(str(tiny_qwen), settings.understanding)
    windows = WindowPlanner(doc, backend, settings).windows()
    assert windows
    for window in windows:
        inputs = backend.inputs(_prompt(window, base))
        assert window.plan.prompt_tokens == inputs["input_ids"].shape[1]
        assert window.plan.width % 32 == 0 and window.plan.height % 32 == 0
        grid_t, grid_h, grid_w = inputs["video_grid_thw"][0].tolist()
        assert (grid_h * 16, grid_w * 16) == (window.plan.height, window.plan.width)  # size kept as planned
        assert grid_t == len(window.plan.group_times_s)


def test_extra_keyframes_are_dropped_first_and_every_scene_kept(
    tiny_qwen: Path, analysed: tuple[dict[str, Any], Path]
) -> None:
    doc, _ = analysed
    doc = json.loads(json.dumps(doc))
    # Give every scene three keyframes (the same frames, different scores) so there are extras to drop.
    doc["keyframes"] = [dict(k, score=k["score"] - n) for k in doc["keyframes"] for n in range(3)]
    settings = Settings(understanding=VARIANTS["extra keyframes dropped"])
    backend = TransformersBackend(str(tiny_qwen), settings.understanding)
    [window] = WindowPlanner(doc, backend, settings).windows()
    assert window.plan.fits and window.plan.prompt_tokens <= window.plan.budget_tokens
    assert len(window.plan.frames) < len(doc["keyframes"])
    assert window.plan.scenes_covered == len(doc["scenes"])


def test_markers_are_the_keyframe_times(tiny_qwen: Path, analysed: tuple[dict[str, Any], Path]) -> None:
    doc, base = analysed
    backend = TransformersBackend(str(tiny_qwen), UnderstandingSettings())
    [window] = WindowPlanner(doc, backend, Settings()).windows()
    text = backend._processor().tokenizer.decode(backend.inputs(_prompt(window, base))["input_ids"][0])
    markers = [float(m) for m in MARKER.findall(text)]
    assert markers == pytest.approx([k["t_s"] for k in doc["keyframes"]], abs=0.05)
    assert len(markers) == len(doc["keyframes"]) >= len(doc["scenes"])


def test_analyze_cli_with_the_tiny_model_handles_its_garbage(
    shots_video: SampleVideo, tiny_qwen: Path, tmp_path: Path
) -> None:
    proc = run_cli(
        "analyze",
        str(shots_video.path),
        "--vlm",
        "transformers",
        "--model",
        str(tiny_qwen),
        "--dump-prompt",
        "prompt.txt",
        "--out",
        "o",
        cwd=tmp_path,
        env={"VIDEOPIPE_UNDERSTANDING__MAX_NEW_TOKENS": "24"},
    )
    assert proc.returncode == 0, proc.stderr
    doc = json.loads((tmp_path / "o" / "analysis.json").read_text())
    vlm = doc["vlm"]
    assert vlm["backend"] == "transformers" and vlm["model"] == str(tiny_qwen)
    assert vlm["frames"] == len(doc["keyframes"]) and vlm["windows"] == 1
    assert vlm["completion_tokens"] > 0
    # Random weights answer garbage: it is recorded, retried once, and extractive chapters stand in.
    assert any("unreadable answer (attempt 2)" in e for e in vlm["errors"])
    assert doc["chapters"] and all(c["source"] == "extractive" for c in doc["chapters"])
    assert "unreadable answer" in proc.stderr and "Traceback" not in proc.stderr
    # The dumped prompt is what was sent: markers at the keyframe times, vision tokens collapsed.
    dumped = (tmp_path / "prompt.txt").read_text()
    first = dumped.split("=" * 100)[0]
    assert [float(m) for m in MARKER.findall(first)] == pytest.approx([k["t_s"] for k in doc["keyframes"]], abs=0.05)
    assert re.search(r"<\|video_pad\|>×\d+<\|vision_end\|>", first)
    # Two attempts: the planned prompt, then the same with the retry instruction appended.
    assert vlm["prompt_tokens"] > 2 * vlm["plan"][0]["prompt_tokens"]
    assert "could not be read as JSON" in dumped.split("=" * 100)[1]


def test_long_video_is_split_into_windows_at_scene_boundaries(
    tiny_qwen: Path, analysed: tuple[dict[str, Any], Path]
) -> None:
    doc, _ = analysed
    fixed = UnderstandingSettings(max_frame_tokens=6, min_frame_tokens=6, max_new_tokens=16)
    backend = TransformersBackend(str(tiny_qwen), fixed)
    whole = WindowPlanner(doc, backend, Settings(understanding=fixed)).windows()[0]
    small = fixed.model_copy(update={"context_tokens": whole.plan.prompt_tokens + 16 - 1})
    windows = WindowPlanner(doc, backend, Settings(understanding=small)).windows()
    assert len(windows) >= 2
    assert [s["index"] for w in windows for s in w.scenes] == [s["index"] for s in doc["scenes"]]
    for w in windows:
        assert w.plan.fits
        assert all(w.start_s <= f.t_s < w.end_s for f in w.plan.frames)


def test_yarn_is_configured_past_the_native_context(tiny_qwen: Path) -> None:
    backend = TransformersBackend(str(tiny_qwen), UnderstandingSettings(context_tokens=1_000_000))
    _, model = backend._load()
    text_config = model.config.text_config
    rope = getattr(text_config, "rope_parameters", None) or text_config.rope_scaling
    assert rope["rope_type"] == "yarn" and rope["factor"] == 3.0
    assert rope["original_max_position_embeddings"] == 262_144 and rope["mrope_interleaved"] is True
    assert text_config.max_position_embeddings == 1_000_000
    native = TransformersBackend(str(tiny_qwen), UnderstandingSettings())
    _, plain = native._load()
    assert (getattr(plain.config.text_config, "rope_parameters", None) or {}).get("rope_type") != "yarn"


def test_plan_command_prints_the_exact_plan(shots_video: SampleVideo, tiny_qwen: Path, tmp_path: Path) -> None:
    proc = run_cli(
        "plan", str(shots_video.path), "--json", "--vlm", "transformers", "--model", str(tiny_qwen), cwd=tmp_path
    )
    assert proc.returncode == 0, proc.stderr
    plan = json.loads(proc.stdout)
    assert plan["counter"] == "transformers (exact text token counts)"
    [window] = plan["windows"]
    assert window["fits"] and window["scenes_covered"] == window["scenes"] == len(shots_video.cut_times_s) + 1
    assert window["prompt_tokens"] == window["text_tokens"] - 1 + window["vision_tokens"]
    assert not (tmp_path / "shots.mp4.videopipe").exists()  # planning writes nothing

    estimate = run_cli("plan", str(shots_video.path), "--vlm", "none", cwd=tmp_path)
    assert estimate.returncode == 0 and "estimated text token counts" in estimate.stdout


def test_auto_picks_server_then_local_checkpoint_then_none(tiny_qwen: Path, tmp_path: Path) -> None:
    from videopipe.vlm import select_backend

    missing = str(tmp_path / "no-such-checkpoint")
    assert select_backend(Settings(vlm_url="http://gpu:8000/v1", vlm_model=str(tiny_qwen))).name == "openai"
    chosen = select_backend(Settings(vlm_model=str(tiny_qwen)))
    assert chosen.name == "transformers" and "local checkpoint" in chosen.reason
    fallback = select_backend(Settings(vlm_model=missing))
    assert fallback.name == "none" and "no server URL configured" in fallback.reason


@pytest.mark.parametrize(("args", "phrase"), [
    (["--vlm", "openai"], "--vlm openai needs a server"),
    (["--vlm", "transformers", "--model", "/no/such/dir"], "--vlm transformers: no local checkpoint at /no/such/dir"),
])  # fmt: skip
def test_impossible_backend_choices_fail_before_any_work(
    args: list[str], phrase: str, shots_video: SampleVideo, tmp_path: Path
) -> None:
    proc = run_cli("analyze", str(shots_video.path), *args, "--out", "o", cwd=tmp_path)
    assert proc.returncode == 2 and phrase in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "o").exists()


def test_moe_checkpoints_load_and_count_exactly(tmp_path: Path, analysed: tuple[dict[str, Any], Path]) -> None:
    from videopipe.vlm.testing import build_tiny_qwen3_vl

    moe = build_tiny_qwen3_vl(tmp_path / "tiny-moe", moe=True)
    doc, base = analysed
    settings = Settings(understanding=UnderstandingSettings(max_new_tokens=16))
    backend = TransformersBackend(str(moe), settings.understanding)
    _, model = backend._load()
    assert type(model).__name__ == "Qwen3VLMoeForConditionalGeneration"
    [window] = WindowPlanner(doc, backend, settings).windows()
    prompt = _prompt(window, base)
    assert window.plan.prompt_tokens == backend.inputs(prompt)["input_ids"].shape[1]
    out = backend.generate(prompt, 8)
    assert out.prompt_tokens == window.plan.prompt_tokens and 0 < out.completion_tokens <= 8
