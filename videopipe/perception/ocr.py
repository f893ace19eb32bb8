"""On-screen text from keyframes: tesseract (via tesserocr, default) or RapidOCR (PP-OCR ONNX, accurate).

Consecutive keyframes that show the same slide are read once: text that matches the previous reading
closely is dropped, so a lecture's OCR lines are its slide changes.
"""

from __future__ import annotations

import difflib
import glob
import os
import re
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Protocol

from PIL import Image

from videopipe.errors import ConfigError

_MAX_WIDTH = 1280  # wider frames are scaled down first: slide text stays readable, tesseract runs 2-3x faster
# Tesseract's 0-100 word confidence. Words read in textures or noise score below this; real words above it
# (a bullet glued to its word, "-magma", can dip to the 20s, so the bar is not higher).
_MIN_WORD_CONFIDENCE = 15.0


class TextReader(Protocol):
    name: str

    def read(self, image: Image.Image) -> tuple[str, float]:
        """Text found (lines joined by newlines) and a confidence in 0-1."""


def find_tessdata(explicit: str | None = None) -> str:
    candidates = [
        explicit,
        os.environ.get("TESSDATA_PREFIX"),
        *sorted(glob.glob("/usr/share/tesseract-ocr/*/tessdata")),
        "/usr/share/tessdata",
        "/usr/local/share/tessdata",
        "/opt/homebrew/share/tessdata",
    ]
    for path in candidates:
        if (path and Path(path, "eng.traineddata").exists()) or (path and explicit and Path(path).is_dir()):
            return str(path)
    raise ConfigError(
        "tesseract language data not found: install it (Debian: apt-get install tesseract-ocr-eng) "
        "or set VIDEOPIPE_PERCEPTION__TESSDATA to the tessdata folder"
    )


class Tesseract:
    name = "tesserocr"

    def __init__(self, lang: str = "eng", tessdata: str | None = None) -> None:
        import tesserocr

        self._tesserocr = tesserocr
        self.lang = lang
        self.path = find_tessdata(tessdata)
        self._local = threading.local()

    def _api(self) -> Any:
        api = getattr(self._local, "api", None)
        if api is None:
            api = self._tesserocr.PyTessBaseAPI(path=self.path, lang=self.lang)
            self._local.api = api
        return api

    def read(self, image: Image.Image) -> tuple[str, float]:
        tr = self._tesserocr
        api = self._api()
        api.SetImage(_prepare(image))
        api.Recognize()
        lines: dict[int, list[str]] = {}
        confidences: list[float] = []
        line_no = -1
        iterator = api.GetIterator()
        for word in tr.iterate_level(iterator, tr.RIL.WORD):
            if word.IsAtBeginningOf(tr.RIL.TEXTLINE):
                line_no += 1
            try:
                text, confidence = word.GetUTF8Text(tr.RIL.WORD), word.Confidence(tr.RIL.WORD)
            except RuntimeError:  # an empty word box
                continue
            if text and confidence >= _MIN_WORD_CONFIDENCE:
                lines.setdefault(line_no, []).append(text)
                confidences.append(confidence)
        text = clean_text("\n".join(" ".join(words) for _, words in sorted(lines.items())))
        return text, (sum(confidences) / len(confidences) / 100.0 if text else 0.0)


class RapidOCR:
    """PP-OCR (detection + recognition ONNX models shipped in the rapidocr wheel) on onnxruntime."""

    name = "rapidocr"

    def __init__(self, threads: int = 0) -> None:
        from rapidocr import RapidOCR as Engine

        self._engine = Engine(params={
            "EngineConfig.onnxruntime.intra_op_num_threads": threads or os.cpu_count() or 1,
            "EngineConfig.onnxruntime.inter_op_num_threads": 1,
            "Global.log_level": "error",
        })  # fmt: skip
        self._lock = threading.Lock()

    def read(self, image: Image.Image) -> tuple[str, float]:
        import numpy as np

        rgb = _cap_width(image.convert("RGB"))
        with self._lock:
            result = self._engine(np.asarray(rgb))
        texts = list(getattr(result, "txts", None) or [])
        scores = list(getattr(result, "scores", None) or [])
        return clean_text("\n".join(texts)), (sum(scores) / len(scores) if scores else 0.0)


def _cap_width(image: Image.Image) -> Image.Image:
    if image.width <= _MAX_WIDTH:
        return image
    return image.resize((_MAX_WIDTH, round(image.height * _MAX_WIDTH / image.width)), Image.Resampling.BOX)


def _prepare(image: Image.Image) -> Image.Image:
    """Grey, at most 1280 px wide, and light text on dark areas (title bars, dark slides) turned dark-on-light:
    tesseract reads dark text on a light page far more reliably."""
    import numpy as np

    gray = _cap_width(image.convert("L"))
    pixels = np.asarray(gray)
    # A row's median is its background (text covers far less than half a row); dark rows get inverted.
    row_background = np.median(pixels, axis=1)
    dark_rows = row_background < 110
    if not dark_rows.any():
        return gray
    flipped = pixels.copy()
    flipped[dark_rows] = 255 - pixels[dark_rows]
    return Image.fromarray(flipped)


def clean_text(text: str) -> str:
    """Lines with at least two letters or digits, whitespace folded."""
    lines = (" ".join(line.split()) for line in text.splitlines())
    return "\n".join(line for line in lines if sum(ch.isalnum() for ch in line) >= 2)


def _norm(text: str) -> str:
    return " ".join(re.findall(r"[a-z0-9]+", text.lower()))


def make_reader(backend: str, lang: str = "eng", tessdata: str | None = None) -> TextReader:
    match backend:
        case "tesserocr":
            try:
                return Tesseract(lang, tessdata)
            except ImportError:
                raise ConfigError("OCR needs tesserocr: pip install 'videopipe[perception]'") from None
        case "rapidocr":
            try:
                return RapidOCR()
            except ImportError:
                raise ConfigError("--ocr rapidocr needs the rapidocr package: pip install rapidocr") from None
        case _:
            raise ConfigError(f"unknown OCR backend {backend!r}; use tesserocr or rapidocr")


def read_keyframes(
    reader: TextReader,
    keyframes: Iterable[tuple[float, int, Path]],
    min_confidence: float = 0.5,
    same_slide_ratio: float = 0.9,
) -> list[dict[str, Any]]:
    """OCR lines for (time, scene index, image path) keyframes in time order, repeated slides dropped."""
    out: list[dict[str, Any]] = []
    previous = ""
    for t_s, scene_index, path in keyframes:
        with Image.open(path) as image:
            text, confidence = reader.read(image)
        if not text or confidence < min_confidence:
            continue
        norm = _norm(text)
        if previous and difflib.SequenceMatcher(None, previous, norm).ratio() >= same_slide_ratio:
            continue
        previous = norm
        out.append({"t_s": round(t_s, 3), "scene_index": scene_index, "text": text, "confidence": round(confidence, 3)})
    return out
