"""The gate in front of every route: who is calling, and how many body bytes a request may send.

It runs before FastAPI can read a body (FastAPI reads body parameters before it solves dependencies such as
`tenant_of`), so an unauthenticated request is refused from its headers alone, and no request is ever buffered
past its limit:

- ``/v1/...`` needs a tenant: ``Authorization: Bearer <key>``, or a loopback client in open mode. The tenant goes
  in ``scope["state"]`` for `tenant_of`. Everything else (/healthz, /readyz, the docs, /metrics with its own rule,
  ``/`` and ``/static/...``) is public.
- Bodies: the file limit (plus multipart framing) for ``POST /v1/videos`` as multipart and tus ``PATCH
  /v1/uploads/{id}``; ``api.max_json_bytes`` for everything else. A Content-Length over it is refused before a
  byte is read; a chunked body is counted as it arrives and cut off the moment it passes the limit.

Every refusal is problem+json, like every other error.
"""

from __future__ import annotations

import hmac
import re
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from fastapi.concurrency import run_in_threadpool
from starlette.datastructures import Headers
from starlette.requests import Request

from api.problems import problem, status_for
from api.state import DEFAULT_TENANT, TENANT_STATE, AppState, is_loopback
from videopipe.config import Settings
from videopipe.errors import BadRequest, TooLarge, Unauthorized, VideopipeError

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

MULTIPART_FRAMING = 1024 * 1024  # part headers and boundaries around the file of a multipart upload

# The database's BIGINT holds at most 2**63 - 1; nothing larger is a real size.
_COUNT = re.compile(r"[0-9]{1,19}")
_MAX_COUNT = 2**63 - 1


def parse_byte_count(name: str, value: str | None) -> int | None:
    """A byte count or offset header (Content-Length, Upload-Length, Upload-Offset): ASCII digits only, at most
    19 of them. None when the header is absent; `BadRequest` for anything else (``str.isdigit`` accepts "²",
    which `int` then refuses)."""
    if value is None:
        return None
    if not _COUNT.fullmatch(value.strip(" \t")) or int(value) > _MAX_COUNT:
        raise BadRequest(f"{name} must be a whole number of bytes: ASCII digits, at most {_MAX_COUNT}")
    return int(value)


def is_api_path(path: str) -> bool:
    return path == "/v1" or path.startswith("/v1/")


def body_limit(settings: Settings, method: str, path: str, content_type: str | None) -> int:
    """The most body bytes a request may send."""
    if method == "PATCH" and path.startswith("/v1/uploads/"):
        return settings.limits.max_file_bytes
    multipart = (content_type or "").split(";")[0].strip().lower() == "multipart/form-data"
    if method == "POST" and path == "/v1/videos" and multipart:
        return settings.limits.max_file_bytes + MULTIPART_FRAMING
    return settings.api.max_json_bytes


def metrics_allowed(settings: Settings, client: str | None, authorization: str | None) -> bool:
    """/metrics shows every tenant's counts: only to `Bearer <api.metrics_token>` when a token is set, else only
    to loopback clients."""
    token = settings.api.metrics_token
    if token:
        scheme, _, given = (authorization or "").partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), token.encode())
    return is_loopback(client)


async def authenticate(state: AppState, headers: Headers, client: str | None) -> str:
    """The caller's tenant, from ``Authorization: Bearer <key>``, or the default tenant for a loopback client in
    open mode. A key verified within `api.key_cache_s` is answered from memory, on the event loop; otherwise the
    database is asked from a worker thread."""
    header = headers.get("authorization")
    if header:
        scheme, _, key = header.partition(" ")
        key = key.strip()
        if scheme.lower() != "bearer" or not key:
            raise Unauthorized("send the API key as `Authorization: Bearer <key>`")
        tenant = state.keys.cached_tenant(key)
        return tenant if tenant is not None else await run_in_threadpool(state.keys.tenant_for, key)
    if state.auth_mode == "open" and await run_in_threadpool(state.open_now):
        if is_loopback(client):
            return DEFAULT_TENANT
        raise Unauthorized("this server is open to localhost only; send an API key (`videopipe keys create`)")
    raise Unauthorized(
        "an API key is required: send `Authorization: Bearer <key>`; an operator creates one with "
        "`videopipe keys create --tenant NAME`"
    )


def _too_large(limit: int) -> TooLarge:
    return TooLarge(f"the request body is larger than this endpoint accepts ({limit:,} bytes)")


class Gate:
    """ASGI middleware: authentication from headers and streamed body limits (see the module docstring)."""

    def __init__(self, app: Any, state: AppState) -> None:
        self.app = app
        self.state = state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        limit = body_limit(self.state.settings, scope["method"], scope["path"], headers.get("content-type"))
        try:
            declared = parse_byte_count("Content-Length", headers.get("content-length"))
            if is_api_path(scope["path"]):
                client = scope.get("client")
                tenant = await authenticate(self.state, headers, client[0] if client else None)
                scope.setdefault("state", {})[TENANT_STATE] = tenant
            if declared is not None and declared > limit:
                raise _too_large(limit)
        except VideopipeError as exc:
            await _problem(exc, scope, receive, send)
            return
        await self._guarded(scope, receive, send, limit)

    async def _guarded(self, scope: Scope, receive: Receive, send: Send, limit: int) -> None:
        received = 0
        cut = False
        started = False

        async def counted() -> Message:
            nonlocal received, cut
            if cut:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    # The app sees the client go away and gives up on the body; the caller hears why.
                    cut = True
                    if not started:
                        await _problem(_too_large(limit), scope, receive, send)
                    return {"type": "http.disconnect"}
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if cut:
                return  # the 413 was sent; whatever the app answers to the cut-off body goes nowhere
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counted, guarded_send)
        except Exception:
            if not cut:
                raise


async def _problem(exc: VideopipeError, scope: Scope, receive: Receive, send: Send) -> None:
    status = status_for(exc)
    headers = {"WWW-Authenticate": 'Bearer realm="videopipe"'} if status == 401 else None
    response = problem(status, exc.type, exc.message, Request(scope), headers)
    await response(scope, receive, send)
