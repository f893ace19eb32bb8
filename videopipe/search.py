"""Hybrid moment search: vector similarity (FAISS) fused with full-text matching (SQLite FTS5 / PostgreSQL
tsvector) by reciprocal rank fusion, always inside one tenant, optionally inside one video and a time range.

Each hit's `score` is absolute (see `relevance`): how well that moment's words match the query, on a scale that
means the same for every query, so a first hit that matches nothing scores low instead of 1.0. Reciprocal rank
fusion picks the candidates; the score orders them."""

from __future__ import annotations

import math
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
from sqlalchemy import Connection, Engine
from sqlalchemy.orm import Session, sessionmaker

from videopipe.config import SearchSettings, Settings
from videopipe.db.repos import moments as repo
from videopipe.db.repos.moments import FTS_WEIGHTS, Where
from videopipe.db.repos.videos import get_video
from videopipe.embeddings import QueryBatcher
from videopipe.errors import BadRequest
from videopipe.index import VectorIndex, vector_index
from videopipe.timefmt import fmt_time

_WORD = re.compile(r"\w+", re.UNICODE)
MAX_QUERY_CHARS = 500
RECENT_QUERIES = 4096  # query vectors kept (about 1.5 kB each)
RESCORED = 20  # fused candidates whose absolute score is computed (the results are the best of them by score)
STATS_TTL_S = 300.0  # how long a tenant's word counts and moment statistics are reused (they change slowly)
_K1, _B = 1.2, 0.75  # BM25, as SQLite FTS5's bm25() has them


# Words too common to say anything about where a moment is (they would make full-text matching scan everything).
_STOPWORDS = (
    "a about above after again all am an and any are as at be because been before being below between both but by "
    "can could did do does doing down during each few for from further had has have having he her here hers him his "
    "how i if in into is it its itself just me more most my no nor not now of off on once only or other our out over "
    "own same she should so some such than that the their them then there these they this those through to too "
    "under until up very was we were what when where which while who whom why will with would you your"
)
STOPWORDS = frozenset(_STOPWORDS.split())
# Words that frame a question about a video rather than say what it is about ("when does the speaker explain
# X"): they take part in ranking but not in how much of the query a moment's words cover.
_FRAMING = (
    "speaker speakers presenter narrator say says said saying talk talks talked talking mention mentions mentioned "
    "discuss discusses discussed discussion explain explains explained explanation describe describes described "
    "show shows shown showed video videos clip lecture lectures slide slides part moment happen happens happened "
    "define defines defined tell tells told mean means meant thing things something anything there here time "
    "introduce introduces introduced talked covered cover covers"
)
FRAMING = frozenset(_FRAMING.split())


def query_terms(query: str) -> list[str]:
    words = [w.lower() for w in _WORD.findall(query)]
    kept = [w for w in words if (len(w) > 1 or w.isdigit()) and w not in STOPWORDS]
    return list(dict.fromkeys(kept))[:32]


def stem(word: str) -> str:
    """A crude, language-light stem for coverage matching: lower case, a plural "s" dropped, the first five
    letters (volcanoes/volcano, galaxies/galaxy, erupts/eruption agree)."""
    w = word.lower()
    if len(w) > 3 and w.endswith("s") and not w.endswith("ss"):
        w = w[:-1]
    return w[:5]


def stem_pattern(term: str) -> re.Pattern[str]:
    """Matches, in lower-case text, the words whose `stem` is the term's (a faster test than stemming them all); a
    stem shorter than five letters also with the usual endings (heat: heats, heated, heating)."""
    st = re.escape(stem(term))
    return re.compile(rf"\b{st}" if len(stem(term)) == 5 else rf"\b{st}(?:s|es|ed|ing|er|ers)?\b")


def relevance(cosine: float | None, coverage: float, s: SearchSettings) -> float:
    """The absolute score of a moment for a query, in [0, 1]: about how likely the moment is to say or show what
    the query asks for, the same scale for every query.

    - semantic: the embedding cosine through a logistic curve, 0.5 at `relevance_cos_mid` (all-MiniLM-L6-v2 puts
      unrelated text at -0.05-0.25, topical but unanswering text at 0.25-0.42, paraphrases of what a moment says
      above about 0.43, or 0.34 when the moment is a paragraph), `relevance_cos_width` its steepness; never exactly
      0 or 1 (a moment without a vector: 0);
    - coverage: the share of the query's content words (weighted by how rare they are in the tenant's moments,
      framing words like "speaker" or "explain" left out) that the moment's words contain;
    - score = 1 - (1 - semantic) * (1 - lexical_weight * coverage): either signal alone can make a moment
      relevant, both together make it more so, neither leaves it near 0.

    Calibrated on labelled questions with and without answers (benchmarks/ask.py, benchmarks/README.md)."""
    semantic = 0.0
    if cosine is not None:
        semantic = 1.0 / (1.0 + math.exp(-(cosine - s.relevance_cos_mid) / s.relevance_cos_width))
    return 1.0 - (1.0 - semantic) * (1.0 - s.lexical_weight * min(1.0, max(0.0, coverage)))


def rrf(rankings: list[list[int]], k: int) -> list[tuple[int, float]]:
    """Reciprocal rank fusion: score(d) = sum over rankings of 1 / (k + rank of d), rank from 1."""
    scores: dict[int, float] = {}
    for ranking in rankings:
        for rank, doc in enumerate(ranking, 1):
            scores[doc] = scores.get(doc, 0.0) + 1.0 / (k + rank)
    return sorted(scores.items(), key=lambda kv: (-kv[1], kv[0]))


class Searcher:
    def __init__(self, settings: Settings, sessions: sessionmaker[Session]) -> None:
        self.settings = settings
        self.sessions = sessions
        self.index: VectorIndex = vector_index(settings, sessions)
        self._df: dict[tuple[str, str], tuple[int, float]] = {}  # (tenant, word) -> (moments with it, when)
        self._stats: dict[str, tuple[tuple[int, float], float]] = {}  # tenant -> ((moments, mean length), when)
        bind = sessions.kw.get("bind")
        assert isinstance(bind, Engine)
        self.engine = bind
        self.dialect = bind.dialect.name
        self.moments = MomentTable(bind)
        self._batchers: dict[str, QueryBatcher] = {}
        self._batchers_lock = threading.Lock()
        self._local = threading.local()
        self._recent: OrderedDict[tuple[str, str], np.ndarray] = OrderedDict()  # repeated queries (paging, UIs)

    def _embed_query(self, query: str) -> tuple[str, np.ndarray]:
        """(model name, vector) for the query, in the serving index's model; concurrent queries share a run."""
        from videopipe.embeddings import open_embedder

        embedder = open_embedder(self.settings, self.index.model)
        key = (embedder.name, query)
        with self._batchers_lock:
            cached = self._recent.get(key)
            if cached is not None:
                self._recent.move_to_end(key)
                return embedder.name, cached
            batcher = self._batchers.get(embedder.name)
            if batcher is None:
                batcher = self._batchers[embedder.name] = QueryBatcher(embedder)
        vector = batcher.embed_one(query)
        with self._batchers_lock:
            self._recent[key] = vector
            if len(self._recent) > RECENT_QUERIES:
                self._recent.popitem(last=False)
        return embedder.name, vector

    def search(
        self,
        query: str,
        tenant: str,
        video_id: str | None = None,
        start_s: float | None = None,
        end_s: float | None = None,
        limit: int = 10,
    ) -> list[dict[str, Any]]:
        if video_id is not None:
            with self.sessions() as s:
                get_video(s, tenant, video_id)  # the tenant gate: another tenant's video is not found
        query = query.strip()
        if not query:
            raise BadRequest("the query is empty; say what to look for, e.g. q=red truck at the gate")
        if len(query) > MAX_QUERY_CHARS:
            raise BadRequest(f"the query is longer than {MAX_QUERY_CHARS} characters; shorten it")
        n = max(self.settings.search.candidates, limit)
        where = Where(video_id, start_s, end_s)
        model, q = self._embed_query(query)  # before taking a connection: the model run is the slow part
        with self.engine.connect() as conn:  # one connection for the rest of the search (each checkout costs)
            self._local.conn = conn
            try:
                vector_ids = self._vector_ranking(model, q, tenant, where, n)
                lexical_ids = self._lexical_ranking(query, tenant, where, n)
                fused = rrf([vector_ids, lexical_ids], self.settings.search.rrf_k)[: max(limit, RESCORED)]
                return self._hydrate(fused, query, model, q, vector_ids, lexical_ids, tenant, where, limit)
            finally:
                self._local.conn = None

    @contextmanager
    def _connection(self) -> Iterator[Connection]:
        """The search's connection when inside one, else a new one."""
        current = getattr(self._local, "conn", None)
        if current is not None:
            yield current
            return
        with self.engine.connect() as conn:
            yield conn

    # -- rankers -------------------------------------------------------------------------------------------
    def _vector_ranking(self, model: str, q: np.ndarray, tenant: str, where: Where, n: int) -> list[int]:
        if where.video_id is not None:  # one video: exact, over its own vectors
            with self._connection() as c:
                rows = repo.video_vectors(c, tenant, model, where)
            if not rows:
                return []
            matrix = np.frombuffer(b"".join(r[1] for r in rows), dtype="<f4").reshape(len(rows), -1)
            order = np.argsort(-(matrix @ q), kind="stable")[:n]
            return [int(rows[i][0]) for i in order]
        # The whole index, then only this tenant's (and still existing) moments; widen until enough are found.
        k = n + 16
        for _ in range(4):
            _, ids = self.index.search(q, k)
            if len(ids) == 0:
                return []
            found = self.moments.allowed(np.asarray(ids, np.int64), tenant, where.start_s, where.end_s)
            if len(found) >= n or len(ids) < k:
                return found[:n]
            k *= 4
        return found[:n]

    def _lexical_ranking(self, query: str, tenant: str, where: Where, n: int) -> list[int]:
        """Full-text ranking over the query's *distinctive* words (Elasticsearch's cutoff-frequency idea): words
        rarest first while the moments having any of them stay under `lexical_max_docs`; words found in more
        moments than that say little about where a moment is (the vector ranker covers their meaning) and
        ranking every moment that has them costs the most. Moments with all those words come first, then
        moments with any of them. Every count is the tenant's own: other tenants' moments change nothing."""
        terms = [t for t in (re.sub(r"\W", "", t) for t in query_terms(query)) if t]
        rare = self._rare_terms(terms, tenant) if terms else []
        if not rare:
            return []
        if self.dialect == "sqlite":
            return self._bm25_ranking(rare, tenant, where, n)
        with self._connection() as c:
            ranked = repo.full_text_postgres(c, tenant, rare, "and", where, n) if len(rare) > 1 else []
            if len(ranked) < n:
                seen = set(ranked)
                ranked += [i for i in repo.full_text_postgres(c, tenant, rare, "or", where, n) if i not in seen]
        return ranked[:n]

    def _bm25_ranking(self, rare: list[str], tenant: str, where: Where, n: int) -> list[int]:
        """SQLite: BM25 as FTS5's bm25() computes it (column weights, k1, b), but over the tenant's moments only:
        FTS5's own statistics (moment count, word counts, mean length) span every tenant's moments. The words
        are rare by construction, so the moments having any of them are few (at most `lexical_max_docs`)."""
        with self._connection() as c:
            counts = {t: repo.term_counts_sqlite(c, tenant, t, where) for t in rare}
        total, mean_length = self._tenant_stats(tenant)
        idf = {t: bm25_idf(total, self._doc_freq(t, tenant)) for t in rare}
        lengths = {mid: length for found in counts.values() for mid, (_, length) in found.items()}
        ranked = []
        for mid, length in lengths.items():
            norm = _K1 * (1 - _B + _B * length / mean_length) if mean_length > 0 else _K1
            score, missing = 0.0, 0
            for term in rare:
                hit = counts[term].get(mid)
                if hit is None:
                    missing += 1
                    continue
                f = sum(w * c for w, c in zip(FTS_WEIGHTS, hit[0], strict=True))
                score += idf[term] * f * (_K1 + 1) / (f + norm)
            ranked.append((len(rare) > 1 and missing > 0, -score, mid))  # all the words first, then any
        ranked.sort()
        return [mid for _, _, mid in ranked[:n]]

    def _rare_terms(self, terms: list[str], tenant: str) -> list[str]:
        """The query's words, rarest first, while the tenant's moments having any of them stay under
        `lexical_max_docs`."""
        budget = self.settings.search.lexical_max_docs
        kept, total = [], 0
        for term, df in sorted(((t, self._doc_freq(t, tenant)) for t in terms), key=lambda x: x[1]):
            if df == 0:
                continue
            if total + df > budget:
                break
            kept.append(term)
            total += df
        return kept

    def _doc_freq(self, term: str, tenant: str) -> int:
        """How many of the tenant's moments contain `term`; cached for a few minutes (it changes slowly)."""
        now = time.monotonic()
        cached = self._df.get((tenant, term))
        if cached is not None and now - cached[1] < STATS_TTL_S:
            return cached[0]
        with self._connection() as c:
            df = repo.doc_freq(c, tenant, term)
        if len(self._df) > 50_000:
            self._df.clear()
        self._df[(tenant, term)] = (df, now)
        return df

    def _tenant_stats(self, tenant: str) -> tuple[int, float]:
        """(the tenant's moment count, their mean length in characters), cached like the word counts."""
        now = time.monotonic()
        cached = self._stats.get(tenant)
        if cached is not None and now - cached[1] < STATS_TTL_S:
            return cached[0]
        with self._connection() as c:
            stats = repo.text_stats(c, tenant)
        if len(self._stats) > 10_000:
            self._stats.clear()
        self._stats[tenant] = (stats, now)
        return stats

    def _term_weights(self, terms: list[str], tenant: str) -> dict[str, float]:
        """How much each content word of the query counts in coverage: log(1 + N / (df + 0.5)) over the tenant's
        N moments (a word no moment has counts the most: the query asks for something that is not there)."""
        total, _ = self._tenant_stats(tenant)
        return {t: math.log1p(total / (self._doc_freq(t, tenant) + 0.5)) for t in terms}

    # -- results -------------------------------------------------------------------------------------------
    def _hydrate(
        self,
        fused: list[tuple[int, float]],
        query: str,
        model: str,
        q: np.ndarray,
        vector_ids: list[int],
        lexical_ids: list[int],
        tenant: str,
        where: Where,
        limit: int,
    ) -> list[dict[str, Any]]:
        """The best `limit` hits by absolute score (fusion order among equal scores), their rows read with the
        tenant's condition (the in-memory filter of index hits is an optimisation, this is the guarantee) and the
        time range checked again (deleted moments drop out)."""
        if not fused:
            return []
        with self._connection() as c:
            rows = repo.hits(c, tenant, [i for i, _ in fused], model)
        terms = query_terms(query)
        content = [t for t in terms if t not in FRAMING] or terms
        weights = self._term_weights([t for t in (re.sub(r"\W", "", t) for t in content) if t], tenant)
        total_weight = sum(weights.values())
        patterns = [(stem_pattern(t), w) for t, w in weights.items()]
        settings = self.settings.search
        scored = []
        for moment_id, _ in fused:
            m = rows.get(moment_id)
            if m is None:
                continue
            if (where.start_s is not None and m.end_s <= where.start_s) or (
                where.end_s is not None and m.start_s >= where.end_s
            ):
                continue
            cosine = float(np.frombuffer(m.vector, dtype="<f4") @ q) if m.vector is not None else None
            said = f"{m.caption or ''} {m.screen_text or ''} {m.speech or ''}".lower()
            covered = sum(w for p, w in patterns if p.search(said))
            coverage = covered / total_weight if total_weight > 0 else 0.0
            scored.append((round(relevance(cosine, coverage, settings), 4), m, cosine, coverage))
        scored.sort(key=lambda x: -x[0])  # stable: fusion order among equal scores
        out = []
        for score, m, cosine, coverage in scored[:limit]:
            field, snippet = best_text(m, terms)
            out.append({
                "moment_id": m.id, "video_id": m.video_id, "filename": m.filename, "path": video_path(m),
                "start_s": m.start_s, "end_s": m.end_s, "start": fmt_time(m.start_s), "end": fmt_time(m.end_s),
                "score": score, "text": snippet, "matched_in": field,
                "keyframe_index": m.keyframe_index,
                "ranks": {"vector": _rank(vector_ids, m.id), "lexical": _rank(lexical_ids, m.id)},
                "relevance": {"cosine": None if cosine is None else round(cosine, 4),
                              "coverage": round(coverage, 4)},
            })  # fmt: skip
        return out


def bm25_idf(total: int, having: int) -> float:
    """FTS5's inverse document frequency: log((N - n + 0.5) / (n + 0.5)), never below a tiny positive value."""
    idf = math.log((total - having + 0.5) / (having + 0.5)) if total else 0.0
    return idf if idf > 0 else 1e-6


class MomentTable:
    """Every moment's tenant and time range in memory (about 30 bytes each), to filter index hits without a
    database round trip. Loaded once, then extended with newer ids when a hit is newer than what it holds.
    Readers take one snapshot of the arrays; an extension replaces the snapshot whole."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._lock = threading.Lock()
        empty = np.empty(0, np.float64)
        self._snap: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] = (
            np.empty(0, np.int64), np.empty(0, np.int32), empty, empty)  # fmt: skip
        self.codes: dict[str, int] = {}
        self.max_id = -1

    def _extend(self) -> None:
        with self._lock:
            with self.engine.connect() as c:
                rows = repo.all_tenants_after(c, self.max_id)
            if not rows:
                return
            n = len(rows)
            ids, tenants, starts, ends = self._snap
            codes = dict(self.codes)
            new_codes = np.fromiter((codes.setdefault(r[1], len(codes)) for r in rows), np.int32, n)
            self._snap = (
                np.concatenate([ids, np.fromiter((r[0] for r in rows), np.int64, n)]),
                np.concatenate([tenants, new_codes]),
                np.concatenate([starts, np.fromiter((r[2] for r in rows), np.float64, n)]),
                np.concatenate([ends, np.fromiter((r[3] for r in rows), np.float64, n)]),
            )
            self.codes = codes
            self.max_id = int(rows[-1][0])

    def allowed(self, ids: np.ndarray, tenant: str, start_s: float | None, end_s: float | None) -> list[int]:
        """The ids (in their order) of moments of `tenant` inside the time range."""
        ids = ids[ids >= 0]
        if ids.size and int(ids.max()) > self.max_id:
            self._extend()
        table, tenants, starts, ends = self._snap
        code = self.codes.get(tenant)
        if code is None or not ids.size or not table.size:
            return []
        pos = np.minimum(np.searchsorted(table, ids), table.size - 1)
        keep = (table[pos] == ids) & (tenants[pos] == code)
        if start_s is not None:
            keep &= ends[pos] > start_s
        if end_s is not None:
            keep &= starts[pos] < end_s
        return [int(i) for i in ids[keep]]


def _rank(ranking: list[int], moment_id: int) -> int | None:
    try:
        return ranking.index(moment_id) + 1
    except ValueError:
        return None


def video_path(video: Any) -> str:
    """Where the original is, for a player: a local path for the local library, else the file name."""
    key = str(video.blob_key)
    return key.removeprefix("external:") if key.startswith("external:") else str(video.filename)


def best_text(m: Any, terms: list[str]) -> tuple[str, str]:
    """The field of a moment that matches the query words best, and a snippet of it (at most ~300 chars)."""
    fields = [("speech", m.speech or ""), ("screen_text", m.screen_text or ""), ("caption", m.caption or "")]
    stems = [t[:5] for t in terms]
    patterns = [re.compile(r"\b" + re.escape(s), re.IGNORECASE) for s in stems]

    def hits(value: str) -> int:  # how many of the query's words (by their first letters) the text has
        return sum(1 for p in patterns if p.search(value))

    name, value = max(fields, key=lambda f: (hits(f[1]), bool(f[1])))
    value = " ".join(value.split())
    if len(value) > 300:
        lowered = value.lower()
        first = min((p for s in stems if (p := lowered.find(s)) >= 0), default=0)
        start = max(0, first - 100)
        value = ("…" if start else "") + value[start : start + 300] + "…"
    return name, value
