"""Errors as RFC 9457 ``application/problem+json``: a stable ``type`` per kind of problem, the one-line message
of the videopipe error as ``detail``, and the request id to find the log lines."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException

from api.context import request_id_var
from videopipe.errors import (
    BadRequest,
    Busy,
    ConfigError,
    Conflict,
    InputError,
    NotAVideo,
    NotFound,
    TooLarge,
    Unauthorized,
    VideoNotFound,
    VideopipeError,
    VLMRequestRejected,
    VLMUnavailable,
)

log = logging.getLogger("api")

MEDIA_TYPE = "application/problem+json"
TYPE_BASE = "urn:videopipe:problem:"

# Most specific first.
_STATUS: list[tuple[type[VideopipeError], int]] = [
    (VideoNotFound, 404),
    (NotFound, 404),
    (Unauthorized, 401),
    (Conflict, 409),
    (TooLarge, 413),
    (NotAVideo, 415),
    (BadRequest, 400),
    (InputError, 422),
    (VLMUnavailable, 503),
    (Busy, 503),
    (VLMRequestRejected, 502),
    (ConfigError, 503),
]

_HTTP_TYPES = {
    400: "bad-request",
    401: "unauthorized",
    403: "forbidden",
    404: "not-found",
    405: "method-not-allowed",
    406: "not-acceptable",
    409: "conflict",
    411: "length-required",
    412: "precondition-failed",
    413: "too-large",
    415: "unsupported-media-type",
    422: "invalid-request",
    429: "too-many-requests",
    503: "unavailable",
}


class Problem(BaseModel):
    """RFC 9457 problem details."""

    type: str
    title: str
    status: int
    detail: str
    instance: str | None = None
    request_id: str | None = None


def problem_responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` entries for the problems a route can answer with."""
    return {
        code: {"model": Problem, "content": {MEDIA_TYPE: {}}, "description": _HTTP_TYPES.get(code, "error")}
        for code in codes
    }


def status_for(exc: VideopipeError) -> int:
    for cls, code in _STATUS:
        if isinstance(exc, cls):
            return code
    return 500


def problem(
    status: int, slug: str, detail: str, request: Request | None = None, headers: dict[str, str] | None = None
) -> JSONResponse:
    body = Problem(
        type=TYPE_BASE + slug,
        title=slug.replace("-", " ").capitalize(),
        status=status,
        detail=detail,
        instance=request.url.path if request is not None else None,
        request_id=request_id_var.get(),
    )
    return JSONResponse(body.model_dump(exclude_none=True), status_code=status, media_type=MEDIA_TYPE, headers=headers)


def install(app: FastAPI) -> None:
    @app.exception_handler(VideopipeError)
    async def _videopipe_error(request: Request, exc: VideopipeError) -> JSONResponse:
        status = status_for(exc)
        if status >= 500:
            log.error("%s: %s", exc.type, exc.message)
        headers = {"WWW-Authenticate": 'Bearer realm="videopipe"'} if status == 401 else None
        if isinstance(exc, Busy):
            headers = {"Retry-After": str(exc.retry_after_s)}
        return problem(status, exc.type, exc.message, request, headers)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        parts = []
        for err in exc.errors()[:5]:
            where = ".".join(str(p) for p in err.get("loc", ()) if p != "body")
            parts.append(f"{where}: {err.get('msg')}")
        return problem(422, "invalid-request", "; ".join(parts) or "the request is not valid", request)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        slug = _HTTP_TYPES.get(exc.status_code, "error")
        detail = exc.detail if isinstance(exc.detail, str) else slug
        if exc.status_code == 404 and detail == "Not Found":
            detail = f"no such endpoint {request.url.path}; see /docs for the API"
        if exc.status_code == 405:
            detail = f"{request.method} is not allowed on {request.url.path}; see /docs for the API"
        return problem(exc.status_code, slug, detail, request, dict(exc.headers or {}))

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error on %s %s", request.method, request.url.path)
        return problem(
            500, "internal-error", "an unexpected error; the server log has details under this request id", request
        )
