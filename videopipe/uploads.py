"""Resumable uploads, the server side of tus 1.0 (core protocol + creation + termination extensions).

The bytes received so far live in ``DATA_DIR/uploads/<id>.part``; the offset is in the database and only ever
moves to what is safely on disk, so a connection dropped mid-PATCH keeps every byte that arrived and the client
resumes from there (HEAD). When the last byte arrives the file is checked and ingested like any upload, and the
partial file is gone either way.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import IO, Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from videopipe.db.models import Upload, utcnow
from videopipe.errors import BadRequest, Conflict, NotFound
from videopipe.library import Ingested, Library, safe_filename, too_large

log = logging.getLogger(__name__)

TUS_VERSION = "1.0.0"
TUS_EXTENSIONS = "creation,termination"


def parse_metadata(header: str | None) -> dict[str, str]:
    """``Upload-Metadata: key base64,key2 base64`` (values optional) to a dict of text."""
    out: dict[str, str] = {}
    for pair in (header or "").split(","):
        pair = pair.strip()
        if not pair:
            continue
        key, _, value = pair.partition(" ")
        try:
            out[key] = base64.b64decode(value.strip(), validate=True).decode("utf-8") if value.strip() else ""
        except (binascii.Error, UnicodeDecodeError):
            raise BadRequest(f"Upload-Metadata: the value of {key!r} is not base64-encoded UTF-8") from None
    return out


class Uploads:
    def __init__(self, library: Library) -> None:
        self.library = library
        self.sessions = library.sessions
        self.settings = library.settings
        self._locks: dict[str, threading.Lock] = {}
        self._locks_guard = threading.Lock()

    @property
    def folder(self) -> Path:
        path = self.settings.data_dir / "uploads"
        path.mkdir(parents=True, exist_ok=True)
        return path

    def part_path(self, upload_id: str) -> Path:
        return self.folder / f"{upload_id}.part"

    def create(self, tenant: str, length: int, metadata: dict[str, str]) -> str:
        if length < 0:
            raise BadRequest("Upload-Length must be a whole number of bytes, 0 or more")
        if length > self.settings.limits.max_file_bytes:
            raise too_large(self.settings.limits.max_file_bytes)
        options: dict[str, Any] = {}
        if metadata.get("options"):
            try:
                options = json.loads(metadata["options"])
            except json.JSONDecodeError:
                raise BadRequest("Upload-Metadata: options must be a JSON object") from None
            if not isinstance(options, dict):
                raise BadRequest("Upload-Metadata: options must be a JSON object")
        filename = safe_filename(metadata.get("filename") or metadata.get("name"))
        with self.sessions.begin() as s:
            row = Upload(tenant=tenant, length=length, offset=0, filename=filename, options=options)
            s.add(row)
            s.flush()
            upload_id = row.id
        self.part_path(upload_id).touch()
        return upload_id

    def get(self, tenant: str, upload_id: str) -> dict[str, Any]:
        with self.sessions() as s:
            row = self._row(s, tenant, upload_id)
            return {"id": row.id, "length": row.length, "offset": row.offset, "filename": row.filename,
                    "complete": row.offset >= row.length, "video_id": row.video_id}  # fmt: skip

    def _row(self, s: Session, tenant: str, upload_id: str) -> Upload:
        row = s.get(Upload, upload_id)
        if row is None or row.tenant != tenant:
            raise NotFound(f"no upload {upload_id}; start a new one with POST /v1/uploads")
        return row

    @contextmanager
    def _locked(self, upload_id: str) -> Iterator[None]:
        with self._locks_guard:
            lock = self._locks.setdefault(upload_id, threading.Lock())
        if not lock.acquire(timeout=30):
            raise Conflict(f"upload {upload_id} is receiving another PATCH; wait for it, then HEAD for the offset")
        try:
            yield
        finally:
            lock.release()

    @contextmanager
    def appending(self, tenant: str, upload_id: str, offset: int) -> Iterator[Appender]:
        """Open the upload for bytes at `offset`. The offset is saved when the block exits, even when the
        connection dropped part way (only whole, flushed bytes count)."""
        with self._locked(upload_id):
            with self.sessions() as s:
                row = self._row(s, tenant, upload_id)
                length, current = row.length, row.offset
            if offset != current:
                raise Conflict(f"Upload-Offset {offset} does not match the {current} bytes received; HEAD the "
                               "upload and send from there")  # fmt: skip
            path = self.part_path(upload_id)
            with path.open("r+b" if path.exists() else "wb") as f:
                f.seek(current)
                f.truncate()
                appender = Appender(f, current, length)
                try:
                    yield appender
                finally:
                    f.flush()
                    os.fsync(f.fileno())
                    with self.sessions.begin() as s:
                        if (saved := s.get(Upload, upload_id)) is not None:
                            saved.offset = appender.offset

    def complete(self, tenant: str, upload_id: str) -> Ingested:
        """Ingest a finished upload. Whatever the outcome, the partial file and the upload are gone after."""
        with self.sessions() as s:
            row = self._row(s, tenant, upload_id)
            filename, options = row.filename, dict(row.options or {})
        final = self.folder / upload_id / filename
        final.parent.mkdir(exist_ok=True)
        try:
            os.replace(self.part_path(upload_id), final)
            ingested = self.library.ingest_file(final, tenant, options)
        except BaseException:
            self.terminate(tenant, upload_id)
            raise
        finally:
            final.unlink(missing_ok=True)
            final.parent.rmdir()
        with self.sessions.begin() as s:
            if (done := s.get(Upload, upload_id)) is not None:
                done.video_id = ingested.video_id
        return ingested

    def terminate(self, tenant: str, upload_id: str) -> None:
        with self.sessions.begin() as s:
            s.delete(self._row(s, tenant, upload_id))
        self.part_path(upload_id).unlink(missing_ok=True)

    def expire(self) -> int:
        """Remove uploads not touched within `api.upload_expiry_s` (and their bytes)."""
        cutoff = utcnow() - timedelta(seconds=self.settings.api.upload_expiry_s)
        with self.sessions.begin() as s:
            old = s.scalars(select(Upload).where(Upload.updated_at < cutoff, Upload.video_id.is_(None))).all()
            ids = [r.id for r in old]
            for r in old:
                s.delete(r)
        for upload_id in ids:
            self.part_path(upload_id).unlink(missing_ok=True)
        return len(ids)


class Appender:
    def __init__(self, f: IO[bytes], offset: int, length: int) -> None:
        self._f, self.offset, self.length = f, offset, length

    def write(self, data: bytes) -> None:
        if self.offset + len(data) > self.length:
            raise BadRequest(f"the PATCH carries more bytes than Upload-Length ({self.length}) allows")
        self._f.write(data)
        self.offset += len(data)

    @property
    def done(self) -> bool:
        return self.offset >= self.length
