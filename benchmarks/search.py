"""Search latency: the vector index at 100k and 1M moments, and GET /v1/search under concurrent load.

    python benchmarks/search.py                       # both phases (index: 100k and 1M; http: 100k)
    python benchmarks/search.py --phase index --sizes 100000
    python benchmarks/search.py --phase http --moments 100000 --duration 20 --connections 8,16

Vectors. 4,000 distinct sentences (templated lecture/surveillance moments) are embedded for real with the
default model (all-MiniLM-L6-v2 int8 ONNX); each moment vector is normalize(B[a] + 0.6 B[b] + 0.35 g) for two
random base sentences a, b and Gaussian noise g, so the collection has the clustered, overlapping structure of
real moment text rather than uniform noise (which no ANN index handles well and no real library looks like).
Queries are 300 other sentences, embedded for real. Recall@10 is measured against exact search (IndexFlatIP)
on the same vectors.

Index phase: exact search and HNSW (M, efConstruction from the settings; efSearch 64/96/128), one query at a
time on one thread (the server's model: each request thread runs one query), p50/p99 over the queries.

HTTP phase: a real SQLite library (migrations, FTS5 triggers) with the moments (text = the two base sentences),
vectors and index built by `VectorIndex.sync()`, `videopipe serve --workers 2` on this machine, and `wrk`
(Debian package) sending GET /v1/search with 8,000 distinct queries in turn (each a real sentence, every
other one with a name; more than the requests sent, so no query repeats), API key auth, for --duration
seconds. wrk runs on the same 2 cores and takes a share of them. Each moment's text is its two base sentences
and two made-up names (from 20,000), the rare words (people, places, plates) a real library has.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

SUBJECTS = [
    "the speaker",
    "a red truck",
    "the lecturer",
    "a delivery van",
    "two people",
    "the camera",
    "a cyclist",
    "the professor",
    "a dog",
    "the crowd",
    "a forklift",
    "the student",
    "a bus",
    "the guard",
    "a child",
]
ACTIONS = [
    "explains",
    "stops at",
    "points to",
    "drives past",
    "walks toward",
    "describes",
    "opens",
    "crosses",
    "writes about",
    "leaves",
    "draws",
    "parks near",
    "shows",
    "waits by",
    "compares",
]
OBJECTS = [
    "entropy and information",
    "the main gate",
    "the loading dock",
    "photosynthesis",
    "the volcano model",
    "the parking lot",
    "a distant galaxy",
    "the French revolution",
    "ocean tides",
    "the fire exit",
    "neural networks",
    "the warehouse door",
    "supply and demand",
    "the bike rack",
    "plate tectonics",
    "the reception desk",
    "quantum states",
    "the fence",
    "a chemical reaction",
    "the storage room",
]
TIMES = ["in the morning", "at night", "during the storm", "after the break", "before the exam", "at noon",
         "in the rain", "on the second slide", "at the end", "in the first minute"]  # fmt: skip


SYLLABLES = ["ka", "lo", "mi", "ren", "tor", "vex", "zu", "pa", "shi", "dan", "bel", "quo", "nim", "ras", "tel",
             "gor", "fi", "wen"]  # fmt: skip


def names(n: int, seed: int = 3) -> list[str]:
    """n distinct made-up proper names (people, places, plates): the rare words of a real library."""
    rng = random.Random(seed)
    out: set[str] = set()
    while len(out) < n:
        out.add("".join(rng.choice(SYLLABLES) for _ in range(rng.choice((3, 4)))))
    return sorted(out)


def sentences(n: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    out: set[str] = set()
    while len(out) < n:
        out.add(f"{rng.choice(SUBJECTS)} {rng.choice(ACTIONS)} {rng.choice(OBJECTS)} {rng.choice(TIMES)}".capitalize())
    return sorted(out)


def corpus(n: int, base: np.ndarray, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """n moment vectors (and which two base sentences each mixes)."""
    rng = np.random.default_rng(seed)
    a = rng.integers(0, len(base), n)
    b = rng.integers(0, len(base), n)
    out = np.empty((n, base.shape[1]), np.float32)
    for start in range(0, n, 100_000):
        sl = slice(start, min(n, start + 100_000))
        x = (
            base[a[sl]]
            + 0.6 * base[b[sl]]
            + 0.35 * rng.standard_normal((sl.stop - sl.start, base.shape[1]), dtype=np.float32) / np.sqrt(base.shape[1])
        )
        out[sl] = x / np.linalg.norm(x, axis=1, keepdims=True)
    return out, a, b


def percentiles(samples_ms: list[float]) -> tuple[float, float]:
    return float(np.percentile(samples_ms, 50)), float(np.percentile(samples_ms, 99))


def bench_index(sizes: list[int], base: np.ndarray, queries: np.ndarray) -> list[dict[str, object]]:
    import faiss

    from videopipe.config import SearchSettings

    cfg = SearchSettings()
    faiss.omp_set_num_threads(1)
    rows: list[dict[str, object]] = []
    for n in sizes:
        x, _, _ = corpus(n, base)
        exact = faiss.IndexFlatIP(x.shape[1])
        exact.add(x)
        truth, lat = [], []
        for q in queries:
            t = time.perf_counter()
            _, ids = exact.search(q[None, :], 10)
            lat.append((time.perf_counter() - t) * 1000)
            truth.append(set(ids[0].tolist()))
        p50, p99 = percentiles(lat)
        rows.append(
            {"moments": n, "index": "exact (flat)", "build_s": 0.0, "p50_ms": p50, "p99_ms": p99, "recall@10": 1.0}
        )
        print(json.dumps(rows[-1]), flush=True)
        faiss.omp_set_num_threads(os.cpu_count() or 1)  # build on every core
        hnsw = faiss.IndexHNSWFlat(x.shape[1], cfg.hnsw_m, faiss.METRIC_INNER_PRODUCT)
        hnsw.hnsw.efConstruction = cfg.hnsw_ef_construction
        t = time.perf_counter()
        hnsw.add(x)
        build = time.perf_counter() - t
        faiss.omp_set_num_threads(1)
        for ef in (64, 96, 128):
            hnsw.hnsw.efSearch = ef
            lat, hits = [], 0
            for q, want in zip(queries, truth, strict=True):
                t = time.perf_counter()
                _, ids = hnsw.search(q[None, :], 10)
                lat.append((time.perf_counter() - t) * 1000)
                hits += len(want & set(ids[0].tolist()))
            p50, p99 = percentiles(lat)
            rows.append({"moments": n, "index": f"HNSW M={cfg.hnsw_m} efSearch={ef}", "build_s": round(build, 1),
                         "p50_ms": p50, "p99_ms": p99, "recall@10": hits / (10 * len(queries))})  # fmt: skip
            print(json.dumps(rows[-1]), flush=True)
        del exact, hnsw, x
    return rows


def build_library(data: Path, n: int, base: np.ndarray, base_text: list[str]) -> str:
    """A SQLite library with n moments in 100-moment... videos of tenant "bench"; returns an API key."""
    from sqlalchemy import insert

    from videopipe.auth import KeyStore
    from videopipe.config import Settings
    from videopipe.db.models import Moment, MomentVector, Video, new_id
    from videopipe.embeddings import INT8
    from videopipe.index import VectorIndex
    from videopipe.services import open_services

    settings = Settings(data_dir=data)
    pipeline = open_services(settings, dispatch="none", migrate=True)
    x, a, b = corpus(n, base, seed=1)
    rare = names(20_000)
    r = np.random.default_rng(2).integers(0, len(rare), (n, 2))
    per_video = 1000

    def speech(i: int) -> str:
        return f"{base_text[a[i]]}. {base_text[b[i]]}. With {rare[r[i, 0]]} and {rare[r[i, 1]]}."

    with pipeline.sessions.begin() as s:
        videos = [{"id": new_id(), "tenant": "bench", "content_hash": f"{v:064d}", "filename": f"camera-{v}.mp4",
                   "blob_key": f"originals/{v}.mp4", "size_bytes": 1, "status": "ready"}
                  for v in range((n + per_video - 1) // per_video)]  # fmt: skip
        s.execute(insert(Video), videos)
        for start in range(0, n, 50_000):
            stop = min(n, start + 50_000)
            s.execute(insert(Moment), [
                {"id": i + 1, "video_id": videos[i // per_video]["id"], "tenant": "bench",
                 "start_s": (i % per_video) * 10.0, "end_s": (i % per_video) * 10.0 + 10.0,
                 "caption": "", "screen_text": "", "keyframe_index": None,
                 "speech": speech(i)} for i in range(start, stop)])  # fmt: skip
            s.execute(insert(MomentVector), [
                {"moment_id": i + 1, "model": INT8, "dim": x.shape[1], "vector": x[i].tobytes()}
                for i in range(start, stop)])  # fmt: skip
    VectorIndex(settings, pipeline.sessions).sync()
    return KeyStore(pipeline.sessions).create("bench")[1]


WRK_SCRIPT = Path(__file__).with_name("search_wrk.lua")


def bench_http(
    n: int, base: np.ndarray, base_text: list[str], duration: int, connections: list[int]
) -> list[dict[str, object]]:
    from urllib.parse import quote

    import httpx

    if shutil.which("wrk") is None:
        sys.exit("the HTTP phase needs wrk: apt-get install wrk")
    data = Path(tempfile.mkdtemp(prefix="vp-bench-search-"))
    try:
        t = time.perf_counter()
        key = build_library(data, n, base, base_text)
        print(f"library of {n} moments built in {time.perf_counter() - t:.1f} s", flush=True)
        rng = random.Random(11)
        rare = names(20_000)
        queries = [q + (f" with {rng.choice(rare)}" if i % 2 else "") for i, q in enumerate(sentences(8000, seed=7))]
        (data / "queries.txt").write_text("\n".join(quote(q) for q in queries) + "\n")
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        env = {**os.environ, "VIDEOPIPE_DATA_DIR": str(data), "VIDEOPIPE_VLM": "none"}
        server = subprocess.Popen([sys.executable, "-m", "videopipe", "serve", "--port", str(port), "--workers", "2",
                                   "--log-level", "warning"], env=env)  # fmt: skip
        try:
            url = f"http://127.0.0.1:{port}"
            for _ in range(300):
                try:
                    if httpx.get(f"{url}/healthz").status_code == 200:
                        break
                except httpx.HTTPError:
                    time.sleep(0.2)
            for q in queries[-60:]:  # warm both workers (model load, index load); the runs send other queries
                httpx.get(f"{url}/v1/search", params={"q": q}, headers={"Authorization": f"Bearer {key}"}, timeout=60)
            results = []
            for run, c in enumerate(connections):
                out = subprocess.run(
                    ["wrk", "-t2", f"-c{c}", f"-d{duration}s", "--latency", "-s", str(WRK_SCRIPT), url],
                    env={**env, "QUERIES": str(data / "queries.txt"), "KEY": key, "START": str(run * 2000)},
                    capture_output=True, text=True, check=True,
                )  # fmt: skip
                line = next(x for x in out.stdout.splitlines() if x.startswith("JSON "))
                result = json.loads(line.removeprefix("JSON "))
                result["requests_per_s"] = round(result["requests"] / result["duration_s"], 1)
                result.update({"moments": n, "connections": c})
                print(json.dumps(result), flush=True)
                results.append(result)
            # Baseline in the same run: GET /healthz, the same server and middleware doing no search.
            out = subprocess.run(["wrk", "-t2", f"-c{max(connections)}", f"-d{min(duration, 10)}s", f"{url}/healthz"],
                                 capture_output=True, text=True, check=True)  # fmt: skip
            rps = next(x for x in out.stdout.splitlines() if x.startswith("Requests/sec"))
            baseline = {"baseline": "GET /healthz", "connections": max(connections),
                        "requests_per_s": float(rps.split()[-1])}  # fmt: skip
            print(json.dumps(baseline), flush=True)
            results.append(baseline)
        finally:
            server.terminate()
            server.wait(timeout=30)
        return results
    finally:
        shutil.rmtree(data, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--phase", choices=["index", "http", "all"], default="all")
    parser.add_argument("--sizes", default="100000,1000000")
    parser.add_argument("--moments", type=int, default=100_000, help="HTTP phase library size")
    parser.add_argument("--duration", type=int, default=20)
    parser.add_argument("--connections", default="8,16", help="wrk connections, one run each")
    args = parser.parse_args()

    from videopipe.config import Settings
    from videopipe.embeddings import open_embedder

    embedder = open_embedder(Settings())
    base_text = sentences(4000, seed=1)
    t = time.perf_counter()
    base = embedder.embed(base_text)
    print(f"embedded {len(base_text)} base sentences in {time.perf_counter() - t:.1f} s", flush=True)
    queries = embedder.embed(sentences(300, seed=99))
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores", flush=True)
    report: dict[str, object] = {}
    if args.phase in ("index", "all"):
        report["index"] = bench_index([int(s) for s in args.sizes.split(",")], base, queries)
    if args.phase in ("http", "all"):
        report["http"] = bench_http(
            args.moments, base, base_text, args.duration, [int(c) for c in args.connections.split(",")]
        )
    print("RESULT " + json.dumps(report))


if __name__ == "__main__":
    main()
