"""What every command shares: the error handler (one line, exit 2), progress bars, warnings, settings."""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Self, TypeVar

import click
import pydantic
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from videopipe.config import Settings
from videopipe.errors import VideopipeError, VLMError

if TYPE_CHECKING:
    from videopipe.services import Services


class VLMErrorForCli(VLMError):
    """The model failed after the analysis was written: exit 2, results kept."""


err_console = Console(stderr=True, emoji=False)  # messages quote file names and FFmpeg options
F = TypeVar("F", bound=Callable[..., Any])


STAGE_LABELS = {
    "scan": "scanning (cuts, keyframes, motion)",
    "keyframes": "saving keyframes",
    "speech": "speech to text",
    "ocr": "on-screen text",
    "understand": "understanding (Qwen3-VL)",
}


class RichProgress:
    """`videopipe.progress.Progress` drawn as a rich progress bar on stderr."""

    def __init__(self, enabled: bool) -> None:
        self._bar = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            TextColumn("{task.percentage:>3.0f}%"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=err_console,
            disable=not enabled,
            transient=False,
        )
        self._task: TaskID | None = None

    def __enter__(self) -> Self:
        self._bar.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *rest: object) -> None:
        if exc_type is not None:
            # On failure the error line is all the user should see: drop the half-drawn bars, and stop the display
            # itself (Progress.stop prints an empty line where stderr is not a terminal).
            for task in list(self._bar.task_ids):
                self._bar.remove_task(task)
            self._bar.live.transient = True
            self._bar.live.stop()
            return
        self._bar.stop()

    def start(self, stage: str, total: float) -> None:
        if self._task is not None:  # finish the previous stage's bar (tasks are listed, not indexed, by id)
            done = next((t.total for t in self._bar.tasks if t.id == self._task), None)
            self._bar.update(self._task, completed=done)
        self._task = self._bar.add_task(STAGE_LABELS.get(stage, stage), total=max(total, 1e-9))

    def update(self, done: float) -> None:
        if self._task is not None:
            self._bar.update(self._task, completed=done)


def say_error(prefix: str, message: str) -> None:
    """One line on stderr. The message is plain text (it can quote file names and FFmpeg's `-map 0:v:0`): no
    markup or emoji codes are read from it."""
    err_console.print(f"[bold red]{prefix}:[/] {escape(message)}", highlight=False, soft_wrap=True, emoji=False)


def handle_errors(func: F) -> F:
    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        debug = click.get_current_context().find_root().params.get("debug", False)
        try:
            return func(*args, **kwargs)
        except VideopipeError as exc:
            if debug:
                raise
            say_error("error", exc.message)
            sys.exit(2)
        except pydantic.ValidationError as exc:
            first = exc.errors()[0]
            where = "__".join(str(part) for part in first["loc"]).upper()
            say_error("error", f"invalid setting VIDEOPIPE_{where}: {first['msg']}; fix the environment variable")
            sys.exit(2)
        except BrokenPipeError:  # `videopipe search ... | head`: the reader has all it wanted
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())  # Python's own flush at exit must not fail again
            sys.exit(1)
        except KeyboardInterrupt:
            err_console.print("interrupted; earlier results were left as they were")
            sys.exit(130)
        except Exception as exc:  # a bug, not the user's input: say so in one line unless debugging
            if debug:
                raise
            say_error(
                "internal error",
                f"{type(exc).__name__}: {exc}; rerun with `videopipe --debug ...` and report the traceback",
            )
            sys.exit(1)

    return wrapper  # type: ignore[return-value]


def warn(message: str) -> None:
    err_console.print(f"[yellow]warning:[/] {escape(message)}", highlight=False, soft_wrap=True, emoji=False)


VLM_CHOICE = click.Choice(["auto", "none", "transformers", "openai"])


def settings_with(model: str | None, vlm_url: str | None) -> Settings:
    overrides: dict[str, Any] = {}
    if model:
        overrides["vlm_model"] = model
    if vlm_url:
        overrides["vlm_url"] = vlm_url
    return Settings(**overrides)


def write_out(target: Path, text: str) -> None:
    if str(target) == "-":
        click.echo(text, nl=False)
    else:
        target.write_text(text, encoding="utf-8")


LOCAL_TENANT = "default"  # the tenant of the local library (and of an open, key-less server)

TENANT_OPTION = click.option(
    "--tenant", default=LOCAL_TENANT, show_default=True, help="Whose library (the API's tenants; local: default)."
)


def local_library(settings: Settings) -> Services:
    """The library the CLI reads and writes (no dispatcher: its commands run in this process)."""
    from videopipe.services import open_services

    return open_services(settings, dispatch="none")
