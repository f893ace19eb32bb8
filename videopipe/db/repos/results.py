"""A video's results: each stage's outputs written (replacing that stage's earlier outputs, so a stage redone
after a crash never duplicates rows), and the analysis document (schema 1) read back from the tables."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from videopipe.db.models import (
    Chapter,
    Event,
    Keyframe,
    Moment,
    OcrLine,
    Scene,
    Tag,
    TranscriptSegment,
    Video,
)
from videopipe.db.repos.videos import get_video
from videopipe.schema import SCHEMA_VERSION

if TYPE_CHECKING:
    from videopipe.stages import Indexed
    from videopipe.understanding import UnderstandingResult



def store_perception(s: Session, video: Video, doc: dict[str, Any], keyframe_keys: list[str]) -> None:
    """What `perceive` saw; `keyframe_keys[n]`: the blob key of keyframe n's image."""
    for model in (Scene, Keyframe, TranscriptSegment, OcrLine):
        s.execute(delete(model).where(model.video_id == video.id))
    s.execute(delete(Event).where(Event.video_id == video.id, Event.source == "motion"))
    v = doc["video"]
    video.duration_s, video.width, video.height = v["duration_s"], v["width"], v["height"]
    video.fps, video.vfr, video.has_audio = v["fps"], v["vfr"], v["has_audio"]
    s.add_all(Scene(video_id=video.id, index=sc["index"], start_s=sc["start_s"], end_s=sc["end_s"])
              for sc in doc["scenes"])  # fmt: skip
    s.add_all(Keyframe(video_id=video.id, index=n, t_s=k["t_s"], scene_index=k["scene_index"], score=k["score"],
                       blob_key=key) for n, (k, key) in enumerate(zip(doc["keyframes"], keyframe_keys,
                                                                         strict=True)))  # fmt: skip
    s.add_all(TranscriptSegment(video_id=video.id, start_s=t["start_s"], end_s=t["end_s"], text=t["text"],
                                words=t.get("words", []), language=t.get("language"))
              for t in doc["transcript"])  # fmt: skip
    s.add_all(OcrLine(video_id=video.id, t_s=o["t_s"], scene_index=o.get("scene_index"), text=o["text"],
                      confidence=o["confidence"]) for o in doc["ocr"])  # fmt: skip
    s.add_all(Event(video_id=video.id, start_s=e["start_s"], end_s=e["end_s"], label=e["label"],
                    description=e.get("description", ""), bbox=e.get("bbox"), source="motion")
              for e in doc["events"] if e.get("source") == "motion")  # fmt: skip


def store_understanding(s: Session, video: Video, result: UnderstandingResult) -> None:
    """Chapters, the model's events, tags and scene captions (motion events are perception's)."""
    s.execute(delete(Chapter).where(Chapter.video_id == video.id))
    s.execute(delete(Tag).where(Tag.video_id == video.id))
    s.execute(delete(Event).where(Event.video_id == video.id, Event.source != "motion"))
    s.add_all(Chapter(video_id=video.id, start_s=c["start_s"], end_s=c["end_s"], title=c["title"],
                      summary=c.get("summary", ""), source=c["source"]) for c in result.chapters)  # fmt: skip
    s.add_all(Event(video_id=video.id, start_s=e["start_s"], end_s=e["end_s"], label=e["label"],
                    description=e.get("description", ""), bbox=e.get("bbox"), source=e.get("source", "vlm"))
              for e in result.events if e.get("source") != "motion")  # fmt: skip
    s.add_all(Tag(video_id=video.id, tag=t, source="vlm") for t in dict.fromkeys(result.tags))
    for scene in s.scalars(select(Scene).where(Scene.video_id == video.id)):
        scene.caption = result.captions.get(scene.index)


def store_index(s: Session, video: Video, indexed: Indexed) -> None:
    """Moments and their vectors (the old moments' vectors go with them: cascade)."""
    s.execute(delete(Moment).where(Moment.video_id == video.id))
    rows = [Moment(video_id=video.id, tenant=video.tenant, **m) for m in indexed.moments]
    s.add_all(rows)
    s.flush()
    if indexed.vectors is not None:
        from videopipe.index import vector_rows

        s.add_all(vector_rows([row.id for row in rows], indexed.vectors, indexed.model))


def document(s: Session, tenant: str, video_id: str) -> dict[str, Any]:
    """The analysis document (schema 1) of one of `tenant`'s videos, from the tables."""
    video = get_video(s, tenant, video_id)

    def rows(model: Any, order: Any) -> list[Any]:
        return list(s.scalars(select(model).where(model.video_id == video.id).order_by(order)))

    return {
        "schema": SCHEMA_VERSION,
        "video": {"path": video.filename, "duration_s": video.duration_s or 0.0, "fps": video.fps,
                  "width": video.width, "height": video.height, "vfr": video.vfr, "has_audio": video.has_audio},
        "scenes": [{"index": r.index, "start_s": r.start_s, "end_s": r.end_s, "caption": r.caption}
                   for r in rows(Scene, Scene.index)],
        "keyframes": [{"index": r.index, "t_s": r.t_s, "scene_index": r.scene_index, "score": r.score,
                       "image": f"keyframes/{r.index:05d}.jpg", "blob_key": r.blob_key}
                      for r in rows(Keyframe, Keyframe.index)],
        "transcript": [{"start_s": r.start_s, "end_s": r.end_s, "text": r.text, "language": r.language,
                        "words": r.words}
                       for r in rows(TranscriptSegment, TranscriptSegment.start_s)],
        "ocr": [{"t_s": r.t_s, "scene_index": r.scene_index, "text": r.text, "confidence": r.confidence}
                for r in rows(OcrLine, OcrLine.t_s)],
        "chapters": [{"start_s": r.start_s, "end_s": r.end_s, "title": r.title, "summary": r.summary,
                      "source": r.source} for r in rows(Chapter, Chapter.start_s)],
        "events": [{"start_s": r.start_s, "end_s": r.end_s, "label": r.label, "description": r.description,
                    "bbox": r.bbox, "source": r.source} for r in rows(Event, Event.start_s)],
        "tags": [r.tag for r in rows(Tag, Tag.id)],
    }  # fmt: skip
