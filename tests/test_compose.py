"""docker-compose.yml: valid for Compose (`docker compose config`), with the services the deployment needs."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]


def compose_config(tmp_path: Path) -> dict[str, Any]:
    import json

    for name in ("docker-compose.yml", "Dockerfile", ".env.example"):
        shutil.copy(ROOT / name, tmp_path / name)
    shutil.copy(ROOT / ".env.example", tmp_path / ".env")
    if subprocess.run(["docker", "compose", "version"], capture_output=True).returncode == 0:
        cmd = ["docker", "compose", "config", "--format", "json"]
    elif shutil.which("docker-compose"):
        cmd = ["docker-compose", "config"]
    else:
        pytest.fail("neither `docker compose` nor docker-compose is installed (scripts/install-system-deps.sh)")
    proc = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    if cmd[-1] == "json":
        return dict(json.loads(proc.stdout))
    import yaml

    return dict(yaml.safe_load(proc.stdout))


def test_compose_file_is_valid_and_complete(tmp_path: Path) -> None:
    config = compose_config(tmp_path)
    services = config["services"]
    assert {"api", "worker-cpu", "worker-gpu", "vllm", "postgres", "redis", "migrate"} <= set(services)
    for name in ("postgres", "redis", "vllm"):
        assert services[name]["healthcheck"]["test"], name
    for name in ("api", "worker-cpu", "worker-gpu"):
        deps = services[name]["depends_on"]
        assert deps["postgres"]["condition"] == deps["redis"]["condition"] == "service_healthy"
        assert services[name]["environment"]["VIDEOPIPE_BROKER_URL"] == "redis://redis:6379/0"
    assert services["worker-gpu"]["depends_on"]["vllm"]["condition"] == "service_healthy"
    devices = services["vllm"]["deploy"]["resources"]["reservations"]["devices"]
    assert devices[0]["capabilities"] == ["gpu"]
    vllm_args = " ".join(services["vllm"]["command"])
    assert "--model=Qwen/Qwen3-VL-8B-Instruct" in vllm_args and "--max-model-len=262144" in vllm_args
    assert {"postgres-data", "redis-data", "videopipe-data"} <= set(config["volumes"])
    assert "--queues=gpu" in services["worker-gpu"]["command"]
