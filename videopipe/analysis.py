"""`analyze`: one video file in, ``analysis.json`` and keyframe JPEGs out, in-process, with no servers.

The three stages (`videopipe.stages`: perceive, understand; the library's index step is the CLI's) composed for
one file: the very functions the job engine runs for workers. Results are staged in a hidden folder and moved
into place only when complete, so a failed or interrupted run never leaves a half-written result or damages an
earlier one.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from videopipe import stages
from videopipe.config import Settings
from videopipe.options import PROFILES, AnalysisOptions, AnalyzeOptions, check_job_options
from videopipe.progress import NullProgress, Progress
from videopipe.scan import FrameConsumer, PassResult, build_document, run_pass, write_keyframes
from videopipe.schema import SCHEMA_VERSION
from videopipe.vlm import select_backend

__all__ = [
    "PROFILES",
    "SCHEMA_VERSION",
    "AnalysisOptions",
    "AnalyzeOptions",
    "FrameConsumer",
    "PassResult",
    "analyze",
    "build_document",
    "check_job_options",
    "default_out_dir",
    "run_pass",
    "write_keyframes",
]

log = logging.getLogger(__name__)


def default_out_dir(video: str | os.PathLike[str]) -> Path:
    return Path.cwd() / f"{Path(video).name}.videopipe"


def analyze(
    video: str | os.PathLike[str],
    out_dir: str | os.PathLike[str] | None = None,
    settings: Settings | None = None,
    options: AnalyzeOptions | None = None,
    progress: Progress | None = None,
    warn: Callable[[str], None] | None = None,
    consumers: Sequence[FrameConsumer] = (),
) -> dict[str, Any]:
    """Analyse `video` and write ``analysis.json`` and ``keyframes/`` into `out_dir`. Returns the document."""
    settings = settings or Settings()
    options = options or AnalyzeOptions()
    progress = progress or NullProgress()
    choice = select_backend(settings, options.vlm)  # before any work: a wrong option fails at once
    out = Path(out_dir) if out_dir is not None else default_out_dir(video)
    # Created by `perceive` once the video has passed its checks: bad input leaves no folder behind.
    staging = out / f".staging-{uuid.uuid4().hex[:8]}"
    try:
        perception = stages.perceive(video, staging, settings, options, progress, warn, consumers)
        started = time.perf_counter()
        result = stages.understand(perception, choice, settings, progress, warn)
        document = stages.merge(perception.doc, result)
        document["run"]["stages"]["understand"] = {
            "status": "done",
            "backend": document["vlm"]["backend"],
            "seconds": round(time.perf_counter() - started, 2),
        }
        if options.dump_prompt is not None:
            separator = "\n\n" + "=" * 100 + "\n\n"
            sent = separator.join(result.prompts) if result.prompts else f"(no prompt sent: {result.vlm.get('reason')})"
            options.dump_prompt.write_text(sent + "\n")
        (staging / "analysis.json").write_text(json.dumps(document, indent=2) + "\n")
        _commit(staging, out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return document


def _commit(staging: Path, out: Path) -> None:
    """Swap the staged results in: keyframes folder first, then the document that points at it."""
    target = out / "keyframes"
    old = out / f".old-keyframes-{uuid.uuid4().hex[:8]}"
    if target.exists():
        target.rename(old)
    (staging / "keyframes").rename(target)
    os.replace(staging / "analysis.json", out / "analysis.json")
    shutil.rmtree(old, ignore_errors=True)
