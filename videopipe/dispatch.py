"""Dispatchers: how "run stage run X" reaches whoever runs stages. `EmbeddedRunner`: threads in this process
(no broker); `CeleryDispatcher`: a message on the stage's Celery queue (the workers in ``workers/`` consume it).
The Celery configuration both sides share lives here too (`celery_app`), so the sender needs nothing from
``workers/``."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

from videopipe.config import Settings
from videopipe.errors import ConfigError, MissingExtra

if TYPE_CHECKING:
    from videopipe.jobs import JobEngine

log = logging.getLogger(__name__)

QUEUES = ("cpu", "gpu", "index")
QUEUE_FOR = {"perceive": "cpu", "understand": "gpu", "index": "index"}
RUN_STAGE_TASK = "videopipe.run_stage"


class Dispatcher(Protocol):
    def dispatch(self, stage_run_id: str, stage: str) -> None: ...

    def dispatch_later(self, stage_run_id: str, stage: str, delay_s: float) -> None:
        """Send it after `delay_s`, behind what is queued now (a retry's backoff; a tenant at its cap)."""


def celery_app(settings: Settings) -> Any:
    """The Celery application configured from `settings` (broker, queues, acks, visibility timeout). Workers add
    their tasks to it (``workers/tasks.py``); senders only send by task name."""
    if not settings.broker_url:
        raise ConfigError(
            "no broker configured: set VIDEOPIPE_BROKER_URL=redis://HOST:6379/0 (or run without "
            "workers: videopipe submit runs the stages in-process when no broker is set)"
        )
    try:
        from celery import Celery
        from kombu import Exchange, Queue
    except ImportError as exc:
        raise MissingExtra("Celery is not installed", "workers") from exc
    app = Celery("videopipe", broker=settings.broker_url)
    app.conf.update(
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        # Each queue its own exchange and key: with defaults, kombu would route every queue through "cpu".
        task_queues=[Queue(name, Exchange(name, type="direct"), routing_key=name) for name in QUEUES],
        task_default_queue="cpu",
        task_default_exchange="cpu",
        task_default_routing_key="cpu",
        task_ignore_result=True,
        broker_connection_retry_on_startup=True,
        # A message a vanished worker took comes back after this long. Aligned with the lease: a little over
        # one lease, so Redis redelivers about when the stage's lease has expired (the reconciler, which every
        # worker runs, usually sends it again first). Retries with a countdown wait in Redis as unacked
        # messages too, so this must stay above the longest backoff.
        broker_transport_options={"visibility_timeout": int(max(settings.jobs.lease_s * 1.5, 180))},
        beat_schedule={
            "reconcile": {
                "task": "videopipe.reconcile",
                "schedule": settings.jobs.reconcile_every_s,
                "options": {"queue": "index", "expires": settings.jobs.reconcile_every_s},
            },
        },
    )
    return app


class CeleryDispatcher:
    """`Dispatcher` over Celery: sends "run stage run X" to the stage's queue by task name."""

    def __init__(self, app: Any) -> None:
        self.app = app

    def dispatch(self, stage_run_id: str, stage: str) -> None:
        self.app.send_task(RUN_STAGE_TASK, args=[stage_run_id], queue=QUEUE_FOR[stage])

    def dispatch_later(self, stage_run_id: str, stage: str, delay_s: float) -> None:
        self.app.send_task(RUN_STAGE_TASK, args=[stage_run_id], queue=QUEUE_FOR[stage], countdown=delay_s)


class EmbeddedRunner:
    """The dispatcher for a single process with no broker: `concurrency` threads running the same stages, fair
    between tenants. A free thread takes the oldest stage of the tenant with the fewest stages running (then the
    one served longest ago), and never one of a tenant already running `per_tenant` stages (0: no cap): one
    tenant's long job, or a thousand of them, never holds another tenant's short one behind it."""

    def __init__(self, engine: Callable[[], JobEngine], concurrency: int = 1, per_tenant: int = 0) -> None:
        self._engine = engine
        self.per_tenant = per_tenant
        self._cond = threading.Condition()
        self._queue: list[tuple[str, str]] = []  # (stage run id, tenant), oldest first
        self._running: dict[str, int] = {}  # tenant -> stages running now
        self._served: dict[str, int] = {}  # tenant -> when its last stage started (a counter)
        self._starts = 0
        self._busy = 0  # queued + running, for wait()
        self._errors: list[BaseException] = []
        self._closed = False
        self._threads = [
            threading.Thread(target=self._loop, name=f"vp-stage-{n}", daemon=True) for n in range(concurrency)
        ]
        for thread in self._threads:
            thread.start()

    def dispatch(self, stage_run_id: str, stage: str) -> None:
        tenant = self._tenant_of(stage_run_id)
        with self._cond:
            if self._closed:
                return
            if any(run_id == stage_run_id for run_id, _ in self._queue):
                return  # the reconciler sends a run again while it waits its turn here
            self._queue.append((stage_run_id, tenant))
            self._busy += 1
            self._cond.notify()

    def dispatch_later(self, stage_run_id: str, stage: str, delay_s: float) -> None:
        with self._cond:
            if self._closed:
                return
            self._busy += 1  # wait() waits for it too

        def again() -> None:
            try:
                if not self._closed:
                    self.dispatch(stage_run_id, stage)
            finally:
                with self._cond:
                    self._busy -= 1
                    self._cond.notify_all()

        timer = threading.Timer(delay_s, again)
        timer.daemon = True
        timer.start()

    def _tenant_of(self, stage_run_id: str) -> str:
        from videopipe.db.repos.jobs import tenant_of_run

        with self._engine().sessions() as s:
            return tenant_of_run(s, stage_run_id)

    def _pick(self) -> tuple[str, str] | None:
        best: tuple[int, int, int] | None = None
        chosen = None
        for position, (_, tenant) in enumerate(self._queue):
            running = self._running.get(tenant, 0)
            if self.per_tenant and running >= self.per_tenant:
                continue
            rank = (running, self._served.get(tenant, -1), position)
            if best is None or rank < best:
                best, chosen = rank, position
        return self._queue.pop(chosen) if chosen is not None else None

    def _loop(self) -> None:
        while True:
            with self._cond:
                while (item := self._pick()) is None:
                    if self._closed:
                        return
                    self._cond.wait()
                run_id, tenant = item
                self._running[tenant] = self._running.get(tenant, 0) + 1
                self._starts += 1
                self._served[tenant] = self._starts
            try:
                self._run(run_id)
            except BaseException as exc:  # kept for wait(): a stage bug must not end the thread silently
                with self._cond:
                    self._errors.append(exc)
            finally:
                with self._cond:
                    self._running[tenant] -= 1
                    self._busy -= 1
                    self._cond.notify_all()

    def _run(self, stage_run_id: str) -> str:
        return self._engine().run_stage(stage_run_id, worker=f"embedded-{threading.get_ident()}")

    def wait(self) -> None:
        """Block until every dispatched stage (and the stages they dispatched) has finished."""
        with self._cond:
            while self._busy and not self._errors:
                self._cond.wait()
            if self._errors:
                raise self._errors.pop(0)

    def shutdown(self) -> None:
        """Stop taking stages; wait (up to 10 minutes in all) for those running. Queued ones stay pending in the
        database: the reconciler of the next process sends them again."""
        with self._cond:
            self._closed = True
            self._busy -= len(self._queue)
            self._queue.clear()
            self._cond.notify_all()
        deadline = time.monotonic() + 600
        for thread in self._threads:
            thread.join(timeout=max(0.0, deadline - time.monotonic()))
