"""The Celery application of the workers: videopipe's shared Celery configuration (`videopipe.dispatch`)
plus the tasks in `workers.tasks`."""

from __future__ import annotations

from celery import Celery

from videopipe.config import Settings
from videopipe.dispatch import celery_app


def make_app(settings: Settings | None = None) -> Celery:
    app: Celery = celery_app(settings or Settings())
    app.conf.include = ["workers.tasks"]
    return app


app = make_app() if Settings().broker_url else Celery("videopipe")
