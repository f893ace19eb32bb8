"""The REST API over real HTTP (uvicorn) on the real PostgreSQL, with the in-process runner doing the stages."""

from __future__ import annotations

import csv
import hashlib
import io
import re
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import httpx
import pytest
import webvtt
from PIL import Image
from sqlalchemy import func, select
from tusclient import client as tus

from api.app import create_app
from tests.support.servers import POSTGRES_ADMIN_URL, live_server
from videopipe.config import ApiSettings, BatchSettings, JobSettings, LimitSettings, Settings
from videopipe.db.migrate import upgrade
from videopipe.db.models import Job, Upload, Video
from videopipe.services import Services, open_services
from videopipe.testing.databases import scratch_database
from videopipe.testing.media import TOPIC_VOCABULARY, SampleVideo, Visit, write_fixed_camera_video, write_topic_lecture

MAX_BYTES = 3 * 1024 * 1024
OPTIONS = '{"profile": "lecture", "vlm": "none", "motion": false}'


class Api:
    def __init__(self, base: str, pipeline: Services, settings: Settings, keys: dict[str, str]) -> None:
        self.base, self.pipeline, self.settings, self.keys = base, pipeline, settings, keys

    def client(self, tenant: str | None) -> httpx.Client:
        headers = {"Authorization": f"Bearer {self.keys[tenant]}"} if tenant else {}
        return httpx.Client(base_url=self.base, headers=headers, timeout=60)

    def count_videos(self) -> int:
        with self.pipeline.sessions() as s:
            return int(s.scalar(select(func.count()).select_from(Video)) or 0)

    def leftovers(self) -> list[Path]:
        """Files of uploads in flight: nothing should stay there once a request is answered."""
        found = []
        for folder in ("incoming", "uploads"):
            root = self.settings.data_dir / folder
            found += [p for p in root.rglob("*") if p.is_file()] if root.exists() else []
        return found


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    data = tmp_path_factory.mktemp("api-data")
    ingest = data / "ingest"
    ingest.mkdir()
    with scratch_database(POSTGRES_ADMIN_URL, "vp_api") as url:
        upgrade(url)
        settings = Settings(
            data_dir=data,
            database_url=url,
            vlm="none",
            limits=LimitSettings(max_file_bytes=MAX_BYTES),
            jobs=JobSettings(lease_s=30, embedded_concurrency=1),
            api=ApiSettings(ingest_dirs=[str(ingest)]),
            batches=BatchSettings(advance_every_s=0.3),
        )
        pipeline = open_services(settings)
        keys = {tenant: pipeline.keys.create(tenant)[1] for tenant in ("alpha", "beta")}
        app = create_app(pipeline)
        with live_server(app) as base:
            yield Api(base, pipeline, settings, keys)
        pipeline.sessions.kw["bind"].dispose()


@pytest.fixture(autouse=True)
def _runner_idle_after_each_test(request: pytest.FixtureRequest) -> Iterator[None]:
    """No test leaves analysis running behind it (a batch's queued videos, an ingest): work of one test must not
    write into the database or the blob store while the next one, whichever it is, counts them."""
    yield
    if "api" in request.fixturenames:
        request.getfixturevalue("api").pipeline.wait()


def _wait_ready(http: httpx.Client, video_id: str, timeout_s: float = 180) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        info = http.get(f"/v1/videos/{video_id}").json()
        assert 0 <= info["progress"] <= 100
        if info["status"] in ("ready", "failed", "cancelled"):
            return info
        time.sleep(0.3)
    raise AssertionError(f"video {video_id} not finished after {timeout_s} s: {info}")


def _upload(http: httpx.Client, path: Path, name: str | None = None, **extra: Any) -> httpx.Response:
    with path.open("rb") as f:
        return http.post("/v1/videos", files={"file": (name or path.name, f, "video/mp4")},
                         data={"options": OPTIONS}, **extra)  # fmt: skip


def _problem(r: httpx.Response, status: int, slug: str) -> dict[str, Any]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == "application/problem+json"
    body = r.json()
    assert body["type"] == f"urn:videopipe:problem:{slug}" and body["status"] == status
    assert body["detail"] and body["request_id"] == r.headers["x-request-id"]
    return body


@pytest.fixture(scope="module")
def lecture_id(api: Api, short_lecture: Path) -> str:
    with api.client("alpha") as http:
        r = _upload(http, short_lecture)
        assert r.status_code == 201, r.text
        body = r.json()
        assert body["created"] and not body["duplicate"] and r.headers["location"] == f"/v1/videos/{body['id']}"
        info = _wait_ready(http, body["id"])
        assert info["status"] == "ready", info
        return str(body["id"])


def test_upload_reaches_ready_and_every_result_endpoint_answers(
    api: Api, lecture_id: str, short_lecture: Path, tmp_path: Path
) -> None:
    with api.client("alpha") as http:
        info = http.get(f"/v1/videos/{lecture_id}").json()
        assert info["progress"] == 100 and info["stage"] is None and info["error"] is None
        assert info["content_hash"] == hashlib.sha256(short_lecture.read_bytes()).hexdigest()
        assert info["duration_s"] == pytest.approx(18.0, abs=0.1) and info["has_audio"]

        # The tenant's videos, whatever other tests of this module added to the shared server; never another's.
        listed = http.get("/v1/videos", params={"limit": 100}).json()
        with api.pipeline.sessions() as s:
            alphas = set(s.scalars(select(Video.id).where(Video.tenant == "alpha")))
        ids = [v["id"] for v in listed["items"]]
        assert lecture_id in ids and set(ids) == alphas and len(ids) == len(alphas) == listed["total"]

        scenes = http.get(f"/v1/videos/{lecture_id}/scenes").json()
        assert scenes["status"] == "ready"
        assert [round(s["start_s"]) for s in scenes["items"]] == [0, 6, 12]

        chapters = http.get(f"/v1/videos/{lecture_id}/chapters").json()["items"]
        assert len(chapters) == 3 and "Entropy" in chapters[0]["title"] and chapters[1]["start"] == "00:00:06.000"

        transcript = http.get(f"/v1/videos/{lecture_id}/transcript").json()["items"]
        spoken = " ".join(t["text"] for t in transcript).lower()
        assert "volcano" in spoken and "telescope" in spoken

        doc = http.get(f"/v1/videos/{lecture_id}/analysis").json()
        assert doc["schema"] == 1 and len(doc["keyframes"]) >= 3 and doc["ocr"]
        # The upload's profile and stage switches are stored with its job, which the worker runs by: the lecture
        # profile, motion switched off (speech and on-screen text on, and they ran: transcript and OCR above). So
        # no events: the events endpoints answer with an empty list and a header-only CSV, not an error (motion
        # events over HTTP: the next test).
        with api.pipeline.sessions() as s:
            first_job = s.scalars(select(Job).where(Job.video_id == lecture_id).order_by(Job.created_at)).first()
        assert first_job is not None and first_job.options.items() >= {"profile": "lecture", "motion": False}.items()
        events = http.get(f"/v1/videos/{lecture_id}/events").json()
        assert events["status"] == "ready" and events["items"] == doc["events"] == []

        jpg = http.get(f"/v1/videos/{lecture_id}/keyframes/0.jpg")
        assert jpg.status_code == 200 and jpg.headers["content-type"] == "image/jpeg"
        assert Image.open(io.BytesIO(jpg.content)).size == (640, 360)
        _problem(http.get(f"/v1/videos/{lecture_id}/keyframes/999.jpg"), 404, "not-found")

        # Chapters as WebVTT: parsed by webvtt-py, one cue per chapter at the chapter's times.
        r = http.get(f"/v1/videos/{lecture_id}/chapters.vtt")
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/vtt")
        cues = webvtt.from_string(r.text)
        assert [c.text for c in cues] == [c["title"] for c in chapters]
        assert [(c.start, c.end) for c in cues] == [(ch["start"], ch["end"]) for ch in chapters]

        r = http.get(f"/v1/videos/{lecture_id}/transcript.vtt")
        assert [c.text for c in webvtt.from_string(r.text)] == [t["text"] for t in transcript]
        r = http.get(f"/v1/videos/{lecture_id}/transcript.srt")
        assert r.headers["content-type"].startswith("application/x-subrip")
        (tmp_path / "t.srt").write_text(r.text)
        srt = webvtt.from_srt(str(tmp_path / "t.srt"))
        assert [c.text for c in srt] == [t["text"] for t in transcript]
        assert [c.start for c in srt] == [t["start"] for t in transcript]

        r = http.get(f"/v1/videos/{lecture_id}/events.csv")
        reader = csv.DictReader(io.StringIO(r.text))
        assert list(reader) == [] and reader.fieldnames and "start_s" in reader.fieldnames  # a header, no rows


VISITS = [Visit(3.0, 5.0, y=0.5), Visit(8.0, 9.5, y=0.3, luma=220)]


def test_motion_events_of_a_fixed_camera_are_served_as_json_and_csv(api: Api, tmp_path: Path) -> None:
    """The surveillance profile looks for motion: two objects cross a fixed camera, two events at their times."""
    gate = write_fixed_camera_video(tmp_path / "gate.mp4", VISITS, duration_s=12.0)
    with api.client("alpha") as http, gate.open("rb") as f:
        options = '{"profile": "surveillance", "vlm": "none"}'
        r = http.post("/v1/videos", files={"file": ("gate.mp4", f, "video/mp4")}, data={"options": options})
        assert r.status_code == 201, r.text
        vid = r.json()["id"]
        assert _wait_ready(http, vid)["status"] == "ready"
        events = http.get(f"/v1/videos/{vid}/events").json()["items"]
        assert len(events) == len(VISITS) and all(e["source"] == "motion" for e in events), events
        stored = http.get(f"/v1/videos/{vid}/analysis").json()["events"]
        assert [(e["start_s"], e["end_s"], e["bbox"]) for e in stored] == [
            (e["start_s"], e["end_s"], e["bbox"]) for e in events
        ]
        for event, visit in zip(events, VISITS, strict=True):
            assert abs(event["start_s"] - visit.enter_s) <= 0.5 and abs(event["end_s"] - visit.leave_s) <= 0.5
        rows = list(csv.DictReader(io.StringIO(http.get(f"/v1/videos/{vid}/events.csv").text)))
        assert [(float(row["start_s"]), float(row["end_s"])) for row in rows] == [
            (pytest.approx(e["start_s"], abs=1e-3), pytest.approx(e["end_s"], abs=1e-3)) for e in events
        ]


def test_the_same_bytes_again_are_recognised(api: Api, lecture_id: str, short_lecture: Path) -> None:
    with api.client("alpha") as http:
        r = _upload(http, short_lecture, name="copy-of-lecture.mp4")
        assert r.status_code == 200, r.text
        assert r.json()["id"] == lecture_id and r.json()["duplicate"] and not r.json()["created"]


def _drop_mid_patch(url: str, key: str, data: bytes) -> None:
    """Send a PATCH whose Content-Length promises all of `data`, then hang up after half of it."""
    parsed = urlparse(url)
    head = (
        f"PATCH {parsed.path} HTTP/1.1\r\nHost: {parsed.netloc}\r\nTus-Resumable: 1.0.0\r\n"
        f"Authorization: Bearer {key}\r\nUpload-Offset: 0\r\nContent-Type: application/offset+octet-stream\r\n"
        f"Content-Length: {len(data)}\r\n\r\n"
    ).encode()
    with socket.create_connection((parsed.hostname, parsed.port)) as sock:
        sock.sendall(head + data[: len(data) // 2])
        time.sleep(0.5)


def test_tus_upload_dropped_halfway_resumes_with_tuspy_into_an_identical_file(
    api: Api, shots_video: SampleVideo
) -> None:
    data = shots_video.path.read_bytes()
    key = api.keys["beta"]
    tusc = tus.TusClient(f"{api.base}/v1/uploads", headers={"Authorization": f"Bearer {key}"})
    first = tusc.uploader(str(shots_video.path), chunk_size=64 * 1024, metadata={"filename": "shots.mp4"})
    url = first.create_url()
    _drop_mid_patch(url, key, data)

    # The server kept what arrived before the connection dropped...
    with api.client("beta") as http:
        deadline = time.monotonic() + 10
        while (offset := int(http.head(url, headers={"Tus-Resumable": "1.0.0"}).headers["upload-offset"])) == 0:
            assert time.monotonic() < deadline, "no bytes kept from the dropped PATCH"
            time.sleep(0.1)
        assert 0 < offset <= len(data) // 2

    # ...and tuspy, a real tus client, resumes from there (it asks the server for the offset).
    resumed = tusc.uploader(str(shots_video.path), chunk_size=64 * 1024, url=url)
    assert resumed.offset == offset
    resumed.upload()
    assert resumed.offset == len(data)

    with api.client("beta") as http:
        upload = http.get(urlparse(url).path).json()
        assert upload["complete"] and upload["video_id"]
        video = http.get(f"/v1/videos/{upload['video_id']}").json()
        assert video["content_hash"] == hashlib.sha256(data).hexdigest() and video["size_bytes"] == len(data)
        with api.pipeline.store.open(f"originals/{video['content_hash']}.mp4") as f:
            assert f.read() == data
        assert _wait_ready(http, video["id"])["status"] == "ready"
    assert api.leftovers() == []


def test_tus_protocol_errors(api: Api) -> None:
    with api.client("beta") as http:
        opts = http.options("/v1/uploads")
        assert opts.status_code == 204 and opts.headers["tus-version"] == "1.0.0"
        assert "creation" in opts.headers["tus-extension"] and int(opts.headers["tus-max-size"]) == MAX_BYTES
        _problem(http.post("/v1/uploads", headers={"Upload-Length": "10"}), 412, "precondition-failed")
        _problem(http.post("/v1/uploads", headers={"Tus-Resumable": "1.0.0", "Upload-Length": str(MAX_BYTES + 1)}),
                 413, "too-large")  # fmt: skip
        r = http.post("/v1/uploads", headers={"Tus-Resumable": "1.0.0", "Upload-Length": "100"})
        assert r.status_code == 201
        path = urlparse(r.headers["location"]).path
        patch = {"Tus-Resumable": "1.0.0", "Content-Type": "application/offset+octet-stream"}
        _problem(http.patch(path, headers={**patch, "Upload-Offset": "5"}, content=b"x" * 10), 409, "conflict")
        _problem(http.patch(path, headers={**patch, "Upload-Offset": "0", "Content-Type": "text/plain"},
                            content=b"x"), 415, "unsupported-media-type")  # fmt: skip
        # The last bytes arrive and the file is not a video: refused, and nothing is left behind.
        r = http.patch(path, headers={**patch, "Upload-Offset": "0"}, content=b"not a video " * 8 + b"abcd")
        _problem(r, 415, "not-a-video")
        _problem(http.get(path), 404, "not-found")
        r = http.post("/v1/uploads", headers={"Tus-Resumable": "1.0.0", "Upload-Length": "100"})
        path = urlparse(r.headers["location"]).path
        assert http.delete(path, headers={"Tus-Resumable": "1.0.0"}).status_code == 204
        assert http.head(path, headers={"Tus-Resumable": "1.0.0"}).status_code == 404
    with api.pipeline.sessions() as s:
        assert s.scalar(select(func.count()).select_from(Upload).where(Upload.video_id.is_(None))) == 0
    assert api.leftovers() == []


def _truncated(path: Path, out: Path) -> Path:
    out.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    return out


@pytest.mark.parametrize(
    ("case", "status", "slug", "words"),
    [
        ("empty", 422, "empty-file", "empty"),
        ("text", 415, "not-a-video", "not a video"),
        ("truncated", 422, "truncated-video", "cut off"),
        ("oversized", 413, "too-large", "larger than"),
        ("no-file-field", 400, "bad-request", "`file`"),
    ],
)
def test_bad_uploads_get_a_clear_problem_and_leave_nothing_behind(
    api: Api, shots_video: SampleVideo, tmp_path: Path, case: str, status: int, slug: str, words: str
) -> None:
    videos_before = api.count_videos()
    blobs_before = sorted(p.name for p in (api.settings.data_dir / "blobs").rglob("*"))
    with api.client("alpha") as http:
        if case == "no-file-field":
            r = http.post("/v1/videos", files={"video": ("a.mp4", b"1234", "video/mp4")})
        elif case == "oversized":
            # Streamed with no Content-Length, so the limit must be enforced while reading.
            def chunks() -> Iterator[bytes]:
                boundary = b"--vpboundary"
                yield boundary + b'\r\nContent-Disposition: form-data; name="file"; filename="big.mp4"\r\n\r\n'
                for _ in range(MAX_BYTES // 65536 + 2):
                    yield b"\0" * 65536
                yield b"\r\n" + boundary + b"--\r\n"

            r = http.post("/v1/videos", content=chunks(),
                          headers={"Content-Type": "multipart/form-data; boundary=vpboundary"})  # fmt: skip
        else:
            path = {
                "empty": tmp_path / "empty.mp4",
                "text": tmp_path / "notes.mp4",
                "truncated": _truncated(shots_video.path, tmp_path / "cut.mp4"),
            }[case]
            if case == "empty":
                path.write_bytes(b"")
            if case == "text":
                path.write_text("these are meeting notes, not a video\n" * 50)
            r = _upload(http, path)
    body = _problem(r, status, slug)
    assert words in body["detail"]
    assert api.count_videos() == videos_before
    assert sorted(p.name for p in (api.settings.data_dir / "blobs").rglob("*")) == blobs_before
    assert api.leftovers() == []


def test_requests_without_a_valid_key_are_refused(api: Api) -> None:
    with api.client(None) as http:
        r = http.get("/v1/videos")
        _problem(r, 401, "unauthorized")
        assert r.headers["www-authenticate"].startswith("Bearer")
        _problem(http.get("/v1/videos", headers={"Authorization": "Bearer vp_not-a-key"}), 401, "unauthorized")
        _problem(http.get("/v1/videos", headers={"Authorization": "Basic dXNlcjpwdw=="}), 401, "unauthorized")
        assert http.get("/healthz").status_code == 200


def test_tenants_cannot_see_each_others_videos(api: Api, lecture_id: str) -> None:
    with api.client("beta") as beta:
        assert lecture_id not in [v["id"] for v in beta.get("/v1/videos").json()["items"]]
        for method, path in [
            ("GET", f"/v1/videos/{lecture_id}"),
            ("GET", f"/v1/videos/{lecture_id}/chapters"),
            ("GET", f"/v1/videos/{lecture_id}/transcript.vtt"),
            ("GET", f"/v1/videos/{lecture_id}/analysis"),
            ("GET", f"/v1/videos/{lecture_id}/keyframes/0.jpg"),
            ("POST", f"/v1/videos/{lecture_id}/reanalyze"),
            ("POST", f"/v1/videos/{lecture_id}/cancel"),
            ("DELETE", f"/v1/videos/{lecture_id}"),
        ]:
            r = beta.request(method, path)
            body = _problem(r, 404, "not-found")  # the same answer as for an id that does not exist
            missing = _problem(beta.request(method, path.replace(lecture_id, "0" * 32)), 404, "not-found")
            assert body["detail"].replace(lecture_id, "X") == missing["detail"].replace("0" * 32, "X")
    with api.client("alpha") as alpha:
        assert alpha.get(f"/v1/videos/{lecture_id}").json()["status"] == "ready"


def test_ingest_from_an_allowed_server_path_only(api: Api, shots_video: SampleVideo, tmp_path: Path) -> None:
    allowed = Path(api.settings.api.ingest_dirs[0]) / "ntsc-copy.mp4"
    allowed.write_bytes(shots_video.path.read_bytes()[:-1] + b"\0")  # other bytes: a new video
    with api.client("alpha") as http:
        body = _problem(http.post("/v1/videos", json={"path": str(shots_video.path)}), 400, "bad-request")
        assert "allowed folder" in body["detail"]
        _problem(http.post("/v1/videos", json={"path": str(allowed) + "/../../etc/passwd"}), 400, "bad-request")
        _problem(http.post("/v1/videos", json={"path": str(allowed), "url": "s3://b/k"}), 400, "bad-request")
        r = http.post("/v1/videos", json={"path": str(allowed), "options": {"vlm": "none", "asr": False}})
        assert r.status_code == 201, r.text
        assert http.get(f"/v1/videos/{r.json()['id']}").json()["filename"] == "ntsc-copy.mp4"
        assert allowed.exists()  # the server's file is read, never moved
        # Finished before the next test: its keyframes must not land in the blob store while another test counts.
        assert _wait_ready(http, r.json()["id"])["status"] == "ready"


def test_reanalyze_and_delete(api: Api, shots_video: SampleVideo, tmp_path: Path) -> None:
    variant = tmp_path / "variant.mp4"
    variant.write_bytes(shots_video.path.read_bytes() + b"\0\0")  # trailing bytes: same pictures, new content
    with api.client("alpha") as http:
        created = _upload(http, variant).json()
        vid = created["id"]
        assert _wait_ready(http, vid)["status"] == "ready"
        again = http.post(f"/v1/videos/{vid}/reanalyze", json={"profile": "general", "vlm": "none"})
        assert again.status_code == 202 and again.json()["job_id"] != created["job_id"]
        assert _wait_ready(http, vid)["job_id"] == again.json()["job_id"]
        status = api.pipeline.jobs.status("alpha", again.json()["job_id"])
        assert [s["state"] for s in status["stages"]] == ["done", "done", "done"]  # really run again

        content_hash = http.get(f"/v1/videos/{vid}").json()["content_hash"]
        store = api.pipeline.store
        assert store.exists(f"originals/{content_hash}.mp4") and store.exists(f"keyframes/{vid}/00000.jpg")
        assert http.delete(f"/v1/videos/{vid}").status_code == 204
        _problem(http.get(f"/v1/videos/{vid}"), 404, "not-found")
        _problem(http.delete(f"/v1/videos/{vid}"), 404, "not-found")
        assert not store.exists(f"originals/{content_hash}.mp4") and not store.exists(f"keyframes/{vid}/00000.jpg")


def test_health_readiness_and_metrics(api: Api, lecture_id: str) -> None:
    with httpx.Client(base_url=api.base) as http:
        assert http.get("/healthz").json() == {"status": "ok"}
        ready = http.get("/readyz")
        assert ready.status_code == 200
        checks = ready.json()["checks"]
        assert checks["database"]["ok"] and checks["storage"]["ok"] and checks["broker"]["ok"]
        metrics = http.get("/metrics").text
        assert 'videopipe_http_requests_total{method="GET",route="/healthz",status="200"}' in metrics
        assert "videopipe_upload_bytes_total" in metrics
        ready_videos = re.search(r'^videopipe_videos\{status="ready"\} (\S+)$', metrics, re.MULTILINE)
        with api.pipeline.sessions() as s:
            in_db = s.scalar(select(func.count()).select_from(Video).where(Video.status == "ready"))
        assert ready_videos and float(ready_videos.group(1)) == in_db >= 1  # the lecture at least
        r = http.get("/v1/nothing-here", headers={"Authorization": f"Bearer {api.keys['alpha']}"})
        _problem(r, 404, "not-found")
        _problem(http.get("/v1/nothing-here"), 401, "unauthorized")  # no key: not even which endpoints exist


def test_serve_starts_open_on_localhost_and_requires_keys_once_one_exists(tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    from tests.support.cli import run_cli

    env = {**os.environ, "VIDEOPIPE_DATA_DIR": str(tmp_path), "VIDEOPIPE_VLM": "none"}
    env.pop("VIDEOPIPE_DATABASE_URL", None)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    proc = subprocess.Popen([sys.executable, "-m", "videopipe", "serve", "--port", str(port)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)  # fmt: skip
    try:
        lines = []
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line)
            if "Uvicorn running" in line or len(lines) > 200:
                break
        log = "".join(lines)
        assert "open mode" in log and "videopipe keys create" in log, log
        base = f"http://127.0.0.1:{port}"
        assert httpx.get(f"{base}/v1/videos").json()["total"] == 0  # open: no key needed on localhost

        created = run_cli("keys", "create", "--tenant", "acme", cwd=tmp_path, env={"VIDEOPIPE_DATA_DIR": str(tmp_path)})
        assert created.returncode == 0, created.stderr
        key = created.stdout.split()[-1]
        assert key.startswith("vp_") and key not in (tmp_path / "videopipe.db").read_bytes().decode("latin-1")
        deadline = time.monotonic() + 10
        while httpx.get(f"{base}/v1/videos").status_code != 401:  # the open mode ends with the first key
            assert time.monotonic() < deadline
            time.sleep(0.3)
        assert httpx.get(f"{base}/v1/videos", headers={"Authorization": f"Bearer {key}"}).status_code == 200
        listed = run_cli("keys", "list", cwd=tmp_path, env={"VIDEOPIPE_DATA_DIR": str(tmp_path)})
        assert "acme" in listed.stdout and key not in listed.stdout
    finally:
        proc.terminate()
        proc.wait(timeout=20)

    refused = run_cli("serve", "--host", "0.0.0.0", cwd=tmp_path,
                      env={"VIDEOPIPE_DATA_DIR": str(tmp_path), "VIDEOPIPE_API__AUTH": "open"})  # fmt: skip
    assert refused.returncode == 2 and "localhost only" in refused.stderr


def test_search_and_ask_over_http_stay_inside_the_tenant(api: Api, lecture_id: str, short_lecture: Path) -> None:
    with api.client("alpha") as alpha:
        r = alpha.get("/v1/search", params={"q": "a volcano can erupt without warning"})
        assert r.status_code == 200, r.text
        first = r.json()["items"][0]
        assert first["video_id"] == lecture_id and first["start_s"] == 6.0 and "volcano" in first["text"].lower()
        scores = [h["score"] for h in r.json()["items"]]  # absolute relevance in (0, 1], falling
        assert scores == sorted(scores, reverse=True) and all(0 < x <= 1 for x in scores)
        assert first["link"] == f"/v1/videos/{lecture_id}/media#t=6.000"
        assert alpha.get(first["keyframe_url"]).headers["content-type"] == "image/jpeg"
        inside = alpha.get("/v1/search", params={"q": "galaxies", "video_id": lecture_id, "start_s": 10}).json()
        assert inside["items"] and all(h["end_s"] > 10 for h in inside["items"])
        _problem(alpha.get("/v1/search", params={"q": " "}), 400, "bad-request")

        answer = alpha.post(f"/v1/videos/{lecture_id}/ask", json={"question": "What did the telescope reveal?"})
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert body["mode"] == "extractive" and "galaxies" in body["answer"]
        assert body["citations"][0]["start_s"] == 12.0

        # The original, for players: whole and by byte range.
        media = alpha.get(f"/v1/videos/{lecture_id}/media")
        assert media.status_code == 200 and media.content == short_lecture.read_bytes()
        part = alpha.get(f"/v1/videos/{lecture_id}/media", headers={"Range": "bytes=0-99"})
        assert part.status_code == 206 and part.content == short_lecture.read_bytes()[:100]

    with api.client("beta") as beta:
        found = beta.get("/v1/search", params={"q": "a volcano can erupt without warning", "limit": 100}).json()
        assert lecture_id not in {h["video_id"] for h in found["items"]}
        _problem(beta.get("/v1/search", params={"q": "volcano", "video_id": lecture_id}), 404, "not-found")
        _problem(beta.post(f"/v1/videos/{lecture_id}/ask", json={"question": "what erupts?"}), 404, "not-found")
        _problem(beta.get(f"/v1/videos/{lecture_id}/media"), 404, "not-found")


def _wait_batch(http: httpx.Client, batch_id: str, timeout_s: float = 240) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    seen: list[float] = []
    while time.monotonic() < deadline:
        info = http.get(f"/v1/batches/{batch_id}").json()
        seen.append(info["progress"])
        assert 0.0 <= info["progress"] <= 100.0 and seen == sorted(seen), seen  # it only moves forward
        assert all(0.0 <= i["progress"] <= 100.0 for i in info["items"])
        if info["status"] != "running":
            assert all(i["progress"] == 100.0 for i in info["items"])
            return info
        time.sleep(0.3)
    raise AssertionError(f"batch {batch_id} not finished after {timeout_s} s: {info}")


def test_a_batch_over_ids_and_a_folder_tags_everything_it_can_and_reports_the_rest(
    api: Api, lecture_id: str, short_lecture: Path
) -> None:
    folder = api.settings.api.ingest_dirs[0]
    batch_dir = Path(folder) / "batch"
    batch_dir.mkdir()
    write_topic_lecture(batch_dir / "cooking.mp4", "cooking")
    (batch_dir / "broken.mp4").write_bytes(short_lecture.read_bytes()[:5000])
    vocabulary = [{"tag": t, "description": d} for t, d in TOPIC_VOCABULARY] + ["entropy: information theory"]
    with api.client("alpha") as alpha:
        r = alpha.post("/v1/batches", json={"video_ids": [lecture_id], "path": str(batch_dir),
                                            "vocabulary": vocabulary, "top_k": 3,
                                            "options": {"profile": "lecture", "motion": False}})  # fmt: skip
        assert r.status_code == 201, r.text
        batch_id = r.json()["id"]
        assert r.headers["location"] == f"/v1/batches/{batch_id}" and r.json()["total"] == 3
        info = _wait_batch(alpha, batch_id)
        assert info["status"] == "done" and info["progress"] == 100.0, info
        assert info["counts"] == {"pending": 0, "analyzing": 0, "done": 2, "failed": 1, "cancelled": 0}
        items = {Path(i["source"]).name: i for i in info["items"]}
        lecture = items[f"video:{lecture_id}"]
        assert lecture["reused"] and lecture["tags"][0]["tag"] in ("entropy", "astronomy", "geology")
        assert {"entropy", "astronomy", "geology"} & {t["tag"] for t in lecture["tags"]}
        cooking = items["cooking.mp4"]
        assert not cooking["reused"] and cooking["tags"][0]["tag"] == "cooking" and cooking["tags"][0]["support"]
        broken = items["broken.mp4"]
        assert broken["status"] == "failed" and broken["video_id"] is None and "cut off" in broken["error"]

        exported = alpha.get(f"/v1/batches/{batch_id}/tags.csv")
        assert exported.status_code == 200 and exported.headers["content-type"].startswith("text/csv")
        rows = list(csv.DictReader(io.StringIO(exported.text)))
        assert {r["video_id"] for r in rows} == {lecture_id, cooking["video_id"]} and len(rows) == 6
        as_json = alpha.get(f"/v1/batches/{batch_id}/tags.json").json()
        assert [v["video_id"] for v in as_json] == [lecture_id, cooking["video_id"]]

        # Retry the failed item once the file is whole: it completes, the rest is left as it was.
        (batch_dir / "broken.mp4").write_bytes(short_lecture.read_bytes())
        r = alpha.post(f"/v1/batches/{batch_id}/retry")
        assert r.status_code == 200 and r.json()["status"] == "running" and r.json()["counts"]["pending"] == 1
        info = _wait_batch(alpha, batch_id)
        assert info["counts"]["done"] == 3 and info["counts"]["failed"] == 0
        assert [b["id"] for b in alpha.get("/v1/batches").json()["items"]] == [batch_id]

        # Cancelling stops what has not started.
        r = alpha.post("/v1/batches", json={"path": str(batch_dir), "top_k": 2})
        cancelled = alpha.post(f"/v1/batches/{r.json()['id']}/cancel").json()
        assert cancelled["status"] == "cancelled"
        _problem(alpha.post("/v1/batches", json={"path": "/etc"}), 400, "bad-request")
        _problem(alpha.post("/v1/batches", json={"video_ids": ["0" * 32]}), 404, "not-found")
        _problem(alpha.post("/v1/batches", json={"top_k": 3}), 422, "invalid-request")

    with api.client("beta") as beta:
        _problem(beta.get(f"/v1/batches/{batch_id}"), 404, "not-found")
        _problem(beta.get(f"/v1/batches/{batch_id}/tags.csv"), 404, "not-found")
        _problem(beta.post(f"/v1/batches/{batch_id}/cancel"), 404, "not-found")
        _problem(beta.post("/v1/batches", json={"video_ids": [lecture_id]}), 404, "not-found")
        assert beta.get("/v1/batches").json()["items"] == []
