"""Tags for a whole video, each with a score and the moments that support it.

Three ways, best available first:

- **Qwen3-VL** (`vlm_tags`): keyframes at exact times plus what is said and shown, the vocabulary in the prompt
  and, on OpenAI-compatible servers (vLLM), a JSON schema whose ``tag`` is an enum of the vocabulary, so the
  model cannot answer outside it. Answers are checked again here (unknown tags dropped, times clamped).
- **Zero-shot from embeddings** (`zero_shot_tags`, no model): each vocabulary label (with its description) is
  embedded with the search embedder and compared with every moment's vector (transcript, on-screen text and
  captions); a label's score mixes its best moment with how much of the video is about it.
- **Keywords** (`keyword_tags`, no model and no vocabulary): the words said and shown most, for a first look.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from videopipe.errors import BadRequest, VLMError
from videopipe.search import STOPWORDS

MAX_VOCABULARY = 1000
MAX_TAG_CHARS = 120


@dataclass(frozen=True, slots=True)
class Label:
    tag: str
    description: str = ""

    def text(self) -> str:
        """What is embedded for the label: its name, and its description when it has one."""
        return f"{self.tag}: {self.description}" if self.description else self.tag


@dataclass(slots=True)
class TagScore:
    tag: str
    score: float
    source: str  # "vlm", "embedding" or "keywords"
    support: list[tuple[float, float]] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {"tag": self.tag, "score": round(self.score, 4), "source": self.source,
                "support": [{"start_s": round(s, 3), "end_s": round(e, 3)} for s, e in self.support]}  # fmt: skip


@dataclass(frozen=True, slots=True)
class MomentText:
    start_s: float
    end_s: float
    text: str


# -- vocabulary ------------------------------------------------------------------------------------------------
def parse_vocabulary(items: Iterable[Any]) -> list[Label]:
    """Labels from strings (``"tag"`` or ``"tag: description"``) or objects ``{"tag", "description"}``."""
    labels: dict[str, Label] = {}
    for n, item in enumerate(items, 1):
        if isinstance(item, str):
            tag, _, description = item.partition(":")
        elif isinstance(item, dict) and isinstance(item.get("tag"), str):
            tag, description = item["tag"], str(item.get("description") or "")
        else:
            raise BadRequest(f"vocabulary entry {n} is neither a string nor an object with a 'tag': {item!r:.80}")
        tag, description = " ".join(tag.split()), " ".join(description.split())
        if not tag:
            continue
        if len(tag) > MAX_TAG_CHARS:
            raise BadRequest(f"vocabulary entry {n}: a tag is at most {MAX_TAG_CHARS} characters")
        labels.setdefault(tag.lower(), Label(tag, description[:1000]))
    if len(labels) > MAX_VOCABULARY:
        raise BadRequest(f"the vocabulary has {len(labels)} tags; at most {MAX_VOCABULARY}")
    return list(labels.values())


def read_vocabulary(path: Path) -> list[Label]:
    """A vocabulary file: JSON (a list of strings or of {"tag", "description"}), CSV (tag[,description]) or
    plain text (one ``tag`` or ``tag: description`` per line; ``#`` starts a comment)."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise BadRequest(f"{path}: cannot read the vocabulary ({exc})") from None
    if path.suffix.lower() == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise BadRequest(f"{path}: not valid JSON ({exc.msg}, line {exc.lineno})") from None
        if isinstance(data, dict) and isinstance(data.get("tags"), list):
            data = data["tags"]
        if not isinstance(data, list):
            raise BadRequest(f'{path}: expected a JSON list of tags (or {{"tags": [...]}})')
        labels = parse_vocabulary(data)
    elif path.suffix.lower() == ".csv":
        rows = [r for r in csv.reader(io.StringIO(text)) if r and r[0].strip() and not r[0].startswith("#")]
        if rows and rows[0][0].strip().lower() == "tag":
            rows = rows[1:]
        labels = parse_vocabulary({"tag": r[0], "description": ",".join(r[1:])} for r in rows)
    else:
        lines = (line.split("#", 1)[0].strip() for line in text.splitlines())
        labels = parse_vocabulary(line for line in lines if line)
    if not labels:
        raise BadRequest(f"{path}: the vocabulary is empty")
    return labels


# -- zero-shot, from embeddings --------------------------------------------------------------------------------
def zero_shot_tags(
    moments: Sequence[MomentText],
    vectors: np.ndarray,
    labels: Sequence[Label],
    label_vectors: np.ndarray,
    top_k: int,
) -> list[TagScore]:
    """Score every label against the moments (unit vectors: cosine = dot product).

    score = 0.5 * best moment similarity + 0.5 * the duration-weighted mean similarity: a tag about one
    short moment still shows, a tag about the whole video ranks above it. Support: the moments within 0.05 of
    the label's best (at most 3), in time order.
    """
    if not moments or not labels:
        return []
    sims = np.asarray(vectors, np.float32) @ np.asarray(label_vectors, np.float32).T  # (moments, labels)
    durations = np.array([max(0.5, m.end_s - m.start_s) for m in moments], np.float32)
    weights = durations / durations.sum()
    best = sims.max(axis=0)
    mean = weights @ sims
    scores = np.clip(0.5 * best + 0.5 * mean, 0.0, 1.0)
    out = []
    for j in np.argsort(-scores, kind="stable")[:top_k]:
        close = [i for i in np.argsort(-sims[:, j], kind="stable")[:3] if sims[i, j] >= best[j] - 0.05]
        support = sorted((moments[i].start_s, moments[i].end_s) for i in close)
        out.append(TagScore(labels[j].tag, float(scores[j]), "embedding", support))
    return out


# -- keywords (no model, no vocabulary) ---------------------------------------------------------------------------
_WORD = re.compile(r"[^\W\d_]{4,}", re.UNICODE)


def keyword_tags(moments: Sequence[MomentText], top_k: int) -> list[TagScore]:
    """The words said and shown most (stopwords left out), scored by their share of the most frequent one."""
    counts: Counter[str] = Counter()
    where: dict[str, list[tuple[float, float]]] = {}
    for m in moments:
        for word in dict.fromkeys(w.lower() for w in _WORD.findall(m.text)):
            if word in STOPWORDS:
                continue
            counts[word] += 1
            where.setdefault(word, []).append((m.start_s, m.end_s))
    if not counts:
        return []
    top = counts.most_common(top_k)
    most = top[0][1]
    return [TagScore(w, n / most, "keywords", where[w][:3]) for w, n in top]


# -- Qwen3-VL ------------------------------------------------------------------------------------------------------
TAG_SYSTEM = (
    "You tag videos for a media library. The video is given as keyframes; the text <t seconds> before each frame "
    "is that frame's exact time in seconds from the start. Transcript and on-screen text lines carry [mm:ss.ff] "
    "times. Answer with JSON only."
)


def tag_schema(labels: Sequence[Label] | None) -> dict[str, Any]:
    """The JSON schema the answer must follow; with a vocabulary, ``tag`` is an enum of it."""
    tag: dict[str, Any] = {"type": "string", "maxLength": MAX_TAG_CHARS}
    if labels:
        tag = {"type": "string", "enum": [label.tag for label in labels]}
    item = {
        "type": "object",
        "properties": {
            "tag": tag,
            "score": {"type": "number", "minimum": 0, "maximum": 1},
            "times": {"type": "array", "items": {"type": "array", "items": {"type": "number"}, "minItems": 2,
                                                  "maxItems": 2}, "maxItems": 3},
        },
        "required": ["tag", "score", "times"],
        "additionalProperties": False,
    }  # fmt: skip
    return {"type": "object", "properties": {"tags": {"type": "array", "items": item}}, "required": ["tags"],
            "additionalProperties": False}  # fmt: skip


def tag_instructions(labels: Sequence[Label] | None, top_k: int) -> str:
    if labels:
        listed = "\n".join(f"- {lb.tag}" + (f": {lb.description}" if lb.description else "") for lb in labels)
        head = f"Choose up to {top_k} tags for this video from this vocabulary only (use the tag names exactly):\n"
        head += listed
    else:
        head = f"Give up to {top_k} short tags (one to three words each) that describe this video."
    shape = '{"tags": [{"tag": "...", "score": 0.0-1.0, "times": [[start_seconds, end_seconds]]}]}'
    return f"{head}\nFor each tag give a confidence score and up to 3 time ranges that show it.\nReply as {shape}"


def parse_vlm_tags(text: str, labels: Sequence[Label] | None, duration_s: float, top_k: int) -> list[TagScore]:
    """The model's tags, kept only if in the vocabulary (case-insensitive, mapped to its spelling), with scores
    clamped to [0, 1] and times inside the video. Raises VLMError when nothing usable came back."""
    from videopipe.vlm.parsing import OutputParseError, extract_json

    try:
        data = extract_json(text)
    except OutputParseError as exc:
        raise VLMError(f"the model's tags are not JSON: {exc}") from None
    raw = data.get("tags") if isinstance(data, dict) else data
    if not isinstance(raw, list):
        raise VLMError("the model's answer has no list of tags")
    known = {lb.tag.lower(): lb.tag for lb in labels or []}
    out: dict[str, TagScore] = {}
    for item in raw:
        if isinstance(item, str):
            item = {"tag": item}
        if not isinstance(item, dict) or not isinstance(item.get("tag"), str):
            continue
        tag = " ".join(item["tag"].split())[:MAX_TAG_CHARS]
        if labels:
            if tag.lower() not in known:
                continue
            tag = known[tag.lower()]
        if not tag or tag.lower() in out:
            continue
        try:
            score = min(1.0, max(0.0, float(item.get("score", 0.5))))
        except (TypeError, ValueError):
            score = 0.5
        support = []
        for span in item.get("times") or []:
            if isinstance(span, list | tuple) and len(span) == 2:
                try:
                    s, e = sorted((float(span[0]), float(span[1])))
                except (TypeError, ValueError):
                    continue
                if s <= duration_s:
                    support.append((max(0.0, s), min(duration_s, e)))
        out[tag.lower()] = TagScore(tag, score, "vlm", support[:3])
    if not out:
        raise VLMError("the model gave no tag from the vocabulary" if labels else "the model gave no tags")
    return sorted(out.values(), key=lambda t: -t.score)[:top_k]
