"""Hostile and malformed uploads against a real `videopipe serve` over real HTTP (see corpus.py for every file).

For each file: the answer is a clean problem+json 4xx of the input-error family (never a 5xx; never a 2xx for a
file that must be refused), or - where the corpus allows it - an accepted upload whose analysis ends `failed` with
an input error or `ready` with a sane duration, in bounded time. After every upload the server is alive, the
loopback listener was never contacted, a refused upload left no file in incoming/, uploads/ or blobs/originals/ and
no video in the tenant's list, the server logged no error, and its RSS grew by a bounded amount.

The same files through `python -m videopipe analyze` (one refused file per class): exit status 2, one line.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.security.corpus import ANY_INPUT_ERROR, CLASSES, SPECS, Corpus, Entry, spec
from tests.support.serve import Listener, Measurements, Server, server_env

MB = 1024 * 1024
# Peak RSS growth of the server process while one upload is answered (and analysed).
RSS_BOUND = {"huge-dimensions": 200 * MB}
RSS_BOUND_DEFAULT = 300 * MB
ATTACKER, VICTIM = "alpha", "beta"
PROBLEM_PREFIX = "urn:videopipe:problem:"
# A refusal should be answered promptly: a playlist that makes FFmpeg wait on a socket must not hang the request.
REFUSAL_TIMEOUT_S = 45.0
# How long a file that should have been refused but was accepted is watched, to say what it was analysed as.
WRONGLY_ACCEPTED_WATCH_S = 30.0


def input_error_statuses() -> dict[str, int]:
    """Problem type -> HTTP status for every `InputError` subclass the code defines (plus the container refusal,
    in case the class is not there yet); uploads never legitimately answer too-large/bad-request/not-found here."""
    from api.problems import status_for
    from videopipe import errors

    found: dict[str, int] = {}
    todo: list[type[errors.VideopipeError]] = [errors.InputError]
    while todo:
        cls = todo.pop()
        todo += cls.__subclasses__()
        found[cls.type] = status_for(cls("x"))
    found.setdefault("unsupported-container", 422)
    for unrelated in ("too-large", "bad-request", "video-not-found"):
        found.pop(unrelated, None)
    return found


STATUSES = input_error_statuses()


def acceptable_types(entry: Entry) -> set[str]:
    return set(STATUSES) if entry.expected.refused_as == ANY_INPUT_ERROR else set(entry.expected.refused_as)


def _problem_of(r: httpx.Response) -> tuple[dict[str, Any] | None, str | None]:
    """The problem+json body, or why it is not one."""
    ctype = r.headers.get("content-type", "")
    if not ctype.startswith("application/problem+json"):
        return None, f"content-type {ctype!r} instead of application/problem+json: {r.text[:300]}"
    try:
        body = r.json()
    except json.JSONDecodeError:
        return None, f"a body that is not JSON: {r.text[:300]}"
    if not isinstance(body, dict):
        return None, f"a JSON body that is not an object: {r.text[:300]}"
    return body, None


def judge_refusal(entry: Entry, r: httpx.Response) -> list[str]:
    """Problems with a 4xx answer (empty: it is the clean refusal the corpus expects)."""
    problems: list[str] = []
    body, why = _problem_of(r)
    if body is None:
        return [f"HTTP {r.status_code} with {why}"]
    kind = str(body.get("type", ""))
    slug = kind.removeprefix(PROBLEM_PREFIX)
    allowed = acceptable_types(entry)
    if not kind.startswith(PROBLEM_PREFIX) or slug not in allowed:
        problems.append(f"refused as {kind!r} (HTTP {r.status_code}: {body.get('detail')!r}); expected one of "
                        f"{sorted(allowed)}")  # fmt: skip
    elif r.status_code != STATUSES.get(slug, 422):
        problems.append(f"{slug} answered with HTTP {r.status_code}, expected {STATUSES.get(slug, 422)}")
    if body.get("status") != r.status_code:
        problems.append(f"problem status {body.get('status')} differs from HTTP {r.status_code}")
    if not str(body.get("detail") or "").strip():
        problems.append("the problem has no detail saying what is wrong")
    if entry.expected.accept == "ready":
        problems.append(f"a valid file was refused: {body.get('type')}: {body.get('detail')}")
    return problems


def _what_it_became(server: Server, corpus: Corpus, info: dict[str, Any]) -> str:
    """For a file that should never have been analysed: which content the server read."""
    size = (info.get("width"), info.get("height"))
    duration = info.get("duration_s") or 0.0
    if size == corpus.victim_size:  # 480x272: nothing else in the corpus has it (a playlist's duration is its own)
        return f"LEAK: analysed tenant B's stored original ({size[0]}x{size[1]}, {duration} s)"
    if size == (640, 360) and abs(duration - 2.0) < 0.3:
        return "analysed as a 2 s 640x360 video (the local secret file it names, or its own frames)"
    return f"analysed as {size[0]}x{size[1]}, {duration} s"


def judge_accepted(
    server: Server, corpus: Corpus, entry: Entry, video_id: str, started: float, row: dict[str, Any]
) -> list[str]:
    """Problems with an accepted upload: wait for its analysis and check how it ended."""
    exp = entry.expected
    if exp.accept == "never":
        info = server.wait_final(ATTACKER, video_id, time.monotonic() + WRONGLY_ACCEPTED_WATCH_S)
        row.update(final=info["status"], duration_s=info.get("duration_s"), error_type=info.get("error_type"))
        server.discard(ATTACKER, video_id)
        became = _what_it_became(server, corpus, info)
        return [f"accepted a file that must be refused (video {video_id}, then {info['status']}, "
                f"error {info.get('error_type')}: {info.get('error')}); {became}"]  # fmt: skip
    info = server.wait_final(ATTACKER, video_id, started + exp.within_s)
    took = time.monotonic() - started
    row.update(final=info["status"], duration_s=info.get("duration_s"), error_type=info.get("error_type"),
               analysed_in_s=round(took, 2))  # fmt: skip
    problems: list[str] = []
    if info["status"] not in ("ready", "failed", "cancelled"):
        server.discard(ATTACKER, video_id)
        return [f"analysis still {info['status']} (stage {info.get('stage')}, {info.get('progress')}%) "
                f"{exp.within_s:g} s after the upload"]  # fmt: skip
    if info["status"] == "ready":
        low, high = exp.duration_s or (0.0, float("inf"))
        duration = info.get("duration_s")
        if duration is None or not low <= duration <= high:
            problems.append(f"ready with a duration of {duration} s, expected {low:g}-{high:g} s")
        with server.client(ATTACKER) as http:
            scenes = http.get(f"/v1/videos/{video_id}/scenes").json().get("items", [])
        row["scenes"] = len(scenes)
        if len(scenes) > 10:
            problems.append(f"{len(scenes)} scenes for a 2-s file")
    elif info["status"] == "failed":
        if exp.accept == "ready":
            problems.append(f"a valid file failed: {info.get('error_type')}: {info.get('error')}")
        elif info.get("error_type") not in STATUSES or not (info.get("error") or "").strip():
            problems.append(f"failed without a clear input error: {info.get('error_type')}: {info.get('error')}")
    else:
        problems.append("the analysis was cancelled by nobody")
    if problems:
        server.discard(ATTACKER, video_id)
    return problems


def _log_errors(text: str) -> list[str]:
    return [line for line in text.splitlines() if " ERROR " in line or "Traceback" in line or "CRITICAL" in line]


def check_upload(
    server: Server,
    loopback: Listener,
    corpus: Corpus,
    measurements: Measurements,
    entry: Entry,
    via: str,
    tmp_path: Path,
) -> None:
    path = entry.materialise(tmp_path / "filled", server.placeholders)
    files_before = server.files()
    ids_before = {t: server.video_ids(t) for t in (ATTACKER, VICTIM)}
    log_mark = server.log_offset()
    seen_before = len(loopback.connections)
    problems: list[str] = []
    row: dict[str, Any] = {"name": entry.name, "class": entry.cls, "via": via}
    watch = server.memory()
    with watch.running():
        started = time.monotonic()
        tus_url = None
        try:
            if via == "tus":
                result = server.upload_tus(ATTACKER, path, entry.name, timeout_s=REFUSAL_TIMEOUT_S)
                r, tus_url = result.final, result.url
            else:
                r = server.upload_multipart(ATTACKER, path, entry.name, timeout_s=REFUSAL_TIMEOUT_S)
        except httpx.TimeoutException:
            r = None
            problems.append(f"no answer within {REFUSAL_TIMEOUT_S:g} s (the request hangs)")
        row["answered_in_s"] = round(time.monotonic() - started, 3)
        if r is not None:
            row["http"] = r.status_code
            body, _ = _problem_of(r)
            row["type"] = str(body.get("type", "")).removeprefix(PROBLEM_PREFIX) if body else None
            if r.status_code >= 500:
                problems.append(f"HTTP {r.status_code} (a server error, never acceptable): {r.text[:400]}")
            elif 400 <= r.status_code < 500:
                problems += judge_refusal(entry, r)
            elif r.is_success:
                video_id = r.headers.get("videopipe-video-id") if via == "tus" else r.json().get("id")
                if not video_id:
                    problems.append(f"HTTP {r.status_code} without a video id: {r.headers} {r.text[:200]}")
                else:
                    problems += judge_accepted(server, corpus, entry, video_id, started, row)
            else:
                problems.append(f"unexpected HTTP {r.status_code}: {r.text[:300]}")
    row.update(rss_growth_mb=round(watch.growth / MB, 1), rss_tree_growth_mb=round(watch.growth_tree / MB, 1),
               rss_samples=watch.samples, total_s=round(time.monotonic() - started, 2))  # fmt: skip
    measurements.rows.append(row)

    # The server is alive and answers.
    if not server.alive():
        pytest.fail(f"the server died: {server.log_since(log_mark)[-3000:]}")
    if (code := server.healthz()) != 200:
        problems.append(f"/healthz answered {code} afterwards")
    # Nothing reached out.
    if len(loopback.connections) > seen_before:
        problems.append(f"the loopback listener was contacted: {loopback.connections[seen_before:]}")
    # Memory.
    bound = RSS_BOUND.get(entry.cls, RSS_BOUND_DEFAULT)
    if watch.growth >= bound:
        problems.append(f"server RSS grew by {watch.growth / MB:.0f} MB (bound {bound / MB:.0f} MB)")
    # Nothing left behind: no upload in flight anywhere; a refused one stored nothing and listed nothing.
    files_after = server.files()
    for sub in ("incoming", "uploads"):
        if files_after[sub]:
            problems.append(f"{sub}/ still holds {sorted(files_after[sub])}")
    refused = r is not None and 400 <= r.status_code < 500
    if refused or r is None:
        if new := files_after["blobs/originals"] - files_before["blobs/originals"]:
            problems.append(f"a refused upload was stored in blobs/originals/: {sorted(new)}")
        for tenant in (ATTACKER, VICTIM):
            if new_ids := server.video_ids(tenant) - ids_before[tenant]:
                problems.append(f"a refused upload is listed in GET /v1/videos of {tenant}: {sorted(new_ids)}")
        if tus_url is not None:
            with server.client(ATTACKER) as http:
                left = http.get(tus_url)
            if left.status_code != 404:
                problems.append(f"the refused tus upload is still there: GET {tus_url} -> {left.status_code}")
    # The server handled it as an input problem, not as a crash.
    if errors := _log_errors(server.log_since(log_mark)):
        problems.append("the server logged errors: " + " | ".join(errors[:5]))
    assert not problems, f"{entry.name} ({entry.about}) via {via}:\n- " + "\n- ".join(problems)


@pytest.mark.parametrize("name", [e.name for e in SPECS])
def test_upload_multipart(
    name: str, corpus: Corpus, server: Server, loopback: Listener, measurements: Measurements, tmp_path: Path
) -> None:
    check_upload(server, loopback, corpus, measurements, corpus.by_name(name), "multipart", tmp_path)


@pytest.mark.parametrize("name", [e.name for e in SPECS if e.cls == "playlist"])
def test_upload_tus_playlist(
    name: str, corpus: Corpus, server: Server, loopback: Listener, measurements: Measurements, tmp_path: Path
) -> None:
    check_upload(server, loopback, corpus, measurements, corpus.by_name(name), "tus", tmp_path)


def test_attacker_never_holds_the_victims_video(corpus: Corpus, server: Server, loopback: Listener) -> None:
    """After everything above (run last): tenant A's library holds nothing made of tenant B's original, the victim's
    video is untouched, and nothing ever connected to the loopback listener."""
    with server.client(ATTACKER) as http:
        items = http.get("/v1/videos", params={"limit": 500}).json()["items"]
    leaked = [v for v in items if v["content_hash"] == server.victim["content_hash"]
              or (v["width"], v["height"]) == corpus.victim_size]  # fmt: skip
    assert not leaked, f"tenant A holds videos made of tenant B's original: {leaked}"
    assert server.video(VICTIM, server.victim["id"])["status"] == "ready"
    with server.client(ATTACKER) as http:
        assert http.get(f"/v1/videos/{server.victim['id']}").status_code == 404
    assert loopback.connections == []


# ---------------------------------------------------------------------------------------------------------------
# The CLI


def _cli_sample() -> list[str]:
    """One refused file per class (none needing the server's placeholders), and the header that lies."""
    picked = []
    for cls in CLASSES:
        first = next((e for e in SPECS if e.cls == cls and e.expected.accept == "never" and not e.needs), None)
        if first is not None:
            picked.append(first.name)
    return [*picked, "png-16000-lying.mkv", "concat-local.ffconcat"]


def run_analyze(path: Path, tmp_path: Path, *extra: str) -> tuple[subprocess.CompletedProcess[str], float]:
    started = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "videopipe", "analyze", str(path), "--out", str(tmp_path / "out"), "--no-asr",
         "--no-ocr", "--no-motion", "--vlm", "none", "--no-library", *extra],
        cwd=tmp_path, env=server_env(tmp_path / "data"), capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    return proc, time.monotonic() - started


@pytest.mark.parametrize("name", _cli_sample())
def test_cli_refuses_with_one_line(name: str, corpus: Corpus, tmp_path: Path, measurements: Measurements) -> None:
    entry = corpus.by_name(name)
    proc, took = run_analyze(entry.path, tmp_path, "-q")
    measurements.rows.append({"name": name, "class": entry.cls, "via": "cli", "exit": proc.returncode,
                              "total_s": round(took, 2), "stderr": proc.stderr.strip()[:300]})  # fmt: skip
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == 2, f"exit {proc.returncode}; stderr: {proc.stderr[-2000:]}"
    assert "Traceback" not in proc.stderr
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    # The project's convention: the problem, then what to do about it ("...; convert it: ffmpeg ...").
    assert name in lines[0] and re.search(r"(; |\. |: )\S.{10,}", lines[0].split(name, 1)[1]), lines[0]
    # Printed as written: no console markup or emoji codes taken from the message ("-map 0:v:0" must not turn
    # into "-map 0✌0").
    assert all(ord(c) < 0x2000 for c in lines[0]), f"the message was altered on its way to the terminal: {lines[0]}"
    assert proc.stdout == ""
    assert not (tmp_path / "out").exists()


def test_cli_timestamp_jump_refused_or_two_seconds(corpus: Corpus, tmp_path: Path) -> None:
    """The 2-s file whose PTS jumps by 10^7 s: refused in one line, or analysed as ~2 s, promptly (the CLI's own
    start-up, ~3 s, on top of the 10 s the API gets)."""
    proc, took = run_analyze(corpus.by_name("pts-jump-1e7.mkv").path, tmp_path, "--json")
    assert took < 20, f"took {took:.1f} s"
    assert "Traceback" not in proc.stderr
    if proc.returncode == 2:
        lines = [line for line in proc.stderr.splitlines() if line.strip()]
        assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
        return
    assert proc.returncode == 0, proc.stderr[-2000:]
    doc = json.loads(proc.stdout)
    assert 1.0 <= doc["video"]["duration_s"] <= 3.0, doc["video"]
    assert len(doc["scenes"]) <= 10


def test_corpus_is_big_enough_and_fast(corpus: Corpus) -> None:
    hostile = [e for e in corpus.entries if e.cls != "control"]
    assert len(hostile) >= 30
    assert {e.cls for e in hostile} >= {"playlist", "huge-dimensions", "timestamps", "streams", "damaged", "not-video"}
    assert corpus.build_s < 45, f"the corpus took {corpus.build_s:.1f} s to build"
    assert all(spec(e.name).expected == e.expected for e in corpus.entries)
