"""The exception tree. Every error a user can cause carries a one-line message naming the problem and what
to do about it, and a stable ``type`` slug that the API turns into an RFC 9457 problem type.

    VideopipeError
    ├── InputError                 the user's input is at fault; retrying will not help
    │   ├── VideoNotFound          no such file
    │   ├── EmptyFile              zero bytes
    │   ├── NotAVideo              not a media file at all (text, PDF, image...)
    │   ├── NoVideoStream          a media file without pictures (audio only)
    │   ├── TruncatedVideo         the file stops before its own index says it should
    │   ├── UndecodableVideo       a video stream, but not one frame decodes
    │   ├── UnsupportedVideo       decodes, but outside the limits (absurd size, length)
    │   ├── UnsupportedContainer   a format videopipe does not open (playlists, scripts: they name other inputs)
    │   ├── TooLarge               an upload over the size limit
    │   └── BadRequest             a request that cannot be read (bad header, offset, field, path)
    ├── NotFound                   no such video, job, upload or key for this tenant
    │   └── BlobMissing            the database names a stored file the blob store does not have
    ├── Unauthorized               no API key, or one that is not valid
    ├── Conflict                   the request clashes with the resource's state (a tus offset that moved on)
    ├── Busy                       too much concurrent work right now (probing uploads); try again shortly
    ├── ConfigError                a setting or option is wrong or names something missing
    │   └── MissingExtra           an optional part is not installed (names the pip extra)
    └── VLMError                   the understanding model could not do its part
        ├── VLMUnavailable         no server answers, or the model/backend cannot load (transient or setup)
        └── VLMRequestRejected     the server refused this request (context too long, too many images...)
"""

from __future__ import annotations


class VideopipeError(Exception):
    """Base class. ``str(error)`` is the user-facing one-line message."""

    type = "error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InputError(VideopipeError):
    """The input itself is wrong; the same input will fail the same way again."""

    type = "invalid-input"


class VideoNotFound(InputError):
    type = "video-not-found"


class EmptyFile(InputError):
    type = "empty-file"


class NotAVideo(InputError):
    type = "not-a-video"


class NoVideoStream(InputError):
    type = "no-video-stream"


class TruncatedVideo(InputError):
    type = "truncated-video"


class UndecodableVideo(InputError):
    type = "undecodable-video"


class UnsupportedVideo(InputError):
    type = "unsupported-video"


class UnsupportedContainer(InputError):
    type = "unsupported-container"


class TooLarge(InputError):
    type = "too-large"


def too_large(limit: int) -> TooLarge:
    """A video larger than the server accepts (`limits.max_file_bytes`), however it came in."""
    return TooLarge(
        f"the upload is larger than this server accepts ({limit:,} bytes); split the video or ask the operator "
        "to raise VIDEOPIPE_LIMITS__MAX_FILE_BYTES"
    )


class BadRequest(InputError):
    type = "bad-request"


class NotFound(VideopipeError):
    type = "not-found"


class BlobMissing(NotFound):
    """A file the database points at is not in the blob store (lost, or deleted behind our back)."""

    type = "stored-file-missing"


class Unauthorized(VideopipeError):
    type = "unauthorized"


class Conflict(VideopipeError):
    type = "conflict"


class Busy(VideopipeError):
    """The server is at a limit of concurrent work; the same request later will work."""

    type = "busy"

    def __init__(self, message: str, retry_after_s: int = 30) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class ConfigError(VideopipeError):
    type = "configuration"


class MissingExtra(ConfigError):
    """An optional part is not installed; `extra` names the pip extra that brings it."""

    def __init__(self, what: str, extra: str) -> None:
        super().__init__(f"{what} is not installed: pip install 'videopipe[{extra}]'")
        self.extra = extra


class VLMError(VideopipeError):
    type = "vlm-error"


class VLMUnavailable(VLMError):
    type = "vlm-unavailable"


class VLMRequestRejected(VLMError):
    type = "vlm-request-rejected"
