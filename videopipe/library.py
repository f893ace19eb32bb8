"""A tenant's video library: ingest, list, read results, re-analyse, delete.

The service layer under the REST API and the CLI. Every call takes the tenant and only ever sees that tenant's
rows: another tenant's video is indistinguishable from one that does not exist (`NotFound`).
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from sqlalchemy.orm import Session, sessionmaker

from videopipe.config import Settings
from videopipe.db.models import Video, aware
from videopipe.db.repos import results, videos
from videopipe.errors import BadRequest, EmptyFile, NotFound, too_large
from videopipe.jobs import JobEngine
from videopipe.media.isolate import probe_isolated
from videopipe.media.probe import VideoInfo
from videopipe.storage import BlobStore
from videopipe.timefmt import fmt_time

log = logging.getLogger(__name__)

CHUNK = 1024 * 1024
STAGING_PREFIX = "incoming-"
# Longest server-side path, and longest name of one of its folders or files, accepted by path ingest (Linux's
# PATH_MAX and NAME_MAX): longer ones are refused up front instead of failing somewhere in the file system.
MAX_PATH_CHARS = 4096
MAX_NAME_BYTES = 255
# Containers (FFmpeg demuxer names) -> the Content-Type the original is served with. Only these are claimed;
# anything else is application/octet-stream. The mov demuxer reads MP4 and QuickTime alike, and browsers play
# both as video/mp4.
_CONTAINER_TYPES = {
    "mov,mp4,m4a,3gp,3g2,mj2": "video/mp4",
    "avi": "video/x-msvideo",
    "mpegts": "video/mp2t",
    "flv": "video/x-flv",
    "ogg": "video/ogg",
    "mpeg": "video/mpeg",
    "asf": "video/x-ms-asf",
    "mxf": "application/mxf",
    "dv": "video/x-dv",
}
_WEBM_CODECS = {"vp8", "vp9", "av1"}
_WEBM_AUDIO = {None, "opus", "vorbis"}


@dataclass(slots=True)
class Ingested:
    video_id: str
    job_id: str
    created: bool  # a new job was queued (False: the same video and settings were already queued or done)
    duplicate: bool  # these bytes were already in the tenant's library


def media_type_of(info: VideoInfo) -> str:
    """The Content-Type for a probed video, from its container and codecs: what it is, not what it is called."""
    if info.container == "matroska,webm":
        webm = info.codec in _WEBM_CODECS and info.audio_codec in _WEBM_AUDIO
        return "video/webm" if webm else "video/x-matroska"
    return _CONTAINER_TYPES.get(info.container, "application/octet-stream")


def s3_location(url: str, *, prefix: bool = False) -> tuple[str, list[str]]:
    """(bucket, key segments) of ``s3://BUCKET/KEY``. Refused: no bucket, empty, ``.`` or ``..`` segments (a
    trailing ``/`` is allowed for a prefix: it only says "this folder")."""
    rest = url[len("s3://") :] if url.startswith("s3://") else None
    bucket, _, key = (rest or "").partition("/")
    segments = key.split("/") if key else []
    if prefix and segments and segments[-1] == "":
        segments.pop()
    if rest is None or not bucket or any(seg in ("", ".", "..") for seg in segments):
        what = "prefix; use s3://BUCKET/PREFIX" if prefix else "object URL; use s3://BUCKET/KEY"
        raise BadRequest(f"{url}: not a valid S3 {what} (no empty, '.' or '..' path segments)")
    return bucket, segments


def s3_allowed(url: str, allowed: Iterable[str], *, prefix: bool = False) -> bool:
    """Whether `url` lies under one of the `allowed` prefixes: the same bucket and the prefix's whole path segments
    (``s3://media`` does not admit ``s3://media-private/...``, nor ``s3://media/a`` ``s3://media/ab``)."""
    bucket, segments = s3_location(url, prefix=prefix)
    for entry in allowed:
        try:
            a_bucket, a_segments = s3_location(entry, prefix=True)
        except BadRequest:
            continue  # a malformed operator entry admits nothing
        if bucket == a_bucket and segments[: len(a_segments)] == a_segments:
            return True
    return False


def check_server_path(path: str) -> None:
    """Refuse a client-supplied server path the file system cannot take: NUL or other control characters, or
    longer than the system allows (as a whole or one of its names)."""
    if any(ord(c) < 32 or ord(c) == 127 for c in path):
        raise BadRequest("the path contains a control character (such as NUL); send the file's path as text")
    if len(path) > MAX_PATH_CHARS:
        raise BadRequest(f"the path is longer than {MAX_PATH_CHARS} characters")
    if any(len(part.encode("utf-8", "surrogateescape")) > MAX_NAME_BYTES for part in path.split("/")):
        raise BadRequest(f"a folder or file name in the path is longer than {MAX_NAME_BYTES} bytes")


def safe_filename(name: str | None) -> str:
    """The last path component of a client-supplied name, with nothing that could climb out of a folder."""
    base = (name or "").replace("\\", "/").rsplit("/", 1)[-1].strip().lstrip(".")
    base = "".join(c for c in base if c.isprintable() and c not in '<>:"|?*')
    return _cut_utf8(base, _NAME_BYTES) or "upload"


# File systems allow 255 bytes per name (not characters: "é" is two, "视" three); leave room for suffixes.
_NAME_BYTES = 200


def _cut_utf8(name: str, limit: int) -> str:
    """`name` in at most `limit` UTF-8 bytes, its extension kept."""
    if len(name.encode()) <= limit:
        return name
    stem, dot, ext = name.rpartition(".")
    if not dot or len(ext.encode()) > 16:
        stem, ext = name, ""
    tail = f".{ext}" if ext else ""
    room = limit - len(tail.encode())
    return stem.encode()[:room].decode("utf-8", "ignore").rstrip() + tail


class Staging:
    """A file being received: bytes are written as they arrive, hashed on the way, and refused past a limit.

    Lives in its own temporary folder under the file's own name, so errors from probing it name the user's file.
    """

    def __init__(self, root: Path, filename: str, max_bytes: int) -> None:
        root.mkdir(parents=True, exist_ok=True)
        self.dir = Path(tempfile.mkdtemp(prefix=STAGING_PREFIX, dir=root))
        self.path = self.dir / safe_filename(filename)
        self.max_bytes = max_bytes
        self.size = 0
        self._hash = hashlib.sha256()
        try:
            self._file: IO[bytes] | None = self.path.open("wb")
        except OSError as exc:
            shutil.rmtree(self.dir, ignore_errors=True)
            raise BadRequest(f"the file name cannot be stored ({exc.strerror}); send a shorter, plainer name") from None

    def write(self, data: bytes) -> None:
        self.size += len(data)
        if self.size > self.max_bytes:
            raise too_large(self.max_bytes)
        self._hash.update(data)
        assert self._file is not None
        self._file.write(data)

    def finish(self) -> str:
        """Close the file; the SHA-256 of its bytes."""
        if self._file is not None:
            self._file.close()
            self._file = None
        return self._hash.hexdigest()

    def discard(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
        shutil.rmtree(self.dir, ignore_errors=True)


class Library:
    def __init__(self, settings: Settings, sessions: sessionmaker[Session], store: BlobStore, jobs: JobEngine) -> None:
        self.settings = settings
        self.sessions = sessions
        self.store = store
        self.jobs = jobs

    # -- ingest --------------------------------------------------------------------------------------------
    @property
    def incoming_dir(self) -> Path:
        return self.settings.data_dir / "incoming"

    def staging(self, filename: str | None) -> Staging:
        return Staging(self.incoming_dir, safe_filename(filename), self.settings.limits.max_file_bytes)

    def ingest_staged(self, staged: Staging, tenant: str, options: dict[str, Any] | None = None) -> Ingested:
        """Queue a received file. The staged copy is removed either way: a refused upload leaves nothing behind."""
        try:
            content_hash = staged.finish()
            return self.ingest_file(staged.path, tenant, options, content_hash=content_hash)
        finally:
            staged.discard()

    def ingest_file(
        self, path: Path, tenant: str, options: dict[str, Any] | None = None, content_hash: str | None = None
    ) -> Ingested:
        """Check `path` is a video videopipe can read (empty, not a video, audio only, truncated, absurd: refused
        with the reason), then store and queue it."""
        if path.stat().st_size == 0:
            raise EmptyFile(f"{path.name}: the upload is empty (0 bytes); send the video's bytes")
        info = probe_isolated(path, self.settings.limits)  # untrusted bytes: a limited child process reads them
        sub = self.jobs.submit(path, tenant, options, filename=path.name, content_hash=content_hash,
                                   media_type=media_type_of(info))  # fmt: skip
        return Ingested(sub.video_id, sub.job_id, sub.created, duplicate=not sub.new_video)

    def ingest_stream(
        self, chunks: Iterable[bytes], filename: str, tenant: str, options: dict[str, Any] | None = None
    ) -> Ingested:
        staged = self.staging(filename)
        try:
            for chunk in chunks:
                staged.write(chunk)
        except BaseException:
            staged.discard()
            raise
        return self.ingest_staged(staged, tenant, options)

    def ingest_path(self, path: str, tenant: str, options: dict[str, Any] | None = None) -> Ingested:
        """A file already on the server, inside one of the allowed folders (VIDEOPIPE_API__INGEST_DIRS). The video
        is named as the caller named it: a symlink's target never shows."""
        resolved = self.allowed_path(path)
        try:
            f = resolved.open("rb") if resolved.is_file() else None
        except OSError as exc:  # unreadable: said with the path as given (the error's own names the target)
            raise BadRequest(f"{path}: the file cannot be read ({exc.strerror or type(exc).__name__})") from None
        if f is None:
            raise NotFound(f"{path}: no such file in the allowed folders; check the path")
        with f:
            return self.ingest_stream(iter(lambda: f.read(CHUNK), b""), Path(path).name or "upload", tenant, options)

    def allowed_path(self, path: str) -> Path:
        """`path`, resolved, when it (after following symlinks) lies inside an allowed folder; refused with the
        same message whether it is outside, leads outside through a symlink, or does not exist there."""
        dirs = self.settings.api.ingest_dirs
        if not dirs:
            raise BadRequest(
                "ingesting server-side paths is switched off; upload the file, or ask the operator to set "
                "VIDEOPIPE_API__INGEST_DIRS"
            )
        check_server_path(path)
        try:
            roots = [Path(d).resolve() for d in dirs]
            resolved = Path(path).resolve()
        except (OSError, ValueError, RuntimeError):  # a symlink loop, a name the system refuses
            resolved = None
        if resolved is None or not any(resolved == r or r in resolved.parents for r in roots):
            raise BadRequest(f"{path}: not inside an allowed folder ({', '.join(dirs)})")
        return resolved

    def allowed_files(self, path: str, suffixes: Iterable[str], limit: int) -> list[str]:
        """The files to ingest for `path` (a file, or a folder walked for files with one of `suffixes`), as the
        caller would name them: `path` itself, or `path` joined with the name inside it. A symlink is followed
        only to find out whether it stays inside the allowed folders; one leading out is refused when ingested,
        with the message of any outside path."""
        resolved = self.allowed_path(path)
        wanted = {s.lower() for s in suffixes}
        try:
            if resolved.is_file():
                return [path]
            if not resolved.is_dir():
                raise NotFound(f"{path}: no such file or folder in the allowed folders; check the path")
            found: list[str] = []
            for dirpath, dirnames, filenames in os.walk(resolved):  # symlinked folders are not walked
                dirnames.sort()
                base = Path(dirpath).relative_to(resolved)
                for name in sorted(filenames):
                    if Path(name).suffix.lower() not in wanted:
                        continue
                    if not (Path(dirpath) / name).is_file():
                        continue
                    found.append(str(Path(path) / base / name))
                    if len(found) > limit:
                        raise BadRequest(f"more than {limit} files; split the batch")
            return found
        except OSError as exc:
            raise BadRequest(f"{path}: the folder cannot be read ({exc.strerror or type(exc).__name__})") from None

    def ingest_s3(self, url: str, tenant: str, options: dict[str, Any] | None = None) -> Ingested:
        """An object in S3 (or an S3-compatible store) under one of the allowed prefixes."""
        from videopipe.storage import read_s3_object

        if not s3_allowed(url, self.settings.api.ingest_s3_prefixes):
            raise BadRequest(
                f"{url}: not under an allowed S3 prefix; ask the operator to add it to "
                "VIDEOPIPE_API__INGEST_S3_PREFIXES"
            )
        name = safe_filename(url.rsplit("/", 1)[-1])
        with read_s3_object(url, self.settings) as body:
            return self.ingest_stream(iter(lambda: body.read(CHUNK), b""), name, tenant, options)

    def sweep_staging(self, max_age_s: float) -> int:
        """Remove staging folders of uploads nobody has written to for `max_age_s` (a killed or dropped request
        leaves its folder behind). Returns how many went."""
        root = self.incoming_dir
        if not root.is_dir():
            return 0
        cutoff = time.time() - max_age_s
        removed = 0
        for folder in root.glob(STAGING_PREFIX + "*"):
            try:
                if folder.is_symlink() or not folder.is_dir():
                    continue
                newest = max([folder.stat().st_mtime] + [p.stat().st_mtime for p in folder.iterdir()])
            except OSError:  # removed meanwhile by its own request
                continue
            if newest < cutoff:
                shutil.rmtree(folder, ignore_errors=True)
                removed += 1
        if removed:
            log.info("removed %d abandoned upload staging folder(s) from %s", removed, root)
        return removed

    # -- reading -------------------------------------------------------------------------------------------
    def list_videos(
        self, tenant: str, limit: int = 50, offset: int = 0, status: str | None = None
    ) -> tuple[list[dict[str, Any]], int]:
        with self.sessions() as s:
            rows, total = videos.list_videos(s, tenant, limit, offset, status)
            return [self._describe(s, v) for v in rows], total

    def get_video(self, tenant: str, video_id: str) -> dict[str, Any]:
        with self.sessions() as s:
            return self._describe(s, videos.get_video(s, tenant, video_id))

    def _describe(self, s: Session, video: Video) -> dict[str, Any]:
        job = videos.latest_job(s, video.tenant, video.id)
        return {
            "id": video.id,
            "filename": video.filename,
            "size_bytes": video.size_bytes,
            "content_hash": video.content_hash,
            "status": video.status,
            "stage": job.stage if job else None,
            "progress": round(100 * job.progress, 1) if job else 0.0,
            "job_id": job.id if job else None,
            "error_type": video.error_type,
            "error": video.error,
            "duration_s": video.duration_s,
            "width": video.width,
            "height": video.height,
            "fps": video.fps,
            "has_audio": video.has_audio,
            "media_type": video.media_type,
            "created_at": aware(video.created_at).isoformat(),
        }

    def document(self, tenant: str, video_id: str) -> dict[str, Any]:
        with self.sessions() as s:
            doc = results.document(s, tenant, video_id)
        for k in doc["keyframes"]:
            k.pop("blob_key", None)
            k["image"] = f"keyframes/{k['index']}.jpg"
        return doc

    def rows(self, tenant: str, video_id: str, kind: str) -> list[dict[str, Any]]:
        """chapters, events, transcript or scenes of a video, in time order, with formatted times."""
        fields = {
            "chapters": ("start_s", "end_s", "title", "summary", "source"),
            "events": ("start_s", "end_s", "label", "description", "bbox", "source"),
            "transcript": ("start_s", "end_s", "text", "language"),
            "scenes": ("index", "start_s", "end_s", "caption"),
        }[kind]
        with self.sessions() as s:
            out = []
            for r in videos.result_rows(s, tenant, video_id, kind):
                item = {f: getattr(r, f) for f in fields}
                item["start"], item["end"] = fmt_time(r.start_s), fmt_time(r.end_s)
                out.append(item)
            return out

    @contextmanager
    def keyframe(self, tenant: str, video_id: str, n: int) -> Iterator[IO[bytes]]:
        with self.sessions() as s:
            key = videos.keyframe_key(s, tenant, video_id, n)
        if key is None:
            raise NotFound(f"video {video_id} has no keyframe {n}; its analysis lists the keyframes it has")
        with self.store.open(key) as f:
            yield f

    def original_path(self, tenant: str, video_id: str) -> Path | None:
        """The original as a local file when the blob store is a folder (served with byte ranges), else None."""
        from videopipe.storage import LocalBlobStore

        with self.sessions() as s:
            key = videos.get_video(s, tenant, video_id).blob_key
        if key.startswith("external:"):
            return None  # the local library's files are the user's own: not served over HTTP
        if isinstance(self.store, LocalBlobStore):
            path = self.store.root / key
            return path if path.is_file() else None
        return None

    @contextmanager
    def open_original(self, tenant: str, video_id: str) -> Iterator[IO[bytes]]:
        with self.sessions() as s:
            key = videos.get_video(s, tenant, video_id).blob_key
        if key.startswith("external:"):
            raise NotFound(f"video {video_id} is a local-library file; open it from disk")
        with self.store.open(key) as f:
            yield f

    # -- changing ------------------------------------------------------------------------------------------
    def reanalyze(self, tenant: str, video_id: str, options: dict[str, Any] | None = None) -> Ingested:
        with self.sessions() as s:
            video = videos.get_video(s, tenant, video_id)
            blob_key, filename = video.blob_key, video.filename
            previous = videos.latest_job(s, tenant, video_id)
            merged = {**(previous.options if previous else {}), **(options or {})}
        with self.jobs.original(blob_key) as original:
            sub = self.jobs.submit(original, tenant, merged, filename=filename, force=True)
        return Ingested(sub.video_id, sub.job_id, sub.created, duplicate=True)

    def delete_video(self, tenant: str, video_id: str) -> None:
        """The video's rows (every table, by cascade), its keyframes, its original unless another tenant holds
        the same bytes, and its search-index entries."""
        with self.sessions.begin() as s:
            deleted = videos.delete_video(s, tenant, video_id)
        self.store.delete_prefix(f"keyframes/{video_id}/")
        if not deleted.shared and not deleted.blob_key.startswith("external:"):  # the user's own file stays
            self.store.delete_prefix(deleted.blob_key)
        from videopipe.index import vector_index

        vector_index(self.settings, self.sessions).remove(deleted.moment_ids)
        log.info("deleted video %s of tenant %s", video_id, tenant)
