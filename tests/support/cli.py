"""Running the `videopipe` command line the way a user does."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def run_cli(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run `python -m videopipe ARGS` the way a user would (a fresh process, wide terminal)."""
    return subprocess.run(
        [sys.executable, "-m", "videopipe", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        env={**os.environ, "COLUMNS": "200", **(env or {})},
        timeout=300,
    )
