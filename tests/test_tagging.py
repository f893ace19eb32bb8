"""Batch tagging on generated lectures of known subjects: zero-shot tags from the real embedding model, a batch
killed mid-way and started again, a corrupt file failing alone, Qwen3-VL tags constrained to the vocabulary
(wire format checked on the fake vLLM server)."""

from __future__ import annotations

import csv
import io
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import func, select

from tests.support.cli import run_cli
from tests.support.fake_vllm import FakeVLLM, completion
from videopipe.batches import expand_paths
from videopipe.config import Settings
from videopipe.db.models import Job, Video
from videopipe.errors import BadRequest, VLMError
from videopipe.services import open_services
from videopipe.tagging import (
    Label,
    MomentText,
    parse_vlm_tags,
    parse_vocabulary,
    read_vocabulary,
    tag_schema,
    zero_shot_tags,
)
from videopipe.testing.media import TOPIC_VOCABULARY, write_topic_lecture

TOPICS = ["geology", "cooking", "sports", "programming"]


@pytest.fixture(scope="module")
def topic_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """a-geology.mp4, b-cooking.mp4, c-corrupt.mp4 (half a file), d-sports.mp4, e-programming.mp4."""
    folder = tmp_path_factory.mktemp("topics")
    names = dict(zip(TOPICS, ["a", "b", "d", "e"], strict=True))
    for topic, letter in names.items():
        write_topic_lecture(folder / f"{letter}-{topic}.mp4", topic)
    whole = (folder / "a-geology.mp4").read_bytes()
    (folder / "c-corrupt.mp4").write_bytes(whole[: len(whole) // 2])
    (folder / "notes.txt").write_text("not a video, and not picked up from a folder")
    return folder


@pytest.fixture(scope="module")
def vocab_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("vocab") / "vocab.txt"
    path.write_text("# subjects\n" + "\n".join(f"{tag}: {desc}" for tag, desc in TOPIC_VOCABULARY) + "\n")
    return path


def _tag_cmd(folder: Path, vocab: Path, out: Path) -> list[str]:
    return [sys.executable, "-m", "videopipe", "tag", str(folder), "--vocab", str(vocab), "--top-k", "3",
            "--csv", str(out / "tags.csv"), "--json", str(out / "tags.json"), "--profile", "lecture"]  # fmt: skip


def test_a_batch_killed_midway_resumes_without_reanalysing_and_a_corrupt_file_fails_alone(
    topic_dir: Path, vocab_file: Path, tmp_path: Path
) -> None:
    env = {**os.environ, "VIDEOPIPE_DATA_DIR": str(tmp_path / "data"), "VIDEOPIPE_VLM": "none", "COLUMNS": "200"}
    cmd = _tag_cmd(topic_dir, vocab_file, tmp_path)

    # First run: killed (SIGKILL, no chance to tidy up) once two files are tagged.
    first = subprocess.Popen(cmd, env=env, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
    assert first.stderr is not None
    tagged: list[str] = []
    deadline = time.monotonic() + 240
    while len(tagged) < 2 and time.monotonic() < deadline:
        line = first.stderr.readline()
        if not line:
            break
        if line.split(":")[0].endswith(".mp4") and not line.startswith("failed"):
            tagged.append(line.split(":")[0].strip())
    first.send_signal(signal.SIGKILL)
    first.wait()
    assert tagged == ["a-geology.mp4", "b-cooking.mp4"]
    assert not (tmp_path / "tags.csv").exists()

    # Second run, same command: goes on from the third file.
    second = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert second.returncode == 1, second.stderr  # one file failed
    assert "resuming batch" in second.stderr and "2 of 5 files already finished" in second.stderr
    assert "a-geology.mp4:" not in second.stderr and "b-cooking.mp4:" not in second.stderr
    assert "failed c-corrupt.mp4:" in second.stderr and "4 tagged, 1 failed" in second.stderr

    rows = list(csv.DictReader(io.StringIO((tmp_path / "tags.csv").read_text())))
    assert set(rows[0]) >= {"video", "tag", "score", "support"}
    by_video: dict[str, list[str]] = {}
    for r in rows:
        by_video.setdefault(Path(r["video"]).name, []).append(r["tag"])
        assert 0 <= float(r["score"]) <= 1 and r["support"]
    assert set(by_video) == {"a-geology.mp4", "b-cooking.mp4", "d-sports.mp4", "e-programming.mp4"}
    for name, tags in by_video.items():
        topic = name[2:].removesuffix(".mp4")
        assert topic in tags[:3], (name, tags)
    summary = json.loads((tmp_path / "tags.json").read_text())
    corrupt = next(i for i in summary["items"] if i["source"].endswith("c-corrupt.mp4"))
    assert corrupt["status"] == "failed" and corrupt["error"] and "cut off" in corrupt["error"]

    # Each finished file was analysed exactly once across both runs (its analysis job rows count them).
    pipeline = open_services(Settings(data_dir=tmp_path / "data"), dispatch="none")
    with pipeline.sessions() as s:
        jobs = dict(s.execute(select(Video.filename, func.count(Job.id)).join(Job, Job.video_id == Video.id)
                              .group_by(Video.filename)).all())  # fmt: skip
    assert jobs == {"a-geology.mp4": 1, "b-cooking.mp4": 1, "d-sports.mp4": 1, "e-programming.mp4": 1}

    # A third run tags again from the library: nothing analysed, everything reused.
    third = subprocess.run([*cmd[:4], str(topic_dir / "a-geology.mp4"), *cmd[5:]], env=env, capture_output=True,
                           text=True, timeout=300)  # fmt: skip
    assert third.returncode == 0, third.stderr
    assert "a-geology.mp4: geology" in third.stderr and "(analysis reused)" in third.stderr


def test_every_topic_ranks_its_true_tag_in_the_top_three_with_supporting_moments(
    topic_dir: Path, tmp_path: Path
) -> None:
    settings = Settings(data_dir=tmp_path, vlm="none")
    pipeline = open_services(settings, dispatch="none", migrate=True)
    batches = pipeline.batches
    labels = parse_vocabulary({"tag": t, "description": d} for t, d in TOPIC_VOCABULARY)
    files = [p for p in expand_paths([topic_dir]) if "corrupt" not in p.name]
    batch_id = batches.create("default", [str(p) for p in files], labels, top_k=3, options={"profile": "lecture"})
    batches.run_inline("default", batch_id)
    info = batches.describe("default", batch_id)
    assert info["status"] == "done" and info["counts"]["done"] == 4 and info["progress"] == 100.0
    for item in info["items"]:
        topic = Path(item["source"]).stem[2:]
        tags = item["tags"]
        assert [t["tag"] for t in tags][:3].count(topic) == 1, (topic, tags)
        assert [t["score"] for t in tags] == sorted((t["score"] for t in tags), reverse=True)
        best = next(t for t in tags if t["tag"] == topic)
        assert best["source"] == "embedding" and best["support"]
        assert all(0 <= s["start_s"] < s["end_s"] <= 9.1 for s in best["support"])
    # The same files again, another vocabulary: nothing is analysed again, only tagged.
    again = batches.create("default", [str(p) for p in files], [Label("cooking"), Label("sports")], top_k=1,
                           options={"profile": "lecture"})  # fmt: skip
    batches.run_inline("default", again)
    items = batches.describe("default", again)["items"]
    assert len(items) == len(files) and all(i["reused"] and i["status"] == "done" for i in items)
    cooking = next(i for i in items if "cooking" in i["source"])
    assert cooking["tags"][0]["tag"] == "cooking"
    with pytest.raises(Exception, match="no batch"):
        batches.describe("someone-else", batch_id)

    # No vocabulary: the model's free tags from the analysis (as the understand stage stores them), each with
    # the moments that support it; without any, the words said and shown most.
    from videopipe.db.models import Tag

    cooking_id = cooking["video_id"]
    with pipeline.sessions.begin() as s:
        s.add_all([Tag(video_id=cooking_id, tag="baking bread", score=0.8, source="vlm"),
                   Tag(video_id=cooking_id, tag="kitchen", score=0.6, source="vlm")])  # fmt: skip
    free = batches.create("default", [str(p) for p in files[:2]], None, top_k=3, options={"profile": "lecture"})
    batches.run_inline("default", free)
    by_file = {Path(i["source"]).name: i["tags"] for i in batches.describe("default", free)["items"]}
    baked = by_file["b-cooking.mp4"]
    assert [(t["tag"], t["score"], t["source"]) for t in baked] == [
        ("baking bread", 0.8, "vlm"),
        ("kitchen", 0.6, "vlm"),
    ]
    assert baked[0]["support"] and all(0 <= sp["start_s"] < sp["end_s"] for sp in baked[0]["support"])
    words = by_file["a-geology.mp4"]
    assert words and all(t["source"] == "keywords" for t in words)
    assert {"magma", "volcano", "volcanoes", "lava", "erupts", "eruption"} & {t["tag"] for t in words}


def test_zero_shot_score_prefers_the_label_that_covers_the_video() -> None:
    moments = [MomentText(0, 8, "a"), MomentText(8, 10, "b")]
    vectors = np.array([[1.0, 0.0], [0.0, 1.0]], np.float32)
    labels = [Label("long"), Label("short")]
    tags = zero_shot_tags(moments, vectors, labels, vectors.copy(), top_k=2)
    assert [t.tag for t in tags] == ["long", "short"]  # both have a perfect moment; "long" covers 80% of the video
    assert tags[0].support == [(0, 8)] and tags[1].support == [(8, 10)]


def test_vocabulary_files_and_bad_entries(tmp_path: Path) -> None:
    (tmp_path / "v.json").write_text(json.dumps(["cats", {"tag": "dogs", "description": "pets that bark"}, "cats"]))
    assert read_vocabulary(tmp_path / "v.json") == [Label("cats"), Label("dogs", "pets that bark")]
    (tmp_path / "v.csv").write_text("tag,description\ncats,small pets\nbirds,\n")
    assert read_vocabulary(tmp_path / "v.csv") == [Label("cats", "small pets"), Label("birds")]
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(BadRequest, match="not valid JSON"):
        read_vocabulary(tmp_path / "bad.json")
    (tmp_path / "empty.txt").write_text("# nothing\n\n")
    with pytest.raises(BadRequest, match="empty"):
        read_vocabulary(tmp_path / "empty.txt")
    with pytest.raises(BadRequest, match="entry 1"):
        parse_vocabulary([42])


def test_model_tags_are_kept_inside_the_vocabulary() -> None:
    labels = [Label("Cooking"), Label("sports")]
    text = ('```json\n{"tags": [{"tag": "cooking", "score": 1.7, "times": [[2, 5], [30, 40]]}, '
            '{"tag": "astrology", "score": 0.9, "times": []}, {"tag": "Sports", "score": "high"}]}\n```')  # fmt: skip
    tags = parse_vlm_tags(text, labels, duration_s=10.0, top_k=5)
    assert [(t.tag, t.score) for t in tags] == [("Cooking", 1.0), ("sports", 0.5)]  # mapped to the vocabulary
    assert tags[0].support == [(2.0, 5.0)]  # a range past the end of the video is dropped
    with pytest.raises(VLMError, match="no tag from the vocabulary"):
        parse_vlm_tags('{"tags": [{"tag": "astrology", "score": 1}]}', labels, 10.0, 5)
    with pytest.raises(VLMError, match="not JSON"):
        parse_vlm_tags("I think it is about cooking.", labels, 10.0, 5)
    schema = tag_schema(labels)
    assert schema["properties"]["tags"]["items"]["properties"]["tag"]["enum"] == ["Cooking", "sports"]


def test_vlm_tags_over_the_wire_are_constrained_by_a_json_schema(topic_dir: Path, tmp_path: Path) -> None:
    """`vlm="openai"`: the request carries the keyframes, the vocabulary and a JSON schema whose tag is an enum of
    it; an answer outside the vocabulary is dropped. The file was analysed before: only the tagging call is made."""
    server = FakeVLLM()
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        settings = Settings(data_dir=tmp_path, vlm="none", vlm_url=server.url, vlm_model="Qwen/Qwen3-VL-8B-Instruct")
        batches = open_services(settings, dispatch="none", migrate=True).batches
        labels = parse_vocabulary({"tag": t, "description": d} for t, d in TOPIC_VOCABULARY)
        source = [str(topic_dir / "b-cooking.mp4")]
        batches.run_inline("default", batches.create("default", source, labels, options={"profile": "lecture"}))
        assert server.requests == []
        server.script = [(200, completion('{"tags": [{"tag": "cooking", "score": 0.93, "times": [[0.0, 4.5]]}, '
                                          '{"tag": "pottery", "score": 0.5, "times": []}]}'))]  # fmt: skip
        batch_id = batches.create("default", source, labels, top_k=3, vlm="openai", options={"profile": "lecture"})
        batches.run_inline("default", batch_id)
    finally:
        server.shutdown()
        server.server_close()
    item = batches.describe("default", batch_id)["items"][0]
    assert item["status"] == "done" and item["reused"]
    assert item["tags"] == [{"tag": "cooking", "score": 0.93, "source": "vlm",
                             "support": [{"start_s": 0.0, "end_s": 4.5}]}]  # fmt: skip
    (body,) = server.requests
    fmt = body["response_format"]
    assert fmt["type"] == "json_schema" and fmt["json_schema"]["strict"] is True
    enum = fmt["json_schema"]["schema"]["properties"]["tags"]["items"]["properties"]["tag"]["enum"]
    assert enum == [t for t, _ in TOPIC_VOCABULARY]
    content = body["messages"][1]["content"]
    prompt_text = content[-1]["text"]
    assert "- cooking: recipes, baking, food and kitchens" in prompt_text and "Transcript:" in prompt_text
    assert any(c["type"] in ("video_url", "image_url") for c in content[:-1])


def test_a_served_batch_from_an_s3_prefix_queues_a_few_at_a_time(
    topic_dir: Path, tmp_path: Path, s3_endpoint: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The server's way (`Batches.advance` through the pipeline's jobs), on objects listed from S3 (moto)."""
    import boto3

    from videopipe.config import ApiSettings
    from videopipe.db.models import BatchItem
    from videopipe.storage import list_s3_objects

    env = {"AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test", "AWS_DEFAULT_REGION": "us-east-1",
           "VIDEOPIPE_S3_ENDPOINT_URL": s3_endpoint}  # fmt: skip
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    client = boto3.client("s3", endpoint_url=s3_endpoint)
    client.create_bucket(Bucket="media")
    for name in ("a-geology.mp4", "c-corrupt.mp4", "d-sports.mp4", "e-programming.mp4"):
        client.upload_file(str(topic_dir / name), "media", f"lectures/{name}")
    client.put_object(Bucket="media", Key="lectures/README.txt", Body=b"not a video")
    settings = Settings(data_dir=tmp_path, vlm="none", api=ApiSettings(ingest_s3_prefixes=["s3://media/lectures/"]))
    settings.jobs.embedded_concurrency = 1
    pipeline = open_services(settings, migrate=True)
    runner = pipeline.runner
    assert runner is not None
    urls = [u for u in list_s3_objects("s3://media/lectures/", 100) if u.endswith(".mp4")]
    assert urls == [f"s3://media/lectures/{n}" for n in ("a-geology.mp4", "c-corrupt.mp4", "d-sports.mp4",
                                                          "e-programming.mp4")]  # fmt: skip
    batches = pipeline.batches
    labels = parse_vocabulary({"tag": t, "description": d} for t, d in TOPIC_VOCABULARY)
    batch_id = batches.create("default", urls, labels, top_k=3, options={"profile": "lecture", "motion": False})
    most_in_flight = 0
    deadline = time.monotonic() + 240
    while not batches.advance(batch_id, max_in_flight=2):
        with pipeline.sessions() as s:
            in_flight = s.scalar(select(func.count()).where(BatchItem.batch_id == batch_id,
                                                            BatchItem.status == "analyzing"))  # fmt: skip
        most_in_flight = max(most_in_flight, int(in_flight or 0))
        assert time.monotonic() < deadline, batches.describe("default", batch_id)
        runner.wait()
    runner.shutdown()
    info = batches.describe("default", batch_id)
    assert info["counts"]["done"] == 3 and info["counts"]["failed"] == 1 and 0 < most_in_flight <= 2
    for item in info["items"]:
        name = item["source"].rsplit("/", 1)[-1]
        if name == "c-corrupt.mp4":
            assert item["status"] == "failed" and "cut off" in item["error"]
        else:
            assert name[2:].removesuffix(".mp4") in [t["tag"] for t in item["tags"][:3]], item


def test_the_csv_export_does_not_let_a_tag_become_a_spreadsheet_formula() -> None:
    from videopipe.exports import tags_csv

    text = tags_csv([("=cmd|' /C calc'!A0.mp4", "v1", [{"tag": "@SUM(1+1)", "score": 0.5, "source": "vlm",
                                                         "support": [{"start_s": 1.0, "end_s": 2.5}]}])])  # fmt: skip
    row = next(csv.DictReader(io.StringIO(text)))
    assert row["video"].startswith("'=") and row["tag"] == "'@SUM(1+1)" and row["support"] == "1.000-2.500"


def test_a_file_named_twice_is_one_item_and_fails_alone_with_its_reason(topic_dir: Path, tmp_path: Path) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "broken.mp4").write_bytes((topic_dir / "c-corrupt.mp4").read_bytes())
    (folder / "empty.mp4").write_bytes(b"")
    env = {"VIDEOPIPE_DATA_DIR": str(tmp_path / "data"), "VIDEOPIPE_VLM": "none"}
    proc = run_cli("tag", str(folder), str(folder / "empty.mp4"), "-q", "--json", "-", cwd=tmp_path, env=env)
    assert proc.returncode == 1, proc.stderr
    items = json.loads(proc.stdout)["items"]
    assert [(Path(i["source"]).name, i["status"]) for i in items] == [("broken.mp4", "failed"), ("empty.mp4", "failed")]
    assert "empty (0 bytes)" in items[1]["error"] and "cut off" in items[0]["error"]
