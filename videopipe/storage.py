"""Blob store for originals, keyframes and index files: a local folder (default) or S3-compatible storage.

Everything streams: files are copied in chunks, uploads to S3 go multipart, reads are file-like objects. No
call reads a whole video into memory. Keys are relative paths with forward slashes ("originals/<hash>.mp4").
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any, Protocol
from urllib.parse import urlparse

from videopipe.config import Settings
from videopipe.errors import BadRequest, BlobMissing, ConfigError, NotFound, too_large

CHUNK = 1024 * 1024


class BlobStore(Protocol):
    url: str

    def put_file(self, key: str, path: Path) -> None:
        """Store the file at `path` under `key` (atomically: readers see the old object or the new one)."""

    def open(self, key: str) -> IO[bytes]:
        """A binary file object to read `key` from (close it when done)."""

    @contextmanager
    def local_path(self, key: str) -> Iterator[Path]:
        """A local path holding `key` while the context lasts (a temporary copy for remote stores)."""
        yield Path()  # pragma: no cover - protocol

    def exists(self, key: str) -> bool: ...

    def delete_prefix(self, prefix: str) -> int:
        """Delete the key `prefix` and every key under the folder `prefix/` (whole path segments: deleting
        ``originals/abc`` never touches ``originals/abc.mp4``); returns how many."""


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _check_key(key: str) -> str:
    parts = Path(key).parts
    if not key or key.startswith("/") or ".." in parts:
        raise ValueError(f"invalid blob key {key!r}")
    return key


class LocalBlobStore:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.url = str(root)
        root.mkdir(parents=True, exist_ok=True)

    def _path(self, key: str) -> Path:
        return self.root / _check_key(key)

    def put_file(self, key: str, path: Path) -> None:
        target = self._path(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".put-")
        try:
            with os.fdopen(fd, "wb") as out, path.open("rb") as src:
                shutil.copyfileobj(src, out, CHUNK)
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def open(self, key: str) -> IO[bytes]:
        try:
            return self._path(key).open("rb")
        except FileNotFoundError:
            raise _missing(key) from None

    @contextmanager
    def local_path(self, key: str) -> Iterator[Path]:
        path = self._path(key)
        if not path.is_file():
            raise _missing(key)
        yield path

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def delete_prefix(self, prefix: str) -> int:
        base = self._path(prefix.rstrip("/"))
        if base.is_file():
            base.unlink()
            return 1
        if not base.is_dir():
            return 0
        count = sum(1 for p in base.rglob("*") if p.is_file())
        shutil.rmtree(base)
        return count


class S3BlobStore:
    """Any S3-compatible store (AWS, MinIO, Ceph...). Credentials and endpoint come from the usual AWS
    environment variables; ``VIDEOPIPE_S3_ENDPOINT_URL`` points at a non-AWS endpoint."""

    def __init__(self, bucket: str, prefix: str = "", endpoint_url: str | None = None, client: Any = None) -> None:
        import boto3

        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.url = f"s3://{bucket}/{self.prefix}"
        self._s3 = client or boto3.client(
            "s3", endpoint_url=endpoint_url or os.environ.get("VIDEOPIPE_S3_ENDPOINT_URL")
        )

    def _key(self, key: str) -> str:
        key = _check_key(key)
        return f"{self.prefix}/{key}" if self.prefix else key

    def put_file(self, key: str, path: Path) -> None:
        self._s3.upload_file(str(path), self.bucket, self._key(key))  # multipart for large files

    def open(self, key: str) -> IO[bytes]:
        with _s3_missing(key):
            body: IO[bytes] = self._s3.get_object(Bucket=self.bucket, Key=self._key(key))["Body"]
        return body

    @contextmanager
    def local_path(self, key: str) -> Iterator[Path]:
        suffix = Path(key).suffix
        with tempfile.TemporaryDirectory(prefix="vp-blob-") as tmp:
            target = Path(tmp) / f"blob{suffix}"
            with _s3_missing(key):
                self._s3.download_file(self.bucket, self._key(key), str(target))
            yield target

    def exists(self, key: str) -> bool:
        from botocore.exceptions import ClientError

        try:
            self._s3.head_object(Bucket=self.bucket, Key=self._key(key))
        except ClientError:
            return False
        return True

    def delete_prefix(self, prefix: str) -> int:
        full = self._key(prefix.rstrip("/"))
        count = 0
        paginator = self._s3.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.bucket, Prefix=full):
            # S3 prefixes are strings: another tenant's "originals/<hash>.mp4" starts with "originals/<hash>".
            contents = page.get("Contents", [])
            keys = [{"Key": o["Key"]} for o in contents if o["Key"] == full or o["Key"].startswith(full + "/")]
            if keys:
                self._s3.delete_objects(Bucket=self.bucket, Delete={"Objects": keys})
                count += len(keys)
        return count


@contextmanager
def read_s3_object(url: str, settings: Settings) -> Iterator[IO[bytes]]:
    """A streaming body for s3://bucket/key, with a clear error when the object is missing or unreadable."""
    parsed = urlparse(url)
    if parsed.scheme != "s3" or not parsed.netloc or not parsed.path.strip("/"):
        raise BadRequest(f"{url}: not an S3 object URL; use s3://BUCKET/KEY")
    with _s3_errors(url, "read", ("NoSuchKey", "NoSuchBucket", "404"), "no such object; check the bucket and key"):
        obj = _s3_client().get_object(Bucket=parsed.netloc, Key=parsed.path.lstrip("/"))
    if obj.get("ContentLength", 0) > settings.limits.max_file_bytes:
        obj["Body"].close()
        raise too_large(settings.limits.max_file_bytes)
    try:
        yield obj["Body"]
    finally:
        obj["Body"].close()


def list_s3_objects(prefix_url: str, limit: int) -> list[str]:
    """The s3:// URLs of the objects under `prefix_url` (s3://BUCKET/PREFIX), sorted, at most `limit`."""
    parsed = urlparse(prefix_url)
    if parsed.scheme != "s3" or not parsed.netloc:
        raise BadRequest(f"{prefix_url}: not an S3 prefix; use s3://BUCKET/PREFIX")
    urls: list[str] = []
    with _s3_errors(prefix_url, "listing", ("NoSuchBucket", "404"), "no such bucket; check the URL"):
        pages = _s3_client().get_paginator("list_objects_v2").paginate(Bucket=parsed.netloc,
                                                                        Prefix=parsed.path.lstrip("/"))  # fmt: skip
        for page in pages:
            for obj in page.get("Contents", []):
                if not obj["Key"].endswith("/"):
                    urls.append(f"s3://{parsed.netloc}/{obj['Key']}")
                if len(urls) > limit:
                    raise BadRequest(f"{prefix_url}: more than {limit} objects; split the batch")
    return sorted(urls)


def _s3_client() -> Any:
    import boto3

    return boto3.client("s3", endpoint_url=os.environ.get("VIDEOPIPE_S3_ENDPOINT_URL"))


@contextmanager
def _s3_errors(url: str, doing: str, missing: tuple[str, ...], missing_detail: str) -> Iterator[None]:
    """S3 failures as the user's errors: missing → NotFound, refused or unreachable → BadRequest."""
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        yield
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "")
        if code in missing:
            raise NotFound(f"{url}: {missing_detail}") from None
        raise BadRequest(f"{url}: S3 refused the {doing} ({code}); check the server's credentials") from None
    except BotoCoreError as exc:
        raise BadRequest(f"{url}: S3 could not be reached ({exc})") from None


def _missing(key: str) -> BlobMissing:
    return BlobMissing(
        f"the stored file {key} is missing from the blob store; upload the video again (an operator may restore it)"
    )


@contextmanager
def _s3_missing(key: str) -> Iterator[None]:
    """A key S3 does not have → `BlobMissing`; any other failure is the operator's to see (it propagates)."""
    from botocore.exceptions import ClientError

    try:
        yield
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code", "") in ("NoSuchKey", "404", "NotFound"):
            raise _missing(key) from None
        raise


def open_store(settings: Settings) -> BlobStore:
    url = settings.storage_url or str(settings.data_dir / "blobs")
    parsed = urlparse(url)
    if parsed.scheme == "s3":
        if not parsed.netloc:
            raise ConfigError(f"VIDEOPIPE_STORAGE_URL={url} names no bucket; use s3://BUCKET/PREFIX")
        return S3BlobStore(parsed.netloc, parsed.path)
    if parsed.scheme in ("", "file"):
        return LocalBlobStore(Path(parsed.path if parsed.scheme == "file" else url).expanduser())
    raise ConfigError(f"VIDEOPIPE_STORAGE_URL={url}: use a folder path or s3://BUCKET/PREFIX")
