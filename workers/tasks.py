"""Thin tasks: open the pipeline, run the stage, let Celery retry transient failures with backoff."""

from __future__ import annotations

import functools
import logging
import os
import socket

from celery.signals import worker_process_init

from videopipe.config import Settings
from videopipe.pipeline import Pipeline, TransientError, open_pipeline
from workers.celery_app import CeleryDispatcher, app

log = logging.getLogger(__name__)


@functools.cache
def pipeline() -> Pipeline:
    return open_pipeline(Settings(), CeleryDispatcher(app))


@worker_process_init.connect
def _fresh_connections(**_: object) -> None:
    pipeline.cache_clear()  # never share a parent's database connections with a forked child


@app.task(name="videopipe.run_stage", bind=True, acks_late=True, reject_on_worker_lost=True,
          autoretry_for=(TransientError,), retry_backoff=2, retry_backoff_max=120, retry_jitter=True,
          max_retries=8)  # fmt: skip
def run_stage(self: object, stage_run_id: str) -> str:
    hostname = getattr(getattr(self, "request", None), "hostname", None) or socket.gethostname()
    return pipeline().run_stage(stage_run_id, worker=f"{hostname}/{os.getpid()}")


@app.task(name="videopipe.reconcile")
def reconcile() -> int:
    return len(pipeline().reconcile())
