"""Moments: the searchable units, and the queries search runs over them (full text, vectors, the rows of hits).

Every function that reads moments takes the tenant and sees only that tenant's moments: its counts and
statistics included, so what a tenant finds (and can infer from its rankings) never depends on other tenants'
data. The one exception says so in its name (`all_tenants_after`: the in-memory table that filters index hits).
Functions take a `Session` or a `Connection` (search holds one connection for a whole query).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, func, select, text
from sqlalchemy.orm import Session

from videopipe.db.models import Moment, MomentVector

Db = Session | Connection

# FTS5 columns of `moments_fts`, in order (migration 0003), and their weights in the ranking.
FTS_COLUMNS = ("caption", "screen_text", "speech")
FTS_WEIGHTS = (2.0, 1.5, 1.0)
_MARK = "\ue000"  # marks each match in `highlight()` output (a private-use character no transcript holds)


@dataclass(frozen=True, slots=True)
class Where:
    """Which of the tenant's moments: all, one video's, those overlapping a time range."""

    video_id: str | None = None
    start_s: float | None = None
    end_s: float | None = None

    def sql(self, tenant: str) -> tuple[list[str], dict[str, Any]]:
        """SQL conditions on `moments m`, and their parameters."""
        where: list[str] = ["m.tenant = :tenant"]
        params: dict[str, Any] = {"tenant": tenant}
        if self.video_id is not None:
            where.append("m.video_id = :video")
            params["video"] = self.video_id
        if self.start_s is not None:
            where.append("m.end_s > :start_s")
            params["start_s"] = self.start_s
        if self.end_s is not None:
            where.append("m.start_s < :end_s")
            params["end_s"] = self.end_s
        return where, params

    def orm(self, q: Any, tenant: str) -> Any:
        q = q.where(Moment.tenant == tenant)
        if self.video_id is not None:
            q = q.where(Moment.video_id == self.video_id)
        if self.start_s is not None:
            q = q.where(Moment.end_s > self.start_s)
        if self.end_s is not None:
            q = q.where(Moment.start_s < self.end_s)
        return q


def dialect(db: Db) -> str:
    bind = db.get_bind() if isinstance(db, Session) else db
    return bind.dialect.name


def fts_match(term: str) -> str:
    """One word as an FTS5 phrase (words reach here as letters and digits only)."""
    return f'"{term}"'


def doc_freq(db: Db, tenant: str, term: str) -> int:
    """How many of `tenant`'s moments contain `term`."""
    if dialect(db) == "sqlite":
        sql = ("SELECT count(*) FROM moments_fts JOIN moments m ON m.id = moments_fts.rowid "
               "WHERE moments_fts MATCH :t AND m.tenant = :tenant")  # fmt: skip
        params = {"t": fts_match(term), "tenant": tenant}
    else:
        sql = "SELECT count(*) FROM moments WHERE tenant = :tenant AND tsv @@ to_tsquery('english', :t)"
        params = {"t": term, "tenant": tenant}
    return int(db.execute(text(sql), params).scalar() or 0)


def text_stats(db: Db, tenant: str) -> tuple[int, float]:
    """(how many moments `tenant` has, their mean length in characters over the full-text columns)."""
    length = func.length(Moment.caption) + func.length(Moment.screen_text) + func.length(Moment.speech)
    row = db.execute(select(func.count(), func.avg(length)).where(Moment.tenant == tenant)).one()
    return int(row[0] or 0), float(row[1] or 0.0)


def full_text_postgres(db: Db, tenant: str, terms: Sequence[str], op: str, where: Where, n: int) -> list[int]:
    """PostgreSQL: the tenant's moments with all (`op` "and") or any ("or") of `terms`, best first (ts_rank_cd
    reads each document alone: no corpus statistics)."""
    conditions, params = where.sql(tenant)
    params = {**params, "n": n, "tsq": (" | " if op == "or" else " & ").join(terms)}
    sql = (
        "SELECT m.id FROM moments m, to_tsquery('english', :tsq) q "
        f"WHERE m.tsv @@ q AND {' AND '.join(conditions)} ORDER BY ts_rank_cd(m.tsv, q) DESC, m.id LIMIT :n"
    )
    return [int(r[0]) for r in db.execute(text(sql), params)]


def term_counts_sqlite(db: Db, tenant: str, term: str, where: Where) -> dict[int, tuple[tuple[int, ...], int]]:
    """SQLite: the tenant's moments containing `term`, each with how often the term occurs in each full-text
    column (as FTS5 matches it: stemmed) and its length in characters over those columns."""
    conditions, params = where.sql(tenant)
    marks = ", ".join(f"highlight(moments_fts, {i}, :mark, '')" for i in range(len(FTS_COLUMNS)))
    sql = (f"SELECT m.id, {marks} FROM moments_fts JOIN moments m ON m.id = moments_fts.rowid "
           f"WHERE moments_fts MATCH :t AND {' AND '.join(conditions)}")  # fmt: skip
    out = {}
    for row in db.execute(text(sql), {**params, "t": fts_match(term), "mark": _MARK}):
        texts = [str(value or "") for value in row[1:]]
        counts = tuple(t.count(_MARK) for t in texts)
        out[int(row[0])] = (counts, sum(len(t) - c for t, c in zip(texts, counts, strict=True)))
    return out


def video_vectors(db: Db, tenant: str, model: str, where: Where) -> list[tuple[int, bytes]]:
    """(moment id, vector) of `model` for the tenant's moments inside `where` (one video: exact search)."""
    q = where.orm(select(MomentVector.moment_id, MomentVector.vector), tenant)
    q = q.join(Moment, Moment.id == MomentVector.moment_id).where(MomentVector.model == model)
    return [(int(r[0]), bytes(r[1])) for r in db.execute(q)]


def all_tenants_after(db: Db, after_id: int) -> list[tuple[int, str, float, float]]:
    """(id, tenant, start_s, end_s) of every tenant's moments with id > `after_id`, in id order: what the
    in-memory table that filters vector-index hits by tenant holds (deliberately across tenants)."""
    q = select(Moment.id, Moment.tenant, Moment.start_s, Moment.end_s).where(Moment.id > after_id)
    return [(int(r[0]), str(r[1]), float(r[2]), float(r[3])) for r in db.execute(q.order_by(Moment.id))]


def hits(db: Db, tenant: str, ids: Sequence[int], model: str = "") -> dict[int, Any]:
    """The rows search shows for moment ids, with their video's file name and blob key: the tenant's only; each
    with its vector of `model` (`vector`: bytes, or None when it has none), to score the hit exactly."""
    if not ids:
        return {}
    sql = (
        "SELECT m.id, m.video_id, m.tenant, m.start_s, m.end_s, m.speech, m.screen_text, m.caption, "
        "m.keyframe_index, v.filename, v.blob_key, mv.vector FROM moments m JOIN videos v ON v.id = m.video_id "
        "LEFT JOIN moment_vectors mv ON mv.moment_id = m.id AND mv.model = :model "
        f"WHERE m.tenant = :tenant AND m.id IN ({','.join(str(int(i)) for i in ids)})"  # integers: safe to inline
    )
    return {r.id: r for r in db.execute(text(sql), {"tenant": tenant, "model": model})}


# -- the vector index (one index over every tenant's moments: search filters hits by tenant) ----------------------
def vectors_after_all_tenants(db: Db, model: str, after_id: int, limit: int) -> list[tuple[int, bytes]]:
    """(moment id, vector) of `model` for every tenant's moments with id > `after_id`, in id order, `limit` of
    them: what the index is built from."""
    q = select(MomentVector.moment_id, MomentVector.vector).where(
        MomentVector.model == model, MomentVector.moment_id > after_id
    )
    return [(int(i), bytes(v)) for i, v in db.execute(q.order_by(MomentVector.moment_id).limit(limit))]


def vector_count_all_tenants(db: Db, model: str) -> int:
    """How many vectors of `model` there are, over every tenant's moments."""
    q = select(func.count()).select_from(MomentVector).where(MomentVector.model == model)
    return int(db.execute(q).scalar() or 0)


def unembedded_all_tenants(db: Db, model: str) -> list[int]:
    """The ids of every tenant's moments that have no vector of `model`, in id order."""
    have = select(MomentVector.moment_id).where(MomentVector.model == model)
    return [int(i) for i in db.execute(select(Moment.id).where(Moment.id.not_in(have)).order_by(Moment.id)).scalars()]


def by_ids_all_tenants(s: Session, ids: Sequence[int]) -> Sequence[Moment]:
    """The moments with these ids (any tenant's), in id order: to embed them for the index."""
    return s.scalars(select(Moment).where(Moment.id.in_(list(ids))).order_by(Moment.id)).all()
