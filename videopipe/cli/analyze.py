"""`analyze`, `plan`, `probe`, `demo`: one file, in-process."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from videopipe.cli.common import (
    LOCAL_TENANT,
    VLM_CHOICE,
    RichProgress,
    VLMErrorForCli,
    err_console,
    handle_errors,
    local_library,
    settings_with,
    warn,
)
from videopipe.config import Settings
from videopipe.errors import MissingExtra

if TYPE_CHECKING:
    from videopipe.services import Services


@click.command()
@click.argument("video", type=click.Path(path_type=Path))
@click.option(
    "--out",
    "out_dir",
    type=click.Path(path_type=Path),
    default=None,
    help="Output folder (default: ./<video name>.videopipe/).",
)
@click.option("--json", "as_json", is_flag=True, help="Print analysis.json to stdout.")
@click.option("--vlm", type=VLM_CHOICE, default=None, help="Understanding backend (default: VIDEOPIPE_VLM or auto).")
@click.option("--model", default=None, help="Qwen3-VL checkpoint path or hub id (transformers), or served name.")
@click.option("--vlm-url", default=None, help="OpenAI-compatible server, e.g. http://gpu-1:8000/v1.")
@click.option(
    "--dump-prompt",
    type=click.Path(path_type=Path),
    default=None,
    help="Write the exact prompt(s) sent to the model to this file (vision tokens collapsed).",
)
@click.option("--no-asr", is_flag=True, help="Skip speech recognition.")
@click.option("--no-ocr", is_flag=True, help="Skip on-screen text.")
@click.option("--no-motion", is_flag=True, help="Skip motion events.")
@click.option("--no-slides", is_flag=True, help="Skip slide changes inside a constant template (lecture profile).")
@click.option(
    "--profile",
    type=click.Choice(["general", "lecture", "surveillance"]),
    default="general",
    show_default=True,
    help="Stage defaults: lecture = speech+text, surveillance = motion, general = all.",
)
@click.option("--quiet", "-q", is_flag=True, help="No progress bar or summary.")
@click.option(
    "--library/--no-library",
    default=True,
    help="Add the results to the local library in VIDEOPIPE_DATA_DIR (for search and ask).",
)
@handle_errors
def analyze(
    video: Path,
    out_dir: Path | None,
    as_json: bool,
    vlm: str | None,
    model: str | None,
    vlm_url: str | None,
    dump_prompt: Path | None,
    no_asr: bool,
    no_ocr: bool,
    no_motion: bool,
    no_slides: bool,
    profile: str,
    quiet: bool,
    library: bool,
) -> None:
    """Analyse VIDEO in-process: scenes, keyframes, transcript, on-screen text, motion, chapters, events, tags."""
    from videopipe.analysis import AnalyzeOptions, default_out_dir
    from videopipe.analysis import analyze as run_analyze

    settings = settings_with(model, vlm_url)
    options = AnalyzeOptions.for_profile(
        profile, no_asr=no_asr, no_ocr=no_ocr, no_motion=no_motion, no_slides=no_slides, vlm=vlm,
        dump_prompt=dump_prompt,
    )
    out = out_dir or default_out_dir(video)
    with RichProgress(enabled=not quiet) as bar:
        doc = run_analyze(video, out, settings, options, progress=bar, warn=warn)
    if library:
        try:
            from videopipe.embeddings import require_search

            require_search(settings)
            with err_console.status("adding to the local library (search, ask)", spinner="dots"):
                _add_to_library(local_library(settings), video, doc, out, profile)
        except MissingExtra as exc:  # the analysis is written; only search and ask need the extra
            warn(f"not added to the local library (search, ask): {exc.message}")
    if as_json:
        click.echo(json.dumps(doc, indent=2))
    elif not quiet:
        _print_summary(doc, out)
    _report_vlm(doc, explicit=(vlm or settings.vlm) in ("transformers", "openai"), quiet=quiet or as_json)


def _add_to_library(services: Services, video: Path, doc: dict[str, Any], out: Path, profile: str) -> str:
    return services.jobs.record_analysis(video, doc, out, LOCAL_TENANT, options={"profile": profile})


def _report_vlm(doc: dict[str, Any], explicit: bool, quiet: bool) -> None:
    vlm = doc.get("vlm") or {}
    if not quiet:
        model = f" ({vlm['model']})" if vlm.get("model") else ""
        err_console.print(f"understanding: {vlm.get('backend')}{model}: {vlm.get('reason')}", highlight=False)
    for problem in vlm.get("errors", []):
        warn(problem)
    if vlm.get("error"):
        message = f"{vlm['error']} (scenes, keyframes and extractive chapters were written)"
        if explicit:
            raise VLMErrorForCli(message)
        warn(message)


@click.command()
@click.argument("video", type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.option("--vlm", type=VLM_CHOICE, default=None)
@click.option("--model", default=None, help="Checkpoint whose tokenizer counts the text (transformers).")
@click.option("--vlm-url", default=None)
@handle_errors
def plan(video: Path, as_json: bool, vlm: str | None, model: str | None, vlm_url: str | None) -> None:
    """Show how VIDEO's keyframes would go to Qwen3-VL (sizes, frames, tokens) without running a model.

    Token counts are exact with a local checkpoint (its tokenizer counts the text), estimates otherwise.
    """
    from videopipe.planning import plan_video

    result = plan_video(video, settings_with(model, vlm_url), vlm)
    if as_json:
        click.echo(json.dumps(result, indent=2))
        return
    console = Console()
    console.print(f"counting with: {result['counter']}; backend: {result['backend']} ({result['reason']})")
    for n, w in enumerate(result["windows"], start=1):
        console.print(
            f"window {n}: {w['start_s']:.1f}-{w['end_s']:.1f} s, {w['keyframes']} of {w['keyframes_available']} "
            f"keyframes at {w['frame_size'][0]}x{w['frame_size'][1]} ({w['tokens_per_group']} tokens each), "
            f"{w['prompt_tokens']} prompt tokens of {w['budget_tokens']}, fits: {w['fits']}"
        )


def _print_summary(doc: dict[str, Any], out: Path) -> None:
    v = doc["video"]
    console = Console()
    console.print(
        f"[bold]{escape(Path(v['path']).name)}[/]: {v['duration_s']:.1f} s, {v['width']}x{v['height']}, "
        f"{v['fps']:.2f} fps{' (VFR)' if v['vfr'] else ''}, {v['codec']}, audio: {'yes' if v['has_audio'] else 'no'}"
    )
    table = Table("scene", "start", "end", "keyframes")
    per_scene: dict[int, list[str]] = {}
    for k in doc["keyframes"]:
        per_scene.setdefault(k["scene_index"], []).append(k["time"])
    for s in doc["scenes"][:50]:
        table.add_row(str(s["index"]), s["start"], s["end"], ", ".join(per_scene.get(s["index"], [])))
    console.print(table)
    if len(doc["scenes"]) > 50:
        console.print(f"... {len(doc['scenes']) - 50} more scenes")
    run = doc["run"]
    console.print(
        f"{len(doc['scenes'])} scenes, {len(doc['keyframes'])} keyframes; scanned "
        f"{run['frames_decoded']} frames at {run['scan_fps']} frames/s"
    )
    console.print(f"wrote {out / 'analysis.json'} and {out / 'keyframes'}/")


@click.command()
@click.argument("video", type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@handle_errors
def probe(video: Path, as_json: bool) -> None:
    """Check VIDEO and print its real properties (no decoding beyond the first frame)."""
    from videopipe.media.probe import probe as run_probe

    info = run_probe(video, Settings().limits)
    data = info.to_json()
    if as_json:
        click.echo(json.dumps(data, indent=2))
    else:
        for key, value in data.items():
            click.echo(f"{key:18s} {value}")


@click.command()
@click.option(
    "--out",
    "out_dir",
    type=click.Path(path_type=Path),
    default=Path("demo.videopipe"),
    show_default=True,
    help="Where the analysis goes.",
)
@click.option("--json", "as_json", is_flag=True, help="Print analysis.json to stdout.")
@handle_errors
def demo(out_dir: Path, as_json: bool) -> None:
    """Make a short lecture (slides, synthetic narration, a cut to camera footage), analyse it, check the result.

    Needs nothing but the package (and espeak-ng for the narration; without it the lecture is silent).
    """
    import shutil

    from videopipe.analysis import AnalyzeOptions
    from videopipe.analysis import analyze as run_analyze
    from videopipe.scenes import match_cuts
    from videopipe.testing.media import DEMO_NARRATION, DEMO_SLIDES, write_lecture_video

    settings = Settings()
    sample_dir = settings.data_dir / "samples"
    sample_dir.mkdir(parents=True, exist_ok=True)
    path = sample_dir / "demo-lecture.mp4"
    narration = DEMO_NARRATION if shutil.which("espeak-ng") else []
    if not narration:
        warn("espeak-ng is not installed: the demo lecture will be silent (apt-get install espeak-ng)")
    total = sum(s.duration_s for s in DEMO_SLIDES)
    with RichProgress(enabled=not as_json) as bar:
        bar.start("making a sample lecture", total)
        lecture = write_lecture_video(
            path, DEMO_SLIDES, narration, width=960, height=540, progress=lambda f: bar.update(f * total)
        )
        doc = run_analyze(path, out_dir, settings, AnalyzeOptions(), progress=bar, warn=warn)
    if as_json:
        click.echo(json.dumps(doc, indent=2))
        return
    _print_summary(doc, out_dir)
    console = Console()
    for c in doc["chapters"]:
        title = escape(c["title"])  # model output: never markup
        console.print(f"chapter {c['start'][:8]}-{c['end'][:8]} [bold]{title}[/] ({c['source']})", highlight=False)
    for seg in doc["transcript"][:6]:
        console.print(f"  said at {seg['start_s']:6.2f} s: {escape(seg['text'])}", highlight=False)
    cuts = lecture.slide_starts_s[1:]
    tp, fp, fn = match_cuts([s["start_s"] for s in doc["scenes"][1:]], cuts, tolerance_s=0.5 / 25)
    console.print(
        f"sample {path}: {len(cuts)} slide changes, {tp} found within one frame, {fp} false, {fn} missed; "
        f"{len(doc['ocr'])} slides read, {len(doc['transcript'])} sentences heard"
    )
    # The same video in the local library: search and a question, as `videopipe search` / `ask` answer them.
    services = local_library(settings)
    with err_console.status("adding to the local library (search, ask)", spinner="dots"):
        video_id = _add_to_library(services, path, doc, out_dir, "general")
    query = "when does a volcano erupt"
    for h in services.searcher.search(query, LOCAL_TENANT, video_id=video_id, limit=1):
        console.print(f'search "{query}": {h["start"][:8]}-{h["end"][:8]} {h["text"][:80]}', highlight=False)
    question = "What did the telescope reveal?"
    answer = services.asker.ask(LOCAL_TENANT, video_id, question)
    cited = ", ".join(f"{c['start'][:8]}-{c['end'][:8]}" for c in answer["citations"])
    console.print(f'ask "{question}": {answer["answer"][:80]} [{cited}] ({answer["mode"]})', highlight=False)
