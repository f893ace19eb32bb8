"""The FastAPI application: `create_app(services)` serves what `videopipe.services` built; routes live in
`api.routes_*` and take the `AppState` through `api.state`."""

from __future__ import annotations

import logging
import threading
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware

from api import problems, routes_batches, routes_ops, routes_search, routes_uploads, routes_videos
from api.context import RequestContext
from api.gate import Gate
from api.metrics import Metrics
from api.state import DEFAULT_TENANT, AppState, is_loopback
from videopipe.auth import KeyStore
from videopipe.config import Settings
from videopipe.services import Services

log = logging.getLogger("api")

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
    services: Services,
    host: str = "127.0.0.1",
    background: bool = True,
    on_startup: list[Callable[[AppState], None]] | None = None,
) -> FastAPI:
    """The app over `services` (closed with the app). `background`: run the reconciler (embedded mode), upload
    expiry and batches in threads while the app is up."""
    settings = services.settings
    state = AppState(services, Metrics(services.sessions), decide_auth(settings, services.keys, host))
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
            services.close()

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
    app.add_middleware(RequestContext, metrics=state.metrics)
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

    from videopipe.services import open_services

    return create_app(open_services(Settings()), host=os.environ.get("VIDEOPIPE_SERVE_HOST", "127.0.0.1"))


def _housekeeping(state: AppState, stop: threading.Event) -> None:
    """Send again stages nobody is running (embedded mode: after a restart), drop stale uploads and the files
    of dead upload requests."""
    while not stop.is_set():
        try:
            if state.services.runner is not None:
                state.jobs.reconcile()
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
    batches = state.batches
    while not stop.is_set():
        try:
            batches.advance_all(state.settings.batches.max_in_flight)
        except Exception:
            log.exception("moving batches on failed")
        state.batch_wakeup.wait(state.settings.batches.advance_every_s)
        state.batch_wakeup.clear()
