"""The operator's view: counts over every tenant for /metrics, and the database check of /readyz. Nothing here
is ever shown to a tenant (/metrics answers the metrics token or loopback clients only)."""

from __future__ import annotations

from sqlalchemy import func, select, text
from sqlalchemy.orm import Session

from videopipe.db.models import StageRun, Video


def ping(s: Session) -> None:
    """A round trip to the database (raises when it is away)."""
    s.execute(text("SELECT 1"))


def video_counts_all_tenants(s: Session) -> list[tuple[str, int]]:
    """(status, how many videos) over every tenant's videos."""
    return [(str(status), int(n)) for status, n in s.execute(select(Video.status, func.count()).group_by(Video.status))]


def stage_run_counts_all_tenants(s: Session) -> list[tuple[str, str, int]]:
    """(stage, state, how many stage runs) over every tenant's jobs."""
    q = select(StageRun.stage, StageRun.state, func.count()).group_by(StageRun.stage, StageRun.state)
    return [(str(stage), str(state), int(n)) for stage, state, n in s.execute(q)]
