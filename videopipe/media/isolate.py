"""`probe` in a child process with its own memory and CPU limits, for files from untrusted hands.

Opening a container makes FFmpeg analyse its streams, and for formats that create their streams while being read
(MPEG-TS, FLV) the decoders it runs then take no size limit from us; a demuxer bug could also crash the process.
The server therefore probes uploads here: the child sets RLIMIT_DATA (heap and anonymous mappings, which is
where decoders' frame buffers live) and RLIMIT_CPU on itself before it opens the file, and answers with the
`VideoInfo` or the error as JSON on stdout. A child that runs out of memory or time is reported as an
`UnsupportedVideo` that says so; the server's own memory does not grow. A file that passed here is opened again
in the worker with the same options, so FFmpeg's stream analysis does the same, bounded, work there.
"""

from __future__ import annotations

import json
import logging
import os
import resource
import signal
import subprocess
import sys
import threading
from fractions import Fraction
from pathlib import Path
from typing import Any

from videopipe import errors
from videopipe.config import LimitSettings
from videopipe.media.probe import VideoInfo, probe

log = logging.getLogger(__name__)

_slots: dict[int, threading.BoundedSemaphore] = {}
_slots_guard = threading.Lock()


def _slot(limits: LimitSettings) -> threading.BoundedSemaphore:
    """At most `probe_concurrency` children at once: six hostile uploads in parallel must not add up to six
    times the memory limit."""
    with _slots_guard:
        return _slots.setdefault(limits.probe_concurrency, threading.BoundedSemaphore(limits.probe_concurrency))


def probe_isolated(path: str | os.PathLike[str], limits: LimitSettings, name: str | None = None) -> VideoInfo:
    """`probe(path, limits, name)`, run in a memory- and time-limited child process."""
    label = name or Path(path).name
    request = json.dumps({"path": str(path), "name": label, "limits": limits.model_dump(mode="json")})
    slot = _slot(limits)
    if not slot.acquire(timeout=limits.probe_timeout_s):
        raise errors.Busy(
            f"{label}: the server is checking too many uploads at once; send it again in a minute", retry_after_s=30
        )
    try:
        proc = _run_child(request, label, limits)
    finally:
        slot.release()
    try:
        answer = json.loads(proc.stdout.strip().splitlines()[-1]) if proc.stdout.strip() else None
    except json.JSONDecodeError:
        answer = None
    if isinstance(answer, dict) and "error" in answer:
        raise _error(answer["error"], str(answer.get("message", "")))
    if isinstance(answer, dict) and "info" in answer:
        return _info(answer["info"])
    if proc.returncode == -signal.SIGXCPU:
        raise errors.UnsupportedVideo(_over(label, "time", f"{limits.probe_timeout_s:g} s"))
    if proc.returncode == _OUT_OF_MEMORY or proc.returncode < 0:  # MemoryError, or killed/crashed by the file
        log.warning("probe child for %s ended with %s: %s", label, proc.returncode, proc.stderr.strip()[-300:])
        raise errors.UnsupportedVideo(_over(label, "memory", f"{limits.probe_memory_bytes / 1024**2:,.0f} MiB"))
    # Anything else is ours (the child could not start, a bug): the operator's problem, not the uploader's.
    raise RuntimeError(f"the probe child process failed ({proc.returncode}): {proc.stderr.strip()[-500:]}")


def _run_child(request: str, label: str, limits: LimitSettings) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(
            # -I: no PYTHON* variables, no user site, no current directory on the path; a minimal environment:
            # the server's secrets (database password, S3 keys) are none of the child's business.
            [sys.executable, "-I", "-m", "videopipe.media.isolate"],
            input=request,
            capture_output=True,
            text=True,
            timeout=limits.probe_timeout_s + 5,
            env=_child_env(),
        )
    except subprocess.TimeoutExpired:
        raise errors.UnsupportedVideo(_over(label, "time", f"{limits.probe_timeout_s:g} s")) from None


_OUT_OF_MEMORY = 3  # the child's exit status when Python ran out of memory
_KEPT_ENV = ("PATH", "LANG", "LC_ALL", "LC_CTYPE", "TMPDIR", "OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")


def _child_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k in _KEPT_ENV}
    return {**env, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}


def _over(label: str, what: str, limit: str) -> str:
    return (
        f"{label}: opening this file needs more {what} than this server allows ({limit}) before a single frame is "
        "shown; it is damaged or built to exhaust servers. Re-encode it (ffmpeg -i IN -c:v libx264 OUT.mp4)"
    )


def _error(kind: str, message: str) -> errors.VideopipeError:
    cls = getattr(errors, kind, None)
    if isinstance(cls, type) and issubclass(cls, errors.InputError):
        return cls(message)
    return errors.UnsupportedVideo(message or "the file could not be probed; re-encode it to MP4 (H.264)")


def _info(data: dict[str, Any]) -> VideoInfo:
    return VideoInfo(**{**data, "time_base": Fraction(data["time_base"])})


def _child() -> int:
    request = json.loads(sys.stdin.read())
    limits = LimitSettings.model_validate(request["limits"])
    memory = limits.probe_memory_bytes
    resource.setrlimit(resource.RLIMIT_DATA, (memory, memory))
    cpu = max(1, int(limits.probe_timeout_s))
    resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))  # no dump of a crash the file caused
    try:
        info = probe(request["path"], limits, request["name"])
    except errors.InputError as exc:
        print(json.dumps({"error": type(exc).__name__, "message": exc.message}))
        return 0
    except MemoryError:
        return _OUT_OF_MEMORY
    print(json.dumps({"info": info.to_json()}))
    return 0


if __name__ == "__main__":
    sys.exit(_child())
