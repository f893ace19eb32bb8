"""`videopipe eval DATASET.jsonl`: measure search and question answering on your own footage.

Each line is either a grounding item ``{"video", "question", "start_s", "end_s"}`` (ask: is the first cited
range where the answer is?) or a search item ``{"video", "query", "start_s", "end_s"}`` (search inside that
video: is the right moment first, or in the top five?). ``video`` is a path (relative to the dataset file) or a
video id. Reported: R@1 at IoU 0.3 / 0.5 / 0.7, mean IoU of the first result, and R@5 (IoU >= 0.5) for search.

A question the video does not answer is ``{"video", "question", "answerable": false}`` (no times): `ask` should
say that nothing matches (no citation). Grounding then also reports `answered` (the share of answerable
questions that got a citation) and `unanswerable` (how many, and the share `ask` said nothing matches for);
R@1 and mIoU are over the answerable questions only.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from videopipe.errors import BadRequest

THRESHOLDS = (0.3, 0.5, 0.7)


def iou(a: tuple[float, float], b: tuple[float, float]) -> float:
    inter = max(0.0, min(a[1], b[1]) - max(a[0], b[0]))
    union = max(a[1], b[1]) - min(a[0], b[0])
    return inter / union if union > 0 else 0.0


@dataclass(slots=True)
class Item:
    line: int
    kind: str  # "grounding" or "search"
    video: str
    text: str
    span: tuple[float, float]
    answerable: bool = True


def read_dataset(path: Path) -> list[Item]:
    if not path.is_file():
        raise BadRequest(f"{path}: no such dataset file")
    items = []
    for n, raw in enumerate(path.read_text().splitlines(), 1):
        if not raw.strip():
            continue
        try:
            obj = json.loads(raw)
            kind = "grounding" if "question" in obj else "search" if "query" in obj else None
            if kind is None:
                raise KeyError("question or query")
            answerable = obj.get("answerable", True) is not False or kind != "grounding"
            start, end = (float(obj["start_s"]), float(obj["end_s"])) if answerable else (0.0, 0.0)
            if end < start or start < 0:
                raise ValueError("end_s before start_s")
            items.append(Item(n, kind, str(obj["video"]), str(obj["question" if kind == "grounding" else "query"]),
                              (start, end), answerable))  # fmt: skip
        except (json.JSONDecodeError, KeyError, ValueError, TypeError) as exc:
            raise BadRequest(
                f"{path}:{n}: not a dataset line ({exc}); each line is "
                '{"video", "question" or "query", "start_s", "end_s"} or {"video", "question", "answerable": false}'
            ) from None
    if not items:
        raise BadRequest(f"{path}: the dataset has no items")
    return items


def evaluate(
    items: Iterable[Item],
    resolve: Callable[[str], str],
    search: Callable[[str, str], list[tuple[float, float]]],
    ground: Callable[[str, str], list[tuple[float, float]]],
    progress: Callable[[int], None] | None = None,
) -> dict[str, Any]:
    """`resolve(video) -> video id`; `search(video_id, query)` and `ground(video_id, question)` return ranked
    (start_s, end_s) spans, best first."""
    per_kind: dict[str, list[dict[str, Any]]] = {"grounding": [], "search": []}
    unanswerable: list[dict[str, Any]] = []
    for n, item in enumerate(items, 1):
        video_id = resolve(item.video)
        spans = (ground if item.kind == "grounding" else search)(video_id, item.text)
        if not item.answerable:
            unanswerable.append({"line": item.line, "video_id": video_id, "text": item.text,
                                 "got": [list(s) for s in spans[:5]], "said_nothing": not spans})  # fmt: skip
            if progress:
                progress(n)
            continue
        ious = [iou(s, item.span) for s in spans]
        per_kind[item.kind].append({"line": item.line, "video_id": video_id, "text": item.text,
                                    "expected": list(item.span), "got": [list(s) for s in spans[:5]],
                                    "iou_top1": round(ious[0], 4) if ious else 0.0, "answered": bool(spans),
                                    "hit_at_5": any(v >= 0.5 for v in ious[:5])})  # fmt: skip
        if progress:
            progress(n)
    report: dict[str, Any] = {}
    for kind, rows in per_kind.items():
        if not rows and not (kind == "grounding" and unanswerable):
            continue
        summary: dict[str, Any] = {"n": len(rows)}
        n_rows = max(1, len(rows))
        for t in THRESHOLDS:
            summary[f"R@1,IoU={t}"] = round(sum(r["iou_top1"] >= t for r in rows) / n_rows, 4)
        summary["mIoU"] = round(sum(r["iou_top1"] for r in rows) / n_rows, 4)
        if kind == "search":
            summary["R@5,IoU=0.5"] = round(sum(r["hit_at_5"] for r in rows) / n_rows, 4)
        report[kind] = {"summary": summary, "items": rows}
        if kind == "grounding" and unanswerable:
            summary["answered"] = round(sum(r["answered"] for r in rows) / n_rows, 4)
            said = sum(r["said_nothing"] for r in unanswerable)
            summary["unanswerable"] = {"n": len(unanswerable), "said_nothing": round(said / len(unanswerable), 4)}
            report[kind]["unanswerable_items"] = unanswerable
    return report
