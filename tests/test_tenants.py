"""Tenant isolation, tested the generic way: whatever takes an id answers another tenant's id as it answers an id
that does not exist.

Tenant "alpha" owns one of every kind of id (a video and its job, a tus upload part way through, a batch). Then

- every route of the app that takes an id (a path parameter, or an id-like query parameter or body field) is
  called as tenant "beta" with alpha's ids, found by walking ``app.routes``: a 404 problem+json, the same one an
  id that does not exist gets, and none of alpha's data; a new id-taking route the walker cannot exercise fails
  the test (add it to ``REQUESTS``);
- every CLI command of ``videopipe.cli.main`` is listed here, either with the run that gives it another tenant's
  id (exit 2, one "not found" line, the same as for a missing id) or with why it takes no tenant's id; a new
  command, or a new id-like parameter on a listed one, fails the test until it is examined;
- afterwards alpha's resources are as they were (nothing was cancelled, appended, retried or deleted).

And full-text search ranks a tenant's moments with that tenant's statistics only: another tenant's documents do
not change its results, nor can it tell from them what others hold.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import types
import typing
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click
import httpx
import pytest
from pydantic import BaseModel

from tests.support.servers import POSTGRES_ADMIN_URL, live_server
from videopipe.auth import KeyStore
from videopipe.config import SearchSettings, Settings
from videopipe.db.migrate import upgrade
from videopipe.db.models import Moment, Video
from videopipe.db.session import make_engine, make_session_factory
from videopipe.testing.databases import scratch_database
from videopipe.testing.media import write_sample_video

OWNER, OTHER = "alpha", "beta"
# Every analysis as cheap as it gets: no model, no speech, no on-screen text, no motion.
OPTIONS = {"profile": "general", "vlm": "none", "asr": False, "ocr": False, "motion": False}
FINAL = ("ready", "failed", "cancelled")
TUS = {"Tus-Resumable": "1.0.0"}
UPLOAD_LENGTH, UPLOAD_SENT = 1000, 100  # alpha's tus upload: this many bytes announced, this many sent
MISSING = "0" * 32  # an id nobody has


# ---------------------------------------------------------------------------------------------------------------
# Alpha's world


@dataclass
class World:
    base: str
    app: Any
    data_dir: Path
    database_url: str
    keys: dict[str, str]
    ids: dict[str, str]  # video_id, job_id, upload_id, batch_id, keyframe (an index: alpha's video has keyframe 0)
    secrets: list[str]  # alpha's data that must never reach beta: file names, content hash, tag vocabulary
    before: dict[str, Any] = field(default_factory=dict)  # what alpha sees of its resources before the walks

    def client(self, tenant: str) -> httpx.Client:
        return httpx.Client(base_url=self.base, headers={"Authorization": f"Bearer {self.keys[tenant]}"}, timeout=60)

    def env(self) -> dict[str, str]:
        """The environment of a videopipe process on the same database and data dir (nothing else inherited)."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("VIDEOPIPE_")}
        env.update({"VIDEOPIPE_DATA_DIR": str(self.data_dir), "VIDEOPIPE_DATABASE_URL": self.database_url,
                    "VIDEOPIPE_VLM": "none", "VIDEOPIPE_TEST_NO_TV_SHIM": "1", "COLUMNS": "200"})  # fmt: skip
        return env

    def snapshot(self) -> dict[str, Any]:
        """Alpha's resources as alpha reads them (what the walks must leave unchanged)."""
        v, b, u = self.ids["video_id"], self.ids["batch_id"], self.ids["upload_id"]
        with self.client(OWNER) as http:
            out = {
                "video": _ok(http.get(f"/v1/videos/{v}")),
                "analysis": _ok(http.get(f"/v1/videos/{v}/analysis")),
                "upload": _ok(http.get(f"/v1/uploads/{u}")),
                "batch": _ok(http.get(f"/v1/batches/{b}")),
                "videos": _ok(http.get("/v1/videos")),
                "keyframe": http.get(f"/v1/videos/{v}/keyframes/0.jpg").content,
                "media": http.get(f"/v1/videos/{v}/media").content,
            }
        assert out["keyframe"] and out["media"]
        return out


def _ok(r: httpx.Response) -> Any:
    assert r.status_code == 200, f"{r.request.method} {r.request.url}: {r.status_code} {r.text}"
    return r.json()


def _wait(http: httpx.Client, path: str, done: Callable[[dict[str, Any]], bool], timeout_s: float = 240) -> Any:
    deadline = time.monotonic() + timeout_s
    while True:
        body = _ok(http.get(path))
        if done(body):
            return body
        if time.monotonic() > deadline:
            raise AssertionError(f"{path} did not finish in {timeout_s} s: {body}")
        time.sleep(0.3)


def _server_env(data_dir: Path, database_url: str) -> dict[str, str]:
    return {"VIDEOPIPE_DATA_DIR": str(data_dir), "VIDEOPIPE_DATABASE_URL": database_url, "VIDEOPIPE_VLM": "none",
            "VIDEOPIPE_BATCHES__ADVANCE_EVERY_S": "0.3"}  # fmt: skip


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    """The app as `videopipe serve` builds it (`api.app.app_from_env`), on a scratch PostgreSQL database, served
    over real HTTP; alpha's resources created through the API."""
    data = tmp_path_factory.mktemp("tenants-data")
    marker = uuid.uuid4().hex[:12]
    video = write_sample_video(data.parent / f"alpha-secret-{marker}.mp4", shots_s=(1.0, 1.0), width=320, height=180,
                               fps=10, seed=7)  # fmt: skip
    with ExitStack() as stack:
        url = stack.enter_context(scratch_database(POSTGRES_ADMIN_URL, "vp_tenants"))
        upgrade(url)
        engine = make_engine(url)
        keystore = KeyStore(make_session_factory(engine))
        keys = {tenant: keystore.create(tenant)[1] for tenant in (OWNER, OTHER)}
        engine.dispose()
        with pytest.MonkeyPatch.context() as mp:
            for name in [k for k in os.environ if k.startswith("VIDEOPIPE_")]:
                mp.delenv(name)
            for name, value in _server_env(data, url).items():
                mp.setenv(name, value)
            from api.app import app_from_env

            app = app_from_env()
        base = stack.enter_context(live_server(app))
        w = World(base, app, data, url, keys, {}, [video.path.name, f"alpha-upload-{marker}.mp4", f"tagalpha{marker}"])
        with w.client(OWNER) as http, video.path.open("rb") as f:
            r = http.post("/v1/videos", files={"file": (video.path.name, f, "video/mp4")},
                          data={"options": json.dumps(OPTIONS)})  # fmt: skip
            assert r.status_code == 201, r.text
            w.ids["video_id"], w.ids["job_id"] = r.json()["id"], r.json()["job_id"]
            info = _wait(http, f"/v1/videos/{w.ids['video_id']}", lambda b: b["status"] in FINAL)
            assert info["status"] == "ready", info
            w.secrets.append(info["content_hash"])
            w.ids["keyframe"] = "0"

            meta = f"filename {_b64(w.secrets[1])},options {_b64(json.dumps(OPTIONS))}"
            r = http.post("/v1/uploads", headers={**TUS, "Upload-Length": str(UPLOAD_LENGTH), "Upload-Metadata": meta})
            assert r.status_code == 201, r.text
            r = http.patch(
                r.headers["location"],
                content=b"\0" * UPLOAD_SENT,
                headers={**TUS, "Upload-Offset": "0", "Content-Type": "application/offset+octet-stream"},
            )
            assert r.status_code == 204 and r.headers["upload-offset"] == str(UPLOAD_SENT), r.text  # fmt: skip
            w.ids["upload_id"] = r.request.url.path.rsplit("/", 1)[-1]

            r = http.post("/v1/batches", json={"video_ids": [w.ids["video_id"]], "vocabulary": [w.secrets[2]]})
            assert r.status_code == 201, r.text
            w.ids["batch_id"] = r.json()["id"]
            batch = _wait(http, f"/v1/batches/{w.ids['batch_id']}", lambda b: b["status"] != "running")
            assert batch["status"] == "done" and batch["counts"]["done"] == 1, batch
        w.before = w.snapshot()
        yield w


def _b64(text: str) -> str:
    import base64

    return base64.b64encode(text.encode()).decode()


def _same_refusal(got: str, got_id: str, missing: str, missing_id: str) -> None:
    """The message for another tenant's id is the one for an id that does not exist (ids aside)."""
    assert got.replace(got_id, "ID") == missing.replace(missing_id, "ID"), (got, missing)


def _no_secrets(w: World, text: str, where: str) -> None:
    leaked = [s for s in w.secrets if s in text]
    assert not leaked, f"{where}: tenant {OTHER} was shown {OWNER}'s data {leaked}: {text[:500]}"


# ---------------------------------------------------------------------------------------------------------------
# HTTP: every route that takes an id

# Path parameters and where their value comes from: alpha's ids (keyframe: an index alpha's video has).
PATH_IDS = {"video_id": "video_id", "batch_id": "batch_id", "upload_id": "upload_id", "n": "keyframe"}
ID_LIKE = re.compile(r"(^|_)ids?$")

Spec = Callable[[dict[str, str]], dict[str, Any]]
_PATCH_HEADERS = {**TUS, "Content-Type": "application/offset+octet-stream", "Upload-Offset": str(UPLOAD_SENT)}
# What a request needs to get past validation (headers, body, query), by (method, route path). The ids it
# carries outside the path come from `ids`. A PATCH at alpha's real offset: were it let through, it would append.
REQUESTS: dict[tuple[str, str], Spec] = {
    ("POST", "/v1/videos/{video_id}/ask"): lambda ids: {"json": {"question": "what happens in this video?"}},
    ("POST", "/v1/videos/{video_id}/reanalyze"): lambda ids: {"json": OPTIONS},
    ("HEAD", "/v1/uploads/{upload_id}"): lambda ids: {"headers": TUS},
    ("PATCH", "/v1/uploads/{upload_id}"): lambda ids: {"headers": _PATCH_HEADERS, "content": b"\1" * 10},
    ("DELETE", "/v1/uploads/{upload_id}"): lambda ids: {"headers": TUS},
    ("GET", "/v1/search"): lambda ids: {"params": {"q": "anything at all", "video_id": ids["video_id"]}},
    ("POST", "/v1/batches"): lambda ids: {"json": {"video_ids": [ids["video_id"]]}},
}
# Routes without ids that beta may call and whose answers must not show alpha's data, with what they need.
LISTINGS: dict[tuple[str, str], Spec] = {
    ("GET", "/v1/search"): lambda ids: {"params": {"q": "alpha secret sample video"}},
}


def _fields(dependant: Any) -> dict[str, list[Any]]:
    """Path, query and body fields of a route, its dependencies' included."""
    out: dict[str, list[Any]] = {"path": [], "query": [], "body": []}
    todo = [dependant]
    while todo:
        d = todo.pop()
        out["path"] += d.path_params
        out["query"] += d.query_params
        out["body"] += d.body_params
        todo += d.dependencies
    return out


def _models(annotation: Any) -> list[type[BaseModel]]:
    """The pydantic models an annotation names (through Optional, unions and Annotated)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    if typing.get_origin(annotation) in (typing.Union, types.UnionType, typing.Annotated):
        return [m for arg in typing.get_args(annotation) for m in _models(arg)]
    return []


def _body_id_fields(body: list[Any]) -> list[str]:
    names = []
    for f in body:
        if ID_LIKE.search(f.name):
            names.append(f.name)
        for model in _models(f.field_info.annotation):
            names += [name for name in model.model_fields if ID_LIKE.search(name)]
    return names


@dataclass
class Call:
    method: str
    path: str  # the route's template
    path_params: list[str]
    other_ids: list[str]  # id-like query parameters and body fields
    body_required: bool

    def request(self, ids: dict[str, str]) -> dict[str, Any]:
        spec = REQUESTS.get((self.method, self.path))
        kwargs = spec(ids) if spec else {}
        return {"method": self.method, "url": self.path.format(**{p: ids[PATH_IDS[p]] for p in self.path_params}),
                **kwargs}  # fmt: skip


@dataclass
class ApiRoute:
    path: str  # the full template, prefixes included
    methods: set[str]
    dependant: Any

    @property
    def path_params(self) -> list[str]:
        return re.findall(r"{(\w+)(?::[^}]*)?}", self.path)


def _api_routes(app: Any) -> list[ApiRoute]:
    """Every FastAPI route of the app, however routers are nested (FastAPI >= 0.130 keeps included routers as
    nodes of `app.routes`; `iter_route_contexts` walks them with their prefixes)."""
    from fastapi.routing import APIRoute

    try:
        from fastapi.routing import iter_route_contexts
    except ImportError:  # an older FastAPI: included routes are flattened into app.routes
        return [ApiRoute(r.path, set(r.methods), r.dependant) for r in app.routes if isinstance(r, APIRoute)]
    out = []
    for ctx in iter_route_contexts(app.routes):
        route = ctx.original_route
        if isinstance(route, APIRoute):
            out.append(ApiRoute(str(ctx.path), set(ctx.methods or route.methods), route.dependant))
    assert out, "found no routes in the app"
    return out


def _id_calls(app: Any) -> tuple[list[Call], list[str]]:
    """Every (method, route) of the app that takes an id, and the reasons the walker cannot call some."""
    calls, problems = [], []
    for route in _api_routes(app):
        fields = _fields(route.dependant)
        path_params = route.path_params
        other = [f.name for f in fields["query"] if ID_LIKE.search(f.name)] + _body_id_fields(fields["body"])
        if not path_params and not other:
            continue
        required_body = any(f.field_info.is_required() for f in fields["body"])
        for method in sorted(route.methods):
            where = f"{method} {route.path}"
            unknown = [p for p in path_params if p not in PATH_IDS]
            if unknown:
                problems.append(f"{where}: path parameter(s) {unknown} the walker has no id for (PATH_IDS)")
            elif (other or required_body) and (method, route.path) not in REQUESTS:
                problems.append(f"{where}: takes {other or 'a body'} the walker cannot fill in (REQUESTS)")
            else:
                calls.append(Call(method, route.path, path_params, other, required_body))
    # Destructive calls last: were one let through, the rest of the walk still runs on alpha's resources.
    calls.sort(key=lambda c: (c.method == "DELETE", c.path, c.method))
    return calls, problems


def test_every_route_that_takes_an_id_answers_another_tenants_id_as_a_missing_one(world: World) -> None:
    calls, problems = _id_calls(world.app)
    assert not problems, "routes the tenant walker cannot exercise:\n" + "\n".join(problems)
    walked = {(c.method, c.path) for c in calls}
    # The walker found the routes it must (a broken walk must not pass by calling nothing).
    expected = [("GET", "/v1/videos/{video_id}"), ("POST", "/v1/videos/{video_id}/ask"),
                ("GET", "/v1/videos/{video_id}/keyframes/{n}.jpg"), ("PATCH", "/v1/uploads/{upload_id}"),
                ("POST", "/v1/batches/{batch_id}/retry"), ("GET", "/v1/search"), ("POST", "/v1/batches")]  # fmt: skip
    assert not set(expected) - walked, f"the walker did not find {set(expected) - walked}"
    missing_ids = {**world.ids, "video_id": MISSING, "batch_id": MISSING, "upload_id": MISSING}
    failures = []
    with world.client(OTHER) as beta:
        for call in calls:
            where = f"{call.method} {call.path}"
            r = beta.request(**call.request(world.ids))
            missing = beta.request(**call.request(missing_ids))
            try:
                assert r.status_code == 404, f"{r.status_code} {r.text[:300]}"
                assert r.headers.get("content-type") == "application/problem+json", r.headers
                _no_secrets(world, r.text + str(r.headers), where)
                assert missing.status_code == 404, f"a missing id: {missing.status_code} {missing.text[:300]}"
                if call.method != "HEAD":  # HEAD answers carry no body
                    got, expected = r.json(), missing.json()
                    assert got["type"] == "urn:videopipe:problem:not-found", got
                    assert got["type"] == expected["type"]
                    id_in_call = next((world.ids[PATH_IDS[p]] for p in call.path_params if p != "n"),
                                      world.ids["video_id"])  # fmt: skip
                    _same_refusal(got["detail"], id_in_call, expected["detail"], MISSING)
            except AssertionError as exc:
                failures.append(f"{where}: {exc}")
    assert not failures, f"as tenant {OTHER}, with {OWNER}'s ids:\n" + "\n".join(failures)
    assert world.snapshot() == world.before, f"{OWNER}'s resources changed while {OTHER} called them"


def test_the_owner_reaches_every_id_the_walk_used(world: World) -> None:
    """The walk above is not vacuous: with the same requests, alpha gets its resources (reads only)."""
    calls, _ = _id_calls(world.app)
    with world.client(OWNER) as alpha:
        for call in calls:
            if call.method in ("GET", "HEAD"):
                r = alpha.request(**call.request(world.ids))
                assert r.status_code == 200, f"{call.method} {call.path}: {r.status_code} {r.text[:300]}"


def test_listings_show_another_tenant_nothing(world: World) -> None:
    """Every /v1 GET without an id, as beta: none of alpha's ids or data."""
    checked = []
    with world.client(OTHER) as beta:
        for route in _api_routes(world.app):
            if route.path_params or not route.path.startswith("/v1"):
                continue
            if "GET" not in route.methods:
                continue
            spec = LISTINGS.get(("GET", route.path))
            required = [f.name for f in _fields(route.dependant)["query"] if f.field_info.is_required()]
            assert spec is not None or not required, f"GET {route.path} needs {required}: add it to LISTINGS"
            r = beta.get(route.path, **(spec(world.ids) if spec else {}))
            assert r.status_code == 200, f"GET {route.path}: {r.status_code} {r.text[:300]}"
            for value in [*world.ids.values(), *world.secrets]:
                if len(value) > 4:
                    assert value not in r.text, f"GET {route.path} showed {OTHER} {OWNER}'s {value}"
            checked.append(route.path)
    assert {"/v1/videos", "/v1/batches"} <= set(checked), checked


# ---------------------------------------------------------------------------------------------------------------
# CLI: every command that takes an id

# A parameter that may name a library id (a path-only parameter, click.Path, cannot).
CLI_ID_LIKE = re.compile(r"(^|_)(id|ids|video|videos|job|jobs|batch|upload|paths?)$")

# Commands that take an id or a path-or-id: the arguments that give them `id` (alpha's) as tenant `tenant`.
CliArgs = Callable[[World, str, str, Path], list[str]]


def _dataset(w: World, video: str, tenant: str, folder: Path) -> str:
    path = folder / f"dataset-{video[:8]}.jsonl"
    path.write_text(json.dumps({"video": video, "query": "anything", "start_s": 0.0, "end_s": 1.0}) + "\n")
    return str(path)


CLI_CASES: dict[str, tuple[str, CliArgs]] = {
    "search": ("video_id", lambda w, i, t, d: ["search", "anything", "--video", i, "--tenant", t]),
    "ask": ("video_id", lambda w, i, t, d: ["ask", i, "what happens?", "--tenant", t]),
    "tag": ("video_id", lambda w, i, t, d: ["tag", i, "--tenant", t, "--quiet"]),
    "eval": ("video_id", lambda w, i, t, d: ["eval", _dataset(w, i, t, d), "--tenant", t]),
    "status": ("job_id", lambda w, i, t, d: ["status", i, "--tenant", t]),
    "cancel": ("job_id", lambda w, i, t, d: ["cancel", i, "--tenant", t]),  # alpha's job is ready: a no-op
}

# Commands that take no tenant's id: why, and the id-like parameters examined (none of them names a library id).
CLI_NO_TENANT_IDS: dict[str, tuple[str, frozenset[str]]] = {
    "analyze": ("VIDEO is a local file (click.Path); the result is written next to it", frozenset()),
    "plan": ("VIDEO is a local file", frozenset()),
    "probe": ("VIDEO is a local file", frozenset()),
    "submit": ("VIDEO is a local file, queued for --tenant", frozenset()),
    "demo": ("makes its own sample video", frozenset()),
    "worker": ("runs a Celery worker", frozenset()),
    "serve": ("runs the API", frozenset()),
    "index rebuild": ("rebuilds the whole vector index (operator)", frozenset()),
    "keys create": ("creates a key for --tenant (operator)", frozenset()),
    "keys list": ("lists every tenant's keys (operator: the CLI holds the database credentials)", frozenset()),
    "keys revoke": ("KEY_ID is an API key of any tenant, revoked by the operator", frozenset({"key_id"})),
    "db upgrade": ("REVISION is a schema revision", frozenset()),
    "db downgrade": ("REVISION is a schema revision", frozenset()),
}


def _commands(group: click.Group, prefix: str = "") -> dict[str, click.Command]:
    out: dict[str, click.Command] = {}
    for name, cmd in group.commands.items():
        full = f"{prefix}{name}"
        if isinstance(cmd, click.Group):
            out.update(_commands(cmd, full + " "))
        else:
            out[full] = cmd
    return out


def test_every_cli_command_is_examined_for_ids() -> None:
    from videopipe.cli import main

    assert isinstance(main, click.Group)
    problems = []
    for name, cmd in sorted(_commands(main).items()):
        if name in CLI_CASES:
            continue
        if name not in CLI_NO_TENANT_IDS:
            problems.append(f"`videopipe {name}` is new: give it a case in CLI_CASES (it takes an id) or list it "
                            "in CLI_NO_TENANT_IDS with the reason it takes none")  # fmt: skip
            continue
        examined = CLI_NO_TENANT_IDS[name][1]
        for p in cmd.params:
            if p.name and CLI_ID_LIKE.search(p.name) and not isinstance(p.type, click.Path) and p.name not in examined:
                problems.append(f"`videopipe {name}` has a parameter {p.name!r} that may take an id: examine it")
    assert not problems, "\n".join(problems)


def _cli(w: World, args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "videopipe", *args], cwd=cwd, capture_output=True, text=True,
                          env=w.env(), timeout=300)  # fmt: skip


@pytest.mark.parametrize("command", list(CLI_CASES))
def test_cli_commands_answer_another_tenants_id_as_a_missing_one(world: World, command: str, tmp_path: Path) -> None:
    kind, args = CLI_CASES[command]
    own = world.ids[kind]
    got = _cli(world, args(world, own, OTHER, tmp_path), tmp_path)
    missing = _cli(world, args(world, MISSING, OTHER, tmp_path), tmp_path)
    for proc in (got, missing):
        out = f"exit {proc.returncode}\nstdout: {proc.stdout[-2000:]}\nstderr: {proc.stderr[-2000:]}"
        assert proc.returncode == 2, out
        lines = [line for line in proc.stderr.splitlines() if line.strip()]
        assert len(lines) == 1 and lines[0].startswith("error: "), out
        assert re.search(r"\b(no|not|neither)\b", lines[0]), out
        assert proc.stdout.strip() == "", out
    _no_secrets(world, got.stdout + got.stderr, f"videopipe {command}")
    _same_refusal(got.stderr.strip(), own, missing.stderr.strip(), MISSING)
    # Not vacuous: the owner gets past the id (any answer but "not found"); then nothing of alpha's changed.
    if command not in ("tag", "eval"):  # these would do work (tag, evaluate)
        mine = _cli(world, args(world, own, OWNER, tmp_path), tmp_path)
        assert mine.returncode == 0, f"exit {mine.returncode}: {mine.stderr[-2000:]}"
    assert world.snapshot() == world.before


# ---------------------------------------------------------------------------------------------------------------
# Full-text statistics per tenant


def _searcher_db(kind: str, tmp_path: Path) -> Iterator[str]:
    if kind == "sqlite":
        yield f"sqlite:///{tmp_path / 'search.db'}"
    else:
        with scratch_database(POSTGRES_ADMIN_URL, "vp_tenant_fts") as url:
            yield url


@pytest.fixture(params=["sqlite", "postgresql"])
def fts_db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    gen = _searcher_db(request.param, tmp_path)
    url = next(gen)
    upgrade(url)
    yield url
    gen.close()


def _add_moments(sessions: Any, tenant: str, texts: list[str]) -> list[int]:
    with sessions.begin() as s:
        video = Video(tenant=tenant, content_hash=uuid.uuid4().hex, filename=f"{tenant}.mp4", blob_key="x",
                      size_bytes=1, status="ready")  # fmt: skip
        s.add(video)
        s.flush()
        rows = [Moment(video_id=video.id, tenant=tenant, start_s=float(n), end_s=n + 1.0, speech=text)
                for n, text in enumerate(texts)]  # fmt: skip
        s.add_all(rows)
        s.flush()
        return [r.id for r in rows]


def test_another_tenants_documents_do_not_change_a_tenants_full_text_results(fts_db: str, tmp_path: Path) -> None:
    """Tenant A's lexical results (which words count as distinctive, the order of its moments, their scores) are
    the same whether or not tenant B has thousands of moments with the same words."""
    from videopipe.search import Searcher

    settings = Settings(data_dir=tmp_path / "data", vlm="none", search=SearchSettings(lexical_max_docs=10))
    engine = make_engine(fts_db)
    sessions = make_session_factory(engine)
    try:
        # "volcano" twice in the first, "magma" once in the second, both in the third; the rest is filler.
        _add_moments(sessions, "a", ["the volcano volcano slept", "hot magma rose", "volcano and magma",
                                     *[f"filler line number {n}" for n in range(5)]])  # fmt: skip
        query = "volcano magma"

        def results() -> list[tuple[int, float, Any]]:
            hits = Searcher(settings, sessions).search(query, "a", limit=10)  # a new searcher: no cached counts
            return [(h["moment_id"], h["score"], h["ranks"]["lexical"]) for h in hits]

        alone = results()
        assert len(alone) == 3 and all(lexical for _, _, lexical in alone), alone
        # Tenant B: "volcano" everywhere (more moments than the budget of distinctive words allows), "magma" rare.
        _add_moments(sessions, "b", [f"volcano volcano volcano report {n}" for n in range(40)] + ["magma"])
        assert results() == alone
    finally:
        engine.dispose()
