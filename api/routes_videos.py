"""/v1/videos: upload or ingest, list, read, results and exports, re-analyse, delete."""

from __future__ import annotations

import contextlib
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import PlainTextResponse, StreamingResponse
from pydantic import ValidationError

from api.multipart import read_multipart
from api.problems import problem_responses
from api.schemas import (
    AnalysisOptions,
    ChapterList,
    Created,
    EventList,
    IngestRequest,
    SceneList,
    Transcript,
    VideoList,
    VideoOut,
    operator_options,
)
from api.state import AppState, state_of, tenant_of
from videopipe import exports
from videopipe.db.models import VideoStatus
from videopipe.errors import BadRequest
from videopipe.library import Ingested

router = APIRouter(prefix="/v1/videos", tags=["videos"])

Tenant = Annotated[str, Depends(tenant_of)]
State = Annotated[AppState, Depends(state_of)]
VideoId = Annotated[str, Path(min_length=1, max_length=64, pattern=r"^[0-9a-zA-Z_-]+$")]
_STATUSES = f"^({'|'.join(VideoStatus)})$"  # a video's status, as the list filter takes it

_UPLOAD_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["file"],
                    "properties": {
                        "file": {"type": "string", "format": "binary", "description": "The video file"},
                        "options": {"type": "string", "description": "AnalysisOptions as JSON"},
                    },
                }
            },
            "application/json": {"schema": {"$ref": "#/components/schemas/IngestRequest"}},
        },
    }
}


def parse_options(raw: str | None) -> dict[str, Any]:
    """The `options` of an upload (multipart field or tus metadata): `AnalysisOptions` as JSON, or `BadRequest`."""
    if not raw:
        return {}
    try:
        return AnalysisOptions.model_validate_json(raw).model_dump(exclude_none=True)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ()))
        raise BadRequest(f"options: {where + ': ' if where else ''}{first.get('msg')}") from None


def _created(state: AppState, tenant: str, ingested: Ingested, response: Response) -> Created:
    video = state.library.get_video(tenant, ingested.video_id)
    response.headers["Location"] = f"/v1/videos/{ingested.video_id}"
    response.status_code = 200 if ingested.duplicate and not ingested.created else 201
    return Created(
        id=ingested.video_id,
        job_id=ingested.job_id,
        status=video["status"],
        duplicate=ingested.duplicate,
        created=ingested.created,
    )


@router.post(
    "",
    status_code=201,
    response_model=Created,
    summary="Upload a video (multipart field `file`) or ingest one by server path / S3 URL (JSON)",
    openapi_extra=_UPLOAD_BODY,
    responses={
        200: {"model": Created, "description": "Already in the library"},
        **problem_responses(400, 401, 413, 415, 422),
    },
)
async def create_video(request: Request, response: Response, tenant: Tenant, state: State) -> Created:
    # The body's size is the gate's business (api.gate): a JSON body over api.max_json_bytes or a file over
    # limits.max_file_bytes is cut off while it streams in.
    ctype = request.headers.get("content-type", "")
    if ctype.split(";")[0].strip().lower() == "application/json":
        body = await request.body()
        try:
            req = IngestRequest.model_validate_json(body or b"{}")
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first.get("loc", ()))
            raise BadRequest(f"{where + ': ' if where else ''}{first.get('msg')}") from None
        options = operator_options(state.settings, req.options.model_dump(exclude_none=True) if req.options else {})
        if req.path is not None:
            ingested = await run_in_threadpool(state.library.ingest_path, req.path, tenant, options)
        else:
            ingested = await run_in_threadpool(state.library.ingest_s3, str(req.url), tenant, options)
        return _created(state, tenant, ingested, response)
    staged, fields = await read_multipart(ctype, request.stream(), state.library)
    if staged is None:
        raise BadRequest("the multipart body has no `file` field; send the video as the form field `file`")
    try:
        options = operator_options(state.settings, parse_options(fields.get("options")))
    except BaseException:
        staged.discard()
        raise
    state.metrics.upload_bytes.inc(staged.size)
    ingested = await run_in_threadpool(state.library.ingest_staged, staged, tenant, options)
    return _created(state, tenant, ingested, response)


@router.get("", response_model=VideoList, summary="Your videos, newest first", responses=problem_responses(401, 422))
def list_videos(
    tenant: Tenant,
    state: State,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
    status: Annotated[str | None, Query(pattern=_STATUSES)] = None,
) -> VideoList:
    items, total = state.library.list_videos(tenant, limit, offset, status)
    return VideoList(items=[VideoOut(**i) for i in items], total=total, limit=limit, offset=offset)


@router.get(
    "/{video_id}",
    response_model=VideoOut,
    summary="A video: status, stage, progress %, error",
    responses=problem_responses(401, 404, 422),
)
def get_video(video_id: VideoId, tenant: Tenant, state: State) -> VideoOut:
    return VideoOut(**state.library.get_video(tenant, video_id))


@router.delete(
    "/{video_id}",
    status_code=204,
    summary="Delete a video: its rows, files and index entries",
    responses=problem_responses(401, 404, 422),
)
def delete_video(video_id: VideoId, tenant: Tenant, state: State) -> Response:
    state.library.delete_video(tenant, video_id)
    return Response(status_code=204)


@router.post(
    "/{video_id}/reanalyze",
    status_code=202,
    response_model=Created,
    summary="Analyse again (optionally with other options); the stages run again",
    responses=problem_responses(400, 401, 404, 422),
)
def reanalyze(video_id: VideoId, tenant: Tenant, state: State, options: AnalysisOptions | None = None) -> Created:
    chosen = operator_options(state.settings, options.model_dump(exclude_none=True)) if options else None
    ingested = state.library.reanalyze(tenant, video_id, chosen)
    video = state.library.get_video(tenant, video_id)
    return Created(
        id=video_id, job_id=ingested.job_id, status=video["status"], duplicate=True, created=ingested.created
    )


@router.post(
    "/{video_id}/cancel",
    response_model=VideoOut,
    summary="Cancel the running analysis",
    responses=problem_responses(401, 404, 422),
)
def cancel(video_id: VideoId, tenant: Tenant, state: State) -> VideoOut:
    video = state.library.get_video(tenant, video_id)
    if video["job_id"]:
        state.jobs.cancel(tenant, video["job_id"])
    return VideoOut(**state.library.get_video(tenant, video_id))


@router.get(
    "/{video_id}/analysis",
    summary="The whole analysis document (analysis.json, schema 1)",
    responses=problem_responses(401, 404, 422),
)
def analysis(video_id: VideoId, tenant: Tenant, state: State) -> dict[str, Any]:
    return state.library.document(tenant, video_id)


def _results(state: AppState, tenant: str, video_id: str, kind: str) -> dict[str, Any]:
    items = state.library.rows(tenant, video_id, kind)
    return {"video_id": video_id, "status": state.library.get_video(tenant, video_id)["status"], "items": items}


@router.get("/{video_id}/chapters", response_model=ChapterList, responses=problem_responses(401, 404, 422))
def chapters(video_id: VideoId, tenant: Tenant, state: State) -> Any:
    return _results(state, tenant, video_id, "chapters")


@router.get("/{video_id}/events", response_model=EventList, responses=problem_responses(401, 404, 422))
def events(video_id: VideoId, tenant: Tenant, state: State) -> Any:
    return _results(state, tenant, video_id, "events")


@router.get("/{video_id}/transcript", response_model=Transcript, responses=problem_responses(401, 404, 422))
def transcript(video_id: VideoId, tenant: Tenant, state: State) -> Any:
    return _results(state, tenant, video_id, "transcript")


@router.get("/{video_id}/scenes", response_model=SceneList, responses=problem_responses(401, 404, 422))
def scenes(video_id: VideoId, tenant: Tenant, state: State) -> Any:
    return _results(state, tenant, video_id, "scenes")


def _text(body: str, media_type: str, filename: str) -> PlainTextResponse:
    return PlainTextResponse(
        body, media_type=media_type, headers={"Content-Disposition": f'inline; filename="{filename}"'}
    )


def _text_response(media_type: str) -> dict[int | str, dict[str, Any]]:
    return {200: {"content": {media_type: {"schema": {"type": "string"}}}}, **problem_responses(401, 404, 422)}


@router.get(
    "/{video_id}/chapters.vtt",
    response_class=PlainTextResponse,
    responses=_text_response("text/vtt"),
    summary='Chapters as WebVTT, for <track kind="chapters">',
)
def chapters_vtt(video_id: VideoId, tenant: Tenant, state: State) -> PlainTextResponse:
    body = exports.chapters_vtt(state.library.rows(tenant, video_id, "chapters"))
    return _text(body, "text/vtt; charset=utf-8", f"{video_id}.chapters.vtt")


@router.get(
    "/{video_id}/transcript.vtt",
    response_class=PlainTextResponse,
    responses=_text_response("text/vtt"),
    summary="Transcript as WebVTT captions",
)
def transcript_vtt(video_id: VideoId, tenant: Tenant, state: State) -> PlainTextResponse:
    body = exports.transcript_vtt(state.library.rows(tenant, video_id, "transcript"))
    return _text(body, "text/vtt; charset=utf-8", f"{video_id}.vtt")


@router.get(
    "/{video_id}/transcript.srt",
    response_class=PlainTextResponse,
    responses=_text_response("application/x-subrip"),
    summary="Transcript as SubRip",
)
def transcript_srt(video_id: VideoId, tenant: Tenant, state: State) -> PlainTextResponse:
    body = exports.transcript_srt(state.library.rows(tenant, video_id, "transcript"))
    return _text(body, "application/x-subrip; charset=utf-8", f"{video_id}.srt")


@router.get(
    "/{video_id}/events.csv",
    response_class=PlainTextResponse,
    responses=_text_response("text/csv"),
    summary="Events as CSV",
)
def events_csv(video_id: VideoId, tenant: Tenant, state: State) -> PlainTextResponse:
    body = exports.events_csv(state.library.rows(tenant, video_id, "events"))
    return _text(body, "text/csv; charset=utf-8", f"{video_id}.events.csv")


@router.get(
    "/{video_id}/media",
    response_class=StreamingResponse,
    responses={
        200: {"content": {"video/mp4": {"schema": {"type": "string", "format": "binary"}}}},
        206: {"description": "A byte range (Range requests are supported)"},
        **problem_responses(401, 404, 416, 422),
    },
    summary="The original video, for players (byte ranges supported; search links point here with #t=)",
)
def media(video_id: VideoId, tenant: Tenant, state: State) -> Response:
    from fastapi.responses import FileResponse

    video = state.library.get_video(tenant, video_id)
    # The type comes from the container probed at ingest, never from the client's file name (an MP4 called
    # x.html is still video/mp4); only what a browser plays in a <video> is shown inline.
    media_type = video.get("media_type") or "application/octet-stream"
    disposition = "inline" if media_type in PLAYABLE else "attachment"
    filename = _download_name(video["filename"], media_type)
    path = state.library.original_path(tenant, video_id)
    if path is not None:
        return FileResponse(path, media_type=media_type, filename=filename, content_disposition_type=disposition)

    # Opened before the answer starts: a missing original is a 404, not a 200 cut short.
    opened = contextlib.ExitStack()
    f = opened.enter_context(state.library.open_original(tenant, video_id))

    def chunks() -> Any:
        with opened:
            while data := f.read(1024 * 1024):
                yield data

    return StreamingResponse(chunks(), media_type=media_type,
                             headers={"Content-Disposition": _disposition(disposition, filename)})  # fmt: skip


def _disposition(kind: str, filename: str) -> str:
    """As FileResponse writes it (RFC 6266: the UTF-8 form for names that are not plain ASCII)."""
    from urllib.parse import quote

    quoted = quote(filename)
    return f"{kind}; filename*=utf-8''{quoted}" if quoted != filename else f'{kind}; filename="{filename}"'


PLAYABLE = frozenset({"video/mp4", "video/webm", "video/ogg"})
_SUFFIXES = {"video/mp4": (".mp4", ".m4v", ".mov"), "video/webm": (".webm",), "video/ogg": (".ogv", ".ogg"),
             "video/x-matroska": (".mkv",), "video/x-msvideo": (".avi",), "video/mp2t": (".ts", ".mts", ".m2ts"),
             "video/x-flv": (".flv",), "video/mpeg": (".mpg", ".mpeg"), "video/x-ms-asf": (".wmv", ".asf"),
             "application/mxf": (".mxf",), "video/x-dv": (".dv",)}  # fmt: skip


def _download_name(filename: str, media_type: str) -> str:
    """The client's name, with the type's own suffix added when it has another: saved to disk, a video called
    x.html must not open as a page."""
    suffixes = _SUFFIXES.get(media_type)
    if suffixes and not filename.lower().endswith(suffixes):
        return filename + suffixes[0]
    return filename


@router.get(
    "/{video_id}/keyframes/{n}.jpg",
    response_class=StreamingResponse,
    responses={
        200: {"content": {"image/jpeg": {"schema": {"type": "string", "format": "binary"}}}},
        **problem_responses(401, 404, 422),
    },
    summary="A keyframe image (n: its index in the analysis)",
)
def keyframe(video_id: VideoId, n: Annotated[int, Path(ge=0, le=1_000_000)], tenant: Tenant, state: State) -> Response:
    with state.library.keyframe(tenant, video_id, n) as f:
        data = f.read()
    return Response(data, media_type="image/jpeg", headers={"Cache-Control": "private, max-age=3600"})
