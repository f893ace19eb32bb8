"""The ``videopipe`` command, one module per command group.

Errors a user can cause print one line (``error: ...``) and exit with status 2; no tracebacks unless
``--debug`` is given. Commands that belong to the edges (``serve`` in ``api/``, ``worker`` in ``workers/``) are
plugged in through the ``videopipe.commands`` entry points, so the core imports nothing from them.
"""

from __future__ import annotations

import logging
from importlib.metadata import entry_points

import click
from rich.logging import RichHandler

from videopipe.cli import admin, analyze, jobs, library
from videopipe.cli.common import err_console

PLUGIN_GROUP = "videopipe.commands"


class _Main(click.Group):
    """The command group, with the plugged-in commands loaded only when listed or called (a missing extra then
    fails that one command, with its install hint, not the whole CLI)."""

    def _plugins(self) -> dict[str, str]:
        return {ep.name: ep.value for ep in entry_points(group=PLUGIN_GROUP)}

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *self._plugins()})

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        command = super().get_command(ctx, name)
        if command is not None:
            return command
        for ep in entry_points(group=PLUGIN_GROUP, name=name):
            loaded = ep.load()
            if isinstance(loaded, click.Command):
                return loaded
        return None


@click.group(cls=_Main, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--debug", is_flag=True, help="Show tracebacks and debug logs.")
@click.version_option(package_name="videopipe")
def main(debug: bool) -> None:
    """videopipe: chapters, events, transcripts and timestamped search for long videos."""
    logging.basicConfig(
        level=logging.DEBUG if debug else logging.WARNING,
        format="%(message)s",
        handlers=[RichHandler(console=err_console, show_time=False, show_path=debug)],
    )


for _command in (
    analyze.analyze,
    analyze.plan,
    analyze.probe,
    analyze.demo,
    library.search,
    library.ask,
    library.eval_,
    library.tag,
    library.index,
    jobs.submit,
    jobs.status,
    jobs.cancel,
    admin.keys,
    admin.db,
):
    main.add_command(_command)

__all__ = ["main"]
