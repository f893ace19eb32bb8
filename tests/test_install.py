"""`pip install videopipe`, the way a user gets it: the wheel built from this checkout, installed with no extras
into a fresh virtual environment (dependencies from the package index), then used from a folder outside the
checkout. A base install must migrate its database (the Alembic scripts travel in the wheel) and analyse a
video, skipping only the library step with one warning that names the extra it needs.

The wheel and the environment are made once for the module; pip's cache makes reruns quick.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pytest
from alembic.script import ScriptDirectory

from videopipe.testing.media import write_sample_video

REPO = Path(__file__).resolve().parents[1]
MIGRATIONS = REPO / "videopipe" / "db" / "migrations"

# A cold pip cache downloads the dependencies (~100 MB) first.
pytestmark = pytest.mark.timeout(900)

# What a build does not need: environments, caches, outputs (and build/, whose stale files would go into the wheel).
_NOT_SOURCES = shutil.ignore_patterns(
    ".git", ".venv", "venv", "build", "dist", "*.egg-info", "__pycache__", ".*_cache", "*.videopipe", ".media"
)


@dataclass(frozen=True)
class Installed:
    wheel: Path
    venv: Path
    work: Path  # the current directory of every command: not the checkout
    data: Path  # VIDEOPIPE_DATA_DIR
    env: dict[str, str]

    def run(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(self.venv / "bin" / "videopipe"), *args],
            cwd=self.work, env=self.env, capture_output=True, text=True, timeout=timeout,
        )  # fmt: skip

    def python(self, code: str) -> str:
        proc = subprocess.run(
            [str(self.venv / "bin" / "python"), "-c", code],
            cwd=self.work, env=self.env, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert proc.returncode == 0, proc.stderr
        return proc.stdout


def _base_python() -> str:
    """The interpreter the project's environment was made from (not the environment itself)."""
    base = getattr(sys, "_base_executable", None)
    if base and Path(base).exists() and Path(base).resolve() != Path(sys.executable).resolve():
        return str(base)
    for name in (f"python{sys.version_info.major}.{sys.version_info.minor}", "python3", "python"):
        candidate = Path(sys.base_prefix) / "bin" / name
        if candidate.exists():
            return str(candidate)
    pytest.fail(f"no base interpreter found next to sys.base_prefix ({sys.base_prefix}) to make a fresh venv with")


def _check(proc: subprocess.CompletedProcess[str], what: str) -> None:
    if proc.returncode != 0:
        pytest.fail(f"{what} failed (exit {proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}")


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Installed:
    tmp = tmp_path_factory.mktemp("install")
    # Built from a copy of the checkout, so the test never writes build/ or *.egg-info into it.
    source = tmp / "source"
    shutil.copytree(REPO, source, ignore=_NOT_SOURCES)
    wheels = tmp / "wheels"
    pip = ["-m", "pip", "--disable-pip-version-check"]
    built = subprocess.run(
        [sys.executable, *pip, "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(wheels), str(source)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    _check(built, "building the wheel")
    (wheel,) = wheels.glob("videopipe-*.whl")

    venv = tmp / "venv"
    made = subprocess.run([_base_python(), "-m", "venv", str(venv)], capture_output=True, text=True, timeout=300)
    _check(made, "python -m venv")

    # The user's environment: nothing from this session's settings or the test support path.
    dropped = ("PYTHONPATH", "PYTHONHOME")
    env = {k: v for k, v in os.environ.items() if not k.startswith("VIDEOPIPE_") and k not in dropped}
    env.update(
        PATH=os.pathsep.join([str(venv / "bin"), env.get("PATH", "")]),
        VIRTUAL_ENV=str(venv),
        VIDEOPIPE_DATA_DIR=str(tmp / "data"),
        COLUMNS="200",
    )
    installing = subprocess.run(
        [str(venv / "bin" / "python"), *pip, "install", "-q", str(wheel)],
        cwd=tmp, env=env, capture_output=True, text=True, timeout=840,
    )  # fmt: skip
    if installing.returncode != 0:
        pytest.fail(
            "pip install of the videopipe wheel (no extras) failed: its dependencies come from the package index, "
            "so it must be reachable from here (this test does not skip without it).\n" + installing.stderr[-5000:]
        )
    work = tmp / "work"
    work.mkdir()
    return Installed(wheel, venv, work, tmp / "data", env)


def test_the_wheel_carries_the_migrations(installed: Installed) -> None:
    names = set(zipfile.ZipFile(installed.wheel).namelist())
    expected = {
        f"videopipe/db/migrations/{p.relative_to(MIGRATIONS).as_posix()}"
        for p in [*MIGRATIONS.glob("*.py"), *MIGRATIONS.glob("*.mako"), *MIGRATIONS.glob("versions/*.py")]
    }
    assert "videopipe/db/migrations/env.py" in expected and "videopipe/db/migrations/script.py.mako" in expected
    assert expected <= names, sorted(expected - names)


def test_the_installed_package_is_used_and_has_no_extras(installed: Installed) -> None:
    out = installed.python(
        "import importlib.util, videopipe, videopipe.db.migrate as m\n"
        "print(videopipe.__file__); print((m.MIGRATIONS / 'env.py').is_file())\n"
        "print(*(n for n in ('torch', 'faiss', 'fastapi', 'celery') if importlib.util.find_spec(n)))\n"
    ).splitlines()
    assert Path(out[0]).resolve().is_relative_to(installed.venv.resolve()), out[0]  # not the checkout's sources
    assert out[1] == "True"
    assert out[2] == "", f"a base install brought optional packages: {out[2]}"


def test_help(installed: Installed) -> None:
    proc = installed.run("--help")
    assert proc.returncode == 0, proc.stderr
    assert "analyze" in proc.stdout and "db" in proc.stdout


def test_db_upgrade_then_analyze_without_extras(installed: Installed) -> None:
    head = ScriptDirectory(str(MIGRATIONS)).get_current_head()
    for attempt in ("first", "second (nothing to do)"):
        proc = installed.run("db", "upgrade")
        assert proc.returncode == 0, f"{attempt} db upgrade: {proc.stdout}\n{proc.stderr}"
        with sqlite3.connect(installed.data / "videopipe.db") as con:
            assert con.execute("select version_num from alembic_version").fetchall() == [(head,)]

    # Three shots, no audio, small: made with this checkout's sample writer.
    clip = installed.work / "clip.mp4"
    write_sample_video(clip, shots_s=(1.5, 1.5, 1.5), width=320, height=180, fps=25, seed=3)
    proc = installed.run("analyze", "clip.mp4")
    assert proc.returncode == 0, proc.stderr
    doc_path = installed.work / "clip.mp4.videopipe" / "analysis.json"
    assert doc_path.is_file(), proc.stderr
    doc = json.loads(doc_path.read_text())
    assert len(doc["scenes"]) == 3, doc["scenes"]
    assert doc["keyframes"], "no keyframes"
    assert all((doc_path.parent / k["image"]).is_file() for k in doc["keyframes"])

    # The library step alone is skipped, with the extra named literally (rich markup used to eat "[search]").
    library = [line for line in proc.stderr.splitlines() if "local library" in line]
    assert len(library) == 1, proc.stderr
    assert library[0].startswith("warning:") and "pip install 'videopipe[search]'" in library[0], proc.stderr
    assert "pip install 'videopipe'" not in proc.stderr, proc.stderr  # no other hint lost its extra
