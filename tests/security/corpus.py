"""Hostile and malformed media files for the security tests, each with what the service must answer.

`build_corpus(folder)` writes every file (deterministically: seeded, FFmpeg's bitexact flags, no clocks) and returns
`Entry` records: the name the file is uploaded under, its class, what it is, and the `Expected` outcome. Pictures
come from real photographs shipped inside an installed package (scikit-learn's sample images), with a synthetic
texture only where those are missing.

Classes: ``playlist`` (files naming other inputs: HLS, DASH, concat, SDP, image sequences), ``huge-dimensions``,
``timestamps``, ``streams``, ``damaged``, ``not-video``, and ``control`` (well-formed files that must be accepted, so
a server refusing everything cannot pass).

Some files name things only known once the server runs (tenant B's stored original, the loopback listener): their
bytes carry ``@@NAME@@`` placeholders and `Entry.materialise` fills them in (see `PLACEHOLDERS`).

Run ``python -m tests.security.corpus OUT_DIR`` to build the corpus and print its table.
"""

from __future__ import annotations

import importlib.util
import random
import shutil
import struct
import subprocess
import sys
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from fractions import Fraction
from pathlib import Path
from typing import Literal

import av
import numpy as np
from PIL import Image

# ---------------------------------------------------------------------------------------------------------------
# Expected outcomes

# Problem types of the input-error family (`videopipe.errors.InputError` and its subclasses), as known when this
# was written; the tests add any subclass the code defines later (`input_error_types()`).
INPUT_ERROR_TYPES = frozenset({
    "invalid-input", "empty-file", "not-a-video", "no-video-stream", "truncated-video", "undecodable-video",
    "unsupported-video", "unsupported-container",
})  # fmt: skip
ANY_INPUT_ERROR: frozenset[str] = frozenset({"*"})  # any type of the input-error family (resolved by the tests)

NOT_MEDIA = frozenset({"not-a-video", "unsupported-container"})
OUT_OF_LIMITS = frozenset({"unsupported-video", "undecodable-video"})
TOO_MANY_STREAMS = frozenset({"unsupported-video", "unsupported-container"})

Accept = Literal["never", "sane", "ready"]


@dataclass(frozen=True, slots=True)
class Expected:
    """What the service must do with a file.

    refused_as: problem types a refusal may carry (`ANY_INPUT_ERROR`: any of the input-error family). A refusal is
        always a 4xx ``application/problem+json`` whose status is the one the type maps to (415 for not-a-video,
        422 for the rest of the family), never a 5xx.
    accept: "never" - the upload must be refused; "sane" - it may be accepted, but the analysis must then end
        `failed` with an input-error type and a message, or `ready` with a duration inside `duration_s`;
        "ready" - it must be accepted and end `ready` with a duration inside `duration_s`.
    within_s: the time an accepted file's analysis may take, from the upload to the final status.
    """

    refused_as: frozenset[str]
    accept: Accept = "never"
    duration_s: tuple[float, float] | None = None
    within_s: float = 60.0
    why: str = ""

    def describe(self) -> str:
        types = "any input error" if self.refused_as == ANY_INPUT_ERROR else " | ".join(sorted(self.refused_as))
        if self.accept == "never":
            return f"refused: {types}"
        span = f"{self.duration_s[0]:g}-{self.duration_s[1]:g} s" if self.duration_s else "any duration"
        if self.accept == "ready":
            return f"accepted, ready with {span} (within {self.within_s:g} s)"
        return f"refused ({types}) or accepted and ends failed cleanly / ready with {span} (within {self.within_s:g} s)"


def refuse(types: frozenset[str], why: str = "") -> Expected:
    return Expected(types, "never", why=why)


def refuse_or_sane(span: tuple[float, float], within_s: float = 60.0, why: str = "") -> Expected:
    return Expected(ANY_INPUT_ERROR, "sane", span, within_s, why)


# ---------------------------------------------------------------------------------------------------------------
# Entries

# Placeholders the tests fill in: tenant B's stored original (absolute path, and its file name in
# DATA_DIR/blobs/originals/), and the loopback listener ("127.0.0.1:PORT", and the port alone).
PLACEHOLDERS = ("VICTIM_BLOB_ABS", "VICTIM_BLOB_NAME", "LOOPBACK", "LOOPBACK_PORT")


@dataclass(frozen=True, slots=True)
class Entry:
    name: str  # the file name it is uploaded under (unique; the test id)
    cls: str
    expected: Expected
    about: str
    needs: tuple[str, ...] = ()  # placeholders in the bytes
    path: Path = Path()  # set by `build_corpus`

    def materialise(self, folder: Path, values: dict[str, str]) -> Path:
        """The file with its placeholders filled in (itself when it has none), under its own name in `folder`."""
        if not self.needs:
            return self.path
        data = self.path.read_bytes()
        for key in self.needs:
            data = data.replace(f"@@{key}@@".encode(), values[key].encode())
        assert b"@@" not in data, f"{self.name}: a placeholder was left unfilled"
        folder.mkdir(parents=True, exist_ok=True)
        out = folder / self.name
        out.write_bytes(data)
        return out


@dataclass(slots=True)
class Corpus:
    folder: Path
    entries: list[Entry] = field(default_factory=list)
    secret_ts: Path = Path()  # a local video that no upload may read
    secret_mp4: Path = Path()
    victim: Path = Path()  # tenant B's video (the test uploads it; its stored original is what playlists aim at)
    victim_duration_s: float = 0.0
    victim_size: tuple[int, int] = (0, 0)
    photos_from: str = ""
    build_s: float = 0.0

    def by_name(self, name: str) -> Entry:
        return next(e for e in self.entries if e.name == name)

    def table(self) -> str:
        rows = [f"{'name':34} {'class':16} {'bytes':>9}  expected"]
        for e in self.entries:
            size = e.path.stat().st_size if e.path.exists() else 0
            rows.append(f"{e.name:34} {e.cls:16} {size:>9}  {e.expected.describe()}")
        return "\n".join(rows)


# ---------------------------------------------------------------------------------------------------------------
# Pictures


def _photo_paths() -> list[Path]:
    """Real photographs inside installed packages (found without importing them)."""
    found: list[Path] = []
    spec = importlib.util.find_spec("sklearn")
    for root in (spec.submodule_search_locations or []) if spec else []:
        found += [Path(root) / "datasets" / "images" / n for n in ("china.jpg", "flower.jpg")]
    return [p for p in found if p.is_file()]


def _synthetic_photo(seed: int, w: int = 640, h: int = 427) -> np.ndarray:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    img = np.empty((h, w, 3), np.float32)
    for c in range(3):
        fx, fy, ph = [*rng.uniform(0.005, 0.05, 2).tolist(), rng.uniform(0, 6.28)]
        img[..., c] = 128 + 60 * np.sin(xx * fx + ph) * np.cos(yy * fy) + rng.normal(0, 18, (h, w))
    return np.clip(img, 0, 255).astype(np.uint8)


def load_photos() -> tuple[list[np.ndarray], str]:
    paths = _photo_paths()
    if len(paths) >= 2:
        return [np.asarray(Image.open(p).convert("RGB")) for p in paths], ", ".join(str(p) for p in paths)
    return [_synthetic_photo(1), _synthetic_photo(2)], "synthetic textures (no photographs found)"


def _cover(photo: np.ndarray, w: int, h: int) -> np.ndarray:
    """`photo` scaled to cover w x h with a margin to pan over."""
    ph, pw = photo.shape[:2]
    scale = max((w + 64) / pw, (h + 48) / ph)
    if abs(scale - 1) < 1e-3:
        return photo
    img = Image.fromarray(photo).resize((round(pw * scale), round(ph * scale)), Image.Resampling.BILINEAR)
    return np.asarray(img)


def _pan(photo: np.ndarray, w: int, h: int, i: int) -> np.ndarray:
    ph, pw = photo.shape[:2]
    x = (2 * i) % max(1, pw - w)
    y = i % max(1, ph - h)
    return np.ascontiguousarray(photo[y : y + h, x : x + w])


# ---------------------------------------------------------------------------------------------------------------
# Writers

BITEXACT = {"fflags": "+bitexact"}


def _ffmpeg(*args: str) -> None:
    exe = shutil.which("ffmpeg")
    if exe is None:
        raise RuntimeError("the ffmpeg CLI is missing: run scripts/install-system-deps.sh")
    subprocess.run(
        [exe, "-hide_banner", "-loglevel", "error", "-nostdin", "-y", *args],
        check=True,
        capture_output=True,
    )


def write_photo_video(
    path: Path,
    photos: list[np.ndarray],
    *,
    seconds: float = 2.0,
    fps: int = 25,
    size: tuple[int, int] = (640, 360),
    fmt: str | None = None,
    options: dict[str, str] | None = None,
    time_of: Callable[[float], float] | None = None,
    stream_options: dict[str, str] | None = None,
    keep_dts: bool = False,
) -> Path:
    """H.264 (no B-frames) panning over the photos, a hard cut half way. `time_of(t)` moves frame times: each
    packet is stamped `time_of(t)` seconds instead of t (timestamp jumps, wraps, offsets). `keep_dts`: only the
    presentation times move (muxers refuse decoding times that go backwards; Matroska stores only the former)."""
    w, h = size
    frames = round(seconds * fps)
    covers = [_cover(p, w, h) for p in photos[:2]]
    tb = Fraction(1, 90000)
    with av.open(str(path), "w", format=fmt, options={**BITEXACT, **(options or {})}) as out:
        stream = out.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        stream.codec_context.time_base = Fraction(1, fps)
        stream.codec_context.gop_size = fps
        stream.codec_context.options = {"preset": "ultrafast", "bf": "0", "crf": "28", **(stream_options or {})}

        def mux(packets: list[av.Packet]) -> None:
            for packet in packets:
                if time_of is not None and packet.pts is not None:
                    t = packet.pts / fps
                    packet.time_base = tb
                    packet.pts = round(time_of(t) * 90000)
                    packet.dts = round(t * 90000) if keep_dts else packet.pts
                out.mux(packet)

        for i in range(frames):
            photo = covers[0] if i < frames // 2 else covers[-1]
            frame = av.VideoFrame.from_ndarray(_pan(photo, w, h, i), format="rgb24")
            frame.pts = i
            mux(stream.encode(frame))
        mux(stream.encode())
    return path


def write_black_h264(path: Path, size: tuple[int, int], fps: int, frames: int) -> Path:
    w, h = size
    yuv = np.zeros((h * 3 // 2, w), np.uint8)
    yuv[h:] = 128
    with av.open(str(path), "w", options=BITEXACT) as out:
        stream = out.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        stream.codec_context.options = {"preset": "ultrafast", "bf": "0"}
        for i in range(frames):
            frame = av.VideoFrame.from_numpy_buffer(yuv, format="yuv420p")
            frame.pts = i
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path


def write_ffv1_gray(path: Path, side: int) -> Path:
    """One flat grey FFV1 frame, side x side (Golomb-Rice coding: a few KB whatever the size)."""
    with av.open(str(path), "w", options=BITEXACT) as out:
        stream = out.add_stream("ffv1", rate=1)
        stream.width, stream.height, stream.pix_fmt = side, side, "gray"
        stream.codec_context.options = {"coder": "0", "level": "1"}
        frame = av.VideoFrame.from_ndarray(np.full((side, side), 90, np.uint8), format="gray")
        frame.pts = 0
        for packet in [*stream.encode(frame), *stream.encode()]:
            out.mux(packet)
    return path


def _png_chunk(tag: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)


def flat_png(w: int, h: int, rgb: tuple[int, int, int]) -> bytes:
    """A flat-colour RGB PNG of any size in well under a second: row 0 holds the colour, every other row is
    filtered "Up" (all zeros). Runs of identical rows are deflated once and repeated (each run starts from a
    full flush, so it references nothing before it); the Adler-32 covers the real bytes."""
    row0 = b"\x00" + bytes(rgb) * w
    up = b"\x02" + bytes(3 * w)
    head = zlib.compressobj(9)
    parts = [head.compress(row0), head.flush(zlib.Z_FULL_FLUSH)]
    adler = zlib.adler32(row0)
    per = 256
    runs, rest = divmod(h - 1, per)

    def deflated(n: int) -> bytes:
        raw = zlib.compressobj(9, zlib.DEFLATED, -15)
        return raw.compress(up * n) + raw.flush(zlib.Z_FULL_FLUSH)

    if runs:
        parts.append(deflated(per) * runs)
        block = up * per
        for _ in range(runs):
            adler = zlib.adler32(block, adler)
    if rest:
        parts.append(deflated(rest))
        adler = zlib.adler32(up * rest, adler)
    parts.append(b"\x03\x00" + struct.pack(">I", adler))  # an empty final block, then the zlib checksum
    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    idat = _png_chunk(b"IDAT", b"".join(parts))
    return b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + idat + _png_chunk(b"IEND", b"")


def _jpeg_segment(marker: int, payload: bytes) -> bytes:
    return bytes([0xFF, marker]) + struct.pack(">H", len(payload) + 2) + payload


def flat_jpeg(w: int, h: int) -> bytes:
    """A mid-grey baseline JPEG of any size, 2 bits per 8x8 block: one-code Huffman tables (DC difference 0,
    end of block), so 16000x16000 is 1 MB of zero bytes."""
    assert w % 8 == 0 and h % 8 == 0
    one_code = bytes([1] + [0] * 15) + b"\x00"
    blocks = (w // 8) * (h // 8)
    return (
        b"\xff\xd8"
        + _jpeg_segment(0xDB, b"\x00" + bytes([1]) * 64)
        + _jpeg_segment(0xC0, struct.pack(">BHHB", 8, h, w, 1) + b"\x01\x11\x00")
        + _jpeg_segment(0xC4, b"\x00" + one_code)
        + _jpeg_segment(0xC4, b"\x10" + one_code)
        + _jpeg_segment(0xDA, b"\x01\x01\x00\x00\x3f\x00")
        + bytes((blocks * 2 + 7) // 8)
        + b"\xff\xd9"
    )


# A minimal Matroska writer: for what FFmpeg's muxer will not write (PNG tracks, a header that lies).


def _vint_size(n: int) -> bytes:
    for length in range(1, 9):
        if n < (1 << (7 * length)) - 1:
            return (n | (1 << (7 * length))).to_bytes(length, "big")
    raise ValueError(n)


def _ebml(element_id: int, payload: bytes) -> bytes:
    return element_id.to_bytes((element_id.bit_length() + 7) // 8, "big") + _vint_size(len(payload)) + payload


def _uint(element_id: int, value: int) -> bytes:
    return _ebml(element_id, value.to_bytes(max(1, (value.bit_length() + 7) // 8), "big"))


def write_mkv_png(path: Path, frames: list[tuple[int, bytes]], declared: tuple[int, int]) -> Path:
    """Matroska with one PNG video track (V_MS/VFW/FOURCC 'MPNG', as FFmpeg writes it) declaring `declared`
    width x height, whatever the PNGs hold; `frames`: (time in ms, PNG bytes). No Duration, no Cues."""
    w, h = declared
    bih = struct.pack("<IiiHHIIiiII", 40, w, h, 1, 24, int.from_bytes(b"MPNG", "little"), 0, 0, 0, 0, 0)
    header = _ebml(0x1A45DFA3, _uint(0x4286, 1) + _uint(0x42F7, 1) + _uint(0x42F2, 4) + _uint(0x42F3, 8)
                   + _ebml(0x4282, b"matroska") + _uint(0x4287, 4) + _uint(0x4285, 2))  # fmt: skip
    info = _ebml(0x1549A966, _uint(0x2AD7B1, 1_000_000) + _ebml(0x4D80, b"videopipe-tests") + _ebml(0x5741, b"corpus"))
    video = _ebml(0xE0, _uint(0xB0, w) + _uint(0xBA, h))
    track = _ebml(0xAE, _uint(0xD7, 1) + _uint(0x73C5, 1) + _uint(0x83, 1) + _uint(0x9C, 0)
                  + _ebml(0x86, b"V_MS/VFW/FOURCC") + _ebml(0x63A2, bih) + video)  # fmt: skip
    clusters = b"".join(
        _ebml(0x1F43B675, _uint(0xE7, t) + _ebml(0xA3, b"\x81\x00\x00\x80" + data)) for t, data in frames
    )
    body = info + _ebml(0x1654AE6B, track) + clusters
    path.write_bytes(header + _ebml(0x18538067, body))
    return path


def mux_packet_copy(path: Path, codec: str, pix_fmt: str, declared: tuple[int, int], payload: bytes) -> Path:
    """One packet of `payload` muxed as `codec` into a container that declares `declared` (PyAV, no decoding)."""
    with av.open(str(path), "w", options=BITEXACT) as out:
        stream = out.add_stream(codec, rate=1)
        stream.width, stream.height = declared
        stream.pix_fmt = pix_fmt
        packet = av.Packet(payload)
        packet.stream = stream
        packet.time_base = Fraction(1, 1)
        packet.pts = packet.dts = 0
        packet.duration = 1
        packet.is_keyframe = True
        out.mux(packet)
    return path


def write_tone(path: Path, seconds: float = 2.0) -> Path:
    from videopipe.testing.media import write_audio_only

    return write_audio_only(path, duration_s=seconds)


def flip_bits(data: bytes, seed: int, lo: int, hi: int, count: int) -> bytes:
    """`count` single-bit flips at seeded positions in data[lo:hi]."""
    rng = random.Random(seed)
    out = bytearray(data)
    for _ in range(count):
        pos = rng.randrange(lo, min(hi, len(out)))
        out[pos] ^= 1 << rng.randrange(8)
    return bytes(out)


def _video_packets(path: Path) -> list[tuple[int, int]]:
    with av.open(str(path)) as c:
        return [(p.pos, p.size) for p in c.demux(video=0) if p.size and p.pos is not None and p.pos >= 0]


def _strip_duration(path: Path) -> None:
    """Turn a Matroska file's segment Duration element into a Void of the same size."""
    data = bytearray(path.read_bytes())
    info = data.find(b"\x15\x49\xa9\x66")
    at = data.find(b"\x44\x89\x88", info)
    if info >= 0 and 0 <= at - info < 200:
        data[at : at + 11] = b"\xec\x89" + bytes(9)
        path.write_bytes(bytes(data))


# ---------------------------------------------------------------------------------------------------------------
# The corpus: what each file is and what must happen to it (static, so tests can be parametrised before building)

_REFS = refuse(NOT_MEDIA, "names other inputs: never opened, whatever its name")
_HUGE = refuse(OUT_OF_LIMITS, "over the frame-size or pixel-rate limit, read from the codec parameters before decoding")
_HIDDEN = refuse(OUT_OF_LIMITS, "the header lies: the decoders' max_pixels must stop the frame")
_STREAMS = refuse(TOO_MANY_STREAMS, "over the 32-stream limit, counted before decoding")
_V, _BLOB, _NAME, _NET, _PORT = (), ("VICTIM_BLOB_ABS",), ("VICTIM_BLOB_NAME",), ("LOOPBACK",), ("LOOPBACK_PORT",)

SPECS: tuple[Entry, ...] = (
    # -- playlist: formats that name other inputs
    Entry("hls-local-ts.m3u8", "playlist", _REFS,
          "HLS VOD playlist whose only segment is the absolute path of a local .ts (issue case a)"),
    Entry("hls-local-ts.mp4", "playlist", _REFS, "the same playlist bytes under an .mp4 name"),
    Entry("hls-victim-abs.m3u8", "playlist", _REFS,
          "HLS segments: tenant B's stored original by absolute path (plain and file://)", _BLOB),
    Entry("hls-victim-rel.m3u8", "playlist", _REFS,
          "HLS segments: tenant B's original as blobs/originals/<sha256>.mp4, ../blobs/..., ../../ and ../../../",
          _NAME),
    Entry("hls-victim-rel.mp4", "playlist", _REFS, "the relative-path playlist under an .mp4 name", _NAME),
    Entry("hls-loopback.m3u8", "playlist", _REFS, "HLS segment on the loopback HTTP listener (request forgery)", _NET),
    Entry("hls-master-loopback.m3u8", "playlist", _REFS,
          "HLS master playlist whose variant is on the loopback listener", _NET),
    Entry("dash-local.mpd", "playlist", _REFS, "DASH manifest whose BaseURL is the absolute path of a local .mp4"),
    Entry("dash-loopback.mpd", "playlist", _REFS, "DASH manifest whose BaseURL is on the loopback listener", _NET),
    Entry("concat-local.ffconcat", "playlist", _REFS, "ffconcat script naming a local .mp4 by absolute path"),
    Entry("concat-victim.mp4", "playlist", _REFS,
          "ffconcat script under an .mp4 name naming tenant B's original (absolute and relative)", _BLOB + _NAME),
    Entry("concat-loopback.ffconcat", "playlist", _REFS, "ffconcat script naming a URL on the loopback listener", _NET),
    Entry("session.sdp", "playlist", _REFS,
          "SDP description of an RTP stream on 127.0.0.1 (FFmpeg would listen and wait for packets)", _PORT),
    Entry("img%03d.jpg", "playlist", _REFS,
          "a real JPEG photo under an image-sequence pattern name (image2 looks for img000.jpg...)"),
    Entry("frame%d.mp4", "playlist", _REFS, "a PNG photo under a pattern name ending in .mp4"),
    # -- huge dimensions
    Entry("png-16000.mkv", "huge-dimensions", _HUGE,
          "one 16000x16000 RGB PNG frame in Matroska, 775 KB (issue case b: 768 MB once decoded)"),
    Entry("png-16000-lying.mkv", "huge-dimensions", _HIDDEN,
          "Matroska track header says 640x360, the PNG frame inside is 16000x16000"),
    Entry("mjpeg-16000.mkv", "huge-dimensions", _HUGE,
          "one 16000x16000 baseline JPEG frame (1 MB) as MJPEG in Matroska"),
    Entry("mjpeg-16000-lying.avi", "huge-dimensions", _HIDDEN,
          "AVI header says 640x360, the MJPEG frame is 16000x16000"),
    Entry("ffv1-8192.mkv", "huge-dimensions", _HUGE, "one 8192x8192 FFV1 frame (67 MP, twice the 8K limit) in 2.5 KB"),
    Entry("h264-8k60.mp4", "huge-dimensions", _HUGE,
          "black 7680x4320 H.264 at 60 fps: 2.0 Gpx/s, four times the 4K60 pixel rate (issue case c)"),
    Entry("h264-8192x8192.mp4", "huge-dimensions", _HUGE, "black 8192x8192 H.264 (67 MP frames, over the 8K limit)"),
    # -- timestamps
    Entry("pts-jump-1e7.mkv", "timestamps",
          refuse_or_sane((1.0, 3.0), 10.0, "refused (a jump > 3600 s), or analysed as ~2 s within 10 s of the upload"),
          "2 s H.264 Matroska without Duration; PTS jumps by 10^7 s after 1 s (issue case d)"),
    Entry("pts-jump-1e7.mp4", "timestamps", refuse_or_sane((1.0, 3.0), 10.0),
          "2 s H.264 MP4 whose sample table jumps by 10^7 s after 1 s (probes as 10^7 s long)"),
    Entry("pts-back-jump.mkv", "timestamps", refuse_or_sane((1.0, 3.0), 20.0),
          "2 s Matroska without Duration whose PTS jumps 5000 s backwards after 1 s"),
    Entry("ts-pts-wrap.ts", "timestamps",
          refuse_or_sane((1.0, 3.0), 20.0, "a 33-bit wrap is legal MPEG-TS (FFmpeg unwraps it); a refusal is accepted"),
          "2 s MPEG-TS starting 1 s before the 33-bit PTS wrap"),
    Entry("ts-splice-jump.ts", "timestamps", refuse_or_sane((1.0, 3.0), 20.0),
          "2 s MPEG-TS whose PTS jumps 20,000 s forward after 1 s (a splice; probes as 5.6 h)"),
    Entry("start-1e9.mkv", "timestamps",
          refuse_or_sane((1.0, 3.0), 30.0, "a far start alone is no gap (times are relative); a refusal is accepted"),
          "2 s Matroska without Duration whose first frame is at 10^9 s"),
    # -- streams
    Entry("streams-128-audio.mkv", "streams", _STREAMS, "1 video (320x180) + 127 AAC audio streams"),
    Entry("streams-201-subtitles.mkv", "streams", _STREAMS, "1 video + 200 SubRip subtitle streams"),
    Entry("streams-100-video.mkv", "streams", _STREAMS, "100 copies of one video stream"),
    Entry("streams-33.mkv", "streams", _STREAMS, "1 video + 32 audio streams: one over the limit"),
    Entry("streams-32.mkv", "streams", Expected(frozenset(), "ready", (1.8, 2.2), why="at the limit: accepted"),
          "1 video + 31 audio streams: exactly at the limit (boundary control)"),
    # -- damaged
    Entry("truncated-moov-end.mp4", "damaged", refuse(frozenset({"truncated-video", "undecodable-video"})),
          "MP4 with its index (moov) at the end, cut in half: no index at all"),
    Entry("truncated-faststart.mp4", "damaged", refuse(frozenset({"truncated-video", "undecodable-video"})),
          "MP4 with moov at the start, media data cut in half"),
    Entry("truncated.mkv", "damaged", refuse_or_sane((0.5, 2.2), why="half a Matroska file is a playable first second"),
          "Matroska cut in half"),
    Entry("ftyp-only.mp4", "damaged", refuse(frozenset({"truncated-video", "not-a-video", "undecodable-video"})),
          "nothing but the MP4 ftyp box (32 bytes)"),
    Entry("bitflip-head.mp4", "damaged", refuse_or_sane((0.5, 3.0), why="flipped header bits may break anything"),
          "24 seeded bit flips in the first 1 KB of an MP4 (ftyp, moov headers)"),
    Entry("bitflip-head.mkv", "damaged", refuse_or_sane((0.5, 3.0)),
          "24 seeded bit flips in the first 1 KB of a Matroska file"),
    Entry("bitflip-deep.mp4", "damaged", refuse_or_sane((1.5, 2.5), why="damaged frames mid-file: warnings, or failed"),
          "64 seeded bit flips in the middle of an MP4's media data"),
    Entry("bitflip-deep.mkv", "damaged", refuse_or_sane((1.5, 2.5)),
          "64 seeded bit flips in the middle of a Matroska file's clusters"),
    Entry("wiped-packets.mp4", "damaged", refuse(frozenset({"undecodable-video"})),
          "every video packet's payload replaced by junk start codes"),
    Entry("zero-length.mp4", "damaged", refuse(frozenset({"empty-file"})), "0 bytes"),
    Entry("random-bytes.mp4", "damaged", refuse(NOT_MEDIA | {"no-video-stream", "undecodable-video"}),
          "64 KiB of seeded random bytes"),
    # -- not video
    Entry("photo.png", "not-video", refuse(NOT_MEDIA), "a real photo as PNG"),
    Entry("photo-as.mp4", "not-video", refuse(NOT_MEDIA), "a real photo as JPEG under an .mp4 name"),
    Entry("animated.gif", "not-video", refuse(NOT_MEDIA), "animated GIF: 8 frames panning over a photo"),
    Entry("subtitles-only.mkv", "not-video", refuse(frozenset({"no-video-stream", "not-a-video"})),
          "Matroska holding one SubRip track and nothing else"),
    Entry("audio-only.m4a", "not-video", refuse(frozenset({"no-video-stream"})), "2 s of AAC in MP4, no picture"),
    Entry("notes.mp4", "not-video", refuse(NOT_MEDIA), "a text file under an .mp4 name"),
    Entry("page.html", "not-video", refuse(NOT_MEDIA), "an HTML page with a <video> tag"),
    Entry("slides.pdf", "not-video", refuse(NOT_MEDIA), "a PDF document"),
    # -- control
    Entry("control.mp4", "control", Expected(frozenset(), "ready", (1.9, 2.1), why="a clean video: must be analysed"),
          "2 s 640x360 H.264 over two photos (the base of the damaged files)"),
)  # fmt: skip

CLASSES = tuple(dict.fromkeys(e.cls for e in SPECS))


def spec(name: str) -> Entry:
    return next(e for e in SPECS if e.name == name)


_HLS = "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:3\n#EXT-X-MEDIA-SEQUENCE:0\n#EXT-X-PLAYLIST-TYPE:VOD\n"


def _hls(*segments: str) -> bytes:
    return (_HLS + "".join(f"#EXTINF:2.0,\n{s}\n" for s in segments) + "#EXT-X-ENDLIST\n").encode()


def _mpd(base_url: str) -> bytes:
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<MPD xmlns="urn:mpeg:dash:schema:mpd:2011" profiles="urn:mpeg:dash:profile:isoff-on-demand:2011"
     type="static" mediaPresentationDuration="PT2S" minBufferTime="PT1S">
  <Period id="0">
    <AdaptationSet mimeType="video/mp4" segmentAlignment="true">
      <Representation id="v0" bandwidth="400000" width="640" height="360" codecs="avc1.42c01e">
        <BaseURL>{base_url}</BaseURL>
      </Representation>
    </AdaptationSet>
  </Period>
</MPD>
""".encode()


def build_corpus(folder: Path) -> Corpus:
    """Write every file of `SPECS` under `folder`/files (and what they aim at under `folder`/support)."""
    started = time.monotonic()
    folder = Path(folder)
    files, support = folder / "files", folder / "support"
    for d in (files, support):
        d.mkdir(parents=True, exist_ok=True)
    photos, photos_from = load_photos()
    corpus = Corpus(folder, photos_from=photos_from)

    def out(name: str) -> Path:
        return files / name

    def put(name: str, data: bytes) -> None:
        out(name).write_bytes(data)

    # -- support files: what the hostile files aim at, and what they are made from ------------------------------
    corpus.secret_ts = write_photo_video(support / "secret.ts", photos[::-1], fmt="mpegts")
    corpus.secret_mp4 = write_photo_video(support / "secret.mp4", photos[::-1], options={"movflags": "+faststart"})
    corpus.victim_size, corpus.victim_duration_s = (480, 272), 3.2
    corpus.victim = write_photo_video(support / "victim.mp4", photos, seconds=3.2, size=(480, 272),
                                      options={"movflags": "+faststart"}, stream_options={"crf": "30"})  # fmt: skip
    base_mp4 = write_photo_video(support / "base.mp4", photos, options={"movflags": "+faststart"})
    base_moov_end = write_photo_video(support / "base-moov-end.mp4", photos)
    base_mkv = write_photo_video(support / "base.mkv", photos)
    small_mkv = write_photo_video(support / "small.mkv", photos, size=(320, 180), stream_options={"crf": "40"})
    tone = write_tone(support / "tone.m4a", 2.0)
    (srt := support / "subs.srt").write_text(
        "1\n00:00:00,000 --> 00:00:01,000\nfirst line\n\n2\n00:00:01,000 --> 00:00:02,000\nsecond line\n"
    )
    photo_jpeg = _jpeg_bytes(photos[0])

    # -- playlist -------------------------------------------------------------------------------------------------
    hls_local = _hls(str(corpus.secret_ts))
    put("hls-local-ts.m3u8", hls_local)
    put("hls-local-ts.mp4", hls_local)
    put("hls-victim-abs.m3u8", _hls("@@VICTIM_BLOB_ABS@@", "file://@@VICTIM_BLOB_ABS@@"))
    victim_rel = _hls(*(f"{'../' * n}blobs/originals/@@VICTIM_BLOB_NAME@@" for n in range(4)))
    put("hls-victim-rel.m3u8", victim_rel)
    put("hls-victim-rel.mp4", victim_rel)
    put("hls-loopback.m3u8", _hls("http://@@LOOPBACK@@/x.ts"))
    put(
        "hls-master-loopback.m3u8",
        b"#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=400000,RESOLUTION=640x360\nhttp://@@LOOPBACK@@/variant.m3u8\n",
    )
    put("dash-local.mpd", _mpd(str(corpus.secret_mp4)))
    put("dash-loopback.mpd", _mpd("http://@@LOOPBACK@@/v.mp4"))
    put("concat-local.ffconcat", f"ffconcat version 1.0\nfile '{corpus.secret_mp4}'\n".encode())
    put(
        "concat-victim.mp4",
        b"ffconcat version 1.0\nfile '@@VICTIM_BLOB_ABS@@'\nfile '../../blobs/originals/@@VICTIM_BLOB_NAME@@'\n",
    )
    put("concat-loopback.ffconcat", b"ffconcat version 1.0\nfile 'http://@@LOOPBACK@@/c.mp4'\n")
    put("session.sdp", b"v=0\no=- 0 0 IN IP4 127.0.0.1\ns=videopipe security test\nc=IN IP4 127.0.0.1\nt=0 0\n"
                       b"m=video @@LOOPBACK_PORT@@ RTP/AVP 96\na=rtpmap:96 H264/90000\n")  # fmt: skip
    put("img%03d.jpg", photo_jpeg)
    put("frame%d.mp4", _png_bytes(photos[1]))

    # -- huge dimensions ------------------------------------------------------------------------------------------
    big_png = flat_png(16000, 16000, (40, 90, 160))
    big_jpeg = flat_jpeg(16000, 16000)
    write_mkv_png(out("png-16000.mkv"), [(0, big_png)], (16000, 16000))
    write_mkv_png(out("png-16000-lying.mkv"), [(0, big_png)], (640, 360))
    mux_packet_copy(out("mjpeg-16000.mkv"), "mjpeg", "yuvj420p", (16000, 16000), big_jpeg)
    mux_packet_copy(out("mjpeg-16000-lying.avi"), "mjpeg", "yuvj420p", (640, 360), big_jpeg)
    write_ffv1_gray(out("ffv1-8192.mkv"), 8192)
    write_black_h264(out("h264-8k60.mp4"), (7680, 4320), 60, 12)
    write_black_h264(out("h264-8192x8192.mp4"), (8192, 8192), 2, 2)

    # -- timestamps -----------------------------------------------------------------------------------------------
    def after_1s(offset: float) -> Callable[[float], float]:
        return lambda t: t + (offset if t >= 1.0 - 1e-9 else 0.0)

    live = {"live": "1"}  # Matroska written as a live stream: no Duration, no Cues
    write_photo_video(out("pts-jump-1e7.mkv"), photos, options=live, time_of=after_1s(1e7))
    _strip_duration(out("pts-jump-1e7.mkv"))
    write_photo_video(out("pts-jump-1e7.mp4"), photos, time_of=after_1s(1e7),
                      options={"video_track_timescale": "100", "movflags": "+faststart"})  # fmt: skip
    write_photo_video(out("pts-back-jump.mkv"), photos, options=live, keep_dts=True,
                      time_of=lambda t: t + (5000.0 if t < 1.0 - 1e-9 else 0.0))  # fmt: skip
    wrap = 2**33 / 90000
    write_photo_video(out("ts-pts-wrap.ts"), photos, fmt="mpegts", time_of=lambda t: wrap - 1.0 + t)
    write_photo_video(out("ts-splice-jump.ts"), photos, fmt="mpegts", time_of=lambda t: 10.0 + after_1s(20000.0)(t))
    write_photo_video(out("start-1e9.mkv"), photos, options=live, time_of=lambda t: 1e9 + t)

    # -- streams --------------------------------------------------------------------------------------------------
    def many_streams(name: str, extra: list[str], inputs: list[Path]) -> None:
        args: list[str] = []
        for src in (small_mkv, *inputs):
            args += ["-i", str(src)]
        _ffmpeg(*args, "-map", "0:v", *extra, "-c", "copy", "-fflags", "+bitexact", str(out(name)))

    many_streams("streams-128-audio.mkv", ["-map", "1:a"] * 127, [tone])
    many_streams("streams-201-subtitles.mkv", ["-map", "1:s"] * 200, [srt])
    many_streams("streams-100-video.mkv", ["-map", "0:v"] * 99, [])
    many_streams("streams-33.mkv", ["-map", "1:a"] * 32, [tone])
    many_streams("streams-32.mkv", ["-map", "1:a"] * 31, [tone])

    # -- damaged --------------------------------------------------------------------------------------------------
    mp4, mp4_end, mkv = base_mp4.read_bytes(), base_moov_end.read_bytes(), base_mkv.read_bytes()
    put("truncated-moov-end.mp4", mp4_end[: len(mp4_end) // 2])
    put("truncated-faststart.mp4", mp4[: len(mp4) // 2])
    put("truncated.mkv", mkv[: len(mkv) // 2])
    put("ftyp-only.mp4", mp4[: int.from_bytes(mp4[:4], "big")])
    put("bitflip-head.mp4", flip_bits(mp4, 11, 0, 1024, 24))
    put("bitflip-head.mkv", flip_bits(mkv, 12, 0, 1024, 24))
    put("bitflip-deep.mp4", flip_bits(mp4, 13, len(mp4) * 2 // 5, len(mp4) * 3 // 5, 64))
    put("bitflip-deep.mkv", flip_bits(mkv, 14, len(mkv) * 2 // 5, len(mkv) * 3 // 5, 64))
    wiped = bytearray(mp4)
    for pos, size in _video_packets(base_mp4):
        wiped[pos : pos + size] = (b"\x00\x00\x00\x01" * (size // 4 + 1))[:size]
    put("wiped-packets.mp4", bytes(wiped))
    put("zero-length.mp4", b"")
    put("random-bytes.mp4", np.random.default_rng(7).integers(0, 256, 65536, np.uint8).tobytes())

    # -- not video ------------------------------------------------------------------------------------------------
    put("photo.png", _png_bytes(photos[0]))
    put("photo-as.mp4", photo_jpeg)
    _write_gif(out("animated.gif"), photos)
    _ffmpeg("-i", str(srt), "-map", "0:s", "-c", "copy", "-fflags", "+bitexact", str(out("subtitles-only.mkv")))
    put("audio-only.m4a", tone.read_bytes())
    put("notes.mp4", b"meeting notes\nthese are not a video\n" * 20)
    put("page.html", b"<!DOCTYPE html>\n<html><body><video src='http://127.0.0.1/x.mp4'></video></body></html>\n")
    put("slides.pdf", b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\n%%EOF\n" + bytes(2000))

    # -- control --------------------------------------------------------------------------------------------------
    put("control.mp4", mp4)

    written = {p.name for p in files.iterdir()}
    missing = [e.name for e in SPECS if e.name not in written]
    assert not missing and len(written) == len(SPECS), f"corpus files and SPECS differ: missing {missing}"
    corpus.entries = [replace(e, path=files / e.name) for e in SPECS]
    corpus.build_s = time.monotonic() - started
    return corpus


def _png_bytes(photo: np.ndarray) -> bytes:
    import io

    buf = io.BytesIO()
    Image.fromarray(photo).save(buf, "PNG", optimize=False, compress_level=6)
    return buf.getvalue()


def _jpeg_bytes(photo: np.ndarray) -> bytes:
    import io

    buf = io.BytesIO()
    Image.fromarray(photo).save(buf, "JPEG", quality=88)
    return buf.getvalue()


def _write_gif(path: Path, photos: list[np.ndarray]) -> Path:
    frames = [Image.fromarray(_pan(photos[0], 320, 200, 8 * i)).quantize(64) for i in range(8)]
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=100, loop=0)
    return path


if __name__ == "__main__":  # pragma: no cover
    target = Path(sys.argv[1] if len(sys.argv) > 1 else "security-corpus")
    built = build_corpus(target)
    print(built.table())
    print(f"{len(built.entries)} files in {built.build_s:.1f} s; pictures from {built.photos_from}")
