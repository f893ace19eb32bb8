"""Test media made with the ffmpeg CLI (lavfi sources, remuxes); videopipe itself uses PyAV's FFmpeg."""

from __future__ import annotations

import shutil
import subprocess

import pytest

FFMPEG = shutil.which("ffmpeg")


def ffmpeg(*args: str) -> None:
    if FFMPEG is None:
        pytest.fail("the ffmpeg CLI is missing: run scripts/install-system-deps.sh (make test does)")
    subprocess.run([FFMPEG, "-hide_banner", "-loglevel", "error", "-y", *args], check=True)
