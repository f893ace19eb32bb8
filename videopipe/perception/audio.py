"""Audio for speech recognition: decoded with PyAV, resampled to 16 kHz mono float32, streamed in chunks.

A two-hour talk is 460 MB as float32 samples; chunks of a few minutes keep memory flat. Chunks end in the
quietest half second near their nominal end, so a word is rarely cut in two.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import av
import av.error
import numpy as np

from videopipe.config import LimitSettings
from videopipe.media.container import limit_decoder, open_media

SAMPLE_RATE = 16_000


def iter_audio_chunks(
    path: str | Path,
    chunk_s: float = 300.0,
    search_s: float = 10.0,
    max_s: float | None = None,
    limits: LimitSettings | None = None,
) -> Iterator[tuple[float, np.ndarray]]:
    """Yield (start time in seconds, float32 mono samples at 16 kHz) for the first audio stream.

    `max_s`: stop there (the video's duration: an audio track that claims to run for days is not decoded past
    the pictures)."""
    limits = limits or LimitSettings()
    max_samples = int(max_s * SAMPLE_RATE) if max_s is not None else None
    with open_media(path, limits) as container:
        if not container.streams.audio:
            return
        stream = container.streams.audio[0]
        start_offset = float(container.start_time or 0) / 1_000_000
        resampler = av.AudioResampler(format="flt", layout="mono", rate=SAMPLE_RATE)
        pending: list[np.ndarray] = []
        pending_len = 0
        emitted = 0  # samples already yielded
        first_pts_s: float | None = None
        target = int(chunk_s * SAMPLE_RATE)
        limit_decoder(stream, limits, threads=1)
        for frame in _decode(container, stream):
            if max_samples is not None and emitted + pending_len >= max_samples:
                break
            if first_pts_s is None and frame.pts is not None and stream.time_base is not None:
                first_pts_s = max(0.0, float(frame.pts * stream.time_base) - start_offset)
            for out in resampler.resample(frame):
                samples = out.to_ndarray().reshape(-1)
                pending.append(samples)
                pending_len += samples.size
            if pending_len >= target + int(search_s * SAMPLE_RATE):
                buf = np.concatenate(pending)
                cut = _quiet_cut(buf, target, int(search_s * SAMPLE_RATE))
                yield (first_pts_s or 0.0) + emitted / SAMPLE_RATE, buf[:cut]
                emitted += cut
                pending, pending_len = [buf[cut:]], buf.size - cut
        for out in resampler.resample(None):
            pending.append(out.to_ndarray().reshape(-1))
        if pending:
            buf = np.concatenate(pending)
            if buf.size:
                yield (first_pts_s or 0.0) + emitted / SAMPLE_RATE, buf


def _decode(container: av.container.InputContainer, stream: av.AudioStream) -> Iterator[av.AudioFrame]:
    for packet in container.demux(stream):
        try:
            yield from packet.decode()
        except av.error.FFmpegError:
            continue  # a damaged audio packet costs a few milliseconds of sound, not the transcript


def _quiet_cut(buf: np.ndarray, target: int, search: int) -> int:
    """The sample index of the quietest 0.5 s window in [target - search, target + search)."""
    win = SAMPLE_RATE // 2
    lo, hi = max(win, target - search), min(buf.size - win, target + search)
    if hi <= lo:
        return min(target, buf.size)
    energy = np.convolve(np.square(buf[lo - win // 2 : hi + win // 2]), np.ones(win, np.float32), mode="valid")
    return lo + int(np.argmin(energy[: hi - lo]))
