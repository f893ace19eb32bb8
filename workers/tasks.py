"""Thin tasks: open the pipeline, run the stage, let Celery retry transient failures with backoff."""

from __future__ import annotations

import functools
import logging
import os
import socket
import threading
import time

from celery.signals import worker_process_init, worker_ready

from videopipe.config import Settings
from videopipe.db import database_url, make_engine, make_session_factory
from videopipe.pipeline import Pipeline, TransientError, open_pipeline
from videopipe.storage import open_store
from workers.celery_app import CeleryDispatcher, app

log = logging.getLogger(__name__)


@functools.cache
def pipeline() -> Pipeline:
    return open_pipeline(Settings(), CeleryDispatcher(app))


@worker_process_init.connect
def _fresh_connections(**_: object) -> None:
    pipeline.cache_clear()  # never share a parent's database connections with a forked child


@worker_ready.connect
def _start_reconciler(**_: object) -> None:
    """Every worker, however it was started, reconciles at once (stages of a worker killed before it came up
    are sent again now, not after the broker's visibility timeout) and then every `jobs.reconcile_every_s`,
    one worker at a time (`Pipeline.reconcile_if_elected`). Runs in the worker's main process, which forks
    the pool's children: its pipeline opens a connection per round and keeps none between rounds."""
    threading.Thread(target=_reconcile_forever, name="vp-reconciler", daemon=True).start()


def _reconcile_forever() -> None:
    settings = Settings()
    engine = make_engine(database_url(settings), pooled=False)
    reconciler = Pipeline(make_session_factory(engine), open_store(settings), settings, CeleryDispatcher(app))
    while True:
        try:
            sent = reconciler.reconcile_if_elected()
            if sent:
                log.info("reconciler sent %d stage runs again", len(sent))
        except Exception:  # the database or broker is away: the next round tries again
            log.warning("reconciling failed; trying again in %.0f s", settings.jobs.reconcile_every_s, exc_info=True)
        time.sleep(settings.jobs.reconcile_every_s)


@app.task(name="videopipe.run_stage", bind=True, acks_late=True, reject_on_worker_lost=True,
          autoretry_for=(TransientError,), retry_backoff=2, retry_backoff_max=120, retry_jitter=True,
          max_retries=8)  # fmt: skip
def run_stage(self: object, stage_run_id: str) -> str:
    hostname = getattr(getattr(self, "request", None), "hostname", None) or socket.gethostname()
    return pipeline().run_stage(stage_run_id, worker=f"{hostname}/{os.getpid()}")


@app.task(name="videopipe.reconcile")
def reconcile() -> int:
    """The beat schedule's round (workers started with --beat); every worker also runs one on its own timer."""
    return len(pipeline().reconcile_if_elected() or [])
