"""The Celery application, configured from videopipe's settings."""

from __future__ import annotations

from celery import Celery
from kombu import Exchange, Queue

from videopipe.config import Settings
from videopipe.errors import ConfigError


class CeleryDispatcher:
    """`videopipe.pipeline.Dispatcher` over Celery: sends "run stage run X" to the stage's queue by task name."""

    def __init__(self, app: Celery) -> None:
        self.app = app

    def dispatch(self, stage_run_id: str, stage: str) -> None:
        from videopipe.pipeline import QUEUE_FOR

        self.app.send_task("videopipe.run_stage", args=[stage_run_id], queue=QUEUE_FOR[stage])

    def dispatch_later(self, stage_run_id: str, stage: str, delay_s: float) -> None:
        """Again after `delay_s` (its tenant was at its cap of running stages): to the back of the queue, so
        other tenants' stages go first."""
        from videopipe.pipeline import QUEUE_FOR

        self.app.send_task("videopipe.run_stage", args=[stage_run_id], queue=QUEUE_FOR[stage], countdown=delay_s)


def make_app(settings: Settings | None = None) -> Celery:
    settings = settings or Settings()
    if not settings.broker_url:
        raise ConfigError(
            "no broker configured: set VIDEOPIPE_BROKER_URL=redis://HOST:6379/0 (or run without "
            "workers: videopipe submit runs the stages in-process when no broker is set)"
        )
    app = Celery("videopipe", broker=settings.broker_url, include=["workers.tasks"])
    app.conf.update(
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        # Each queue its own exchange and key: with defaults, kombu would route every queue through "cpu".
        task_queues=[Queue(name, Exchange(name, type="direct"), routing_key=name) for name in ("cpu", "gpu", "index")],
        task_default_queue="cpu",
        task_default_exchange="cpu",
        task_default_routing_key="cpu",
        task_ignore_result=True,
        broker_connection_retry_on_startup=True,
        # Unacknowledged messages of a worker that vanished come back after this long; the reconciler usually
        # re-dispatches sooner, from the stage's expired lease.
        broker_transport_options={"visibility_timeout": max(60, int(settings.jobs.lease_s * 4))},
        beat_schedule={
            "reconcile": {
                "task": "videopipe.reconcile",
                "schedule": settings.jobs.reconcile_every_s,
                "options": {"queue": "index", "expires": settings.jobs.reconcile_every_s},
            },
        },
    )
    return app


app = make_app() if Settings().broker_url else Celery("videopipe")
