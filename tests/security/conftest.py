"""Fixtures for the hostile-media tests: the corpus, a loopback listener that must never be contacted, and a real
`videopipe serve` process (embedded SQLite in a temporary data dir) with two tenants, watched with psutil. The
classes behind them are in tests/support/serve.py."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.security.corpus import Corpus, build_corpus
from tests.support.serve import Listener, Measurements, Server, create_key, server_env, videopipe_serve

# ---------------------------------------------------------------------------------------------------------------
# Corpus


@pytest.fixture(scope="session")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Corpus:
    """Every hostile file, built once per session (seconds)."""
    return build_corpus(tmp_path_factory.mktemp("hostile-corpus"))


# ---------------------------------------------------------------------------------------------------------------
# Loopback listener


@pytest.fixture(scope="session")
def loopback() -> Iterator[Listener]:
    listener = Listener()
    listener.start()
    yield listener
    listener.stop()


# ---------------------------------------------------------------------------------------------------------------
# The server


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory, corpus: Corpus, loopback: Listener) -> Iterator[Server]:
    """`videopipe serve` in its own process on a free loopback port; tenants "alpha" (the attacker) and "beta" (the
    victim, whose video is uploaded and analysed first: that also warms the server up)."""
    data_dir = tmp_path_factory.mktemp("server-data")
    env = server_env(data_dir)
    keys = {tenant: create_key(env, tenant) for tenant in ("alpha", "beta")}
    log_path = data_dir.parent / "server.log"
    with videopipe_serve(env, log_path, cwd=data_dir) as (base, proc):
        srv = Server(base, proc, data_dir, log_path, keys, env)
        # Tenant B's video: analysed to the end, so the models and the index are loaded before any measurement.
        r = srv.upload_multipart("beta", corpus.victim, name="holiday.mp4")
        assert r.status_code == 201, r.text
        info = srv.wait_final("beta", r.json()["id"], time.monotonic() + 240)
        assert info["status"] == "ready", info
        blob = data_dir / "blobs" / "originals" / f"{info['content_hash']}.mp4"
        assert blob.is_file(), f"tenant B's original is not where the issue says: {blob}"
        srv.victim = info
        srv.placeholders = {
            "VICTIM_BLOB_ABS": str(blob),
            "VICTIM_BLOB_NAME": blob.name,
            "LOOPBACK": loopback.address,
            "LOOPBACK_PORT": str(loopback.port),
        }
        yield srv


@pytest.fixture(scope="session")
def measurements(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Measurements]:
    found = Measurements()
    yield found
    target = Path(os.environ.get("VIDEOPIPE_SECURITY_REPORT") or tmp_path_factory.getbasetemp() / "security.jsonl")
    with target.open("w") as f:
        for row in found.rows:
            f.write(json.dumps(row) + "\n")
