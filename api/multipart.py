"""A streaming ``multipart/form-data`` reader: the ``file`` part goes straight to a `Staging` file (hashed and
size-checked as it arrives), the small text fields are kept; nothing is buffered whole."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.requests import ClientDisconnect

from videopipe.errors import BadRequest
from videopipe.library import Library, Staging

MAX_FIELD_BYTES = 64 * 1024
# The only text field kept; any other is read past without keeping a byte (thousands of fields must not add up).
TEXT_FIELDS = frozenset({"options"})
MAX_PARTS = 16
MAX_BOUNDARY = 200


async def read_multipart(
    content_type: str, body: AsyncIterator[bytes], library: Library
) -> tuple[Staging | None, dict[str, str]]:
    ctype, params = parse_options_header(content_type)
    boundary = params.get(b"boundary")
    if ctype != b"multipart/form-data" or not boundary:
        raise BadRequest("send the video as multipart/form-data with the field `file` (or JSON with `path`/`url`)")
    if len(boundary) > MAX_BOUNDARY:  # RFC 2046: 1 to 70 characters; the parser refuses more than 256
        raise BadRequest(f"the multipart boundary is longer than {MAX_BOUNDARY} characters; use a shorter one")

    state: dict[str, Any] = {"headers": {}, "field": b"", "value": b"", "name": None, "target": None}
    fields: dict[str, bytearray] = {}
    staged: list[Staging] = []

    def on_part_begin() -> None:
        state["headers"], state["name"], state["target"] = {}, None, None
        state["parts"] = state.get("parts", 0) + 1
        if state["parts"] > MAX_PARTS:
            raise BadRequest(f"the form has more than {MAX_PARTS} parts; send the field `file` (and `options`)")

    def header_bytes(data: bytes) -> None:
        state["header_bytes"] = state.get("header_bytes", 0) + len(data)
        if state["header_bytes"] > MAX_FIELD_BYTES:
            raise BadRequest(f"the form's part headers are too long (over {MAX_FIELD_BYTES} bytes)")

    def on_header_field(data: bytes, start: int, end: int) -> None:
        header_bytes(data[start:end])
        state["field"] += data[start:end]

    def on_header_value(data: bytes, start: int, end: int) -> None:
        header_bytes(data[start:end])
        state["value"] += data[start:end]

    def on_header_end() -> None:
        state["headers"][state["field"].lower()] = state["value"]
        state["field"], state["value"] = b"", b""

    def on_headers_finished() -> None:
        _, disp = parse_options_header(state["headers"].get(b"content-disposition", b""))
        name = disp.get(b"name", b"").decode("utf-8", "replace")
        state["name"] = name
        if name == "file":
            if staged:
                raise BadRequest("send one `file` part per request")
            filename = disp.get(b"filename", b"upload").decode("utf-8", "replace")
            staged.append(library.staging(filename))
            state["target"] = staged[0]
        elif name in TEXT_FIELDS:
            if name in fields:
                raise BadRequest(f"send the form field {name!r} once")
            fields[name] = bytearray()

    def on_part_data(data: bytes, start: int, end: int) -> None:
        if state["target"] is not None:
            state["target"].write(data[start:end])
            return
        buf = fields.get(state["name"] or "")
        if buf is not None:
            buf += data[start:end]
            if len(buf) > MAX_FIELD_BYTES:
                raise BadRequest(f"the form field {state['name']!r} is too long (over {MAX_FIELD_BYTES} bytes)")

    parser = MultipartParser(
        boundary,
        {
            "on_part_begin": on_part_begin,
            "on_header_field": on_header_field,
            "on_header_value": on_header_value,
            "on_header_end": on_header_end,
            "on_headers_finished": on_headers_finished,
            "on_part_data": on_part_data,
        },
    )
    try:
        async for chunk in body:
            parser.write(chunk)
        parser.finalize()
    except (ValueError, ClientDisconnect) as exc:  # malformed multipart, or the connection dropped
        for s in staged:
            s.discard()
        raise BadRequest(f"the multipart body could not be read ({type(exc).__name__}: {exc}); send it again") from None
    except BaseException:
        for s in staged:
            s.discard()
        raise
    text = {k: v.decode("utf-8", "replace") for k, v in fields.items()}
    return (staged[0] if staged else None), text
