"""Thin tasks: build the services once per process, run the stage the message names. Retries are the job
engine's (one budget, `jobs.max_attempts`, counted in the database), not Celery's."""

from __future__ import annotations

import functools
import logging
import os
import socket
import threading
import time

from celery.signals import worker_process_init, worker_ready

from videopipe.config import Settings
from videopipe.dispatch import RUN_STAGE_TASK, CeleryDispatcher
from videopipe.services import Services, open_services
from workers.celery_app import app

log = logging.getLogger(__name__)


def _open(pooled: bool = True) -> Services:
    """The services of a worker: its own Celery app sends the next stages; the schema is the operator's
    (`videopipe db upgrade`), never migrated by a worker (many pool processes would race on it)."""
    return open_services(Settings(), dispatch="celery", dispatcher=CeleryDispatcher(app), migrate=False, pooled=pooled)


@functools.cache
def services() -> Services:
    return _open()


@worker_process_init.connect
def _fresh_connections(**_: object) -> None:
    services.cache_clear()  # never share a parent's database connections with a forked child


@worker_ready.connect
def _start_reconciler(**_: object) -> None:
    """Every worker, however it was started, reconciles at once (stages of a worker killed before it came up
    are sent again now, not after the broker's visibility timeout) and then every `jobs.reconcile_every_s`,
    one worker at a time (`JobEngine.reconcile_if_elected`). Runs in the worker's main process, which forks
    the pool's children: its services open a connection per round and keep none between rounds."""
    threading.Thread(target=_reconcile_forever, name="vp-reconciler", daemon=True).start()


def _reconcile_forever() -> None:
    settings = Settings()
    reconciler = None
    while True:
        try:  # the database may be away when the worker starts: keep trying, never give up the thread
            reconciler = reconciler or _open(pooled=False).jobs
            sent = reconciler.reconcile_if_elected()
            if sent:
                log.info("reconciler sent %d stage runs again", len(sent))
        except Exception:  # the database or broker is away: the next round tries again
            log.warning("reconciling failed; trying again in %.0f s", settings.jobs.reconcile_every_s, exc_info=True)
        time.sleep(settings.jobs.reconcile_every_s)


@app.task(name=RUN_STAGE_TASK, bind=True, acks_late=True, reject_on_worker_lost=True)
def run_stage(self: object, stage_run_id: str) -> str:
    hostname = getattr(getattr(self, "request", None), "hostname", None) or socket.gethostname()
    return services().jobs.run_stage(stage_run_id, worker=f"{hostname}/{os.getpid()}")


@app.task(name="videopipe.reconcile")
def reconcile() -> int:
    """The beat schedule's round (workers started with --beat); every worker also runs one on its own timer."""
    return len(services().jobs.reconcile_if_elected() or [])
