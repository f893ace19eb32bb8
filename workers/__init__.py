"""Celery app and thin tasks that run videopipe's stages through its job engine (ids in, `JobEngine.run_stage` out).

Queues: ``cpu`` (perceive), ``gpu`` (understand), ``index`` (index). Tasks are ``acks_late`` with
``reject_on_worker_lost`` and prefetch 1, so a killed worker's stage goes back to the queue; the database,
not the broker, decides whether a delivered stage still needs running.
"""
