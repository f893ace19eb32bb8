"""/v1/uploads: resumable uploads over tus 1.0 (core + creation + termination). See `videopipe.uploads`."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Path, Request, Response
from fastapi.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect

from api.gate import parse_byte_count
from api.problems import problem, problem_responses
from api.routes_videos import parse_options
from api.schemas import UploadOut, operator_options
from api.state import AppState, state_of, tenant_of
from videopipe.errors import BadRequest
from videopipe.uploads import (
    CLAIM_LEASE_S,
    TUS_EXTENSIONS,
    TUS_VERSION,
    Appender,
    Claim,
    Completed,
    Uploads,
    parse_metadata,
)

log = logging.getLogger("api")

# How often a PATCH makes its bytes durable and records the offset (which also renews its claim).
SAVE_EVERY_S = 2.0

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


@router.options("", status_code=204, summary="tus capabilities", responses=problem_responses(401))
def capabilities(state: State, _tenant: Tenant) -> Response:
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
    length = parse_byte_count("Upload-Length", upload_length)
    if length is None:
        raise BadRequest("send Upload-Length: the size of the whole file in bytes (deferred length is not supported)")
    metadata = parse_metadata(upload_metadata)
    # Refused now, as the multipart field is, not by the job later.
    options = operator_options(state.settings, parse_options(metadata.get("options")))
    upload_id = state.uploads.create(tenant, length, metadata.get("filename") or metadata.get("name"), options)
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
    offset = parse_byte_count("Upload-Offset", upload_offset)
    if offset is None:
        raise BadRequest("send Upload-Offset: where these bytes start (HEAD the upload to learn it)")
    uploads = state.uploads
    # Every database call runs in a worker thread: a PATCH waiting on anything never holds up the event loop.
    got = await run_in_threadpool(uploads.claim, tenant, upload_id, offset)
    if isinstance(got, Completed):
        if parse_byte_count("Content-Length", request.headers.get("content-length")):
            raise BadRequest(f"the upload is complete: it takes no more bytes than Upload-Length ({got.length})")
        return _finished(got.length, got.video_id)
    claim = got
    keeper = asyncio.create_task(_keep_claim(uploads, claim))
    completing: asyncio.Future[Any] | None = None
    try:
        if claim.offset < claim.length:
            received, offset = await _receive(request, uploads, claim)
            state.metrics.upload_bytes.inc(received)
        if offset < claim.length:
            return Response(status_code=204, headers=_tus_headers(**{"Upload-Offset": str(offset)}))
        # The last bytes are in (or a PATCH at the end found a finished file no one ingested): still holding the
        # claim, so no other PATCH can touch the file while it is checked and stored.
        completing = asyncio.ensure_future(run_in_threadpool(uploads.complete, claim))
        ingested = await asyncio.shield(completing)
        return _finished(claim.length, ingested.video_id)
    finally:
        if completing is not None and not completing.done():
            # The request was cancelled (the client went away) while its file is being ingested in a thread:
            # the claim stays held, and renewed, until that ends; then it is let go.
            _AFTERWARDS.add(task := asyncio.ensure_future(_let_go(uploads, claim, keeper, completing)))
            task.add_done_callback(_AFTERWARDS.discard)
        else:
            await _let_go(uploads, claim, keeper, None)


_AFTERWARDS: set[asyncio.Future[None]] = set()  # releases still waiting for an ingestion (kept from the GC)


async def _let_go(
    uploads: Uploads, claim: Claim, keeper: asyncio.Task[None], after: asyncio.Future[Any] | None
) -> None:
    """Stop renewing the claim and release it, once `after` (an ingestion in a thread) has ended."""
    if after is not None:
        with contextlib.suppress(BaseException):
            await after
    keeper.cancel()
    try:
        await run_in_threadpool(uploads.release, claim)  # nothing to do once complete() recorded the video
    except Exception:  # the claim runs out by itself
        log.warning("upload %s: could not release its claim; it runs out within %.0f s", claim.upload_id,
                    CLAIM_LEASE_S, exc_info=True)  # fmt: skip


def _finished(length: int, video_id: str) -> Response:
    headers = _tus_headers(**{"Upload-Offset": str(length), "Videopipe-Video-Id": video_id,
                              "Location": f"/v1/videos/{video_id}"})  # fmt: skip
    return Response(status_code=204, headers=headers)


async def _receive(request: Request, uploads: Uploads, claim: Claim) -> tuple[int, int]:
    """Append the PATCH body to the partial file; (bytes received, the saved offset). What arrived is saved even
    when the connection drops or the body runs past the upload's length; nothing is written once the claim is
    lost."""
    fd = await run_in_threadpool(uploads.open_part, claim)
    appender = Appender(fd, claim)
    received = 0
    saved_at = time.monotonic()
    try:
        try:
            async for chunk in request.stream():
                appender.write(chunk)
                received += len(chunk)
                if time.monotonic() - saved_at >= SAVE_EVERY_S:
                    await run_in_threadpool(uploads.save, claim, fd, appender.offset)
                    saved_at = time.monotonic()
        except ClientDisconnect:  # the bytes that arrived are kept; the client resumes from HEAD's offset
            pass
        except BaseException:
            if not claim.lost:
                await run_in_threadpool(uploads.save, claim, fd, appender.offset, True)
            raise
        # A finished file stays claimed until it is ingested.
        await run_in_threadpool(uploads.save, claim, fd, appender.offset, not appender.done)
    finally:
        os.close(fd)
    return received, appender.offset


async def _keep_claim(uploads: Uploads, claim: Claim) -> None:
    """Renew the claim while the PATCH waits for bytes or the video is ingested; a claim found lost stops the
    writes (`Claim.trusted`)."""
    while not claim.lost:
        await asyncio.sleep(CLAIM_LEASE_S / 6)
        try:
            await run_in_threadpool(uploads.renew, claim)
        except Exception:  # lost (Conflict) or the database is away: writes stop once the claim is no longer trusted
            if claim.lost:
                return


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
