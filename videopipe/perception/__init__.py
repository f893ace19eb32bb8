"""Timed signals besides pictures: speech (ASR), on-screen text (OCR) and motion.

Each kind sits behind one small interface with a registry of the backends whose imports succeed, so a
machine without faster-whisper or tesseract still analyses video, and says which stage it skipped and why.
"""

from __future__ import annotations

import importlib.util

ASR_BACKENDS = {"faster-whisper": "faster_whisper"}
OCR_BACKENDS = {"tesserocr": "tesserocr", "rapidocr": "rapidocr"}


def installed(backends: dict[str, str]) -> list[str]:
    """Names of the backends whose Python package can be imported here."""
    return [name for name, module in backends.items() if importlib.util.find_spec(module) is not None]
