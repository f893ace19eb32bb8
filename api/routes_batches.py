"""/v1/batches: tag many videos (library ids, a server-side folder, an S3 prefix) with one vocabulary."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path, Query, Response
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, ConfigDict, Field, model_validator

from api.problems import problem_responses
from api.schemas import AnalysisOptions, operator_options, server_vlm
from api.state import AppState, state_of, tenant_of
from videopipe.errors import BadRequest
from videopipe.library import s3_allowed

router = APIRouter(prefix="/v1/batches", tags=["batches"])

Tenant = Annotated[str, Depends(tenant_of)]
State = Annotated[AppState, Depends(state_of)]
BatchId = Annotated[str, Path(min_length=1, max_length=64, pattern=r"^[0-9a-zA-Z_-]+$")]
IdStr = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[0-9a-zA-Z_-]+$")]


class VocabEntry(BaseModel):
    model_config = ConfigDict(extra="forbid")

    tag: str = Field(min_length=1, max_length=120)
    description: str = Field("", max_length=1000, description="Helps the tagger tell what the tag means")


class BatchRequest(BaseModel):
    """What to tag: any of library video ids, a folder (or file) inside the server's allowed folders, an S3 prefix
    under an allowed prefix. Without a vocabulary the tags are free."""

    model_config = ConfigDict(extra="forbid")

    video_ids: list[IdStr] = Field(default_factory=list, max_length=10_000)
    path: str | None = Field(None, min_length=1, max_length=4096)
    s3_prefix: str | None = Field(None, min_length=6, max_length=4096)
    vocabulary: list[Annotated[str, Field(min_length=1, max_length=1200)] | VocabEntry] | None = Field(
        None, max_length=1000, description='Tags ("tag" or "tag: description") or {"tag", "description"} objects'
    )
    top_k: int = Field(5, ge=1, le=50, description="Tags kept per video")
    vlm: Literal["none", "auto", "openai", "transformers"] = Field(
        "none", description="Tag with Qwen3-VL (constrained to the vocabulary); none: zero-shot from embeddings"
    )
    options: AnalysisOptions | None = Field(None, description="How files not analysed yet are analysed")

    @model_validator(mode="after")
    def _some_source(self) -> BatchRequest:
        if not self.video_ids and self.path is None and self.s3_prefix is None:
            raise ValueError("give `video_ids`, a `path` or an `s3_prefix`")
        return self


class SupportSpan(BaseModel):
    start_s: float
    end_s: float


class TagOut(BaseModel):
    tag: str
    score: float
    source: str = Field(description="vlm, embedding or keywords")
    support: list[SupportSpan] = Field(description="The moments that support the tag")


class ItemOut(BaseModel):
    position: int
    source: str = Field(description='A path, an s3:// URL or "video:<id>"')
    video_id: str | None
    status: str = Field(description="pending, analyzing, done, failed or cancelled")
    progress: float = Field(description="Percent, 0-100: the item's analysis while analyzing, 100 once finished")
    reused: bool = Field(description="Analysed before with the same settings: its results were reused")
    error_type: str | None
    error: str | None
    tags: list[TagOut]


class Counts(BaseModel):
    pending: int
    analyzing: int
    done: int
    failed: int
    cancelled: int


class BatchOut(BaseModel):
    id: str
    status: str = Field(description="running, done or cancelled")
    progress: float = Field(description="Percent, 0-100: items finished, plus the analysis progress of those under way")
    total: int
    counts: Counts
    vocabulary: list[VocabEntry] | None
    top_k: int
    vlm: str
    created_at: datetime
    finished_at: datetime | None
    items: list[ItemOut] | None = None


class BatchList(BaseModel):
    items: list[BatchOut]


class VideoTags(BaseModel):
    video: str
    video_id: str | None
    tags: list[TagOut]


def _listed_and_allowed(url: str, allowed: list[str]) -> bool:
    from videopipe.batches import VIDEO_SUFFIXES

    try:
        inside = s3_allowed(url, allowed)
    except BadRequest:  # a key with empty, "." or ".." segments: left out, like a file that is not a video
        return False
    return inside and "." + url.rsplit(".", 1)[-1].lower() in VIDEO_SUFFIXES


def _sources(state: AppState, tenant: str, body: BatchRequest) -> list[str]:
    from videopipe.batches import MAX_ITEMS, VIDEO_SUFFIXES
    from videopipe.storage import list_s3_objects

    sources = []
    for video_id in dict.fromkeys(body.video_ids):
        state.library.get_video(tenant, video_id)  # 404 for another tenant's video, as for a missing one
        sources.append(f"video:{video_id}")
    if body.path is not None:
        # Items are named as the caller named them (the path, or the path and the name inside it), never by
        # a symlink's target; each is checked against the allowed folders again when it is ingested.
        found = state.library.allowed_files(body.path, VIDEO_SUFFIXES, MAX_ITEMS)
        if not found:
            raise BadRequest(f"{body.path}: no video files there (looked for {', '.join(sorted(VIDEO_SUFFIXES))})")
        sources += found
    if body.s3_prefix is not None:
        allowed = state.settings.api.ingest_s3_prefixes
        if not s3_allowed(body.s3_prefix, allowed, prefix=True):
            raise BadRequest(f"{body.s3_prefix}: not under an allowed S3 prefix (VIDEOPIPE_API__INGEST_S3_PREFIXES)")
        # A key prefix lists whatever starts with it ("s3://b/a" lists "s3://b/ab/..."): each object is checked.
        urls = [u for u in list_s3_objects(body.s3_prefix, MAX_ITEMS) if _listed_and_allowed(u, allowed)]
        if not urls:
            raise BadRequest(f"{body.s3_prefix}: no video objects under this prefix")
        sources += urls
    return sources


def _create(state: AppState, tenant: str, body: BatchRequest) -> dict[str, Any]:
    from videopipe.tagging import parse_vocabulary

    raw = [v.model_dump() if isinstance(v, VocabEntry) else v for v in body.vocabulary or []]
    labels = parse_vocabulary(raw) if body.vocabulary else None
    options = operator_options(state.settings, (body.options or AnalysisOptions()).model_dump(exclude_none=True))
    vlm = server_vlm(state.settings, body.vlm) or state.settings.vlm
    batches = state.batches
    batch_id = batches.create(tenant, _sources(state, tenant, body), labels, body.top_k, vlm, options)
    state.batch_wakeup.set()
    return dict(batches.describe(tenant, batch_id, items=False))


@router.post("", status_code=201, response_model=BatchOut, summary="Tag many videos",
             responses=problem_responses(400, 401, 404, 422))  # fmt: skip
async def create_batch(body: BatchRequest, tenant: Tenant, state: State, response: Response) -> Any:
    out = await run_in_threadpool(_create, state, tenant, body)
    response.headers["Location"] = f"/v1/batches/{out['id']}"
    return out


@router.get("", response_model=BatchList, summary="Your batches, newest first", responses=problem_responses(401))
def list_batches(tenant: Tenant, state: State, limit: Annotated[int, Query(ge=1, le=200)] = 50) -> Any:
    return {"items": state.batches.list_batches(tenant, limit)}


@router.get("/{batch_id}", response_model=BatchOut, summary="A batch: progress and each item's status and tags",
            responses=problem_responses(401, 404, 422))  # fmt: skip
def get_batch(
    batch_id: BatchId,
    tenant: Tenant,
    state: State,
    offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 1000,
) -> Any:
    return state.batches.describe(tenant, batch_id, items=True, offset=offset, limit=limit)


@router.get("/{batch_id}/tags.csv", summary="Tags as CSV: one row per (video, tag)",
            responses={200: {"content": {"text/csv": {}}}, **problem_responses(401, 404, 422)})  # fmt: skip
def tags_csv(batch_id: BatchId, tenant: Tenant, state: State) -> Response:
    from videopipe.exports import tags_csv

    text = tags_csv(state.batches.export_rows(tenant, batch_id))
    return Response(text, media_type="text/csv; charset=utf-8",
                    headers={"Content-Disposition": f'attachment; filename="batch-{batch_id}-tags.csv"'})  # fmt: skip


@router.get("/{batch_id}/tags.json", response_model=list[VideoTags], summary="Tags as JSON, per video",
            responses=problem_responses(401, 404, 422))  # fmt: skip
def tags_json(batch_id: BatchId, tenant: Tenant, state: State) -> Any:
    rows = state.batches.export_rows(tenant, batch_id)
    return [{"video": video, "video_id": video_id, "tags": tags} for video, video_id, tags in rows]


@router.post("/{batch_id}/cancel", response_model=BatchOut, summary="Stop queuing the batch's videos",
             responses=problem_responses(401, 404, 422))  # fmt: skip
def cancel_batch(batch_id: BatchId, tenant: Tenant, state: State) -> Any:
    return state.batches.cancel(tenant, batch_id)


@router.post("/{batch_id}/retry", response_model=BatchOut, summary="Run the failed and cancelled items again",
             responses=problem_responses(401, 404, 422))  # fmt: skip
def retry_batch(batch_id: BatchId, tenant: Tenant, state: State) -> Any:
    out = state.batches.retry_failed(tenant, batch_id)
    state.batch_wakeup.set()
    return out
