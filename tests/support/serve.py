"""A real `videopipe serve` process for the hostile-input tests, as an operator runs it, and what watches it: a
loopback listener that must never be contacted, the server's memory (psutil), its uploads and files."""

from __future__ import annotations

import base64
import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest

from tests.support.servers import free_port

# Every analysis as cheap as it gets: no model, no speech, no on-screen text, no motion.
OPTIONS = {"profile": "general", "vlm": "none", "asr": False, "ocr": False, "motion": False}
FINAL = ("ready", "failed", "cancelled")
WATCHED_DIRS = ("incoming", "uploads", "blobs/originals")
TUS_BODY = "application/offset+octet-stream"


@dataclass
class Listener:
    """A TCP listener on 127.0.0.1 that records every connection (and its first bytes), then hangs up."""

    port: int = 0
    connections: list[dict[str, Any]] = field(default_factory=list)
    _sock: socket.socket | None = None
    _stop: threading.Event = field(default_factory=threading.Event)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> None:
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(16)
        self._sock.settimeout(0.2)
        self.port = self._sock.getsockname()[1]
        threading.Thread(target=self._serve, name="loopback-listener", daemon=True).start()

    def _serve(self) -> None:
        assert self._sock is not None
        while not self._stop.is_set():
            try:
                conn, peer = self._sock.accept()
            except (TimeoutError, OSError):
                continue
            with conn:
                conn.settimeout(1.0)
                first = b""
                with suppress(OSError):
                    first = conn.recv(512)
                self.connections.append({"at": time.time(), "peer": peer, "first_bytes": first[:200]})

    def stop(self) -> None:
        self._stop.set()
        if self._sock is not None:
            self._sock.close()


@dataclass
class MemoryWatch:
    """Peak RSS of the server process (and of it with its children) sampled every ~20 ms while a block runs."""

    process: psutil.Process
    interval_s: float = 0.02
    baseline: int = 0
    peak: int = 0
    baseline_tree: int = 0
    peak_tree: int = 0
    samples: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)

    def _read(self) -> tuple[int, int]:
        own = self.process.memory_info().rss
        tree = own
        for child in self.process.children(recursive=True):
            with suppress(psutil.Error):
                tree += child.memory_info().rss
        return own, tree

    def _run(self) -> None:
        while not self._stop.is_set():
            with suppress(psutil.Error):
                own, tree = self._read()
                self.peak, self.peak_tree = max(self.peak, own), max(self.peak_tree, tree)
                self.samples += 1
            self._stop.wait(self.interval_s)

    @property
    def growth(self) -> int:
        return max(0, self.peak - self.baseline)

    @property
    def growth_tree(self) -> int:
        return max(0, self.peak_tree - self.baseline_tree)

    @contextmanager
    def running(self) -> Iterator[MemoryWatch]:
        self.baseline, self.baseline_tree = self._read()
        self.peak, self.peak_tree = self.baseline, self.baseline_tree
        thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)
        thread.start()
        try:
            yield self
        finally:
            self._stop.set()
            thread.join(timeout=5)


# ---------------------------------------------------------------------------------------------------------------
# The server


@dataclass
class TusResult:
    create: httpx.Response
    patch: httpx.Response | None
    url: str | None

    @property
    def final(self) -> httpx.Response:
        """The answer that decided the upload: the refusal of the creation, else the last PATCH."""
        return self.patch if self.patch is not None else self.create


@dataclass
class Server:
    base: str
    proc: subprocess.Popen[bytes]
    data_dir: Path
    log_path: Path
    keys: dict[str, str]
    env: dict[str, str]
    placeholders: dict[str, str] = field(default_factory=dict)
    victim: dict[str, Any] = field(default_factory=dict)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def client(self, tenant: str, timeout_s: float = 60.0) -> httpx.Client:
        return httpx.Client(base_url=self.base, headers={"Authorization": f"Bearer {self.keys[tenant]}"},
                            timeout=timeout_s)  # fmt: skip

    def alive(self) -> bool:
        return self.proc.poll() is None

    def healthz(self) -> int:
        try:
            return httpx.get(f"{self.base}/healthz", timeout=10).status_code
        except httpx.HTTPError:
            return 0

    def memory(self) -> MemoryWatch:
        return MemoryWatch(psutil.Process(self.pid))

    # -- uploads ----------------------------------------------------------------------------------------------
    def upload_multipart(
        self, tenant: str, path: Path, name: str | None = None, timeout_s: float = 60.0
    ) -> httpx.Response:
        """`POST /v1/videos`, the file in the multipart field `file`."""
        with self.client(tenant, timeout_s) as http, path.open("rb") as f:
            return http.post("/v1/videos", files={"file": (name or path.name, f, "application/octet-stream")},
                             data={"options": json.dumps(OPTIONS)})  # fmt: skip

    def upload_tus(self, tenant: str, path: Path, name: str | None = None, timeout_s: float = 60.0) -> TusResult:
        """tus 1.0: `POST /v1/uploads` (Upload-Length, Upload-Metadata), then one `PATCH` with every byte."""
        data = path.read_bytes()
        meta = ",".join(
            f"{k} {base64.b64encode(v.encode()).decode()}"
            for k, v in (("filename", name or path.name), ("options", json.dumps(OPTIONS)))
        )
        with self.client(tenant, timeout_s) as http:
            created = http.post("/v1/uploads", headers={"Tus-Resumable": "1.0.0", "Upload-Length": str(len(data)),
                                                        "Upload-Metadata": meta})  # fmt: skip
            if created.status_code != 201:
                return TusResult(created, None, None)
            url = created.headers["location"]
            headers = {"Tus-Resumable": "1.0.0", "Upload-Offset": "0", "Content-Type": TUS_BODY}
            patched = http.patch(url, content=data, headers=headers)
            return TusResult(created, patched, url)

    # -- state ------------------------------------------------------------------------------------------------
    def video(self, tenant: str, video_id: str) -> dict[str, Any]:
        with self.client(tenant) as http:
            r = http.get(f"/v1/videos/{video_id}")
            r.raise_for_status()
            info: dict[str, Any] = r.json()
            return info

    def wait_final(self, tenant: str, video_id: str, deadline: float) -> dict[str, Any]:
        """Poll `GET /v1/videos/{id}` until ready/failed/cancelled or `deadline` (time.monotonic()); the last answer."""
        info = self.video(tenant, video_id)
        while info["status"] not in FINAL and time.monotonic() < deadline:
            time.sleep(0.2)
            info = self.video(tenant, video_id)
        return info

    def video_ids(self, tenant: str) -> set[str]:
        with self.client(tenant) as http:
            r = http.get("/v1/videos", params={"limit": 500})
            r.raise_for_status()
            return {v["id"] for v in r.json()["items"]}

    def discard(self, tenant: str, video_id: str, wait_s: float = 30.0) -> None:
        """Cancel and delete a video (one that should never have been accepted, or a runaway analysis), giving the
        cancellation up to `wait_s` to take effect, so that it does not hold the runner during later tests."""
        with self.client(tenant) as http:
            http.post(f"/v1/videos/{video_id}/cancel")
            deadline = time.monotonic() + wait_s
            while time.monotonic() < deadline:
                r = http.get(f"/v1/videos/{video_id}")
                if r.status_code != 200 or r.json()["status"] in FINAL:
                    break
                time.sleep(0.2)
            http.delete(f"/v1/videos/{video_id}")

    def files(self) -> dict[str, set[str]]:
        """Regular files under incoming/, uploads/ and blobs/originals/ of the data dir."""
        out: dict[str, set[str]] = {}
        for sub in WATCHED_DIRS:
            root = self.data_dir / sub
            out[sub] = {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()} if root.exists() else set()
        return out

    def log_offset(self) -> int:
        return self.log_path.stat().st_size if self.log_path.exists() else 0

    def log_since(self, offset: int) -> str:
        with self.log_path.open("rb") as f:
            f.seek(offset)
            return f.read().decode("utf-8", "replace")


def server_env(data_dir: Path) -> dict[str, str]:
    """The environment of every videopipe process here: nothing inherited from VIDEOPIPE_* but what is set here."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("VIDEOPIPE_")}
    env.update({
        "VIDEOPIPE_DATA_DIR": str(data_dir),
        "VIDEOPIPE_VLM": "none",
        # The torchvision shim (tests/support/sitecustomize.py) imports torch into every Python process, probe
        # children included (+300 MB, +2 s each); production has no such file, and no model runs here.
        "VIDEOPIPE_TEST_NO_TV_SHIM": "1",
        "COLUMNS": "200",
        "PYTHONUNBUFFERED": "1",
    })  # fmt: skip
    return env


def create_key(env: dict[str, str], tenant: str) -> str:
    proc = subprocess.run([sys.executable, "-m", "videopipe", "keys", "create", "--tenant", tenant],
                          env=env, capture_output=True, text=True, timeout=120)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip().splitlines()[-1].split()[-1]


@contextmanager
def videopipe_serve(
    env: dict[str, str], log_path: Path, cwd: Path | None = None
) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """`videopipe serve` in its own process on a free loopback port, as an operator runs it, its output in
    `log_path`; yields (base URL, process) once /healthz answers, and stops it after."""
    port = free_port()
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "videopipe", "serve", "--host", "127.0.0.1", "--port", str(port),
             "--log-level", "warning"],
            env=env, stdout=log, stderr=subprocess.STDOUT, cwd=cwd,
        )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            with suppress(httpx.TransportError):
                if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                    break
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"videopipe serve did not start:\n{log_path.read_text()[-3000:]}")
            time.sleep(0.2)
        yield base, proc
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


@dataclass
class Measurements:
    """One row per upload: written to VIDEOPIPE_SECURITY_REPORT (or the session's temp dir) at the end."""

    rows: list[dict[str, Any]] = field(default_factory=list)
