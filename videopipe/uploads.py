"""Resumable uploads, the server side of tus 1.0 (core protocol + creation + termination extensions).

The bytes received so far live in ``DATA_DIR/uploads/<id>.part``; the offset is in the database and only ever
moves to what is safely on disk, so a connection dropped mid-PATCH keeps every byte that arrived and the client
resumes from there (HEAD). When the last byte arrives the file is checked and ingested like any upload, and the
partial file is gone either way.

One PATCH at a time per upload, whichever server process or replica it reaches: a PATCH first *claims* the
upload with one conditional UPDATE (the offset must match and no live claim may be there) and holds the claim,
renewed as it goes, until its bytes are saved and, on the last bytes, the video is ingested. A second PATCH is
refused at once (409); a holder that died leaves a claim that runs out after `CLAIM_LEASE_S`.
"""

from __future__ import annotations

import base64
import binascii
import logging
import os
import shutil
import time
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from videopipe.config import Settings
from videopipe.db.models import new_id, utcnow
from videopipe.db.repos import uploads as repo
from videopipe.errors import BadRequest, Conflict, NotFound, too_large
from videopipe.library import Ingested, Library, safe_filename

log = logging.getLogger(__name__)

TUS_VERSION = "1.0.0"
TUS_EXTENSIONS = "creation,termination"
# A claim lasts this long unless renewed; holders renew (and save the offset) far more often than that, so only
# a holder that died lets it run out.
CLAIM_LEASE_S = 30.0
# A holder stops writing when its last successful renewal is older than this: past it, the claim may have run
# out in the database and another request may own the file.
CLAIM_TRUST_S = CLAIM_LEASE_S - 10.0


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


@dataclass
class Claim:
    """This request's hold on an upload: bytes may be written while `trusted`."""

    upload_id: str
    tenant: str
    token: str
    offset: int  # where this PATCH starts
    length: int
    renewed_at: float = field(default_factory=time.monotonic)
    lost: bool = False

    @property
    def trusted(self) -> bool:
        return not self.lost and time.monotonic() - self.renewed_at < CLAIM_TRUST_S


@dataclass(frozen=True)
class Completed:
    """An upload whose last bytes arrived and whose video was ingested (a repeated final PATCH is answered so)."""

    video_id: str
    length: int


def _lost(upload_id: str) -> Conflict:
    return Conflict(f"upload {upload_id} was taken over by another request; HEAD it for the offset and go on")


class Uploads:
    def __init__(self, settings: Settings, sessions: sessionmaker[Session], library: Library) -> None:
        self.settings = settings
        self.sessions = sessions
        self.library = library  # a finished upload is ingested like any file

    @property
    def folder(self) -> Path:
        path = self.settings.data_dir / "uploads"
        path.mkdir(parents=True, exist_ok=True)
        return path

    def part_path(self, upload_id: str) -> Path:
        return self.folder / f"{upload_id}.part"

    def create(self, tenant: str, length: int, filename: str | None, options: dict[str, Any]) -> str:
        """A new upload of `length` bytes. `options`: analysis options, already validated by the caller."""
        if length < 0:
            raise BadRequest("Upload-Length must be a whole number of bytes, 0 or more")
        if length > self.settings.limits.max_file_bytes:
            raise too_large(self.settings.limits.max_file_bytes)
        with self.sessions.begin() as s:
            upload_id = repo.create(s, tenant, length, safe_filename(filename), options)
        self.part_path(upload_id).touch()
        return upload_id

    def get(self, tenant: str, upload_id: str) -> dict[str, Any]:
        with self.sessions() as s:
            row = repo.get(s, tenant, upload_id)
            return {"id": row.id, "length": row.length, "offset": row.offset, "filename": row.filename,
                    "complete": row.offset >= row.length, "video_id": row.video_id}  # fmt: skip

    # -- one PATCH: claim, write, save, complete ----------------------------------------------------------------
    def claim(self, tenant: str, upload_id: str, offset: int) -> Claim | Completed:
        """Take the upload for a PATCH at `offset`, or refuse at once: `Conflict` while another request holds it
        or when the offset is not the upload's. A PATCH at the end of an upload already ingested gets `Completed`
        (the client did not hear the answer to its last PATCH and asks again)."""
        token, now = new_id(), utcnow()
        with self.sessions.begin() as s:
            taken = repo.claim(s, tenant, upload_id, offset, token, now + timedelta(seconds=CLAIM_LEASE_S), now)
            row = repo.get(s, tenant, upload_id)
            length, current, video_id = row.length, row.offset, row.video_id
            held = row.claim != token and repo.held(row, now)
        if taken:
            return Claim(upload_id, tenant, token, offset, length)
        if video_id is not None:
            if offset == length:
                return Completed(video_id, length)
            raise Conflict(f"upload {upload_id} is complete (video {video_id}); its Upload-Offset is {length}")
        if held:
            raise Conflict(f"upload {upload_id} is receiving another PATCH; wait for it to end, then HEAD the "
                           "upload for the offset")  # fmt: skip
        raise Conflict(f"Upload-Offset {offset} does not match the {current} bytes received; HEAD the upload and "
                       "send from there")  # fmt: skip

    def open_part(self, claim: Claim) -> int:
        """The partial file, open for writing at the claim's offset (bytes past the saved offset were never
        confirmed and are dropped), as an unbuffered descriptor: nothing is written behind the claim's back."""
        path = self.part_path(claim.upload_id)
        if claim.offset > 0 and not path.exists():
            self._remove(claim.tenant, claim.upload_id)
            raise NotFound(f"upload {claim.upload_id}: the bytes received so far are gone; start a new upload")
        fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
        try:
            os.ftruncate(fd, claim.offset)
            os.lseek(fd, claim.offset, os.SEEK_SET)
        except BaseException:
            os.close(fd)
            raise
        return fd

    def save(self, claim: Claim, fd: int, offset: int, release: bool = False) -> None:
        """Make the bytes up to `offset` durable and record them, renewing the claim, or with `release` letting
        it go in the same statement (a client that sees the new offset can go on at once). `Conflict` when the
        claim is no longer this request's."""
        os.fsync(fd)
        self._renew(claim, offset=offset, release=release)

    def renew(self, claim: Claim) -> None:
        self._renew(claim)

    def _renew(self, claim: Claim, offset: int | None = None, release: bool = False) -> None:
        values: dict[str, Any] = {"claim_until": utcnow() + timedelta(seconds=CLAIM_LEASE_S)}
        if release:
            values = {"claim": None, "claim_until": None}
        if offset is not None:
            values["offset"] = offset
        with self.sessions.begin() as s:
            kept = repo.update_claimed(s, claim.tenant, claim.upload_id, claim.token, **values)
        if not kept:
            claim.lost = True
            raise _lost(claim.upload_id)
        claim.renewed_at = time.monotonic()

    def release(self, claim: Claim) -> None:
        with self.sessions.begin() as s:
            repo.update_claimed(s, claim.tenant, claim.upload_id, claim.token, claim=None, claim_until=None)

    def complete(self, claim: Claim) -> Ingested:
        """Ingest a finished upload while holding its claim. Afterwards the upload records its video (a repeated
        final PATCH is answered from it); when ingesting fails, the upload and its bytes are gone."""
        upload_id = claim.upload_id
        with self.sessions() as s:
            row = repo.get(s, claim.tenant, upload_id)
            filename, options = row.filename, dict(row.options or {})
        final = self.folder / upload_id / filename
        part = self.part_path(upload_id)
        if not part.exists() and not final.exists():
            self._remove(claim.tenant, upload_id)
            raise NotFound(f"upload {upload_id}: the bytes received are gone; start a new upload")
        final.parent.mkdir(exist_ok=True)
        try:
            if part.exists():  # else a holder that died while ingesting had moved it already
                os.replace(part, final)
            ingested = self.library.ingest_file(final, claim.tenant, options)
        except BaseException:
            self._remove(claim.tenant, upload_id)
            raise
        finally:
            shutil.rmtree(final.parent, ignore_errors=True)
        with self.sessions.begin() as s:
            repo.record_video(s, claim.tenant, upload_id, ingested.video_id)
        return ingested

    # -- removing ---------------------------------------------------------------------------------------------
    def terminate(self, tenant: str, upload_id: str) -> None:
        """tus termination: the upload and its bytes go, unless a PATCH is under way (`Conflict`)."""
        now = utcnow()
        with self.sessions.begin() as s:
            if not repo.delete_unclaimed(s, tenant, upload_id, now):
                repo.get(s, tenant, upload_id)
                raise Conflict(f"upload {upload_id} is receiving a PATCH; abandon it once that ends")
        self._remove_files(upload_id)

    def _remove(self, tenant: str, upload_id: str) -> None:
        with self.sessions.begin() as s:
            repo.remove(s, tenant, upload_id)
        self._remove_files(upload_id)

    def _remove_files(self, upload_id: str) -> None:
        self.part_path(upload_id).unlink(missing_ok=True)
        shutil.rmtree(self.folder / upload_id, ignore_errors=True)

    def expire(self) -> int:
        """Remove uploads not touched within `api.upload_expiry_s` (and their bytes)."""
        now = utcnow()
        cutoff = now - timedelta(seconds=self.settings.api.upload_expiry_s)
        with self.sessions.begin() as s:
            ids = repo.expire_all_tenants(s, cutoff, now)
        for upload_id in ids:
            self._remove_files(upload_id)
        return len(ids)

    def sweep(self, max_age_s: float) -> int:
        """Remove files no upload owns, untouched for `max_age_s`: ``<id>.part`` without its row (the row went
        but the process died before the file did), and ``<id>/`` folders of ingestions that died part way.
        Returns how many went."""
        cutoff, now = time.time() - max_age_s, utcnow()
        candidates: dict[str, list[Path]] = {}
        for entry in self.folder.iterdir():
            try:
                if entry.is_symlink() or entry.stat().st_mtime >= cutoff:
                    continue
                if entry.is_dir() and any(p.stat().st_mtime >= cutoff for p in entry.iterdir()):
                    continue
            except OSError:  # removed meanwhile by its own request
                continue
            if entry.is_dir() or entry.suffix == ".part":
                candidates.setdefault(entry.name.removesuffix(".part"), []).append(entry)
        if not candidates:
            return 0
        with self.sessions() as s:
            rows = repo.by_ids_all_tenants(s, candidates)
            busy = {i for i, r in rows.items() if repo.held(r, now)}
        removed = 0
        for upload_id, paths in candidates.items():
            for path in paths:
                if path.is_dir() and upload_id not in busy:
                    shutil.rmtree(path, ignore_errors=True)
                elif not path.is_dir() and upload_id not in rows:
                    path.unlink(missing_ok=True)
                else:
                    continue
                removed += 1
        if removed:
            log.info("removed %d leftover upload file(s) from %s", removed, self.folder)
        return removed


class Appender:
    """Writes a PATCH's bytes at the end of the partial file, never past the upload's length, and only while
    the claim is trusted."""

    def __init__(self, fd: int, claim: Claim) -> None:
        self._fd, self.claim, self.offset, self.length = fd, claim, claim.offset, claim.length

    def write(self, data: bytes) -> None:
        if self.offset + len(data) > self.length:
            raise BadRequest(f"the PATCH carries more bytes than Upload-Length ({self.length}) allows")
        if not self.claim.trusted:
            raise _lost(self.claim.upload_id)
        view = memoryview(data)
        while view:
            view = view[os.write(self._fd, view) :]
        self.offset += len(data)

    @property
    def done(self) -> bool:
        return self.offset >= self.length
