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
_LINE_GAP = 3.0  # a gap this many line heights wide between two words breaks the line
_HUGE_LINE_PX = 52  # lines taller than this (on the ~1280 px page) are read again alone, scaled down


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
        """Lines in reading order. A line is also broken where a gap of more than `_LINE_GAP` line heights
        separates two words (columns, a logo beside the title, a slide number). A line of huge text (a section
        title) is read again on its own, scaled down: tesseract drops a large lone capital ("Ice" as "ce")."""
        tr = self._tesserocr
        api = self._api()
        page = _prepare(image)
        api.SetPageSegMode(tr.PSM.AUTO)
        api.SetImage(page)
        api.Recognize()
        lines: list[list[tuple[str, float]]] = []
        boxes: list[list[int]] = []
        line_no, current, last_right = -1, -2, 0
        iterator = api.GetIterator()
        for word in tr.iterate_level(iterator, tr.RIL.WORD):
            if word.IsAtBeginningOf(tr.RIL.TEXTLINE):
                line_no += 1
            try:
                text, confidence = word.GetUTF8Text(tr.RIL.WORD), word.Confidence(tr.RIL.WORD)
                x1, y1, x2, y2 = word.BoundingBox(tr.RIL.WORD)
            except (RuntimeError, TypeError):  # an empty word box
                continue
            if not text or confidence < _MIN_WORD_CONFIDENCE:
                continue
            height = max(1, y2 - y1, boxes[-1][3] - boxes[-1][1] if boxes and current == line_no else 0)
            if line_no != current or x1 - last_right > _LINE_GAP * height:
                lines.append([])
                boxes.append([x1, y1, x2, y2])
                current = line_no
            lines[-1].append((text, confidence))
            box = boxes[-1]
            box[:] = [min(box[0], x1), min(box[1], y1), max(box[2], x2), max(box[3], y2)]
            last_right = x2
        for n, box in enumerate(boxes):
            if box[3] - box[1] > _HUGE_LINE_PX:
                lines[n] = self._reread(page, box) or lines[n]
        api.SetPageSegMode(tr.PSM.AUTO)
        text = clean_text("\n".join(" ".join(w for w, _ in line) for line in lines))
        confidences = [c for line in lines for _, c in line]
        return text, (sum(confidences) / len(confidences) / 100.0 if text and confidences else 0.0)

    def _reread(self, page: Image.Image, box: list[int]) -> list[tuple[str, float]] | None:
        """One line of huge text read again alone (a single-line page), scaled to ~40 px high."""
        tr = self._tesserocr
        api = self._api()
        x1, y1, x2, y2 = box
        h = y2 - y1
        crop = page.crop(
            (max(0, x1 - h), max(0, y1 - h // 3), min(page.width, x2 + h // 3), min(page.height, y2 + h // 3))
        )
        scale = 40 / h
        crop = crop.resize(
            (max(1, round(crop.width * scale)), max(1, round(crop.height * scale))), Image.Resampling.BOX
        )
        api.SetPageSegMode(tr.PSM.SINGLE_LINE)
        api.SetImage(crop)
        text = " ".join(api.GetUTF8Text().split())
        confidence = float(api.MeanTextConf())
        if not text or confidence < 50:
            return None
        return [(text, confidence)]


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
    """Grey, about 1280 px wide (small frames scaled up to twice, large ones down), and every text turned dark
    on a white page whatever its colours: each pixel's distance from its row's background is the ink.
    Tesseract reads dark text on a light page far more reliably; light text on a dark title bar or a dark
    theme otherwise goes missing, and a bar turned grey hides its title from the page layout."""
    import cv2
    import numpy as np

    gray = image.convert("L")
    scale = min(2.0, _MAX_WIDTH / gray.width)
    if abs(scale - 1.0) > 0.05:
        size = (round(gray.width * scale), round(gray.height * scale))
        resample = Image.Resampling.BOX if scale < 1 else Image.Resampling.BICUBIC
        gray = gray.resize(size, resample)
    pixels = np.asarray(gray)
    # A row's median is its background (text covers far less than half a row, however large).
    background = np.broadcast_to(np.median(pixels, axis=1).astype(np.uint8)[:, None], pixels.shape)
    ink = cv2.absdiff(pixels, np.ascontiguousarray(background))
    page = 255 - cv2.convertScaleAbs(ink, alpha=2.0)
    return Image.fromarray(page)


_BULLET = re.compile(r"^(?:[eo¢©®°«»*•·+\-–—>]{1,2}|\(e\)|\[e\])\s+(?=\S)")


def clean_text(text: str) -> str:
    """Lines with at least two letters or digits, whitespace folded, a bullet read as a glyph ("e", "¢", "©")
    taken off the start of a line."""
    lines = (_BULLET.sub("", " ".join(line.split())) for line in text.splitlines())
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
