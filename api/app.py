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
TENANT_STATE = "videopipe_tenant"  # the key in scope["state"] (request.state) that carries the caller's tenant


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
        """Open mode ("auto") lasts until the first API key is created, and then ends for good: revoking every
        key does not reopen the server (the operator does, with VIDEOPIPE_API__AUTH=open)."""
        if self.auth_mode != "open":
            return False
        if self.settings.api.auth == "open":
            return True
        checked, any_keys = self._keys_seen
        if time.monotonic() - checked > 2.0:
            any_keys = self.keys.any_ever()
            self._keys_seen = (time.monotonic(), any_keys)
        if any_keys:
            self.auth_mode = "keys"
            log.info("an API key was created: API keys are required from now on (open mode has ended for good)")
        return not any_keys


async def state_of(request: Request) -> AppState:
    st: AppState = request.app.state.vp
    return st


_bearer = HTTPBearer(auto_error=False, description="An API key from `videopipe keys create --tenant NAME`")


async def tenant_of(request: Request, _declared: Annotated[Any, Depends(_bearer)] = None) -> str:
    """The caller's tenant, as `api.gate.Gate` found it from the request's headers before any body was read.
    (`_declared` only puts the bearer scheme in the OpenAPI schema.)"""
    tenant = request.scope.get("state", {}).get(TENANT_STATE)
    if not isinstance(tenant, str):  # a route outside /v1 asked for a tenant: the gate did not authenticate it
        raise Unauthorized("an API key is required: send `Authorization: Bearer <key>`")
    return tenant


def decide_auth(settings: Settings, keys: KeyStore, host: str) -> str:
    """ "open" or "keys" for a server bound to `host`, with the reason logged at start-up."""
    mode = settings.api.auth
    if mode == "open" and not is_loopback(host):
        from videopipe.errors import ConfigError

        raise ConfigError(
            f"VIDEOPIPE_API__AUTH=open is for localhost only, but the server binds {host}; create API keys "
            "(`videopipe keys create --tenant NAME`) or bind 127.0.0.1"
        )
    if mode == "keys" or (mode == "auto" and not is_loopback(host)):
        log.info("API keys required (Authorization: Bearer <key>)")
        return "keys"
    if mode == "auto" and keys.any_ever():
        log.info(
            "API keys required (Authorization: Bearer <key>): open mode ended for good when the first key was "
            "created (revoked keys count too); to open this localhost server without keys again, set "
            "VIDEOPIPE_API__AUTH=open"
        )
        return "keys"
    if mode == "open":
        log.warning(
            "open mode (VIDEOPIPE_API__AUTH=open): anyone on this machine (%s) without an API key acts as tenant %r",
            host,
            DEFAULT_TENANT,
        )
        return "open"
    log.warning(
        "open mode: no API key has ever been created, so anyone on this machine (%s) acts as tenant %r until the "
        "first key is created with `videopipe keys create --tenant NAME`; from then on keys are required for good "
        "(revoking them does not reopen the server; VIDEOPIPE_API__AUTH=open does)",
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
    from api.gate import Gate
    from videopipe.batches import Batches

    library = Library(pipeline)
    keys = KeyStore(pipeline.sessions, cache_s=settings.api.key_cache_s)
    metrics = Metrics(pipeline.sessions)
    state = AppState(settings, pipeline, library, Uploads(library), keys, metrics, decide_auth(settings, keys, host),
                     runner, extras={"batches": Batches(pipeline)})  # fmt: skip
    stop = threading.Event()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        _sweep(state)  # what requests killed along with the last run of the server left behind
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
    # Innermost first: the gate runs after CORS has answered preflights, inside the request context (its
    # refusals get a request id and are logged and counted like any answer).
    app.add_middleware(Gate, state=state)
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
    """Send again stages nobody is running (embedded mode: after a restart), drop stale uploads and the files
    of dead upload requests."""
    while not stop.is_set():
        try:
            if state.runner is not None:
                state.pipeline.reconcile()
            state.uploads.expire()
            _sweep(state)
        except Exception:  # never let housekeeping kill the server; the next round tries again
            log.exception("housekeeping failed")
        stop.wait(state.settings.jobs.reconcile_every_s)


def _sweep(state: AppState) -> None:
    """Remove the files of uploads whose requests died: multipart staging folders and tus leftovers."""
    try:
        max_age = state.settings.api.staging_expiry_s
        state.library.sweep_staging(max_age)
        state.uploads.sweep(max_age)
    except Exception:  # a file system hiccup must not stop the server starting; housekeeping tries again
        log.exception("removing abandoned upload files failed")


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
