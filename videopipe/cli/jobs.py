"""`submit`, `status`, `cancel`: jobs run by workers (or in-process without a broker)."""

from __future__ import annotations

import json
from pathlib import Path

import click

from videopipe.cli.common import TENANT_OPTION, VLM_CHOICE, err_console, handle_errors, local_library
from videopipe.config import Settings


@click.command()
@click.argument("video", type=click.Path(path_type=Path))
@TENANT_OPTION
@click.option("--profile", type=click.Choice(["general", "lecture", "surveillance"]), default="general")
@click.option("--vlm", type=VLM_CHOICE, default=None)
@click.option("--no-asr", is_flag=True)
@click.option("--no-ocr", is_flag=True)
@click.option("--no-motion", is_flag=True)
@click.option("--no-slides", is_flag=True)
@handle_errors
def submit(
    video: Path,
    tenant: str,
    profile: str,
    vlm: str | None,
    no_asr: bool,
    no_ocr: bool,
    no_motion: bool,
    no_slides: bool,
) -> None:
    """Queue VIDEO for analysis and print the job id (last word). With no broker configured the stages run
    here, in this process, before it returns."""
    from videopipe.services import open_services

    services = open_services(Settings())
    options = {"profile": profile, "asr": not no_asr, "ocr": not no_ocr, "motion": not no_motion,
               "slides": not no_slides, "vlm": vlm}  # fmt: skip
    try:
        submitted = services.jobs.submit(video, tenant=tenant, options=options)
        if services.runner is not None:
            with err_console.status("running the stages in-process (no broker configured)"):
                services.wait()
    finally:
        services.close()
    state = services.jobs.status(tenant, submitted.job_id)["status"]
    note = "" if submitted.created else " (already submitted: same video, same settings)"
    click.echo(f"job {state}{note}: {submitted.job_id}")


@click.command()
@click.argument("job_id")
@TENANT_OPTION
@click.option("--json", "as_json", is_flag=True)
@handle_errors
def status(job_id: str, tenant: str, as_json: bool) -> None:
    """Show a job: queued, running, ready, failed or cancelled, with its stage and progress."""
    info = local_library(Settings()).jobs.status(tenant, job_id)
    if as_json:
        click.echo(json.dumps(info, indent=2))
        return
    stage = f", stage {info['stage']}" if info["stage"] else ""
    click.echo(f"{info['job_id']}: {info['status']}{stage}, {info['progress']:.0f}%")
    if info["error"]:
        click.echo(f"error ({info['error_type']}): {info['error']}")


@click.command()
@click.argument("job_id")
@TENANT_OPTION
@handle_errors
def cancel(job_id: str, tenant: str) -> None:
    """Cancel a job; a running stage stops at its next progress report."""
    info = local_library(Settings()).jobs.cancel(tenant, job_id)
    click.echo(f"{info['job_id']}: {info['status']}{' (stopping)' if info['status'] == 'running' else ''}")
