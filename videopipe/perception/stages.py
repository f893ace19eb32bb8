"""The speech and on-screen-text stages of `analyze`: run a backend if it is wanted and installed, and say
plainly what happened (``done``, ``off``, ``skipped: ...``, ``unavailable: ...``)."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from videopipe.config import Settings
from videopipe.errors import ConfigError
from videopipe.media.probe import VideoInfo
from videopipe.perception import ASR_BACKENDS, OCR_BACKENDS, installed
from videopipe.progress import Progress

Status = dict[str, Any]


def run_speech(
    info: VideoInfo, settings: Settings, wanted: bool, progress: Progress, warn: Callable[[str], None]
) -> tuple[list[dict[str, Any]], Status]:
    if not wanted:
        return [], {"status": "off"}
    if not info.has_audio:
        return [], {"status": "skipped: the video has no audio track"}
    if not installed(ASR_BACKENDS):
        warn("speech recognition skipped: faster-whisper is not installed (pip install 'videopipe[perception]')")
        return [], {"status": "unavailable: faster-whisper is not installed"}
    from videopipe.perception.asr import FasterWhisper
    from videopipe.perception.audio import iter_audio_chunks

    p = settings.perception
    beam = p.asr_beam_size
    recognizer = FasterWhisper(
        p.asr_model, p.asr_device, p.asr_compute_type, p.asr_threads, p.asr_language, beam, p.asr_batch_size,
        window_s=p.asr_window_s, min_coverage=p.asr_min_coverage, language_window_s=p.asr_language_window_s,
        cache_dir=settings.data_dir / "models",
    )  # fmt: skip
    started = time.perf_counter()
    progress.start("speech", info.duration_s or 1.0)

    def chunks() -> Any:
        for offset, samples in iter_audio_chunks(
            info.path, p.asr_chunk_s, max_s=info.duration_s + 5.0, limits=settings.limits
        ):
            yield offset, samples
            progress.update(min(info.duration_s, offset + samples.size / 16_000))

    try:
        transcript = recognizer.transcribe(chunks())
    except ConfigError as exc:
        warn(f"speech recognition skipped: {exc.message}")
        return [], {"status": f"unavailable: {exc.message}"}
    progress.update(info.duration_s or 1.0)
    for message in transcript.warnings:
        warn(message)
    status: Status = {
        "status": "done",
        "backend": recognizer.name,
        "model": p.asr_model,
        "beam_size": beam,
        "segments": len(transcript.segments),
        "speech_s": round(transcript.speech_s, 2),  # what the VAD heard
        "speech_covered": round(transcript.covered_s / transcript.speech_s, 3) if transcript.speech_s else 1.0,
        "redecoded_windows": transcript.redecoded,
        "warnings": transcript.warnings,
        "seconds": round(time.perf_counter() - started, 2),
    }
    if transcript.language:
        status["language"] = transcript.language
    return [s.to_json() for s in transcript.segments], status


def run_ocr(
    doc: dict[str, Any],
    base_dir: Path,
    settings: Settings,
    wanted: bool,
    progress: Progress,
    warn: Callable[[str], None],
) -> tuple[list[dict[str, Any]], Status]:
    if not wanted:
        return [], {"status": "off"}
    p = settings.perception
    if p.ocr_backend not in installed(OCR_BACKENDS):
        warn(f"on-screen text skipped: {p.ocr_backend} is not installed (pip install 'videopipe[perception]')")
        return [], {"status": f"unavailable: {p.ocr_backend} is not installed"}
    from videopipe.perception.ocr import make_reader, read_keyframes

    try:
        reader = make_reader(p.ocr_backend, p.ocr_lang, p.tessdata)
    except ConfigError as exc:
        warn(f"on-screen text skipped: {exc.message}")
        return [], {"status": f"unavailable: {exc.message}"}
    started = time.perf_counter()
    keyframes = doc["keyframes"]
    progress.start("ocr", max(1, len(keyframes)))

    def frames() -> Any:
        for n, k in enumerate(keyframes, start=1):
            yield k["t_s"], k["scene_index"], base_dir / k["image"]
            progress.update(n)

    lines = read_keyframes(reader, frames(), p.ocr_min_confidence)
    return lines, {
        "status": "done",
        "backend": reader.name,
        "lines": len(lines),
        "keyframes_read": len(keyframes),
        "seconds": round(time.perf_counter() - started, 2),
    }
