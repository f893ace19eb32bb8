"""Migrations and models against the real PostgreSQL on this machine and a SQLite file."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect, select
from sqlalchemy.exc import OperationalError

from tests.support.servers import POSTGRES_ADMIN_URL
from videopipe.db import make_engine, make_session_factory
from videopipe.db.migrate import downgrade, upgrade
from videopipe.db.models import Base, Chapter, Job, Scene, Video
from videopipe.testing.databases import scratch_database


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A fresh, empty PostgreSQL database for one test, dropped afterwards."""
    try:
        with scratch_database(POSTGRES_ADMIN_URL, "vp_test") as url:
            yield url
    except OperationalError as exc:
        pytest.fail(f"PostgreSQL at {POSTGRES_ADMIN_URL} is not reachable ({exc}); scripts/start-services.sh starts it")


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'videopipe.db'}"


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest) -> str:
    return str(request.getfixturevalue("sqlite_url" if request.param == "sqlite" else "pg_url"))


def _not_full_text(name: str | None, type_: str, parent_names: object) -> bool:
    """Full-text search is dialect-specific and built by migration 0003 alone (see `Moment`)."""
    return not (name or "").startswith("moments_fts") and name not in ("tsv", "ix_moments_tsv")


def test_upgrade_to_head_matches_the_models_and_downgrade_empties(db_url: str) -> None:
    upgrade(db_url)
    engine = make_engine(db_url)
    with engine.connect() as conn:
        opts = {"render_as_batch": True, "include_name": _not_full_text}
        diff = compare_metadata(MigrationContext.configure(conn, opts=opts), Base.metadata)
    assert diff == []  # the migration builds exactly what the models describe (full-text search aside)
    tables = set(inspect(engine).get_table_names())
    assert {"videos", "jobs", "stage_runs", "scenes", "keyframes", "transcript_segments", "ocr_lines", "chapters",
            "events", "tags", "moments", "moment_vectors"} <= tables  # fmt: skip
    scene_columns = {c["name"] for c in inspect(engine).get_columns("scenes")}
    assert {"video_id", "start_s", "end_s"} <= scene_columns
    engine.dispose()

    downgrade(db_url)
    engine = make_engine(db_url)
    assert set(inspect(engine).get_table_names()) <= {"alembic_version"}
    engine.dispose()
    upgrade(db_url)  # and back up again


def test_rows_round_trip_and_deleting_a_video_cascades(db_url: str) -> None:
    upgrade(db_url)
    engine = make_engine(db_url)
    sessions = make_session_factory(engine)
    with sessions.begin() as s:
        video = Video(tenant="acme", content_hash="ab" * 32, filename="talk.mp4", blob_key="originals/x",
                      size_bytes=123)  # fmt: skip
        s.add(video)
        s.flush()
        s.add_all([Scene(video_id=video.id, index=0, start_s=0.0, end_s=4.5),
                   Chapter(video_id=video.id, start_s=0.0, end_s=4.5, title="Intro", source="extractive"),
                   Job(video_id=video.id, tenant="acme", settings_hash="s")])  # fmt: skip
        video_id = video.id
    with sessions.begin() as s:
        assert s.scalars(select(Scene.end_s).where(Scene.video_id == video_id)).one() == 4.5
        s.delete(s.get(Video, video_id))
    with sessions() as s:
        assert s.scalars(select(Scene)).all() == [] and s.scalars(select(Job)).all() == []
    engine.dispose()


def test_db_upgrade_command_on_the_default_sqlite_and_on_postgres(pg_url: str, tmp_path: Path) -> None:
    from tests.support.cli import run_cli

    proc = run_cli("db", "upgrade", cwd=tmp_path, env={"VIDEOPIPE_DATA_DIR": str(tmp_path / "data")})
    assert proc.returncode == 0, proc.stderr
    engine = make_engine(f"sqlite:///{tmp_path / 'data' / 'videopipe.db'}")
    assert "videos" in inspect(engine).get_table_names()
    engine.dispose()
    proc = run_cli("db", "upgrade", cwd=tmp_path, env={"VIDEOPIPE_DATABASE_URL": pg_url})
    assert proc.returncode == 0, proc.stderr
    assert "is at head" in proc.stdout
    proc = run_cli("db", "downgrade", "base", cwd=tmp_path, env={"VIDEOPIPE_DATABASE_URL": pg_url})
    assert proc.returncode == 0, proc.stderr


def test_a_database_migrated_by_a_newer_videopipe_is_one_clear_error(tmp_path: Path) -> None:
    """A revision this videopipe does not know (a newer version migrated the database; a downgrade) is the user's
    setup, not a bug: exit 2, one line that says what to do, for every command that opens the database."""
    from sqlalchemy import text

    from tests.support.cli import run_cli

    data = tmp_path / "data"
    assert run_cli("db", "upgrade", cwd=tmp_path, env={"VIDEOPIPE_DATA_DIR": str(data)}).returncode == 0
    engine = make_engine(f"sqlite:///{data / 'videopipe.db'}")
    with engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = '9999'"))
    engine.dispose()
    for args in (("db", "upgrade"), ("status", "0123456789abcdef0123456789abcdef"), ("search", "anything")):
        proc = run_cli(*args, cwd=tmp_path, env={"VIDEOPIPE_DATA_DIR": str(data)})
        assert proc.returncode == 2, (args, proc.stderr)
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and "newer videopipe" in lines[0] and "internal error" not in lines[0], lines
