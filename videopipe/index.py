"""The moment vector index: FAISS with moment ids (`IndexIDMap2`), on local disk, rebuilt from the database.

Layout under ``DATA_DIR/index/``::

    current.json                 which index file serves, for which embedding model (replaced atomically)
    <model>-g<generation>.faiss  the index files; the current one and, briefly, its predecessor
    writer.lock                  one writer at a time (fcntl lock), across processes

The database (``moment_vectors``) is the source of truth. A writer adds the vectors that arrived since the
index was written (moment ids only grow), writes a new file under a temporary name, fsyncs it, renames it into
place and then swaps ``current.json``: a crash at any point leaves the previous index whole and serving.
Readers check ``current.json`` on every search (one ``stat``) and load a new generation when it appears,
keeping the old one until the new one is ready, so there is never a moment with no index. Deleted moments stay
in the file until the next rebuild; search drops them when it reads the rows.

Exact inner-product search (``IndexFlatIP``) below `search.exact_below` vectors, HNSW above (the threshold
comes from ``benchmarks/search.py``).
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import re
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy.orm import Session, sessionmaker

from videopipe.config import Settings
from videopipe.db.models import MomentVector
from videopipe.db.repos import moments

log = logging.getLogger(__name__)

MANIFEST = "current.json"


def _faiss() -> Any:
    try:
        import faiss
    except ImportError:
        from videopipe.errors import ConfigError

        raise ConfigError("search needs FAISS: pip install 'videopipe[search]'") from None
    faiss.omp_set_num_threads(1)  # one query per thread; the server's threads are the parallelism
    return faiss


def _slug(model: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", model)[:80]


@dataclass(frozen=True, slots=True)
class Manifest:
    model: str
    dim: int
    file: str
    generation: int
    count: int
    max_id: int
    kind: str  # "flat" or "hnsw"

    @staticmethod
    def read(root: Path) -> Manifest | None:
        try:
            data = json.loads((root / MANIFEST).read_text())
        except FileNotFoundError:
            return None
        return Manifest(**data)

    def write(self, root: Path) -> None:
        _atomic_write(root / MANIFEST, json.dumps(asdict(self)))


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with tmp.open("w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    _fsync_dir(path.parent)


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


RECHECK_S = 0.25  # how stale a reader's view of an index written by another process may be
_WRITTEN: dict[str, float] = {}  # index folder -> when this process last swapped in a generation


class VectorIndex:
    """Reading and writing the index files for one data dir."""

    def __init__(self, settings: Settings, sessions: sessionmaker[Session]) -> None:
        self.settings = settings
        self.sessions = sessions
        self.root = settings.data_dir / "index"
        self.root.mkdir(parents=True, exist_ok=True)
        self._loaded: tuple[Manifest, Any] | None = None
        self._load_lock = threading.Lock()
        self._stamp: tuple[int, int] | None = None
        self._checked = 0.0

    # -- reading -------------------------------------------------------------------------------------------
    def current(self) -> tuple[Manifest, Any] | None:
        """The serving (manifest, faiss index), reloaded when another writer swapped in a new generation
        (checked at most every `RECHECK_S`: a search does not pay a stat() each)."""
        now = time.monotonic()
        fresh = now - self._checked < RECHECK_S and _WRITTEN.get(str(self.root), 0.0) < self._checked
        if self._loaded is not None and fresh:
            return self._loaded
        self._checked = now
        try:
            st = (self.root / MANIFEST).stat()
            stamp = (st.st_mtime_ns, st.st_ino)
        except FileNotFoundError:
            return self._loaded
        if stamp != self._stamp:
            with self._load_lock:
                if stamp != self._stamp:
                    manifest = Manifest.read(self.root)
                    if manifest is not None and (self._loaded is None or self._loaded[0] != manifest):
                        index = _faiss().read_index(str(self.root / manifest.file))
                        self._tune(index)
                        self._loaded = (manifest, index)  # one assignment: readers see old or new, never none
                    self._stamp = stamp
        return self._loaded

    def _tune(self, index: Any) -> None:
        faiss = _faiss()
        inner = faiss.downcast_index(index.index) if hasattr(index, "index") else index
        if isinstance(inner, faiss.IndexHNSW):
            inner.hnsw.efSearch = self.settings.search.hnsw_ef_search

    def search(self, query: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(scores, moment ids) of the `k` nearest, best first; ids of -1 mean fewer were found."""
        loaded = self.current()
        if loaded is None or loaded[1].ntotal == 0:
            return np.zeros(0, np.float32), np.zeros(0, np.int64)
        scores, ids = loaded[1].search(np.ascontiguousarray(query.reshape(1, -1), dtype=np.float32), k)
        keep = ids[0] >= 0
        return scores[0][keep], ids[0][keep]

    @property
    def model(self) -> str | None:
        loaded = self.current()
        return loaded[0].model if loaded else None

    # -- writing -------------------------------------------------------------------------------------------
    @contextmanager
    def _writer(self) -> Iterator[None]:
        with (self.root / "writer.lock").open("a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def _new_index(self, dim: int, count: int) -> tuple[Any, str]:
        faiss = _faiss()
        cfg = self.settings.search
        if count < cfg.exact_below:
            return faiss.IndexIDMap2(faiss.IndexFlatIP(dim)), "flat"
        hnsw = faiss.IndexHNSWFlat(dim, cfg.hnsw_m, faiss.METRIC_INNER_PRODUCT)
        hnsw.hnsw.efConstruction = cfg.hnsw_ef_construction
        return faiss.IndexIDMap2(hnsw), "hnsw"

    def _vectors(self, model: str, after_id: int, batch: int = 50_000) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """(ids, vectors) of `model` for moments with id > after_id, in id order, in batches."""
        last = after_id
        while True:
            with self.sessions() as s:
                rows = moments.vectors_after_all_tenants(s, model, last, batch)
            if not rows:
                return
            ids = np.fromiter((r[0] for r in rows), np.int64, len(rows))
            vectors = np.frombuffer(b"".join(r[1] for r in rows), dtype="<f4").reshape(len(rows), -1)
            yield ids, vectors
            last = int(ids[-1])

    def _save(self, index: Any, model: str, dim: int, kind: str, max_id: int, previous: Manifest | None) -> Manifest:
        faiss = _faiss()
        generation = (previous.generation + 1) if previous else 1
        name = f"{_slug(model)}-g{generation}.faiss"
        tmp = self.root / f".{name}.{os.getpid()}.tmp"
        faiss.write_index(index, str(tmp))
        with tmp.open("rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, self.root / name)
        manifest = Manifest(model, dim, name, generation, int(index.ntotal), max_id, kind)
        manifest.write(self.root)
        _WRITTEN[str(self.root)] = time.monotonic()  # readers in this process look again at once
        self._cleanup(keep={name, previous.file if previous else name})
        return manifest

    def _cleanup(self, keep: set[str]) -> None:
        for path in self.root.iterdir():
            if path.suffix == ".faiss" and path.name not in keep:
                path.unlink(missing_ok=True)
            elif path.name.endswith(".tmp") and time.time() - path.stat().st_mtime > 600:
                path.unlink(missing_ok=True)  # left by a writer that crashed

    def sync(self) -> Manifest | None:
        """Add the vectors written since the index was (of the index's model; of the configured model when no
        index exists yet). Returns the serving manifest."""
        from videopipe.embeddings import model_name

        with self._writer():
            previous = Manifest.read(self.root)
            model = previous.model if previous else model_name(self.settings)
            if previous is not None:
                index = _faiss().read_index(str(self.root / previous.file))
                kind, dim, max_id = previous.kind, previous.dim, previous.max_id
            else:
                index, kind, dim, max_id = None, "flat", 0, 0
            added = 0
            for ids, vectors in self._vectors(model, max_id):
                if index is None:
                    dim = vectors.shape[1]
                    index, kind = self._new_index(dim, self._count(model))
                index.add_with_ids(np.ascontiguousarray(vectors), ids)
                added += len(ids)
                max_id = int(ids[-1])
            if not added:
                return previous
            if kind == "flat" and index.ntotal >= self.settings.search.exact_below:
                log.info("index passed %d vectors: rebuilding as HNSW", self.settings.search.exact_below)
                return self._rebuild_locked(model, previous)
            return self._save(index, model, dim, kind, max_id, previous)

    def remove(self, ids: list[int]) -> None:
        """Drop deleted moments from a flat index now; an HNSW graph cannot drop nodes, so there they stay until
        the next rebuild (search never returns them: their rows are gone)."""
        if not ids:
            return
        with self._writer():
            previous = Manifest.read(self.root)
            if previous is None or previous.kind != "flat":
                return
            index = _faiss().read_index(str(self.root / previous.file))
            if index.remove_ids(np.asarray(ids, np.int64)):
                self._save(index, previous.model, previous.dim, previous.kind, previous.max_id, previous)

    def _count(self, model: str) -> int:
        with self.sessions() as s:
            return moments.vector_count_all_tenants(s, model)

    def rebuild(self, progress: Callable[[int, int], None] | None = None) -> Manifest | None:
        """A new index from the database for the configured embedding model (embedding the moments that have no
        vector of it yet), swapped in when complete; the old index serves until then."""
        from videopipe.embeddings import model_name

        model = model_name(self.settings)
        self.embed_missing(progress)
        with self._writer():
            return self._rebuild_locked(model, Manifest.read(self.root))

    def _rebuild_locked(self, model: str, previous: Manifest | None) -> Manifest | None:
        total = self._count(model)
        if total == 0:
            return previous
        index, kind, dim, max_id = None, "flat", 0, 0
        for ids, vectors in self._vectors(model, 0):
            if index is None:
                dim = vectors.shape[1]
                index, kind = self._new_index(dim, total)
            index.add_with_ids(np.ascontiguousarray(vectors), ids)
            max_id = int(ids[-1])
        return self._save(index, model, dim, kind, max_id, previous)

    def embed_missing(self, progress: Callable[[int, int], None] | None = None, batch: int = 256) -> int:
        """Embed, with the configured model, every moment that has no vector of that model."""
        from videopipe.embeddings import open_embedder
        from videopipe.moments import moment_text

        embedder = open_embedder(self.settings)
        with self.sessions() as s:
            todo = moments.unembedded_all_tenants(s, embedder.name)
        done = 0
        for start in range(0, len(todo), batch):
            chunk = todo[start : start + batch]
            with self.sessions.begin() as s:
                rows = moments.by_ids_all_tenants(s, chunk)
                vectors = embedder.embed([moment_text(r) for r in rows])
                s.add_all(vector_rows([r.id for r in rows], vectors, embedder.name))
            done += len(chunk)
            if progress:
                progress(done, len(todo))
        return done


def vector_rows(moment_ids: list[int], vectors: np.ndarray, model: str) -> list[MomentVector]:
    """Rows for `moment_vectors`: float32 little-endian bytes, with the model's name and dimension."""
    dim = int(vectors.shape[1])
    return [MomentVector(moment_id=i, model=model, dim=dim, vector=vectors[n].astype("<f4").tobytes())
            for n, i in enumerate(moment_ids)]  # fmt: skip


_indexes: dict[tuple[str, str], VectorIndex] = {}
_indexes_lock = threading.Lock()


def vector_index(settings: Settings, sessions: sessionmaker[Session]) -> VectorIndex:
    """One reader per data dir and database in a process (it caches the loaded index)."""
    key = (str(settings.data_dir.resolve()), str(sessions.kw.get("bind")))
    with _indexes_lock:
        if key not in _indexes:
            _indexes[key] = VectorIndex(settings, sessions)
        return _indexes[key]
