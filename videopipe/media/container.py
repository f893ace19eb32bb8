"""The one way videopipe opens a media file: uploads are untrusted, and FFmpeg will follow whatever a file says.

FFmpeg's demuxers for playlists and scripts (HLS, DASH, concat, SDP, image sequences, tee...) open further inputs
named inside the file: another tenant's stored original, ``/etc/passwd`` as raw video, or a URL on the internal
network. `open_media` therefore opens every container with

- an allow-list of demuxers that read only the file itself (`ALLOWED_DEMUXERS`), enforced by FFmpeg after it has
  probed the first bytes and *before* the demuxer reads its header, so a playlist's entries are never opened,
  whatever the file is called;
- ``protocol_whitelist=file``: no network protocol, no ``data:``/``subfile:``/``concat:`` tricks, for the file
  and anything a demuxer might try to open;
- MP4/MOV external data references switched off (``enable_drefs=0``, FFmpeg's default, made explicit);
- a cap on the number of streams the demuxer may create (``max_streams``) and on the bytes and time it may read
  while looking at the streams;
- every decoder limited to `LimitSettings.max_frame_pixels` (FFmpeg's ``max_pixels``, checked in the decoder
  itself when a frame buffer is allocated), one thread, during stream analysis and afterwards: a container that
  declares a small frame cannot make a decoder allocate a huge one.

The allow-list: MP4/MOV/3GP (``mov``), Matroska/WebM, AVI, MPEG transport and program streams (``mpegts``,
``mpeg``), FLV, ASF/WMV and Ogg. Left out on purpose: raw elementary streams (no timestamps), MXF (rarely uploaded,
large attack surface), images, and every format that names other inputs. Live sources will come through a
separate, operator-configured path, never through an upload.
"""

from __future__ import annotations

import errno
import logging
import os
from pathlib import Path
from typing import Any

import av
import av.error

from videopipe.config import LimitSettings
from videopipe.errors import NotAVideo, TruncatedVideo, UnsupportedContainer, UnsupportedVideo

log = logging.getLogger(__name__)

# FFmpeg demuxer names (each matches any name in a demuxer's comma-separated list, e.g. "mov,mp4,m4a,...").
ALLOWED_DEMUXERS = ("mov", "matroska", "avi", "mpegts", "mpeg", "flv", "asf", "ogg")

# Bytes and microseconds of media FFmpeg may read while working out the streams' parameters (its defaults).
_PROBE_BYTES = 5_000_000
_ANALYZE_US = 5_000_000


def container_options(limits: LimitSettings) -> dict[str, str]:
    """AVFormatContext options for an untrusted input."""
    return {
        "format_whitelist": ",".join(ALLOWED_DEMUXERS),
        "protocol_whitelist": "file",
        "enable_drefs": "0",
        "use_absolute_path": "0",
        "max_streams": str(limits.max_streams + 1),  # one more than allowed, so the count can be reported
        "probesize": str(_PROBE_BYTES),
        "analyzeduration": str(_ANALYZE_US),
    }


def decoder_options(limits: LimitSettings, threads: int = 1) -> dict[str, str]:
    """AVCodecContext options every decoder of an untrusted input gets."""
    return {"max_pixels": str(limits.max_frame_pixels), "threads": str(threads)}


def open_media(path: str | os.PathLike[str], limits: LimitSettings, name: str | None = None) -> Any:
    """Open `path` for reading as an untrusted file; the caller closes the container (or uses ``with``).

    Raises `UnsupportedContainer` for formats outside the allow-list (playlists, scripts, images...), `NotAVideo`
    for what is no media at all, `TruncatedVideo` for an MP4 without its index, `UnsupportedVideo` past the
    stream limit. `name`: how to call the file in messages (default: its own name).
    """
    p = Path(path)
    label = name or p.name
    try:
        container = av.open(
            str(p),
            metadata_errors="ignore",
            container_options=container_options(limits),
            # Applied to each stream's decoder while FFmpeg analyses the streams (formats that declare their
            # streams up front; the others create them while reading, with FFmpeg's own one-thread decoders).
            options=decoder_options(limits),
        )
    except av.error.FFmpegError as exc:
        raise _refusal(p, label, exc, limits) from None
    except ValueError as exc:  # PyAV's own checks on what FFmpeg returned
        raise NotAVideo(f"{label}: FFmpeg cannot read this file ({exc}); convert it to MP4 (H.264)") from None
    try:
        n_streams = len(container.streams)
        if n_streams > limits.max_streams:
            raise UnsupportedVideo(_too_many_streams(label, limits))
        for stream in container.streams:
            if stream.codec_context is not None:
                stream.codec_context.options = {**decoder_options(limits), **(stream.codec_context.options or {})}
    except BaseException:
        container.close()
        raise
    return container


def limit_decoder(stream: Any, limits: LimitSettings, threads: int = 0, **extra: str) -> None:
    """Set the per-decoder limits (and `threads`: 0 lets FFmpeg choose) before the first packet is decoded."""
    options = {**decoder_options(limits, threads), **extra}
    stream.codec_context.options = options
    if threads:
        stream.thread_count = threads


def _too_many_streams(label: str, limits: LimitSettings) -> str:
    return (
        f"{label}: the file has more than {limits.max_streams} streams (video, audio, subtitles); keep the ones "
        "you need (ffmpeg -i IN -map 0:v:0 -map 0:a:0? -c copy OUT.mp4) or raise VIDEOPIPE_LIMITS__MAX_STREAMS"
    )


def _refusal(p: Path, label: str, exc: av.error.FFmpegError, limits: LimitSettings) -> Exception:
    """Turn FFmpeg's refusal to open `p` into an error that says what the file is and what to do."""
    code = getattr(exc, "errno", None)
    try:
        with p.open("rb") as fh:
            head = fh.read(4096)
    except OSError:
        head = b""
    what = describe_head(head)
    if what is not None:
        kind, text = what
        if kind == "reference":
            return UnsupportedContainer(
                f"{label}: this is {text}, which names other files or URLs to read; videopipe never follows "
                "them, from an upload or a local file. Give it the video file itself (to join segments: "
                "ffmpeg -i IN.m3u8 -c copy OUT.mp4 on your own machine)"
            )
        return NotAVideo(f"{label}: this is {text}, not a video; upload the video file itself")
    if code == errno.ENOMEM:
        return UnsupportedVideo(_too_many_streams(label, limits))
    if head[4:8] in (b"ftyp", b"mdat", b"free", b"wide", b"skip"):
        return TruncatedVideo(
            f"{label}: the MP4/MOV index (moov box) is missing, so the file was most likely cut off during "
            "upload, copy or recording; copy the complete file again"
        )
    if code == errno.EINVAL:
        # The format was recognised but is not on the allow-list (the whitelist check answers EINVAL).
        return UnsupportedContainer(
            f"{label}: this container format is not one videopipe opens (it accepts MP4/MOV, Matroska/WebM, AVI, "
            "MPEG-TS/PS, FLV, ASF/WMV and Ogg); convert it: ffmpeg -i IN -c copy OUT.mkv"
        )
    reason = getattr(exc, "strerror", None) or type(exc).__name__
    return NotAVideo(
        f"{label}: not a video format FFmpeg recognises ({reason}); convert it to MP4 (H.264) and try again"
    )


# What a file that is not an allowed container looks like, from its first bytes: (kind, description). Kind
# "reference" marks formats that name other inputs (refused as such); "other" is media or data of another kind.
_SIGNATURES: tuple[tuple[bytes, str, str], ...] = (
    (b"#EXTM3U", "reference", "an HLS playlist (M3U8)"),
    (b"ffconcat", "reference", "an FFmpeg concat script"),
    (b"%PDF", "other", "a PDF document"),
    (b"\x89PNG", "other", "a PNG image"),
    (b"\xff\xd8\xff", "other", "a JPEG image"),
    (b"GIF8", "other", "a GIF image"),
    (b"BM", "other", "a BMP image"),
    (b"RIFF", "other", "a RIFF file that is not AVI (a WAV or WebP)"),
    (b"PK\x03\x04", "other", "a ZIP archive (or an Office document)"),
    (b"\x1f\x8b", "other", "a gzip archive"),
    (b"{\\rtf", "other", "an RTF document"),
)


def describe_head(head: bytes) -> tuple[str, str] | None:
    """What the first bytes of a file say it is, when that is not a video container we open."""
    stripped = head.lstrip(b"\xef\xbb\xbf \t\r\n")
    lowered = stripped[:512].lower()
    for magic, kind, what in _SIGNATURES:
        if stripped.startswith(magic):
            return kind, what
    if b"<mpd" in lowered or (lowered.startswith(b"<?xml") and b"<mpd" in head.lower()):
        return "reference", "a DASH manifest (MPD)"
    if lowered.startswith(b"<?xml") or lowered.startswith(b"<!doctype") or lowered.startswith(b"<html"):
        return "other", "an XML or HTML document"
    if stripped.startswith(b"v=0") and (b"\nm=" in stripped or b"\nc=" in stripped or b"\no=" in stripped):
        return "reference", "an SDP session description (a network stream)"
    if b"#EXT" in stripped[:64] or stripped.startswith(b"[playlist]"):
        return "reference", "a playlist"
    if head[4:8] in (b"ftyp", b"moov", b"mdat", b"free", b"wide") or head.startswith(b"\x1a\x45\xdf\xa3"):
        return None  # an MP4/MOV or Matroska: what is wrong with it is said elsewhere
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        return None
    if text and all(ch.isprintable() or ch in "\r\n\t" for ch in text):
        if any(line.strip().startswith(("file ", "file'", "http://", "https://", "/")) for line in text.splitlines()):
            return "reference", "a text list of files or URLs (a playlist or concat script)"
        return "other", "a text file"
    return None


__all__ = ["ALLOWED_DEMUXERS", "container_options", "decoder_options", "describe_head", "limit_decoder", "open_media"]
