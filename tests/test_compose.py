"""docker-compose.yml as a deployment that would work: valid for Compose (`docker compose config`, which also
resolves the anchors, `.env` substitutions and env_file), and every cross-reference in it holds. The commands
given to the image are accepted by the CLI its ENTRYPOINT runs, every VIDEOPIPE_* variable is a setting
videopipe reads (with a valid value), the URLs point at the services that serve them, the workers between them
serve every queue a stage is sent to, and the GPU worker plans for the context the vLLM server was started with."""

from __future__ import annotations

import importlib
import json
import os
import re
import shutil
import subprocess
import tomllib
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import click
import pytest
from pydantic import BaseModel
from sqlalchemy.engine import make_url

from videopipe.config import Settings

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def config(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The file as Compose resolves it, with `.env` made from `.env.example` (as the file's header says)."""
    tmp_path = tmp_path_factory.mktemp("compose")
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


def _videopipe_services(config: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The services that run this project's image (built from the Dockerfile)."""
    found = {name: svc for name, svc in config["services"].items() if "build" in svc}
    assert {"api", "migrate", "worker-cpu", "worker-gpu"} <= set(found)
    return found


def _cli() -> click.Group:
    """The click group behind the image's ENTRYPOINT: the console script of that name in pyproject.toml."""
    entrypoint = re.search(r"^ENTRYPOINT\s+(\[.*\])\s*$", (ROOT / "Dockerfile").read_text(), re.MULTILINE)
    assert entrypoint, "the Dockerfile has no exec-form ENTRYPOINT"
    [program] = json.loads(entrypoint.group(1))
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    module, attr = scripts[program].split(":")
    group = getattr(importlib.import_module(module), attr)
    assert isinstance(group, click.Group)
    return group


def _parse(args: list[str]) -> tuple[str, click.Command, dict[str, Any]]:
    """(command name, command, its parsed options) as the CLI parses `args`; a usage error fails the test."""
    command: click.Command = _cli()
    path: list[str] = []
    while isinstance(command, click.Group):
        assert args, f"`videopipe {' '.join(path)}` needs a subcommand"
        name, *args = args
        sub = command.get_command(click.Context(command), name)
        assert sub is not None, f"videopipe has no command `{' '.join([*path, name])}`"
        path.append(name)
        command = sub
    try:
        ctx = command.make_context(" ".join(path), list(args))
    except click.ClickException as exc:
        pytest.fail(f"`videopipe {' '.join(path)} {' '.join(args)}` is refused by the CLI: {exc.format_message()}")
    return " ".join(path), command, ctx.params


def _setting(name: str) -> bool:
    """Is VIDEOPIPE_A__B a field path of `Settings` (env_nested_delimiter "__")? Unknown names are ignored
    silently by the settings (extra="ignore"), so a misspelt variable would simply do nothing."""
    model: type[BaseModel] = Settings
    parts = name.removeprefix("VIDEOPIPE_").lower().split("__")
    for n, part in enumerate(parts):
        field = model.model_fields.get(part)
        if field is None:
            return False
        annotation = field.annotation
        if n < len(parts) - 1:
            if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
                return False
            model = annotation
    return True


def _read_directly() -> set[str]:
    """VIDEOPIPE_* variables the code reads from the environment itself, outside `Settings`."""
    source = "\n".join(p.read_text() for p in (ROOT / "videopipe").rglob("*.py"))
    return set(re.findall(r"""environ(?:\.get)?[(\[]\s*["'](VIDEOPIPE_\w+)["']""", source))


def _settings_of(service: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> Settings:
    """The settings a container of this service starts with (its environment only, nothing of this machine's)."""
    for key in [k for k in os.environ if k.startswith("VIDEOPIPE_")]:
        monkeypatch.delenv(key)
    for key, value in service["environment"].items():
        monkeypatch.setenv(key, str(value))
    return Settings()


def test_the_commands_of_the_image_are_accepted_by_its_cli(config: dict[str, Any]) -> None:
    services = _videopipe_services(config)
    parsed = {name: _parse([str(a) for a in svc["command"]]) for name, svc in services.items()}
    assert parsed["migrate"][0] == "db upgrade"
    assert parsed["migrate"][2]["revision"] == "head"
    name, _, serve = parsed["api"]
    assert name == "serve" and serve["host"] == "0.0.0.0"
    # The published port reaches the port the server listens on.
    assert [int(p["target"]) for p in services["api"]["ports"]] == [serve["port"]]

    # Between them, the workers serve every queue a stage can be sent to: the queues a plain `videopipe worker`
    # serves by default.
    workers = {n: params for n, (cmd, _, params) in parsed.items() if cmd == "worker"}
    assert set(workers) == {"worker-cpu", "worker-gpu"}
    _, worker, _ = parsed["worker-cpu"]
    default = next(p.default for p in worker.params if p.name == "queues")
    served = [set(str(params["queues"]).split(",")) for params in workers.values()]
    assert set().union(*served) == set(str(default).split(","))
    assert "gpu" in served[list(workers).index("worker-gpu")] and all(p["concurrency"] >= 1 for p in workers.values())


def test_every_videopipe_variable_is_a_setting_with_a_valid_value(
    config: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    direct = _read_directly()
    assert "VIDEOPIPE_S3_ENDPOINT_URL" in direct  # (what the storage layer reads itself)
    mentioned = set(re.findall(r"VIDEOPIPE_\w+", (ROOT / "docker-compose.yml").read_text()))
    mentioned |= set(re.findall(r"VIDEOPIPE_\w+", (ROOT / ".env.example").read_text()))  # commented examples too
    for svc in _videopipe_services(config).values():
        mentioned |= {k for k in svc["environment"] if k.startswith("VIDEOPIPE_")}
    unknown = sorted(n for n in mentioned if not _setting(n) and n not in direct)
    assert not unknown, f"variables videopipe never reads (misspelt?): {unknown}"
    assert _setting("VIDEOPIPE_UNDERSTANDING__CONTEXT_TOKENS") and not _setting("VIDEOPIPE_UNDERSTANDING__CONTEXT")
    for name, svc in _videopipe_services(config).items():
        settings = _settings_of(svc, monkeypatch)  # refuses a bad value, naming it
        # Shared state: the one database and broker, and a data dir on a volume (not the container's layer).
        assert settings.database_url and settings.broker_url, name
        mounts = [v if isinstance(v, str) else f"{v['source']}:{v['target']}" for v in svc.get("volumes", [])]
        assert any(m.split(":")[1] == str(settings.data_dir) for m in mounts), (name, mounts)


def test_urls_point_at_the_services_that_serve_them(config: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    services = config["services"]
    postgres = services["postgres"]["environment"]
    for name, svc in _videopipe_services(config).items():
        settings = _settings_of(svc, monkeypatch)
        assert settings.database_url is not None and settings.broker_url is not None
        db = make_url(settings.database_url)
        assert db.host in services and "postgres" in services[db.host]["image"] and (db.port or 5432) == 5432, name
        assert (db.username, db.password, db.database) == (
            postgres["POSTGRES_USER"], postgres["POSTGRES_PASSWORD"], postgres["POSTGRES_DB"]
        ), name  # fmt: skip
        broker = make_url(settings.broker_url)
        assert broker.host in services and "redis" in services[broker.host]["image"] and broker.port == 6379, name

    gpu = _settings_of(services["worker-gpu"], monkeypatch)
    vllm_args = dict(str(a).removeprefix("--").split("=", 1) for a in services["vllm"]["command"] if "=" in str(a))
    assert gpu.vlm == "openai" and gpu.vlm_url is not None
    vlm_url = urlparse(gpu.vlm_url)
    assert vlm_url.hostname == "vllm" and vlm_url.hostname in services  # vLLM listens on its default port 8000,
    assert vlm_url.port == 8000 and "localhost:8000/" in " ".join(services["vllm"]["healthcheck"]["test"])  # too
    # The worker asks for the model the server serves, and plans prompts for the context it was started with.
    assert gpu.vlm_model == vllm_args["served-model-name"]
    assert gpu.understanding.context_tokens == int(vllm_args["max-model-len"])


def test_dependencies_can_be_met(config: dict[str, Any]) -> None:
    """`service_healthy` needs a healthcheck on the service waited for (else Compose waits forever or refuses);
    `service_completed_successfully` needs a one-shot service (a restarting one never completes)."""
    services = config["services"]
    waited = 0
    for name, svc in services.items():
        for dep, how in (svc.get("depends_on") or {}).items():
            waited += 1
            if how["condition"] == "service_healthy":
                assert services[dep].get("healthcheck", {}).get("test"), f"{name} waits for {dep}'s health"
            elif how["condition"] == "service_completed_successfully":
                assert str(services[dep].get("restart", "no")) == "no", f"{name} waits for {dep} to finish"
    for name in ("api", "worker-cpu", "worker-gpu"):  # nothing serves before the schema is migrated
        assert services[name]["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    assert services["worker-gpu"]["depends_on"]["vllm"]["condition"] == "service_healthy"
    assert waited >= 10
