"""The FastAPI application: `create_app(settings)` wires the videopipe services; routes live in `api.routes_*`."""

from __future__ import annotations

import ipaddress
import logging
import threading
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.middleware.cors import CORSMiddleware
from fastapi.security import HTTPBearer

from api import problems
from api.context import RequestContext
from api.metrics import Metrics
from videopipe.auth import KeyStore
from videopipe.config import Settings
from videopipe.errors import Unauthorized
from videopipe.library import Library
from videopipe.pipeline import Pipeline
from videopipe.uploads import Uploads

log = logging.getLogger("api")

DEFAULT_TENANT = "default"


def is_loopback(host: str | None) -> bool:
    if not host:
        return False
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


@dataclass
class AppState:
    settings: Settings
    pipeline: Pipeline
    library: Library
    uploads: Uploads
    keys: KeyStore
    metrics: Metrics
    auth_mode: str  # "open" or "keys"
    runner: Any = None  # EmbeddedRunner when no broker is configured
    extras: dict[str, Any] = field(default_factory=dict)  # search index, batch service...
    batch_wakeup: threading.Event = field(default_factory=threading.Event)  # set: move batches on now
    _keys_seen: tuple[float, bool] = (0.0, False)

    def open_now(self) -> bool:
        """Open mode lasts until the first API key is created ("auto")."""
        if self.auth_mode != "open":
            return False
        if self.settings.api.auth == "open":
            return True
        checked, any_keys = self._keys_seen
        if time.monotonic() - checked > 2.0:
            any_keys = self.keys.any_active()
            self._keys_seen = (time.monotonic(), any_keys)
        return not any_keys


async def state_of(request: Request) -> AppState:
    st: AppState = request.app.state.vp
    return st


_bearer = HTTPBearer(auto_error=False, description="An API key from `videopipe keys create --tenant NAME`")


async def tenant_of(request: Request, _declared: Annotated[Any, Depends(_bearer)] = None) -> str:
    """The caller's tenant, from ``Authorization: Bearer <key>``, or the default tenant in open mode.
    (`_declared` only puts the bearer scheme in the OpenAPI schema; the header is read here.) A key verified in
    the last few seconds is answered from memory, on the event loop; otherwise the database is asked from a
    worker thread."""
    st: AppState = request.app.state.vp
    header = request.headers.get("authorization")
    if header:
        scheme, _, key = header.partition(" ")
        if scheme.lower() != "bearer" or not key.strip():
            raise Unauthorized("send the API key as `Authorization: Bearer <key>`")
        tenant = st.keys.cached_tenant(key.strip())
        return tenant if tenant is not None else await run_in_threadpool(st.keys.tenant_for, key.strip())
    if await run_in_threadpool(st.open_now):
        client = request.client.host if request.client else None
        if is_loopback(client) or client == "testclient":
            return DEFAULT_TENANT
        raise Unauthorized("this server is open to localhost only; send an API key (`videopipe keys create`)")
    raise Unauthorized(
        "an API key is required: send `Authorization: Bearer <key>`; an operator creates one with "
        "`videopipe keys create --tenant NAME`"
    )


def decide_auth(settings: Settings, keys: KeyStore, host: str) -> str:
    """ "open" or "keys" for a server bound to `host`, with the reason logged at start-up."""
    mode = settings.api.auth
    if mode == "open" and not is_loopback(host):
        from videopipe.errors import ConfigError

        raise ConfigError(
            f"VIDEOPIPE_API__AUTH=open is for localhost only, but the server binds {host}; create API keys "
            "(`videopipe keys create --tenant NAME`) or bind 127.0.0.1"
        )
    if mode == "keys" or (mode == "auto" and (keys.any_active() or not is_loopback(host))):
        log.info("API keys required (Authorization: Bearer <key>)")
        return "keys"
    log.warning(
        "open mode: no API keys exist, so anyone on this machine (%s) acts as tenant %r until the first key is "
        "created with `videopipe keys create --tenant NAME`",
        host,
        DEFAULT_TENANT,
    )
    return "open"


def create_app(
    settings: Settings,
    pipeline: Pipeline,
    runner: Any = None,
    host: str = "127.0.0.1",
    background: bool = True,
    on_startup: list[Callable[[AppState], None]] | None = None,
) -> FastAPI:
    """The app over `pipeline`. `runner`: the in-process runner (embedded mode); `background`: run the
    reconciler and upload expiry in a thread while the app is up."""
    from api import routes_batches, routes_ops, routes_search, routes_uploads, routes_videos
    from videopipe.batches import Batches

    library = Library(pipeline)
    keys = KeyStore(pipeline.sessions)
    metrics = Metrics(pipeline.sessions)
    state = AppState(settings, pipeline, library, Uploads(library), keys, metrics, decide_auth(settings, keys, host),
                     runner, extras={"batches": Batches(pipeline)})  # fmt: skip
    stop = threading.Event()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        threads = []
        if background:
            threads = [
                threading.Thread(target=_housekeeping, args=(state, stop), name="vp-housekeeping", daemon=True),
                threading.Thread(target=_batches, args=(state, stop), name="vp-batches", daemon=True),
            ]
            for thread in threads:
                thread.start()
        try:
            yield
        finally:
            stop.set()
            state.batch_wakeup.set()
            for thread in threads:
                thread.join(timeout=5)
            if runner is not None:
                runner.shutdown()

    app = FastAPI(
        title="videopipe",
        version="0.1.0",
        summary="Chapters, events, transcripts and timestamped search for long videos.",
        lifespan=lifespan,
    )
    app.state.vp = state
    problems.install(app)
    if settings.api.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.api.cors_origins,
            allow_methods=["*"],
            allow_headers=["*"],
            expose_headers=["Location", "Upload-Offset", "Upload-Length", "Tus-Resumable", "X-Request-ID"],
        )
    app.add_middleware(RequestContext, metrics=metrics)
    app.include_router(routes_videos.router)
    app.include_router(routes_uploads.router)
    app.include_router(routes_search.router)
    app.include_router(routes_batches.router)
    app.include_router(routes_ops.router)
    for hook in on_startup or []:
        hook(state)
    return app


def app_from_env() -> FastAPI:
    """The app as `videopipe serve` builds it, from the environment (uvicorn's factory for --workers > 1)."""
    import os

    from videopipe.cli import pipeline_with_dispatcher

    settings = Settings()
    pipeline, runner = pipeline_with_dispatcher(settings)
    return create_app(settings, pipeline, runner, host=os.environ.get("VIDEOPIPE_SERVE_HOST", "127.0.0.1"))


def _housekeeping(state: AppState, stop: threading.Event) -> None:
    """Send again stages nobody is running (embedded mode: after a restart), and drop stale uploads."""
    while not stop.is_set():
        try:
            if state.runner is not None:
                state.pipeline.reconcile()
            state.uploads.expire()
        except Exception:  # never let housekeeping kill the server; the next round tries again
            log.exception("housekeeping failed")
        stop.wait(state.settings.jobs.reconcile_every_s)


def _batches(state: AppState, stop: threading.Event) -> None:
    """Move running batches on: tag what finished analysing, queue the next files (woken early by new batches)."""
    batches = state.extras["batches"]
    while not stop.is_set():
        try:
            batches.advance_all(state.settings.batches.max_in_flight)
        except Exception:
            log.exception("moving batches on failed")
        state.batch_wakeup.wait(state.settings.batches.advance_every_s)
        state.batch_wakeup.clear()
