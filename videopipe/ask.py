"""Questions about one video, answered with the time ranges that support the answer.

With a model: the whole video (keyframes at exact times, transcript, on-screen text) in one long-context prompt
when its plan fits, else the frames of the moments retrieved for the question. Cited times are parsed and
checked against the video's length; a second look at the first cited clip confirms the answer or lowers its
confidence. Without a model: the moments that best match the question, their words as the answer, said plainly.

Either way, when no moment of the video scores `search.ask_min_score` (search scores are absolute, see
videopipe.search.relevance), the answer is that nothing in the video answers the question (mode "no-match"):
the model is not asked, and no moment's words are passed off as an answer.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from PIL import Image
from sqlalchemy.orm import Session, sessionmaker

from videopipe.config import Settings
from videopipe.db.repos import results
from videopipe.errors import BadRequest, VLMError
from videopipe.search import Searcher
from videopipe.storage import BlobStore
from videopipe.timefmt import fmt_time
from videopipe.vlm import Prompt, VLMBackend, select_backend
from videopipe.vlm.parsing import OutputParseError, extract_json, fmt_mmss, parse_time
from videopipe.vlm.planner import FrameCandidate, TokenPlanner
from videopipe.vlm.prompts import timed_lines

log = logging.getLogger(__name__)

ASK_SYSTEM = (
    "You answer questions about a video. The video is given as keyframes; the text <t seconds> before each "
    "frame is that frame's exact time in seconds from the start. Transcript and on-screen text lines carry "
    "[mm:ss.ff] times. Cite the time ranges that show the answer, using those times. Answer with JSON only."
)
ASK_SHAPE = '{"answer": "one or two sentences", "citations": [{"start": "mm:ss.ff", "end": "mm:ss.ff"}]}'
CHECK_SHAPE = '{"supported": true, "reason": "a few words"}'
NO_MODEL_NOTE = (
    "No understanding model is configured, so this is not a generated answer: it is what is said and shown in "
    "the moments that best match the question. Configure Qwen3-VL (VIDEOPIPE_VLM_URL) for real answers."
)
NOTHING = "Nothing said or shown in this video answers the question."


def _question_text(name: str, duration: float, doc: dict[str, Any], question: str, start: float, end: float) -> str:
    said = timed_lines(doc.get("transcript", []), start, end)
    shown = timed_lines(doc.get("ocr", []), start, end, time_key="t_s")
    parts = [f"Video: {name}, {fmt_mmss(duration)} long."]
    if start > 0 or end < duration:
        parts.append(f"Only the part from {fmt_mmss(start)} to {fmt_mmss(end)} is shown.")
    if said:
        parts += ["Transcript:", *said]
    if shown:
        parts += ["On-screen text:", *shown]
    parts += [f"Question: {question}", f"Reply with JSON of this shape: {ASK_SHAPE}"]
    return "\n".join(parts)


class Asker:
    def __init__(
        self, settings: Settings, sessions: sessionmaker[Session], store: BlobStore, searcher: Searcher
    ) -> None:
        self.settings = settings
        self.sessions = sessions
        self.store = store
        self.searcher = searcher

    def ask(self, tenant: str, video_id: str, question: str, vlm: str | None = None) -> dict[str, Any]:
        """The answer to `question` about the tenant's video; `NotFound` for another tenant's (as for none)."""
        with self.sessions() as s:
            doc = results.document(s, tenant, video_id)  # the tenant gate: another tenant's video is not found
        question = " ".join(question.split())
        if not question:
            raise BadRequest("the question is empty; ask something about the video")
        if len(question) > 1000:
            raise BadRequest("the question is longer than 1000 characters; shorten it")
        hits = self.searcher.search(question, tenant, video_id=video_id, limit=5)
        threshold = self.settings.search.ask_min_score
        best = hits[0]["score"] if hits else 0.0
        choice = select_backend(self.settings, vlm)
        if best < threshold:
            return self._nothing(video_id, question, best, threshold, choice.backend is not None)
        if choice.backend is None:
            return self._extractive(video_id, question, hits, NO_MODEL_NOTE, threshold)
        try:
            return self._with_model(choice.backend, doc, video_id, question, hits)
        except VLMError as exc:
            return self._extractive(video_id, question, hits, f"The model could not answer ({exc.message}); these "
                                    "are the best matching moments instead.", threshold)  # fmt: skip

    @staticmethod
    def _nothing(video_id: str, question: str, best: float, threshold: float, with_model: bool) -> dict[str, Any]:
        why = (f"No moment of this video matches the question well enough to answer it (best score {best:.2f}, "
               f"below search.ask_min_score {threshold:.2f})")  # fmt: skip
        return {
            "video_id": video_id, "question": question, "mode": "no-match", "model": None, "answer": NOTHING,
            "citations": [], "confidence": None,
            "note": why + ("; the model was not asked." if with_model else "."),
        }  # fmt: skip

    @staticmethod
    def _extractive(
        video_id: str, question: str, hits: list[dict[str, Any]], note: str, threshold: float
    ) -> dict[str, Any]:
        top = [h for h in hits[:3] if h["score"] >= threshold]  # absolute scores: each cited moment must match
        return {
            "video_id": video_id, "question": question, "mode": "extractive", "model": None,
            "answer": top[0]["text"] if top else NOTHING,
            "citations": [_cite(h["start_s"], h["end_s"], h["text"]) for h in top],
            "confidence": None, "note": note,
        }  # fmt: skip

    def _with_model(
        self, backend: VLMBackend, doc: dict[str, Any], video_id: str, question: str, hits: list[dict[str, Any]]
    ) -> dict[str, Any]:
        duration = float(doc["video"]["duration_s"])
        name = Path(doc["video"]["path"]).name
        size = (int(doc["video"]["width"] or 640), int(doc["video"]["height"] or 360))
        planner = TokenPlanner(backend.count_text, backend.spec)
        u = self.settings.understanding
        workdir = Path(tempfile.mkdtemp(prefix="vp-ask-"))
        try:
            images = fetch_keyframes(self.store, doc, workdir)

            def plan_for(start: float, end: float, keyframes: Sequence[dict[str, Any]]) -> tuple[Any, str]:
                text = _question_text(name, duration, doc, question, start, end)
                probe = Prompt(ASK_SYSTEM, text, frames=[(0.0, Image.new("RGB", (32, 32)))])
                candidates = [FrameCandidate(k["t_s"], k["scene_index"], k.get("score", 0.0), k["index"])
                              for k in keyframes]  # fmt: skip
                return planner.plan(candidates, size, backend.count_prompt_text(probe), u), text

            plan, text = plan_for(0.0, duration, doc["keyframes"])
            mode = "whole-video"
            if not plan.fits and hits:
                spans = [(h["start_s"], h["end_s"]) for h in hits]
                start, end = min(s for s, _ in spans), max(e for _, e in spans)
                near = [k for k in doc["keyframes"] if any(s - 1 <= k["t_s"] <= e + 1 for s, e in spans)]
                plan, text = plan_for(start, end, near or doc["keyframes"][:1])
                mode = "retrieved-moments"
            frames = [(c.t_s, resized(images[int(c.ref)], plan.width, plan.height)) for c in plan.frames]
            completion = backend.generate(Prompt(ASK_SYSTEM, text, frames, u.duplicate_frames), 512)
            answer, citations, dropped = _parse(completion.text, duration)
            if answer is None:
                note = "The model's answer could not be read; these are the best matching moments instead."
                return self._extractive(video_id, question, hits, note, self.settings.search.ask_min_score)
            confidence, check = 0.6, None
            if citations:
                check = self._confirm(backend, doc, images, question, answer, citations[0], size)
                confidence = {True: 0.9, False: 0.3, None: 0.6}[check]
            else:
                confidence = 0.4
            notes = []
            if dropped:
                notes.append(f"{dropped} cited time range(s) outside the video were dropped")
            if check is False:
                notes.append("a second look at the cited clip did not confirm the answer")
            return {
                "video_id": video_id, "question": question, "mode": mode, "model": backend.model,
                "answer": answer, "citations": citations, "confidence": confidence,
                "note": "; ".join(notes) or None,
            }  # fmt: skip
        finally:
            shutil.rmtree(workdir, ignore_errors=True)

    def _confirm(
        self,
        backend: VLMBackend,
        doc: dict[str, Any],
        images: dict[int, Path],
        question: str,
        answer: str,
        citation: dict[str, Any],
        size: tuple[int, int],
    ) -> bool | None:
        """A second look at the cited clip alone: does it support the answer? None when that cannot be told."""
        start, end = citation["start_s"], citation["end_s"]
        inside = [k for k in doc["keyframes"] if start - 0.5 <= k["t_s"] <= end + 0.5]
        if not inside and doc["keyframes"]:
            inside = [min(doc["keyframes"], key=lambda k: abs(k["t_s"] - (start + end) / 2))]
        inside = inside[:8]
        w, h = fit_size(size, 256 * 256)
        frames = [(k["t_s"], resized(images[int(k["index"])], w, h)) for k in inside]
        said = timed_lines(doc.get("transcript", []), start - 1, end + 1)
        text = "\n".join([f"The clip from {fmt_mmss(start)} to {fmt_mmss(end)}.", *(["Transcript:", *said] if said
                          else []), f"Question: {question}", f"Proposed answer: {answer}",
                          f"Does this clip support the proposed answer? Reply with JSON: {CHECK_SHAPE}"])  # fmt: skip
        try:
            prompt = Prompt(ASK_SYSTEM, text, frames, self.settings.understanding.duplicate_frames)
            completion = backend.generate(prompt, 64)
            verdict = extract_json(completion.text)
        except (VLMError, OutputParseError):
            return None
        value = verdict.get("supported") if isinstance(verdict, dict) else None
        return value if isinstance(value, bool) else None


def _cite(start: float, end: float, text: str = "") -> dict[str, Any]:
    return {"start_s": round(start, 3), "end_s": round(end, 3), "start": fmt_time(start), "end": fmt_time(end),
            "text": text}  # fmt: skip


def _parse(text: str, duration: float) -> tuple[str | None, list[dict[str, Any]], int]:
    """(answer, citations inside the video, how many cited ranges were dropped as impossible)."""
    try:
        data = extract_json(text)
    except OutputParseError:
        return None, [], 0
    if not isinstance(data, dict) or not isinstance(data.get("answer"), str) or not data["answer"].strip():
        return None, [], 0
    citations, dropped = [], 0
    raw = data.get("citations") or []
    for item in raw if isinstance(raw, list) else []:
        try:
            start = parse_time(item.get("start")) if isinstance(item, dict) else parse_time(item)
            end = parse_time(item.get("end", start)) if isinstance(item, dict) else start
        except (ValueError, TypeError):
            dropped += 1
            continue
        start, end = min(start, end), max(start, end)
        if start > duration + 0.5:
            dropped += 1
            continue
        citations.append(_cite(max(0.0, start), min(duration, max(end, start + 0.5))))
    return data["answer"].strip(), citations, dropped


def fetch_keyframes(store: BlobStore, doc: dict[str, Any], workdir: Path) -> dict[int, Path]:
    """The video's keyframes copied from the blob store into `workdir`, by keyframe index."""
    out = {}
    for k in doc["keyframes"]:
        target = workdir / f"{k['index']:05d}.jpg"
        with store.open(k["blob_key"]) as src, target.open("wb") as dst:
            shutil.copyfileobj(src, dst)
        out[int(k["index"])] = target
    return out


def fit_size(size: tuple[int, int], pixels: int) -> tuple[int, int]:
    w, h = size
    scale = min(1.0, (pixels / max(1, w * h)) ** 0.5)
    return max(32, int(w * scale) // 32 * 32), max(32, int(h * scale) // 32 * 32)


def resized(path: Path, width: int, height: int) -> Image.Image:
    with Image.open(path) as image:
        return image.convert("RGB").resize((width, height), Image.Resampling.BICUBIC)
