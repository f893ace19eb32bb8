"""Moment search and questions on generated lectures whose spoken and on-screen content is known: the real
embedding model (bundled MiniLM), FAISS, SQLite FTS5, the local library that `analyze` fills."""

from __future__ import annotations

import json
import os
import re
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.support.cli import run_cli
from tests.support.fake_vllm import FakeVLLM, completion
from videopipe.analysis import AnalyzeOptions, analyze
from videopipe.ask import Asker, _parse
from videopipe.config import SearchSettings, Settings, UnderstandingSettings
from videopipe.embeddings import FLOAT, INT8, open_embedder
from videopipe.errors import BadRequest
from videopipe.evaluation import evaluate, iou, read_dataset
from videopipe.index import Manifest, VectorIndex
from videopipe.search import Searcher, relevance, rrf, stem, stem_pattern
from videopipe.services import Services, open_services
from videopipe.testing.media import Slide, write_lecture_video

SECOND_SLIDES = [
    Slide("Photosynthesis in plants", ("chlorophyll", "sunlight into sugar"), 6.0),
    Slide("The French Revolution", ("storming of the Bastille", "1789"), 6.0),
    Slide("Ocean tides", ("the moon", "high and low water"), 6.0),
]
SECOND_NARRATION = [
    (0.8, "Leaves turn sunlight into sugar."),
    (6.8, "Crowds stormed the Bastille in Paris."),
    (12.8, "The moon pulls the ocean into tides."),
]


@pytest.fixture(scope="module")
def second_lecture(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("second") / "second-lecture.mp4"
    return write_lecture_video(out, SECOND_SLIDES, SECOND_NARRATION, width=640, height=360).path


def _add(pipeline: Services, path: Path, out: Path, tenant: str = "default") -> str:
    doc = analyze(path, out, pipeline.settings, AnalyzeOptions.for_profile("lecture", vlm="none"))
    return pipeline.jobs.record_analysis(path, doc, out, tenant=tenant)


@pytest.fixture(scope="module")
def library(
    tmp_path_factory: pytest.TempPathFactory, short_lecture: Path, second_lecture: Path
) -> Iterator[tuple[Services, dict[str, str]]]:
    data = tmp_path_factory.mktemp("library")
    settings = Settings(data_dir=data, vlm="none")
    pipeline = open_services(settings, dispatch="none", migrate=True)
    ids = {
        "first": _add(pipeline, short_lecture, data / "first.out"),
        "second": _add(pipeline, second_lecture, data / "second.out"),
        "other-tenant": _add(pipeline, second_lecture, data / "third.out", tenant="globex"),
    }
    yield pipeline, ids


def _asker(services: Services, settings: Settings) -> Asker:
    return Asker(settings, services.sessions, services.store, Searcher(settings, services.sessions))


def _served(services: Services, server: FakeVLLM) -> Settings:
    """The library's settings with the fake vLLM server as the model (no retries: an error fails at once)."""
    return services.settings.model_copy(update={
        "vlm_url": server.url, "vlm": "openai",
        "understanding": UnderstandingSettings(max_retries=0, retry_backoff_s=0.0)})  # fmt: skip


def _top(pipeline: Services, query: str, tenant: str = "default", **kw: Any) -> list[dict[str, Any]]:
    return Searcher(pipeline.settings, pipeline.sessions).search(query, tenant, **kw)


@pytest.mark.parametrize(
    ("query", "video", "start_s", "word"),
    [
        ("a volcano can erupt without warning", "first", 6.0, "volcano"),  # spoken once
        ("when does the speaker define entropy", "first", 0.0, "entropy"),
        ("telescope galaxies", "first", 12.0, "galaxies"),
        ("crowds stormed the Bastille", "second", 6.0, "crowds"),
        ("the moon pulls the ocean", "second", 12.0, "moon"),
        ("chlorophyll", "second", 0.0, "chlorophyll"),  # only on the slide, never spoken
    ],
)
def test_the_moment_where_it_is_said_or_shown_comes_first(
    library: tuple[Services, dict[str, str]], query: str, video: str, start_s: float, word: str
) -> None:
    pipeline, ids = library
    hits = _top(pipeline, query)
    assert hits, query
    first = hits[0]
    assert (first["video_id"], first["start_s"]) == (ids[video], pytest.approx(start_s, abs=0.1)), hits[:3]
    assert first["start"] == f"00:00:{int(start_s):02d}.000"
    assert word in first["text"].lower(), first["text"]  # the moment's own words (speech, slide) say it
    # Scores are absolute (not divided by the top hit): the moment that says it scores enough for `ask` to answer
    # from it, below 1.0 unless it says it twice over; every other moment of the video, which says something else,
    # ranks below it; the order is the scores' order.
    scores = [h["score"] for h in hits]
    assert scores == sorted(scores, reverse=True) and all(0 <= x <= 1 for x in scores)
    assert first["score"] >= pipeline.settings.search.ask_min_score, first
    same_video = [h for h in hits if h["video_id"] == ids[video]]
    assert same_video[0] is first and all(h["score"] < first["score"] for h in same_video[1:]), hits
    assert first["path"].endswith(".mp4") and first["keyframe_index"] is not None


def test_tenant_video_and_time_filters_hold(library: tuple[Services, dict[str, str]]) -> None:
    pipeline, ids = library
    assert {h["video_id"] for h in _top(pipeline, "Bastille", limit=50)} <= {ids["first"], ids["second"]}
    theirs = _top(pipeline, "Bastille", tenant="globex", limit=50)
    assert theirs and {h["video_id"] for h in theirs} == {ids["other-tenant"]}
    assert _top(pipeline, "Bastille", tenant="nobody") == []
    only_first = _top(pipeline, "Bastille", video_id=ids["first"], limit=50)
    assert only_first and {h["video_id"] for h in only_first} == {ids["first"]}
    late = _top(pipeline, "sunlight", video_id=ids["second"], start_s=10.0, limit=50)
    assert late and all(h["end_s"] > 10.0 for h in late)
    with pytest.raises(BadRequest):
        _top(pipeline, "   ")


UNANSWERABLE = [
    "What is the capital of Peru?",
    "How do I reset my router password?",
    "Who painted the Mona Lisa?",
    "Which ingredients make bread dough?",  # another lecture's subject (cooking)
]


def test_scores_are_absolute_so_a_query_nothing_matches_scores_low(library: tuple[Services, dict[str, str]]) -> None:
    pipeline, ids = library
    threshold = pipeline.settings.search.ask_min_score
    for query in UNANSWERABLE:
        hits = _top(pipeline, query, video_id=ids["first"])
        assert not hits or hits[0]["score"] < threshold, (query, hits[:2])
    related = _top(pipeline, "how a volcano erupts", video_id=ids["first"])
    assert related[0]["score"] >= threshold and related[0]["start_s"] == pytest.approx(6.0, abs=0.1)
    # The same moment, asked about with more of its words, scores higher: the scale means the same across queries.
    vaguer = [h for h in _top(pipeline, "mountains and fire", video_id=ids["first"]) if h["start_s"] == 6.0]
    assert vaguer and vaguer[0]["score"] < related[0]["score"]


def test_relevance_mixes_cosine_and_coverage_on_a_fixed_scale() -> None:
    s = SearchSettings()
    mid, width = s.relevance_cos_mid, s.relevance_cos_width
    assert relevance(None, 0.0, s) == 0.0 and relevance(None, 1.0, s) == pytest.approx(s.lexical_weight)
    assert relevance(mid, 0.0, s) == pytest.approx(0.5)
    assert 0 < relevance(mid - 5 * width, 0.0, s) < 0.01 and 0.99 < relevance(mid + 5 * width, 0.0, s) < 1
    assert relevance(mid, 0.5, s) > relevance(mid, 0.0, s) and relevance(mid + 0.1, 0.0, s) > relevance(mid, 0.0, s)
    assert relevance(mid + 0.1, 1.0, s) > relevance(mid + 0.1, 0.5, s)
    assert stem("Volcanoes") == stem("volcano") and stem("galaxies") == stem("galaxy") and stem("erupts") == "erupt"
    assert stem_pattern("galaxies").search("distant galaxy") and stem_pattern("moons").search("the moon.")
    assert not stem_pattern("moon").search("moonlight") and not stem_pattern("sun").search("a sunny day")
    assert stem_pattern("heats").search("heated by magma") and stem_pattern("play").search("playing")


def test_ask_says_nothing_matches_with_and_without_a_model(library: tuple[Services, dict[str, str]]) -> None:
    pipeline, ids = library
    asker = _asker(pipeline, pipeline.settings)
    for question in UNANSWERABLE:
        answer = asker.ask("default", ids["first"], question)
        assert answer["mode"] == "no-match" and answer["citations"] == [], answer
        assert "nothing" in answer["answer"].lower() and "ask_min_score" in answer["note"]
    answered = asker.ask("default", ids["first"], "Can a volcano erupt without any warning?")
    assert answered["mode"] == "extractive" and answered["citations"][0]["start_s"] == 6.0
    server = FakeVLLM()  # a served model is not asked when nothing matches
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        settings = _served(pipeline, server)
        answer = _asker(pipeline, settings).ask("default", ids["first"], "What is the capital of Peru?")
    finally:
        server.shutdown()
        server.server_close()
    assert answer["mode"] == "no-match" and "model was not asked" in answer["note"] and server.requests == []


def test_rrf_fuses_ranks() -> None:
    fused = rrf([[1, 2, 3], [3, 1]], k=60)
    assert [d for d, _ in fused] == [1, 3, 2]
    assert fused[0][1] == pytest.approx(1 / 61 + 1 / 62)


def _ranking(pipeline: Services, queries: list[str]) -> list[list[tuple[str, float]]]:
    return [[(h["video_id"], h["start_s"]) for h in _top(pipeline, q)] for q in queries]


QUERIES = ["volcano", "entropy in a message", "French revolution", "tides and the moon", "sugar"]


def test_an_index_rebuilt_from_the_database_gives_the_same_results(
    library: tuple[Services, dict[str, str]],
) -> None:
    pipeline, _ = library
    before = _ranking(pipeline, QUERIES)
    index = VectorIndex(pipeline.settings, pipeline.sessions)
    old = Manifest.read(index.root)
    for path in index.root.iterdir():  # lose every index file
        path.unlink()
    manifest = index.rebuild()
    assert old is not None and manifest is not None and manifest.count == old.count
    assert _ranking(pipeline, QUERIES) == before


def test_a_crash_between_the_temp_write_and_the_rename_leaves_the_old_index(
    library: tuple[Services, dict[str, str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    pipeline, _ = library
    index = VectorIndex(pipeline.settings, pipeline.sessions)
    before = Manifest.read(index.root)
    assert before is not None
    old_bytes = (index.root / before.file).read_bytes()
    real_replace = os.replace

    class Killed(BaseException):
        """What the process sees of a kill: nothing after this point runs."""

    def crash_on_index_rename(src: Any, dst: Any) -> None:
        if str(dst).endswith(".faiss"):
            raise Killed
        real_replace(src, dst)

    monkeypatch.setattr("videopipe.index.os.replace", crash_on_index_rename)
    with pytest.raises(Killed):
        index.rebuild()
    monkeypatch.undo()
    assert [p for p in index.root.iterdir() if p.name.endswith(".tmp")]  # the half-done write is there...
    assert Manifest.read(index.root) == before  # ...but the manifest still names the old file, whole
    assert (index.root / before.file).read_bytes() == old_bytes
    fresh = VectorIndex(pipeline.settings, pipeline.sessions)
    loaded = fresh.current()
    assert loaded is not None and loaded[1].ntotal == before.count
    assert _top(pipeline, "volcano")[0]["start_s"] == pytest.approx(6.0)
    assert fresh.rebuild() is not None  # and the next writer gets on with it


def test_changing_the_embedding_model_swaps_versions_with_no_empty_window(
    library: tuple[Services, dict[str, str]],
) -> None:
    pipeline, _ = library
    searcher = Searcher(pipeline.settings, pipeline.sessions)
    assert searcher.index.model == INT8
    results: list[int] = []
    stop = threading.Event()

    def keep_searching() -> None:
        while not stop.is_set():
            results.append(len(searcher.search("volcano", "default")))

    thread = threading.Thread(target=keep_searching)
    thread.start()
    try:
        try:
            changed = pipeline.settings.model_copy(update={"search": SearchSettings(embedding_model="bundled:minilm")})
            manifest = VectorIndex(changed, pipeline.sessions).rebuild()
            time.sleep(0.5)
        finally:
            stop.set()
            thread.join()
        assert manifest is not None and manifest.model == FLOAT
        assert len(results) > 5 and min(results) > 0  # every search during the swap found moments
        assert searcher.index.model == FLOAT  # the reader picked up the new version by itself
        assert searcher.search("volcano", "default")[0]["start_s"] == pytest.approx(6.0)
    finally:  # back to the settings' model: the module's other tests (in any order) search the index it built
        VectorIndex(pipeline.settings, pipeline.sessions).rebuild()
    assert searcher.index.model == INT8
    # Query vectors come from the serving model: the two MiniLM builds agree closely.
    a, b = open_embedder(pipeline.settings, INT8), open_embedder(pipeline.settings, FLOAT)
    assert float(np.dot(a.embed(["magma"])[0], b.embed(["magma"])[0])) > 0.98


def test_ask_without_a_model_answers_with_the_best_moment_and_says_so(
    library: tuple[Services, dict[str, str]],
) -> None:
    pipeline, ids = library
    answer = _asker(pipeline, pipeline.settings).ask("default", ids["first"], "When does the speaker define entropy?")
    assert answer["mode"] == "extractive" and answer["model"] is None and "not a generated answer" in answer["note"]
    assert "entropy" in answer["answer"].lower()
    assert answer["citations"][0]["start_s"] == 0.0 and answer["citations"][0]["end_s"] == pytest.approx(6.0)


def test_ask_with_a_served_model_cites_checked_times_and_looks_again(
    library: tuple[Services, dict[str, str]],
) -> None:
    pipeline, ids = library
    server = FakeVLLM()
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        cited = [{"start": "00:06.50", "end": "00:11.00"}, {"start": "05:00.00", "end": "05:10.00"}]
        reply = {"answer": "The volcano is discussed here.", "citations": cited}
        server.script = [(200, completion(json.dumps(reply))), (200, completion('{"supported": true, "reason": "ok"}'))]
        settings = _served(pipeline, server)
        answer = _asker(pipeline, settings).ask("default", ids["first"], "When is the volcano discussed?")
    finally:
        server.shutdown()
        server.server_close()
    assert answer["mode"] == "whole-video" and answer["model"] == settings.vlm_model
    assert [(c["start_s"], c["end_s"]) for c in answer["citations"]] == [(6.5, 11.0)]  # 5:00 is past the end
    assert answer["confidence"] == 0.9 and "outside the video" in answer["note"]
    first, second = server.requests
    user = first["messages"][1]["content"]
    assert [p["type"] for p in user] == ["video_url", "text"] and "When is the volcano discussed?" in user[-1]["text"]
    assert re.search(r"\[00:0[67]\.\d\d\] A volcano can erupt", user[-1]["text"])  # transcript lines, timed
    assert "Proposed answer: The volcano is discussed here." in second["messages"][1]["content"][-1]["text"]


def test_ask_with_the_tiny_qwen3_vl_model_gives_a_well_formed_answer(
    library: tuple[Services, dict[str, str]], tiny_qwen: Path
) -> None:
    pipeline, ids = library
    settings = pipeline.settings.model_copy(update={"vlm_model": str(tiny_qwen), "vlm": "transformers"})
    answer = _asker(pipeline, settings).ask("default", ids["first"], "What erupts?")
    # The whole video fits the tiny model's plan, so it is asked; random weights (seeded, greedy decoding: the same
    # garbage every run) write no JSON, so the answer falls back to the best moments and says why.
    assert answer["mode"] == "extractive" and answer["model"] is None, answer
    assert "could not be read" in answer["note"] and "volcano" in answer["answer"].lower()
    assert answer["citations"][0]["start_s"] == 6.0 and answer["confidence"] is None


def test_model_answers_are_parsed_and_checked() -> None:
    answer, cites, dropped = _parse('```json\n{"answer": "At the start.", "citations": ["00:01.5", '
                                    '{"start": 12, "end": 9}, {"start": "bad"}]}\n```', 18.0)  # fmt: skip
    assert answer == "At the start." and dropped == 1
    assert [(c["start_s"], c["end_s"]) for c in cites] == [(1.5, 2.0), (9.0, 12.0)]
    assert _parse("I think it is at the start", 18.0) == (None, [], 0)
    assert _parse('{"answer": ""}', 18.0)[0] is None


def test_search_ask_and_eval_from_the_command_line(short_lecture: Path, tmp_path: Path) -> None:
    env = {"VIDEOPIPE_DATA_DIR": str(tmp_path / "data"), "VIDEOPIPE_VLM": "none"}
    done = run_cli("analyze", str(short_lecture), "--profile", "lecture", "-q", "--out", str(tmp_path / "o"),
                   cwd=tmp_path, env=env)  # fmt: skip
    assert done.returncode == 0, done.stderr
    found = run_cli("search", "volcano erupts", "--json", cwd=tmp_path, env=env)
    assert found.returncode == 0, found.stderr
    hits = json.loads(found.stdout)
    assert isinstance(hits, list) and hits[0]["start_s"] == 6.0 and hits[0]["end_s"] == pytest.approx(12.0)
    assert hits[0]["link"] == f"{short_lecture.resolve().as_uri()}#t=6.000"
    assert {"video_id", "path", "start", "end", "score", "text"} <= set(hits[0])

    asked = run_cli("ask", str(short_lecture), "what did the telescope reveal?", "--json", cwd=tmp_path, env=env)
    assert asked.returncode == 0, asked.stderr
    answer = json.loads(asked.stdout)
    assert "galaxies" in answer["answer"] and answer["citations"][0]["start_s"] == 12.0

    dataset = tmp_path / "eval.jsonl"
    lines = [
        {"video": str(short_lecture), "query": "volcano", "start_s": 6.0, "end_s": 12.0},
        {"video": str(short_lecture), "query": "distant galaxies", "start_s": 12.0, "end_s": 18.0},
        {"video": str(short_lecture), "query": "entropy", "start_s": 0.0, "end_s": 3.0},
        {"video": str(short_lecture), "question": "When is uncertainty measured?", "start_s": 0.0, "end_s": 6.0},
        {"video": str(short_lecture), "question": "What is the capital of Peru?", "answerable": False},
    ]
    dataset.write_text("\n".join(json.dumps(line) for line in lines) + "\n")
    report = run_cli("eval", str(dataset), "--json", cwd=tmp_path, env=env)
    assert report.returncode == 0, report.stderr
    metrics = json.loads(report.stdout)
    search = metrics["search"]["summary"]
    assert search["n"] == 3 and search["R@1,IoU=0.3"] == 1.0 and search["R@5,IoU=0.5"] == 1.0
    assert search["R@1,IoU=0.7"] == pytest.approx(2 / 3, abs=1e-3)  # the third span is half the moment: IoU 0.5
    grounding = metrics["grounding"]["summary"]
    assert grounding["R@1,IoU=0.5"] == 1.0 and grounding["n"] == 1 and grounding["answered"] == 1.0
    assert grounding["unanswerable"] == {"n": 1, "said_nothing": 1.0}
    table = run_cli("eval", str(dataset), cwd=tmp_path, env=env)
    assert "R@1 IoU.5" in table.stdout and "search" in table.stdout

    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"video": "x.mp4", "start_s": 1}\n')
    refused = run_cli("eval", str(bad), cwd=tmp_path, env=env)
    assert refused.returncode == 2 and "bad.jsonl:1" in refused.stderr


def test_eval_counts_unanswerable_questions_apart(tmp_path: Path) -> None:
    dataset = tmp_path / "d.jsonl"
    dataset.write_text('{"video": "v", "question": "where?", "start_s": 0, "end_s": 4}\n'
                       '{"video": "v", "question": "who?", "answerable": false}\n'
                       '{"video": "v", "question": "why?", "answerable": false}\n')  # fmt: skip
    replies = {"where?": [(0.0, 4.0)], "who?": [], "why?": [(1.0, 2.0)]}
    report = evaluate(read_dataset(dataset), str, lambda v, q: [], lambda v, q: replies[q])
    summary = report["grounding"]["summary"]
    assert summary["n"] == 1 and summary["R@1,IoU=0.7"] == 1.0 and summary["answered"] == 1.0
    assert summary["unanswerable"] == {"n": 2, "said_nothing": 0.5} and "search" not in report


def test_iou() -> None:
    assert iou((0, 10), (5, 15)) == pytest.approx(5 / 15)
    assert iou((0, 1), (2, 3)) == 0.0


def test_past_the_size_threshold_the_index_is_hnsw_and_finds_the_same_moments(
    library: tuple[Services, dict[str, str]],
) -> None:
    pipeline, _ = library
    before = _ranking(pipeline, QUERIES)
    small = pipeline.settings.model_copy(update={"search": SearchSettings(exact_below=2)})
    manifest = VectorIndex(small, pipeline.sessions).rebuild()
    assert manifest is not None and manifest.kind == "hnsw"
    after = _ranking(pipeline, QUERIES)
    assert [r[0] for r in after] == [r[0] for r in before]  # the same first hit for every query
    assert VectorIndex(pipeline.settings, pipeline.sessions).rebuild().kind == "flat"  # type: ignore[union-attr]


def test_concurrent_queries_share_model_runs_and_each_gets_its_own_vector() -> None:
    from videopipe.embeddings import QueryBatcher

    real = open_embedder(Settings())
    calls: list[int] = []

    class Counting:
        name, dim = real.name, real.dim

        def embed(self, texts: list[str]) -> np.ndarray:
            calls.append(len(texts))
            time.sleep(0.02)  # a slow model: callers pile up behind the first
            return real.embed(texts)

    batcher = QueryBatcher(Counting())  # type: ignore[arg-type]
    texts = [
        f"a red truck stops at gate {n}" if n % 2 else f"the lecturer defines entropy, part {n}" for n in range(24)
    ]
    results: dict[int, np.ndarray] = {}

    def ask(n: int) -> None:
        results[n] = batcher.embed_one(texts[n])

    threads = [threading.Thread(target=ask, args=(n,)) for n in range(24)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(calls) == 24 and len(calls) < 24  # every text once, in fewer runs than callers
    alone = real.embed(texts)
    for n in range(24):  # int8 activations are quantised per batch: close, not bit-identical
        assert float(results[n] @ alone[n]) > 0.99

    class Broken:
        name, dim = "broken", 384

        def embed(self, texts: list[str]) -> np.ndarray:
            raise RuntimeError("model crashed")

    with pytest.raises(RuntimeError, match="model crashed"):
        QueryBatcher(Broken()).embed_one("anything")  # type: ignore[arg-type]


def test_a_repeated_query_is_not_embedded_again(library: tuple[Services, dict[str, str]]) -> None:
    pipeline, _ = library
    searcher = Searcher(pipeline.settings, pipeline.sessions)
    first = searcher.search("a volcano can erupt without warning", "default")
    batcher = next(iter(searcher._batchers.values()))
    runs: list[int] = []
    real = batcher.embedder

    class Counting:
        name, dim = real.name, real.dim

        def embed(self, texts: list[str]) -> np.ndarray:
            runs.append(len(texts))
            return real.embed(texts)

    batcher.embedder = Counting()  # type: ignore[assignment]
    assert searcher.search("a volcano can erupt without warning", "default") == first
    assert runs == []
    searcher.search("telescopes and galaxies", "default")
    assert runs == [1]
