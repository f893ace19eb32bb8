"""/v1/uploads: resumable uploads over tus 1.0 (core + creation + termination). See `videopipe.uploads`."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Path, Request, Response
from fastapi.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect

from api.app import AppState, state_of, tenant_of
from api.problems import problem, problem_responses
from api.schemas import UploadOut
from videopipe.errors import BadRequest
from videopipe.uploads import TUS_EXTENSIONS, TUS_VERSION, parse_metadata

router = APIRouter(prefix="/v1/uploads", tags=["uploads (tus 1.0)"])

Tenant = Annotated[str, Depends(tenant_of)]
State = Annotated[AppState, Depends(state_of)]
UploadId = Annotated[str, Path(min_length=1, max_length=64, pattern=r"^[0-9a-zA-Z_-]+$")]
TusHeader = Annotated[str | None, Header(alias="Tus-Resumable", description="Must be 1.0.0")]


def _tus_headers(**extra: str) -> dict[str, str]:
    return {"Tus-Resumable": TUS_VERSION, **extra}


def _check_version(request: Request, tus_resumable: str | None) -> Response | None:
    if tus_resumable != TUS_VERSION:
        return problem(
            412,
            "precondition-failed",
            f"send the header `Tus-Resumable: {TUS_VERSION}` (this server speaks tus {TUS_VERSION})",
            request,
            {"Tus-Version": TUS_VERSION},
        )
    return None


@router.options("", status_code=204, summary="tus capabilities")
def capabilities(state: State) -> Response:
    return Response(
        status_code=204,
        headers=_tus_headers(
            **{
                "Tus-Version": TUS_VERSION,
                "Tus-Extension": TUS_EXTENSIONS,
                "Tus-Max-Size": str(state.settings.limits.max_file_bytes),
            }
        ),
    )


@router.post(
    "",
    status_code=201,
    summary="Create an upload (Upload-Length; Upload-Metadata: filename, options)",
    responses={201: {"description": "Created; Location is the upload URL"}, **problem_responses(400, 401, 412, 413)},
)
def create_upload(
    request: Request,
    tenant: Tenant,
    state: State,
    tus_resumable: TusHeader = None,
    upload_length: Annotated[str | None, Header(alias="Upload-Length")] = None,
    upload_metadata: Annotated[str | None, Header(alias="Upload-Metadata", max_length=8192)] = None,
) -> Response:
    if (bad := _check_version(request, tus_resumable)) is not None:
        return bad
    if upload_length is None or not upload_length.isdigit():
        raise BadRequest("send Upload-Length: the size of the whole file in bytes (deferred length is not supported)")
    upload_id = state.uploads.create(tenant, int(upload_length), parse_metadata(upload_metadata))
    location = str(request.url_for("upload_offset", upload_id=upload_id))
    return Response(status_code=201, headers=_tus_headers(Location=location, **{"Upload-Offset": "0"}))


@router.head(
    "/{upload_id}",
    name="upload_offset",
    summary="How many bytes the server has",
    response_class=Response,
    responses={
        200: {"description": "Upload-Offset and Upload-Length say it", "content": {}},
        **problem_responses(401, 404, 412),
    },
)
def head_upload(
    request: Request, upload_id: UploadId, tenant: Tenant, state: State, tus_resumable: TusHeader = None
) -> Response:
    if (bad := _check_version(request, tus_resumable)) is not None:
        return bad  # the server sends a HEAD answer's headers only
    info = state.uploads.get(tenant, upload_id)
    headers = {"Upload-Offset": str(info["offset"]), "Upload-Length": str(info["length"]), "Cache-Control": "no-store"}
    return Response(status_code=200, headers=_tus_headers(**headers))


@router.patch(
    "/{upload_id}",
    status_code=204,
    summary="Append bytes at Upload-Offset (Content-Type: application/offset+octet-stream)",
    openapi_extra={
        "requestBody": {
            "content": {"application/offset+octet-stream": {"schema": {"type": "string", "format": "binary"}}}
        }
    },
    responses={
        204: {
            "description": "Stored; Upload-Offset is the new offset. On the last bytes the video is "
            "ingested and Videopipe-Video-Id names it"
        },
        **problem_responses(400, 401, 404, 409, 412, 413, 415, 422),
    },
)
async def patch_upload(
    request: Request,
    upload_id: UploadId,
    tenant: Tenant,
    state: State,
    tus_resumable: TusHeader = None,
    upload_offset: Annotated[str | None, Header(alias="Upload-Offset")] = None,
) -> Response:
    if (bad := _check_version(request, tus_resumable)) is not None:
        return bad
    if request.headers.get("content-type", "").split(";")[0].strip() != "application/offset+octet-stream":
        return problem(
            415,
            "unsupported-media-type",
            "a PATCH body must be Content-Type: application/offset+octet-stream",
            request,
            _tus_headers(),
        )
    if upload_offset is None or not upload_offset.isdigit():
        raise BadRequest("send Upload-Offset: where these bytes start (HEAD the upload to learn it)")
    received = 0
    with state.uploads.appending(tenant, upload_id, int(upload_offset)) as appender:
        try:
            async for chunk in request.stream():
                appender.write(chunk)
                received += len(chunk)
        except ClientDisconnect:  # the bytes that arrived are kept; the client resumes from HEAD's offset
            pass
        offset, done = appender.offset, appender.done
    state.metrics.upload_bytes.inc(received)
    headers = _tus_headers(**{"Upload-Offset": str(offset)})
    if done:
        ingested = await run_in_threadpool(state.uploads.complete, tenant, upload_id)
        headers["Videopipe-Video-Id"] = ingested.video_id
        headers["Location"] = f"/v1/videos/{ingested.video_id}"
    return Response(status_code=204, headers=headers)


@router.delete(
    "/{upload_id}",
    status_code=204,
    summary="Abandon an upload (tus termination)",
    responses=problem_responses(401, 404, 412),
)
def delete_upload(
    request: Request, upload_id: UploadId, tenant: Tenant, state: State, tus_resumable: TusHeader = None
) -> Response:
    if (bad := _check_version(request, tus_resumable)) is not None:
        return bad
    state.uploads.terminate(tenant, upload_id)
    return Response(status_code=204, headers=_tus_headers())


@router.get(
    "/{upload_id}",
    response_model=UploadOut,
    summary="An upload's progress and, once complete, its video",
    responses=problem_responses(401, 404, 422),
)
def get_upload(upload_id: UploadId, tenant: Tenant, state: State) -> Any:
    return state.uploads.get(tenant, upload_id)
