from __future__ import annotations

from pathlib import Path

import pytest

from videopipe.config import Settings


def test_env_prefix_and_nested_settings(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("VIDEOPIPE_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("VIDEOPIPE_KEYFRAMES__MAX_TOTAL", "42")
    monkeypatch.setenv("VIDEOPIPE_VLM", "none")
    s = Settings()
    assert s.data_dir == tmp_path and s.keyframes.max_total == 42 and s.vlm == "none"


def test_invalid_value_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VIDEOPIPE_KEYFRAMES__MAX_TOTAL", "0")
    with pytest.raises(ValueError, match="max_total"):
        Settings()


def test_default_data_dir_is_per_user() -> None:
    assert "videopipe" in str(Settings().data_dir)
