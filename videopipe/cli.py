"""The ``videopipe`` command.

Errors a user can cause print one line (``error: ...``) and exit with status 2; no tracebacks unless
``--debug`` is given.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, Self, TypeVar

import click
import pydantic
from rich.console import Console
from rich.logging import RichHandler
from rich.markup import escape
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from videopipe.config import Settings
from videopipe.errors import MissingExtra, VideopipeError, VLMError


class VLMErrorForCli(VLMError):
    """The model failed after the analysis was written: exit 2, results kept."""


err_console = Console(stderr=True, emoji=False)  # messages quote file names and FFmpeg options
F = TypeVar("F", bound=Callable[..., Any])

_STAGE_LABELS = {
    "scan": "scanning (cuts, keyframes, motion)",
    "keyframes": "saving keyframes",
    "speech": "speech to text",
    "ocr": "on-screen text",
    "understand": "understanding (Qwen3-VL)",
}


class RichProgress:
    """`videopipe.progress.Progress` drawn as a rich progress bar on stderr."""

    def __init__(self, enabled: bool) -> None:
        self._bar = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            TextColumn("{task.percentage:>3.0f}%"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=err_console,
            disable=not enabled,
            transient=False,
        )
        self._task: TaskID | None = None

    def __enter__(self) -> Self:
        self._bar.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *rest: object) -> None:
        if exc_type is not None:
            # On failure the error line is all the user should see: drop the half-drawn bars.
            for task in list(self._bar.task_ids):
                self._bar.remove_task(task)
        self._bar.stop()

    def start(self, stage: str, total: float) -> None:
        if self._task is not None:  # finish the previous stage's bar (tasks are listed, not indexed, by id)
            done = next((t.total for t in self._bar.tasks if t.id == self._task), None)
            self._bar.update(self._task, completed=done)
        self._task = self._bar.add_task(_STAGE_LABELS.get(stage, stage), total=max(total, 1e-9))

    def update(self, done: float) -> None:
        if self._task is not None:
            self._bar.update(self._task, completed=done)


def _say_error(prefix: str, message: str) -> None:
    """One line on stderr. The message is plain text (it can quote file names and FFmpeg's `-map 0:v:0`): no
    markup or emoji codes are read from it."""
    err_console.print(f"[bold red]{prefix}:[/] {escape(message)}", highlight=False, soft_wrap=True, emoji=False)


def _handle_errors(func: F) -> F:
    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        debug = click.get_current_context().find_root().params.get("debug", False)
        try:
            return func(*args, **kwargs)
        except VideopipeError as exc:
            if debug:
                raise
            _say_error("error", exc.message)
            sys.exit(2)
        except pydantic.ValidationError as exc:
            first = exc.errors()[0]
            where = "__".join(str(part) for part in first["loc"]).upper()
            _say_error("error", f"invalid setting VIDEOPIPE_{where}: {first['msg']}; fix the environment variable")
            sys.exit(2)
        except BrokenPipeError:  # `videopipe search ... | head`: the reader has all it wanted
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())  # Python's own flush at exit must not fail again
            sys.exit(1)
        except KeyboardInterrupt:
            err_console.print("interrupted; earlier results were left as they were")
            sys.exit(130)
        except Exception as exc:  # a bug, not the user's input: say so in one line unless debugging
            if debug:
                raise
            _say_error(
                "internal error",
                f"{type(exc).__name__}: {exc}; rerun with `videopipe --debug ...` and report the traceback",
            )
            sys.exit(1)

    return wrapper  # type: ignore[return-value]


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--debug", is_flag=True, help="Show tracebacks and debug logs.")
@click.version_option(package_name="videopipe")
def main(debug: bool) -> None:
    """videopipe: chapters, events, transcripts and timestamped search for long videos."""
    logging.basicConfig(
        level=logging.DEBUG if debug else logging.WARNING,
        format="%(message)s",
        handlers=[RichHandler(console=err_console, show_time=False, show_path=debug)],
    )


def _warn(message: str) -> None:
    err_console.print(f"[yellow]warning:[/] {escape(message)}", highlight=False, soft_wrap=True, emoji=False)


_VLM_CHOICE = click.Choice(["auto", "none", "transformers", "openai"])


@main.command()
@click.argument("video", type=click.Path(path_type=Path))
@click.option(
    "--out",
    "out_dir",
    type=click.Path(path_type=Path),
    default=None,
    help="Output folder (default: ./<video name>.videopipe/).",
)
@click.option("--json", "as_json", is_flag=True, help="Print analysis.json to stdout.")
@click.option("--vlm", type=_VLM_CHOICE, default=None, help="Understanding backend (default: VIDEOPIPE_VLM or auto).")
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
@_handle_errors
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
    profile: str,
    quiet: bool,
    library: bool,
) -> None:
    """Analyse VIDEO in-process: scenes, keyframes, transcript, on-screen text, motion, chapters, events, tags."""
    from videopipe.analysis import AnalyzeOptions, default_out_dir
    from videopipe.analysis import analyze as run_analyze

    settings = _settings(model, vlm_url)
    options = AnalyzeOptions.for_profile(
        profile, no_asr=no_asr, no_ocr=no_ocr, no_motion=no_motion, vlm=vlm, dump_prompt=dump_prompt
    )
    out = out_dir or default_out_dir(video)
    with RichProgress(enabled=not quiet) as bar:
        doc = run_analyze(video, out, settings, options, progress=bar, warn=_warn)
    if library:
        try:
            from videopipe.embeddings import require_search

            require_search(settings)
            with err_console.status("adding to the local library (search, ask)", spinner="dots"):
                _add_to_library(_library(settings), video, doc, out, profile)
        except MissingExtra as exc:  # the analysis is written; only search and ask need the extra
            _warn(f"not added to the local library (search, ask): {exc.message}")
    if as_json:
        click.echo(json.dumps(doc, indent=2))
    elif not quiet:
        _print_summary(doc, out)
    _report_vlm(doc, explicit=(vlm or settings.vlm) in ("transformers", "openai"), quiet=quiet or as_json)


def _library(settings: Settings) -> Any:
    from videopipe.pipeline import open_pipeline

    return open_pipeline(settings, migrate=settings.database_url is None)


def _add_to_library(pipeline: Any, video: Path, doc: dict[str, Any], out: Path, profile: str) -> str:
    video_id: str = pipeline.import_document(video, doc, out, options={"profile": profile})
    return video_id


def _resolve_video(pipeline: Any, settings: Settings, video: str, tenant: str, analyse: bool = True) -> str:
    """A video id from an id or a path; a file not analysed yet is analysed (and added) first."""
    from sqlalchemy import select

    from videopipe.db.models import Video
    from videopipe.errors import NotFound
    from videopipe.storage import sha256_file

    path = Path(video)
    with pipeline.sessions() as s:
        if path.is_file():
            digest = sha256_file(path)
            found = s.scalars(select(Video.id).where(Video.tenant == tenant, Video.content_hash == digest)).first()
        else:
            row = s.get(Video, video)
            found = row.id if row is not None and row.tenant == tenant else None
    if found is not None:
        return str(found)
    if not path.is_file():
        raise NotFound(f"{video}: neither a file nor a video id in the library; `videopipe analyze FILE` adds one")
    if not analyse:
        raise NotFound(f"{video} is not in the library yet; run `videopipe analyze {video}` first")
    from videopipe.analysis import AnalyzeOptions, default_out_dir
    from videopipe.analysis import analyze as run_analyze

    err_console.print(f"{escape(path.name)} is not in the library yet: analysing it first", highlight=False)
    out = default_out_dir(path)
    with RichProgress(enabled=True) as bar:
        doc = run_analyze(path, out, settings, AnalyzeOptions.for_profile("general"), progress=bar, warn=_warn)
    video_id: str = pipeline.import_document(path, doc, out)
    return video_id


@main.command()
@click.argument("query")
@click.option("--video", "video", default=None, help="Only inside this video (a path or id).")
@click.option("--limit", type=click.IntRange(1, 200), default=10, show_default=True)
@click.option("--tenant", default="default", show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list of moments.")
@_handle_errors
def search(query: str, video: str | None, limit: int, tenant: str, as_json: bool) -> None:
    """Find moments across every video in the library: what is said, shown on screen, or captioned."""
    from videopipe.search import Searcher

    settings = Settings()
    pipeline = _library(settings)
    video_id = _resolve_video(pipeline, settings, video, tenant, analyse=False) if video else None
    hits = Searcher(settings, pipeline.sessions).search(query, tenant, video_id=video_id, limit=limit)
    for h in hits:
        h["link"] = f"{_file_url(h['path'])}#t={h['start_s']:.3f}"
    if as_json:
        click.echo(json.dumps(hits, indent=2))
        return
    if not hits:
        click.echo("no matching moments")
    for n, h in enumerate(hits, 1):
        click.echo(f"{n:>2}. {h['filename']}  {h['start']} - {h['end']}  score {h['score']:.2f}")
        click.echo(f"    {h['text'][:200]}")
        click.echo(f"    {h['link']}")


def _file_url(path: str) -> str:
    p = Path(path)
    return p.resolve().as_uri() if p.is_absolute() else path


@main.command()
@click.argument("video")
@click.argument("question")
@click.option("--vlm", type=_VLM_CHOICE, default=None)
@click.option("--model", default=None)
@click.option("--vlm-url", default=None)
@click.option("--tenant", default="default", show_default=True)
@click.option("--json", "as_json", is_flag=True)
@_handle_errors
def ask(
    video: str, question: str, vlm: str | None, model: str | None, vlm_url: str | None, tenant: str, as_json: bool
) -> None:
    """Answer QUESTION about VIDEO (a path or id) with the time ranges that support it."""
    from videopipe.ask import Asker

    settings = _settings(model, vlm_url)
    pipeline = _library(settings)
    video_id = _resolve_video(pipeline, settings, video, tenant)
    answer = Asker(pipeline, settings).ask(tenant, video_id, question, vlm)
    if as_json:
        click.echo(json.dumps(answer, indent=2))
        return
    click.echo(answer["answer"])
    for c in answer["citations"]:
        click.echo(f"  [{c['start']} - {c['end']}]")
    if answer["note"]:
        err_console.print(f"note: {escape(answer['note'])}", highlight=False, soft_wrap=True)


@main.command("eval")
@click.argument("dataset", type=click.Path(path_type=Path))
@click.option("--vlm", type=_VLM_CHOICE, default=None)
@click.option("--tenant", default="default", show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print the report (with per-item results) as JSON.")
@_handle_errors
def eval_(dataset: Path, vlm: str | None, tenant: str, as_json: bool) -> None:
    """Measure search and answers on DATASET.jsonl: R@1 at IoU 0.3/0.5/0.7, mIoU, and R@5 for search."""
    from videopipe.ask import Asker
    from videopipe.evaluation import evaluate, read_dataset
    from videopipe.search import Searcher

    settings = Settings()
    items = read_dataset(dataset)
    pipeline = _library(settings)
    searcher, asker = Searcher(settings, pipeline.sessions), Asker(pipeline, settings)
    ids: dict[str, str] = {}

    def resolve(video: str) -> str:
        if video not in ids:
            candidate = dataset.parent / video
            ids[video] = _resolve_video(pipeline, settings, str(candidate if candidate.exists() else video), tenant)
        return ids[video]

    def spans_of_search(video_id: str, query: str) -> list[tuple[float, float]]:
        return [(h["start_s"], h["end_s"]) for h in searcher.search(query, tenant, video_id=video_id, limit=5)]

    def spans_of_answer(video_id: str, question: str) -> list[tuple[float, float]]:
        return [(c["start_s"], c["end_s"]) for c in asker.ask(tenant, video_id, question, vlm)["citations"]]

    bar = Progress(TextColumn("evaluating"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                   console=err_console, transient=True)  # fmt: skip
    with bar:
        task = bar.add_task("eval", total=len(items))
        report = evaluate(items, resolve, spans_of_search, spans_of_answer, lambda n: bar.update(task, completed=n))
    if as_json:
        click.echo(json.dumps(report, indent=2))
        return
    table = Table("task", "n", "R@1 IoU.3", "R@1 IoU.5", "R@1 IoU.7", "mIoU", "R@5 IoU.5")
    for kind, part in report.items():
        m = part["summary"]
        table.add_row(kind, str(m["n"]), *(f"{m[f'R@1,IoU={t}']:.3f}" for t in (0.3, 0.5, 0.7)), f"{m['mIoU']:.3f}",
                      f"{m['R@5,IoU=0.5']:.3f}" if "R@5,IoU=0.5" in m else "-")  # fmt: skip
    Console().print(table)


class BatchProgress(RichProgress):
    """Two bars: files done of the batch, and the stage of the file being analysed."""

    def __init__(self, enabled: bool, total: int, done: int) -> None:
        super().__init__(enabled)
        self._files = self._bar.add_task("files", total=max(total, 1), completed=done)

    def file(self, name: str) -> None:
        self._bar.update(self._files, description=f"files (now: {name[-40:]})")

    def start(self, stage: str, total: float) -> None:  # one bar for the current file's stage, reused
        label = "  " + _STAGE_LABELS.get(stage, stage)
        if self._task is None:
            self._task = self._bar.add_task(label, total=max(total, 1e-9))
        else:
            self._bar.reset(self._task, description=label, total=max(total, 1e-9))

    def file_done(self) -> None:
        self._bar.advance(self._files)
        if self._task is not None:
            self._bar.remove_task(self._task)
            self._task = None


@main.command()
@click.argument("paths", nargs=-1, required=True)
@click.option(
    "--vocab",
    "vocab",
    type=click.Path(path_type=Path, exists=True, dir_okay=False),
    default=None,
    help="Allowed tags: .txt (tag or tag: description per line), .json or .csv. Free tags without.",
)
@click.option("--top-k", type=click.IntRange(1, 50), default=5, show_default=True, help="Tags kept per video.")
@click.option(
    "--csv",
    "csv_out",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="Write one row per (video, tag) here ('-': standard output).",
)
@click.option(
    "--json",
    "json_out",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="Write every file's tags and status as JSON here ('-': standard output).",
)
@click.option(
    "--vlm",
    type=_VLM_CHOICE,
    default="none",
    show_default=True,
    help="Tag with Qwen3-VL (constrained to the vocabulary); none: zero-shot from embeddings.",
)
@click.option("--model", default=None, help="Qwen3-VL checkpoint (path or hub id) for --vlm transformers.")
@click.option("--vlm-url", default=None, help="OpenAI-compatible server (vLLM) for --vlm openai.")
@click.option(
    "--profile",
    type=click.Choice(["general", "lecture", "surveillance"]),
    default="general",
    show_default=True,
    help="Analysis profile for files not analysed yet.",
)
@click.option("--tenant", default="default", show_default=True)
@click.option("--quiet", "-q", is_flag=True, help="No progress bars.")
@_handle_errors
def tag(
    paths: tuple[str, ...], vocab: Path | None, top_k: int, csv_out: Path | None, json_out: Path | None,
    vlm: str, model: str | None, vlm_url: str | None, profile: str, tenant: str, quiet: bool,
) -> None:  # fmt: skip
    """Tag many videos (files, folders, or library ids) in-process, adding them to the local library.

    Files analysed before with the same settings are not analysed again; stopped and run again with the same
    arguments, it goes on where it stopped. A file that cannot be read fails alone; the exit status is then 1.
    """
    from videopipe.batches import Batches, batch_key, expand_paths
    from videopipe.exports import tags_csv
    from videopipe.tagging import read_vocabulary

    settings = _settings(model, vlm_url)
    pipeline = _library(settings)
    labels = read_vocabulary(vocab) if vocab else None
    sources: list[str] = []
    for raw in paths:
        if not Path(raw).exists() and _is_video_id(pipeline, raw, tenant):
            sources.append(f"video:{raw}")
        else:
            sources += [str(p) for p in expand_paths([raw])]
    sources = list(dict.fromkeys(sources))  # a file named and also inside a named folder is tagged once
    if not sources:
        from videopipe.errors import NotFound

        raise NotFound(f"no video files in {' '.join(paths)}")
    options = {"profile": profile}
    batches = Batches(pipeline)
    key = batch_key(tenant, sources, labels, top_k, vlm, options)
    batch_id = batches.find_unfinished(tenant, key)
    resumed = batch_id is not None
    if batch_id is None:
        batch_id = batches.create(tenant, sources, labels, top_k, vlm, options, key=key)
    before = batches.describe(tenant, batch_id, items=False)
    finished = before["total"] - before["counts"]["pending"] - before["counts"]["analyzing"]
    if resumed:
        err_console.print(f"resuming batch {batch_id}: {finished} of {before['total']} files already finished",
                          highlight=False)  # fmt: skip
    with BatchProgress(not quiet, before["total"], finished) as bar:

        def on_item(outcome: Any) -> None:
            name = Path(outcome.source).name
            if outcome.status == "failed":
                err_console.print(f"[red]failed[/] {escape(name)}: {escape(outcome.error or '')}", highlight=False,
                                  soft_wrap=True)  # fmt: skip
            elif not quiet:
                top = ", ".join(f"{t['tag']} {t['score']:.2f}" for t in outcome.tags[:3])
                line = f"{name}: {top or 'no tags'}{' (analysis reused)' if outcome.reused else ''}"
                err_console.print(escape(line),
                                  highlight=False)  # fmt: skip
            bar.file_done()

        batches.run_inline(tenant, batch_id, progress=bar, on_item=on_item, on_start=bar.file)
    summary = batches.describe(tenant, batch_id)
    if csv_out is not None:
        _write_out(csv_out, tags_csv(batches.export_rows(tenant, batch_id)))
    if json_out is not None:
        _write_out(json_out, json.dumps(summary, indent=2, default=str))
    counts = summary["counts"]
    err_console.print(f"batch {batch_id}: {counts['done']} tagged, {counts['failed']} failed"
                      f"{', ' + str(counts['cancelled']) + ' cancelled' if counts['cancelled'] else ''}",
                      highlight=False)  # fmt: skip
    if csv_out is None and json_out is None:
        for item in summary["items"]:
            tags = ", ".join(f"{t['tag']} ({t['score']:.2f})" for t in item["tags"])
            click.echo(f"{item['source']}\t{item['status']}\t{tags or item['error'] or ''}")
    if counts["failed"]:
        sys.exit(1)


def _is_video_id(pipeline: Any, raw: str, tenant: str) -> bool:
    from videopipe.db.models import Video

    with pipeline.sessions() as s:
        video = s.get(Video, raw)
        return video is not None and video.tenant == tenant


def _write_out(target: Path, text: str) -> None:
    if str(target) == "-":
        click.echo(text, nl=False)
    else:
        target.write_text(text, encoding="utf-8")


@main.group()
def index() -> None:
    """The moment vector index."""


@index.command("rebuild")
@_handle_errors
def index_rebuild() -> None:
    """Rebuild the vector index from the database (embedding moments with the configured model first, if it
    changed); the old index keeps serving until the new one is swapped in."""
    from videopipe.index import vector_index

    settings = Settings()
    pipeline = _library(settings)
    idx = vector_index(settings, pipeline.sessions)
    with RichProgress(enabled=True) as bar:
        bar.start("embedding moments", 1)
        manifest = idx.rebuild(lambda done, total: bar.update(done / max(total, 1)))
    if manifest is None:
        click.echo("no moments to index yet")
    else:
        click.echo(
            f"index generation {manifest.generation}: {manifest.count} moments, {manifest.model}, {manifest.kind}"
        )


def _settings(model: str | None, vlm_url: str | None) -> Settings:
    overrides: dict[str, Any] = {}
    if model:
        overrides["vlm_model"] = model
    if vlm_url:
        overrides["vlm_url"] = vlm_url
    return Settings(**overrides)


def _report_vlm(doc: dict[str, Any], explicit: bool, quiet: bool) -> None:
    vlm = doc.get("vlm") or {}
    if not quiet:
        model = f" ({vlm['model']})" if vlm.get("model") else ""
        err_console.print(f"understanding: {vlm.get('backend')}{model}: {vlm.get('reason')}", highlight=False)
    for problem in vlm.get("errors", []):
        _warn(problem)
    if vlm.get("error"):
        message = f"{vlm['error']} (scenes, keyframes and extractive chapters were written)"
        if explicit:
            raise VLMErrorForCli(message)
        _warn(message)


@main.command()
@click.argument("video", type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.option("--vlm", type=_VLM_CHOICE, default=None)
@click.option("--model", default=None, help="Checkpoint whose tokenizer counts the text (transformers).")
@click.option("--vlm-url", default=None)
@_handle_errors
def plan(video: Path, as_json: bool, vlm: str | None, model: str | None, vlm_url: str | None) -> None:
    """Show how VIDEO's keyframes would go to Qwen3-VL (sizes, frames, tokens) without running a model.

    Token counts are exact with a local checkpoint (its tokenizer counts the text), estimates otherwise.
    """
    from videopipe.planning import plan_video

    result = plan_video(video, _settings(model, vlm_url), vlm)
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


@main.command()
@click.argument("video", type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@_handle_errors
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


@main.command()
@click.option(
    "--out",
    "out_dir",
    type=click.Path(path_type=Path),
    default=Path("demo.videopipe"),
    show_default=True,
    help="Where the analysis goes.",
)
@click.option("--json", "as_json", is_flag=True, help="Print analysis.json to stdout.")
@_handle_errors
def demo(out_dir: Path, as_json: bool) -> None:
    """Make a short lecture (slides, synthetic narration, a cut to camera footage), analyse it, check the result.

    Needs nothing but the package (and espeak-ng for the narration; without it the lecture is silent).
    """
    import shutil

    from videopipe.analysis import AnalyzeOptions
    from videopipe.analysis import analyze as run_analyze
    from videopipe.samples import DEMO_NARRATION, DEMO_SLIDES, write_lecture_video
    from videopipe.scenes import match_cuts

    settings = Settings()
    sample_dir = settings.data_dir / "samples"
    sample_dir.mkdir(parents=True, exist_ok=True)
    path = sample_dir / "demo-lecture.mp4"
    narration = DEMO_NARRATION if shutil.which("espeak-ng") else []
    if not narration:
        _warn("espeak-ng is not installed: the demo lecture will be silent (apt-get install espeak-ng)")
    total = sum(s.duration_s for s in DEMO_SLIDES)
    with RichProgress(enabled=not as_json) as bar:
        bar.start("making a sample lecture", total)
        lecture = write_lecture_video(
            path, DEMO_SLIDES, narration, width=960, height=540, progress=lambda f: bar.update(f * total)
        )
        doc = run_analyze(path, out_dir, settings, AnalyzeOptions(), progress=bar, warn=_warn)
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
    from videopipe.ask import Asker
    from videopipe.search import Searcher

    pipeline = _library(settings)
    with err_console.status("adding to the local library (search, ask)", spinner="dots"):
        video_id = _add_to_library(pipeline, path, doc, out_dir, "general")
    query = "when does a volcano erupt"
    for h in Searcher(settings, pipeline.sessions).search(query, "default", video_id=video_id, limit=1):
        console.print(f'search "{query}": {h["start"][:8]}-{h["end"][:8]} {h["text"][:80]}', highlight=False)
    question = "What did the telescope reveal?"
    answer = Asker(pipeline, settings).ask("default", video_id, question)
    cited = ", ".join(f"{c['start'][:8]}-{c['end'][:8]}" for c in answer["citations"])
    console.print(f'ask "{question}": {answer["answer"][:80]} [{cited}] ({answer["mode"]})', highlight=False)


def pipeline_with_dispatcher(settings: Settings) -> tuple[Any, Any]:
    """The pipeline with Celery dispatch when a broker is configured, else with the in-process runner."""
    from videopipe.pipeline import EmbeddedRunner, Pipeline, open_pipeline

    embedded_sqlite = settings.database_url is None
    if settings.broker_url:
        from workers.celery_app import CeleryDispatcher, make_app

        return open_pipeline(settings, CeleryDispatcher(make_app(settings)), migrate=embedded_sqlite), None
    holder: dict[str, Pipeline] = {}
    runner = EmbeddedRunner(
        lambda: holder["p"], settings.jobs.embedded_concurrency, settings.jobs.max_running_per_tenant
    )
    holder["p"] = open_pipeline(settings, runner, migrate=embedded_sqlite)
    return holder["p"], runner


@main.command()
@click.argument("video", type=click.Path(path_type=Path))
@click.option("--tenant", default="default", show_default=True)
@click.option("--profile", type=click.Choice(["general", "lecture", "surveillance"]), default="general")
@click.option("--vlm", type=_VLM_CHOICE, default=None)
@click.option("--no-asr", is_flag=True)
@click.option("--no-ocr", is_flag=True)
@click.option("--no-motion", is_flag=True)
@_handle_errors
def submit(
    video: Path, tenant: str, profile: str, vlm: str | None, no_asr: bool, no_ocr: bool, no_motion: bool
) -> None:
    """Queue VIDEO for analysis and print the job id (last word). With no broker configured the stages run
    here, in this process, before it returns."""
    settings = Settings()
    pipeline, runner = pipeline_with_dispatcher(settings)
    options = {"profile": profile, "asr": not no_asr, "ocr": not no_ocr, "motion": not no_motion, "vlm": vlm}
    submitted = pipeline.submit(video, tenant=tenant, options=options)
    if runner is not None:
        with err_console.status("running the stages in-process (no broker configured)"):
            runner.wait()
        runner.shutdown()
    state = pipeline.status(submitted.job_id)["status"]
    note = "" if submitted.created else " (already submitted: same video, same settings)"
    click.echo(f"job {state}{note}: {submitted.job_id}")


@main.command()
@click.argument("job_id")
@click.option("--json", "as_json", is_flag=True)
@_handle_errors
def status(job_id: str, as_json: bool) -> None:
    """Show a job: queued, running, ready, failed or cancelled, with its stage and progress."""
    from videopipe.pipeline import open_pipeline

    info = open_pipeline(Settings()).status(job_id)
    if as_json:
        click.echo(json.dumps(info, indent=2))
        return
    stage = f", stage {info['stage']}" if info["stage"] else ""
    click.echo(f"{info['job_id']}: {info['status']}{stage}, {info['progress']:.0%}")
    if info["error"]:
        click.echo(f"error ({info['error_type']}): {info['error']}")


@main.command()
@click.argument("job_id")
@_handle_errors
def cancel(job_id: str) -> None:
    """Cancel a job; a running stage stops at its next progress report."""
    from videopipe.pipeline import open_pipeline

    info = open_pipeline(Settings()).cancel(job_id)
    click.echo(f"{info['job_id']}: {info['status']}{' (stopping)' if info['status'] == 'running' else ''}")


@main.command()
@click.option("--queues", default="cpu,gpu,index", show_default=True, help="Comma-separated queues to serve.")
@click.option("--concurrency", type=int, default=1, show_default=True)
@click.option("--beat/--no-beat", default=False, help="Also run Celery beat (not needed: every worker reconciles).")
@click.option("--loglevel", default="INFO")
@_handle_errors
def worker(queues: str, concurrency: int, beat: bool, loglevel: str) -> None:
    """Run a Celery worker for the given queues (VIDEOPIPE_BROKER_URL must be set)."""
    from workers.celery_app import make_app

    app = make_app(Settings())
    argv = ["worker", f"--queues={queues}", f"--concurrency={concurrency}", f"--loglevel={loglevel}",
            "--prefetch-multiplier=1", "--without-gossip", "--without-mingle"]  # fmt: skip
    if beat:
        argv += ["--beat", f"--schedule={Settings().data_dir / 'celerybeat-schedule'}"]
    app.worker_main(argv)


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind (0.0.0.0: every interface).")
@click.option("--port", default=8000, show_default=True, type=int)
@click.option("--workers", default=1, show_default=True, type=click.IntRange(1, 64), help="Server processes.")
@click.option("--log-level", default="info", show_default=True)
@_handle_errors
def serve(host: str, port: int, workers: int, log_level: str) -> None:
    """Run the REST API (docs at /docs). Without a broker, the stages run inside the server process(es)."""
    import os

    import uvicorn

    from api.app import app_from_env
    from api.context import RequestIdFilter

    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s [%(request_id)s] %(name)s: %(message)s"))
    handler.addFilter(RequestIdFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(log_level.upper())
    logging.getLogger("alembic").setLevel(logging.WARNING)
    os.environ["VIDEOPIPE_SERVE_HOST"] = host
    settings = Settings()
    mode = "workers via " + settings.broker_url if settings.broker_url else "in-process stages (no broker configured)"
    logging.getLogger("api").info("videopipe API on http://%s:%d (%s); docs at /docs", host, port, mode)
    if workers == 1:
        uvicorn.run(app_from_env(), host=host, port=port, log_config=None, log_level=log_level, access_log=False)
    else:
        if settings.database_url is None:
            from videopipe.pipeline import open_pipeline

            open_pipeline(settings, migrate=True)  # migrate once, before the processes start
        uvicorn.run("api.app:app_from_env", factory=True, host=host, port=port, workers=workers, log_config=None,
                    log_level=log_level, access_log=False)  # fmt: skip


@main.group()
def keys() -> None:
    """API keys for the REST API (each bound to one tenant)."""


def _keystore() -> Any:
    from videopipe.auth import KeyStore
    from videopipe.pipeline import open_pipeline

    settings = Settings()
    return KeyStore(open_pipeline(settings, migrate=settings.database_url is None).sessions)


@keys.command("create")
@click.option("--tenant", required=True, help="The tenant the key acts for.")
@_handle_errors
def keys_create(tenant: str) -> None:
    """Create a key and print it (last word). It is stored only as a hash: copy it now."""
    key_id, key = _keystore().create(tenant)
    err_console.print(f"key {key_id} for tenant {tenant!r}; it will not be shown again", highlight=False)
    click.echo(key)


@keys.command("list")
@_handle_errors
def keys_list() -> None:
    """List keys (ids, tenants, prefixes; never the keys)."""
    for k in _keystore().list():
        click.echo(
            f"{k['id']}  {k['tenant']:<20} {k['prefix']}...  {k['created_at']}{'  revoked' if k['revoked'] else ''}"
        )


@keys.command("revoke")
@click.argument("key_id")
@_handle_errors
def keys_revoke(key_id: str) -> None:
    """Revoke a key by id: requests with it are refused from now on."""
    _keystore().revoke(key_id)
    click.echo(f"revoked {key_id}")


@main.group()
def db() -> None:
    """Database schema (VIDEOPIPE_DATABASE_URL, else a SQLite file in the data dir)."""


@db.command("upgrade")
@click.argument("revision", default="head")
@_handle_errors
def db_upgrade(revision: str) -> None:
    """Apply migrations up to REVISION (default: head)."""
    from videopipe.db import database_url
    from videopipe.db.migrate import upgrade

    url = database_url(Settings())
    upgrade(url, revision)
    click.echo(f"database at {_redact(url)} is at {revision}")


@db.command("downgrade")
@click.argument("revision")
@_handle_errors
def db_downgrade(revision: str) -> None:
    """Undo migrations down to REVISION ("base" removes every table)."""
    from videopipe.db import database_url
    from videopipe.db.migrate import downgrade

    url = database_url(Settings())
    downgrade(url, revision)
    click.echo(f"database at {_redact(url)} is at {revision}")


def _redact(url: str) -> str:
    """A database URL without its password, for printing."""
    import re

    return re.sub(r"://([^:/@]+):[^@]*@", r"://\1:***@", url)


if __name__ == "__main__":  # pragma: no cover
    main()
