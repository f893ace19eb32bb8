"""The three stages, as plain functions with typed outputs: the product.

``perceive`` (cpu): probe, the one shared decode pass (cuts, keyframe scores, motion), full-resolution keyframe
grabs, speech and on-screen text. ``understand`` (gpu): Qwen3-VL chapters, events, captions and tags (or
extractive chapters without a model). ``index``: moments and their embeddings for search.

`videopipe.analysis.analyze` composes them in-process for one file; the job engine (`videopipe.jobs`) runs the
very same functions one stage at a time for workers and the embedded runner, persisting each output through
`videopipe.db.repos.results`. Nothing here touches the database, the blob store or a queue.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from videopipe import understanding
from videopipe.config import Settings
from videopipe.media.decode import describe_resolution
from videopipe.media.probe import probe
from videopipe.options import AnalyzeOptions
from videopipe.perception.motion import MotionDetector
from videopipe.perception.slides import SlideDetector
from videopipe.perception.stages import run_ocr, run_speech
from videopipe.progress import NullProgress, Progress
from videopipe.scan import FrameConsumer, build_document, run_pass, write_keyframes
from videopipe.understanding import UnderstandingResult
from videopipe.vlm import BackendChoice

log = logging.getLogger(__name__)

Warn = Callable[[str], None]


@dataclass(slots=True)
class Perception:
    """What `perceive` saw: the analysis document (schema 1) with scenes, keyframes, transcript, on-screen text
    and motion events, but no chapters yet; each keyframe's ``image`` is a path relative to `base_dir`."""

    doc: dict[str, Any]
    base_dir: Path


@dataclass(slots=True)
class Indexed:
    """What `index` made: the moments search finds, their embeddings (row n for moment n; None when there are
    no moments), and the embedding model's name (vectors of another model are never compared with these)."""

    moments: list[dict[str, Any]]
    vectors: np.ndarray | None
    model: str


def perceive(
    video: str | os.PathLike[str],
    base_dir: Path,
    settings: Settings,
    options: AnalyzeOptions,
    progress: Progress | None = None,
    warn: Warn | None = None,
    consumers: Sequence[FrameConsumer] = (),
) -> Perception:
    """Look at and listen to `video`; keyframe JPEGs go into ``base_dir/keyframes/``."""
    progress = progress or NullProgress()
    say = warn or log.warning
    info = probe(video, settings.limits)
    log.info("analysis resolution %s for %dx%d", describe_resolution(info, settings.analysis), info.width, info.height)
    motion = MotionDetector(settings.motion) if options.motion else None
    slides = SlideDetector(settings.slides) if options.slides else None
    result = run_pass(info, settings, [*consumers, *([motion] if motion else [])], progress, warn, slides)
    (base_dir / "keyframes").mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    images = write_keyframes(info, result.keyframes, base_dir / "keyframes", settings, progress)
    doc = build_document(result, images, options)
    stages = doc["run"]["stages"]
    stages["keyframes"] = {"status": "done", "seconds": round(time.perf_counter() - started, 2)}
    if motion is not None:
        doc["events"] = motion.finish(doc["video"]["duration_s"])
        stages["motion"] = {
            "status": "done",
            "events": len(doc["events"]),
            "camera_moving_s": round(motion.camera_moving_s, 2),
            "moving_camera_scenes_skipped": motion.moving_camera_scenes,
        }
    else:
        stages["motion"] = {"status": "off"}
    stages["slides"] = (
        {"status": "done", "new_slides": len(slides.new_slides), "build_steps": len(slides.build_steps)}
        if slides is not None
        else {"status": "off"}
    )
    doc["transcript"], stages["speech"] = run_speech(info, settings, options.asr, progress, say)
    doc["ocr"], stages["ocr"] = run_ocr(doc, base_dir, settings, options.ocr, progress, say)
    return Perception(doc, base_dir)


def understand(
    perception: Perception,
    choice: BackendChoice,
    settings: Settings,
    progress: Progress | None = None,
    warn: Warn | None = None,
    *,
    fallback: bool = True,
) -> UnderstandingResult:
    """Chapters, events, captions and tags for what `perceive` saw. `fallback=False`: a model server that cannot
    be reached raises `VLMUnavailable` (the job engine retries the stage later) instead of falling back to
    extractive chapters, as `analyze` does."""
    return understanding.understand(
        perception.doc, perception.base_dir, choice, settings, progress, warn, fallback=fallback
    )


def merge(doc: dict[str, Any], result: UnderstandingResult) -> dict[str, Any]:
    """`doc` with the understanding written in (chapters, tags, the model's report, its events among the motion
    events, scene captions). Returns `doc`."""
    doc["chapters"], doc["tags"], doc["vlm"] = result.chapters, result.tags, result.vlm
    doc["events"] = sorted(doc["events"] + result.events, key=lambda e: (e["start_s"], e["end_s"]))
    for scene in doc["scenes"]:
        if scene["index"] in result.captions:
            scene["caption"] = result.captions[scene["index"]]
    return doc


def index(doc: dict[str, Any], settings: Settings) -> Indexed:
    """Moments of an understood document and their embeddings (the model named in the settings)."""
    from videopipe.embeddings import open_embedder
    from videopipe.moments import build_moments, moment_text

    moments = build_moments(doc, settings.search.moment_window_s)
    embedder = open_embedder(settings)
    vectors = embedder.embed([moment_text(m) for m in moments]) if moments else None
    return Indexed(moments, vectors, embedder.name)
