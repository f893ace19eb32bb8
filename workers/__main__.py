"""`videopipe worker` (and `python -m workers`): a Celery worker for the stage queues. Plugged into the
``videopipe`` command through the ``videopipe.commands`` entry point."""

from __future__ import annotations

import click

from videopipe.cli.common import handle_errors
from videopipe.config import Settings
from videopipe.errors import MissingExtra


@click.command()
@click.option("--queues", default="cpu,gpu,index", show_default=True, help="Comma-separated queues to serve.")
@click.option("--concurrency", type=int, default=1, show_default=True)
@click.option("--beat/--no-beat", default=False, help="Also run Celery beat (not needed: every worker reconciles).")
@click.option("--loglevel", default="INFO")
@handle_errors
def worker(queues: str, concurrency: int, beat: bool, loglevel: str) -> None:
    """Run a Celery worker for the given queues (VIDEOPIPE_BROKER_URL must be set)."""
    try:
        from workers.celery_app import make_app
    except ImportError as exc:
        raise MissingExtra(f"the workers ({exc.name})", "workers") from None

    settings = Settings()
    app = make_app(settings)
    argv = ["worker", f"--queues={queues}", f"--concurrency={concurrency}", f"--loglevel={loglevel}",
            "--prefetch-multiplier=1", "--without-gossip", "--without-mingle"]  # fmt: skip
    if beat:
        argv += ["--beat", f"--schedule={settings.data_dir / 'celerybeat-schedule'}"]
    app.worker_main(argv)


if __name__ == "__main__":  # pragma: no cover
    worker()
