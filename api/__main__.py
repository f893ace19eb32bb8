"""`videopipe serve` (and `python -m api`): the REST API under uvicorn. Plugged into the ``videopipe`` command
through the ``videopipe.commands`` entry point; nothing here is imported until the command runs."""

from __future__ import annotations

import logging
import os

import click

from videopipe.cli.common import handle_errors
from videopipe.config import Settings
from videopipe.errors import MissingExtra


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind (0.0.0.0: every interface).")
@click.option("--port", default=8000, show_default=True, type=int)
@click.option("--workers", default=1, show_default=True, type=click.IntRange(1, 64), help="Server processes.")
@click.option("--log-level", default="info", show_default=True)
@handle_errors
def serve(host: str, port: int, workers: int, log_level: str) -> None:
    """Run the REST API (docs at /docs). Without a broker, the stages run inside the server process(es)."""
    try:
        import uvicorn

        from api.app import app_from_env
        from api.context import RequestIdFilter
    except ImportError as exc:
        raise MissingExtra(f"the REST API ({exc.name})", "api") from None

    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s [%(request_id)s] %(name)s: %(message)s"))
    handler.addFilter(RequestIdFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(log_level.upper())
    logging.getLogger("alembic").setLevel(logging.WARNING)
    os.environ["VIDEOPIPE_SERVE_HOST"] = host
    settings = Settings()
    mode = "workers via " + settings.broker_url if settings.broker_url else "in-process stages (no broker configured)"
    logging.getLogger("api").info("videopipe API on http://%s:%d (%s); docs at /docs", host, port, mode)
    if workers == 1:
        uvicorn.run(app_from_env(), host=host, port=port, log_config=None, log_level=log_level, access_log=False)
    else:
        if settings.database_url is None:  # the embedded SQLite file: migrated once, before the processes start
            from videopipe.services import open_services

            open_services(settings, dispatch="none", migrate=True)
        uvicorn.run("api.app:app_from_env", factory=True, host=host, port=port, workers=workers, log_config=None,
                    log_level=log_level, access_log=False)  # fmt: skip


if __name__ == "__main__":  # pragma: no cover
    serve()
