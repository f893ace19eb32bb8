"""Request and response bodies (they make the OpenAPI schema that clients and schemathesis read)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from videopipe.analysis import AnalysisOptions as AnalysisOptions  # re-exported: the request body type
from videopipe.config import Settings
from videopipe.errors import BadRequest


def server_vlm(settings: Settings, requested: str | None) -> str | None:
    """What a request may do with the model: switch it off ("none"), or leave the operator's choice (None,
    "auto", or the very backend configured). Never pick another one: a tenant's "transformers" must not make an
    API process or a GPU worker load a local 8B checkpoint next to the configured vLLM server."""
    if requested in (None, "auto") or requested == settings.vlm:
        return None
    if requested == "none":
        return "none"
    raise BadRequest(
        f'vlm: this server\'s model is set by its operator (VIDEOPIPE_VLM={settings.vlm}); send "none" or leave it out'
    )


def operator_options(settings: Settings, options: dict[str, Any]) -> dict[str, Any]:
    """Analysis options from a request, with `vlm` held to what the operator configured (see `server_vlm`)."""
    out = {k: v for k, v in options.items() if k != "vlm"}
    if (vlm := server_vlm(settings, options.get("vlm"))) is not None:
        out["vlm"] = vlm
    return out


class IngestRequest(BaseModel):
    """Ingest a file the server can already reach: a path in an allowed folder, or an S3 URL under an allowed
    prefix. Exactly one of the two."""

    model_config = ConfigDict(extra="forbid")

    path: str | None = Field(None, max_length=4096)
    url: str | None = Field(None, max_length=4096)
    options: AnalysisOptions | None = None

    @model_validator(mode="after")
    def _one_source(self) -> IngestRequest:
        if (self.path is None) == (self.url is None):
            raise ValueError("give exactly one of `path` or `url`")
        return self


class Created(BaseModel):
    id: str = Field(description="The video id")
    job_id: str
    status: str
    duplicate: bool = Field(description="These bytes were already in your library (the same video id is returned)")
    created: bool = Field(description="A new analysis job was queued")


class VideoOut(BaseModel):
    id: str
    filename: str
    size_bytes: int
    content_hash: str
    status: Literal["queued", "running", "ready", "failed", "cancelled"]
    stage: str | None
    progress: float = Field(description="Percent of the analysis done, 0-100")
    job_id: str | None
    error_type: str | None
    error: str | None
    duration_s: float | None
    width: int | None
    height: int | None
    fps: float | None
    has_audio: bool | None
    created_at: str


class VideoList(BaseModel):
    items: list[VideoOut]
    total: int
    limit: int
    offset: int


class Chapter(BaseModel):
    start_s: float
    end_s: float
    start: str
    end: str
    title: str
    summary: str
    source: str


class EventOut(BaseModel):
    start_s: float
    end_s: float
    start: str
    end: str
    label: str
    description: str
    bbox: list[Any] | None
    source: str


class Segment(BaseModel):
    start_s: float
    end_s: float
    start: str
    end: str
    text: str
    language: str | None = Field(None, description="Spoken language (ISO 639-1, e.g. 'en', 'de'); null: not known")


class SceneOut(BaseModel):
    index: int
    start_s: float
    end_s: float
    start: str
    end: str
    caption: str | None


class Results(BaseModel):
    """Results so far: `status` says whether the analysis is finished (lists may grow until `ready`)."""

    video_id: str
    status: str
    items: list[Any]


class ChapterList(Results):
    items: list[Chapter]


class EventList(Results):
    items: list[EventOut]


class Transcript(Results):
    items: list[Segment]


class SceneList(Results):
    items: list[SceneOut]


class UploadOut(BaseModel):
    id: str
    length: int
    offset: int
    filename: str
    complete: bool
    video_id: str | None


class Check(BaseModel):
    ok: bool
    detail: str


class Ready(BaseModel):
    status: Literal["ready", "degraded", "unavailable"]
    checks: dict[str, Check]
