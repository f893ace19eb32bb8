"""Progress reporting passed into long-running domain code.

The core never draws progress bars or writes job rows itself; it calls a `Progress` object that the caller
provides (a rich progress bar in the CLI, a database row in a worker). A reporter may raise to cancel.
"""

from __future__ import annotations

from typing import Protocol


class Progress(Protocol):
    def start(self, stage: str, total: float) -> None:
        """A new stage begins; `total` is in the stage's own unit (seconds of video, frames...)."""

    def update(self, done: float) -> None:
        """`done` of the current stage's `total` is finished. May raise to cancel the work."""


class NullProgress:
    def start(self, stage: str, total: float) -> None:
        pass

    def update(self, done: float) -> None:
        pass
