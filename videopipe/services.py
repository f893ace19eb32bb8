"""The composition root: settings -> database sessions, blob store, dispatcher, job engine, services.

The CLI, the API factory (``api/app.py``) and the Celery workers (``workers/``) all build what they use from
`open_services`; nothing else opens a database or a store. The services take what they need explicitly (no
service reaches into another for its sessions or settings).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING, Literal

from sqlalchemy.orm import Session, sessionmaker

from videopipe.config import Settings
from videopipe.dispatch import Dispatcher, EmbeddedRunner
from videopipe.jobs import JobEngine
from videopipe.storage import BlobStore

if TYPE_CHECKING:
    from videopipe.ask import Asker
    from videopipe.auth import KeyStore
    from videopipe.batches import Batches
    from videopipe.library import Library
    from videopipe.search import Searcher
    from videopipe.uploads import Uploads

DispatchMode = Literal["auto", "embedded", "celery", "none"]


@dataclass(eq=False)
class Services:
    settings: Settings
    sessions: sessionmaker[Session]
    store: BlobStore
    jobs: JobEngine
    runner: EmbeddedRunner | None = None  # the in-process runner, when stages run here (no broker)

    @cached_property
    def library(self) -> Library:
        from videopipe.library import Library

        return Library(self.settings, self.sessions, self.store, self.jobs)

    @cached_property
    def uploads(self) -> Uploads:
        from videopipe.uploads import Uploads

        return Uploads(self.settings, self.sessions, self.library)

    @cached_property
    def batches(self) -> Batches:
        from videopipe.batches import Batches

        return Batches(self.settings, self.sessions, self.store, self.jobs, self.library)

    @cached_property
    def keys(self) -> KeyStore:
        from videopipe.auth import KeyStore

        return KeyStore(self.sessions, cache_s=self.settings.api.key_cache_s)

    @cached_property
    def searcher(self) -> Searcher:
        from videopipe.search import Searcher

        return Searcher(self.settings, self.sessions)

    @cached_property
    def asker(self) -> Asker:
        from videopipe.ask import Asker

        return Asker(self.settings, self.sessions, self.store, self.searcher)

    def wait(self) -> None:
        """Block until the in-process runner has run every stage dispatched so far (no-op with a broker)."""
        if self.runner is not None:
            self.runner.wait()

    def close(self) -> None:
        if self.runner is not None:
            self.runner.shutdown()


def open_services(
    settings: Settings | None = None,
    *,
    dispatch: DispatchMode = "auto",
    migrate: bool | None = None,
    pooled: bool = True,
    dispatcher: Dispatcher | None = None,
) -> Services:
    """Everything, on the configured database and blob store.

    `dispatch`: how stages reach a runner. "auto": Celery when a broker is configured, else threads in this
    process; "none": nothing is dispatched (commands that only read or cancel). `migrate`: bring the schema to
    head first; by default only the embedded SQLite database migrates itself (shared databases are migrated
    with `videopipe db upgrade`). `pooled=False`: no connection kept between uses (a long-lived thread in a
    process that forks). `dispatcher`: one the caller already has (a Celery worker's own app), for "celery".
    """
    from sqlalchemy import inspect

    from videopipe.db import database_url, make_engine, make_session_factory
    from videopipe.db.migrate import upgrade
    from videopipe.errors import ConfigError
    from videopipe.storage import open_store

    settings = settings or Settings()
    url = database_url(settings)
    if migrate if migrate is not None else settings.database_url is None:
        upgrade(url)
    engine = make_engine(url, pooled=pooled)
    if "jobs" not in inspect(engine).get_table_names():
        raise ConfigError("the database has no videopipe tables yet: run `videopipe db upgrade`")
    sessions = make_session_factory(engine)
    store = open_store(settings)
    if dispatch == "auto":
        dispatch = "celery" if settings.broker_url else "embedded"
    runner = None
    jobs = JobEngine(sessions, store, settings)
    if dispatch == "celery" and dispatcher is None:
        from videopipe.dispatch import CeleryDispatcher, celery_app

        dispatcher = CeleryDispatcher(celery_app(settings))
    elif dispatch == "none":
        dispatcher = None
    elif dispatch == "embedded":
        runner = EmbeddedRunner(lambda: jobs, settings.jobs.embedded_concurrency, settings.jobs.max_running_per_tenant)
        dispatcher = runner
    jobs.dispatcher = dispatcher
    return Services(settings, sessions, store, jobs, runner)
