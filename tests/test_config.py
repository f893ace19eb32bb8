"""Settings from the environment: the prefix, `__` between nested names, JSON for lists, values checked with the
offending field named (the CLI turns that into the variable's name: tests/test_cli.py), and the per-user default
data dir."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from videopipe.config import Settings


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Only what each test sets: nothing of the machine's own VIDEOPIPE_* variables."""
    import os

    for key in [k for k in os.environ if k.startswith("VIDEOPIPE_")]:
        monkeypatch.delenv(key)


def test_env_prefix_and_nested_settings(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("VIDEOPIPE_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("VIDEOPIPE_KEYFRAMES__MAX_TOTAL", "42")
    monkeypatch.setenv("VIDEOPIPE_VLM", "none")
    monkeypatch.setenv("VIDEOPIPE_UNDERSTANDING__DUPLICATE_FRAMES", "false")
    monkeypatch.setenv("VIDEOPIPE_API__INGEST_DIRS", '["/srv/in", "/mnt/share"]')  # lists are JSON
    monkeypatch.setenv("VIDEOPIPE_MOTION__EXCLUDE_ZONES", "[[0, 0, 1000, 100]]")
    monkeypatch.setenv("videopipe_jobs__lease_s", "7.5")  # names are not case-sensitive
    monkeypatch.setenv("KEYFRAMES__MAX_TOTAL", "7")  # no prefix: not ours
    s = Settings()
    assert s.data_dir == tmp_path and s.keyframes.max_total == 42 and s.vlm == "none"
    assert s.understanding.duplicate_frames is False and s.api.ingest_dirs == ["/srv/in", "/mnt/share"]
    assert s.motion.exclude_zones == [(0, 0, 1000, 100)] and s.jobs.lease_s == 7.5
    # A nested variable sets its one field: the others of that group keep their defaults.
    assert s.keyframes.max_per_scene == Settings.model_fields["keyframes"].default.max_per_scene
    # Explicit values (CLI flags) win over the environment.
    assert Settings(vlm="openai").vlm == "openai"


@pytest.mark.parametrize(
    ("variable", "value", "field"),
    [
        ("VIDEOPIPE_KEYFRAMES__MAX_TOTAL", "0", "keyframes.max_total"),  # below its minimum
        ("VIDEOPIPE_KEYFRAMES__MAX_TOTAL", "many", "keyframes.max_total"),  # not a number
        ("VIDEOPIPE_VLM", "gpt", "vlm"),  # not one of the backends
        ("VIDEOPIPE_UNDERSTANDING__MIN_FRAME_TOKENS", "999", "understanding"),  # above max_frame_tokens (160)
        ("VIDEOPIPE_API__INGEST_DIRS", "/srv/in", "api"),  # a list must be JSON
    ],
)
def test_a_bad_value_is_refused_with_its_field_named(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, field: str
) -> None:
    monkeypatch.setenv(variable, value)
    # A ValidationError, or pydantic-settings' SettingsError for JSON it cannot parse: both ValueErrors that name
    # the field (dotted for nested ones).
    with pytest.raises(ValueError, match=rf"\b{re.escape(field)}\b"):
        Settings()


def test_default_data_dir_is_per_user_and_a_home_path_is_expanded(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    monkeypatch.delenv("VIDEOPIPE_DATA_DIR", raising=False)  # conftest points every test at a scratch folder
    assert Settings().data_dir == tmp_path / "xdg" / "videopipe"  # platformdirs: the user's data folder
    monkeypatch.setenv("VIDEOPIPE_DATA_DIR", "~/videos/vp")
    assert Settings().data_dir == tmp_path / "home" / "videos" / "vp"
