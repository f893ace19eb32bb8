"""Per-request context: the request id, a log filter that stamps it on every record, and the request log."""

from __future__ import annotations

import logging
import re
import time
import uuid
from contextvars import ContextVar
from typing import Any

request_id_var: ContextVar[str | None] = ContextVar("request_id", default=None)

log = logging.getLogger("api.access")

_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,64}")


class RequestIdFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = request_id_var.get() or "-"
        return True


class RequestContext:
    """ASGI middleware: takes ``X-Request-ID`` from the client (or makes one), echoes it back, sends
    ``X-Content-Type-Options: nosniff`` on every answer, logs one line per request with its status and duration,
    and feeds the metrics."""

    def __init__(self, app: Any, metrics: Any = None) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = dict(scope.get("headers") or []).get(b"x-request-id", b"").decode("latin-1")
        # The client's id is kept only when it is a plain token: it goes into log lines and response headers.
        rid = incoming if _REQUEST_ID.fullmatch(incoming) else uuid.uuid4().hex
        token = request_id_var.set(rid)
        start = time.perf_counter()
        status = {"code": 500}

        async def send_with_id(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
                message.setdefault("headers", [])
                extra = [(b"x-request-id", rid.encode("latin-1"))]
                # No browser may guess a type other than the one declared (an upload must never run as a page).
                if not any(k.lower() == b"x-content-type-options" for k, _ in message["headers"]):
                    extra.append((b"x-content-type-options", b"nosniff"))
                message["headers"] = [*message["headers"], *extra]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            elapsed = time.perf_counter() - start
            route = scope.get("route")
            template = getattr(route, "path", None) or "unmatched"
            log.info("%s %s %d %.1fms", scope["method"], scope["path"], status["code"], elapsed * 1000)
            if self.metrics is not None:
                self.metrics.observe_request(scope["method"], template, status["code"], elapsed)
            request_id_var.reset(token)
