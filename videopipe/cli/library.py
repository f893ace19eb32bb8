"""`search`, `ask`, `eval`, `tag`, `index`: the local library (VIDEOPIPE_DATA_DIR, or the configured database)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, Progress, TextColumn
from rich.table import Table

from videopipe.cli.common import (
    STAGE_LABELS,
    TENANT_OPTION,
    VLM_CHOICE,
    RichProgress,
    err_console,
    handle_errors,
    local_library,
    settings_with,
    warn,
    write_out,
)
from videopipe.config import Settings

if TYPE_CHECKING:
    from videopipe.services import Services


def _resolve_video(services: Services, video: str, tenant: str, analyse: bool = True) -> str:
    """A video id from an id or a path; a file not analysed yet is analysed (and added) first."""
    from videopipe.db.repos import videos
    from videopipe.errors import NotFound
    from videopipe.storage import sha256_file

    path = Path(video)
    with services.sessions() as s:
        if path.is_file():
            found = videos.id_by_content(s, tenant, sha256_file(path))
        else:
            found = video if videos.owns(s, tenant, video) else None
    if found is not None:
        return found
    if not path.is_file():
        raise NotFound(f"{video}: neither a file nor a video id in the library; `videopipe analyze FILE` adds one")
    if not analyse:
        raise NotFound(f"{video} is not in the library yet; run `videopipe analyze {video}` first")
    from videopipe.analysis import AnalyzeOptions, default_out_dir
    from videopipe.analysis import analyze as run_analyze

    err_console.print(f"{escape(path.name)} is not in the library yet: analysing it first", highlight=False)
    out = default_out_dir(path)
    with RichProgress(enabled=True) as bar:
        doc = run_analyze(path, out, services.settings, AnalyzeOptions.for_profile("general"), progress=bar, warn=warn)
    return services.jobs.record_analysis(path, doc, out, tenant)


@click.command()
@click.argument("query")
@click.option("--video", "video", default=None, help="Only inside this video (a path or id).")
@click.option("--limit", type=click.IntRange(1, 200), default=10, show_default=True)
@TENANT_OPTION
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list of moments.")
@handle_errors
def search(query: str, video: str | None, limit: int, tenant: str, as_json: bool) -> None:
    """Find moments across every video in the library: what is said, shown on screen, or captioned."""
    services = local_library(Settings())
    video_id = _resolve_video(services, video, tenant, analyse=False) if video else None
    hits = services.searcher.search(query, tenant, video_id=video_id, limit=limit)
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


@click.command()
@click.argument("video")
@click.argument("question")
@click.option("--vlm", type=VLM_CHOICE, default=None)
@click.option("--model", default=None)
@click.option("--vlm-url", default=None)
@TENANT_OPTION
@click.option("--json", "as_json", is_flag=True)
@handle_errors
def ask(
    video: str, question: str, vlm: str | None, model: str | None, vlm_url: str | None, tenant: str, as_json: bool
) -> None:
    """Answer QUESTION about VIDEO (a path or id) with the time ranges that support it."""
    services = local_library(settings_with(model, vlm_url))
    video_id = _resolve_video(services, video, tenant)
    answer = services.asker.ask(tenant, video_id, question, vlm)
    if as_json:
        click.echo(json.dumps(answer, indent=2))
        return
    click.echo(answer["answer"])
    for c in answer["citations"]:
        click.echo(f"  [{c['start']} - {c['end']}]")
    if answer["note"]:
        err_console.print(f"note: {escape(answer['note'])}", highlight=False, soft_wrap=True)


@click.command("eval")
@click.argument("dataset", type=click.Path(path_type=Path))
@click.option("--vlm", type=VLM_CHOICE, default=None)
@TENANT_OPTION
@click.option("--json", "as_json", is_flag=True, help="Print the report (with per-item results) as JSON.")
@handle_errors
def eval_(dataset: Path, vlm: str | None, tenant: str, as_json: bool) -> None:
    """Measure search and answers on DATASET.jsonl: R@1 at IoU 0.3/0.5/0.7, mIoU, and R@5 for search."""
    from videopipe.evaluation import evaluate, read_dataset

    items = read_dataset(dataset)
    services = local_library(Settings())
    searcher, asker = services.searcher, services.asker
    ids: dict[str, str] = {}

    def resolve(video: str) -> str:
        if video not in ids:
            candidate = dataset.parent / video
            ids[video] = _resolve_video(services, str(candidate if candidate.exists() else video), tenant)
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
        label = "  " + STAGE_LABELS.get(stage, stage)
        if self._task is None:
            self._task = self._bar.add_task(label, total=max(total, 1e-9))
        else:
            self._bar.reset(self._task, description=label, total=max(total, 1e-9))

    def file_done(self) -> None:
        self._bar.advance(self._files)
        if self._task is not None:
            self._bar.remove_task(self._task)
            self._task = None


@click.command()
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
    type=VLM_CHOICE,
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
@TENANT_OPTION
@click.option("--quiet", "-q", is_flag=True, help="No progress bars.")
@handle_errors
def tag(
    paths: tuple[str, ...], vocab: Path | None, top_k: int, csv_out: Path | None, json_out: Path | None,
    vlm: str, model: str | None, vlm_url: str | None, profile: str, tenant: str, quiet: bool,
) -> None:  # fmt: skip
    """Tag many videos (files, folders, or library ids) in-process, adding them to the local library.

    Files analysed before with the same settings are not analysed again; stopped and run again with the same
    arguments, it goes on where it stopped. A file that cannot be read fails alone; the exit status is then 1.
    """
    from videopipe.batches import batch_key, expand_paths
    from videopipe.exports import tags_csv
    from videopipe.tagging import read_vocabulary

    services = local_library(settings_with(model, vlm_url))
    labels = read_vocabulary(vocab) if vocab else None
    sources: list[str] = []
    for raw in paths:
        if not Path(raw).exists() and _is_video_id(services, raw, tenant):
            sources.append(f"video:{raw}")
        else:
            sources += [str(p) for p in expand_paths([raw])]
    sources = list(dict.fromkeys(sources))  # a file named and also inside a named folder is tagged once
    if not sources:
        from videopipe.errors import NotFound

        raise NotFound(f"no video files in {' '.join(paths)}")
    options = {"profile": profile}
    batches = services.batches
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
        write_out(csv_out, tags_csv(batches.export_rows(tenant, batch_id)))
    if json_out is not None:
        write_out(json_out, json.dumps(summary, indent=2, default=str))
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


def _is_video_id(services: Services, raw: str, tenant: str) -> bool:
    from videopipe.db.repos import videos

    with services.sessions() as s:
        return videos.owns(s, tenant, raw)


@click.group()
def index() -> None:
    """The moment vector index."""


@index.command("rebuild")
@handle_errors
def index_rebuild() -> None:
    """Rebuild the vector index from the database (embedding moments with the configured model first, if it
    changed); the old index keeps serving until the new one is swapped in."""
    from videopipe.index import vector_index

    settings = Settings()
    services = local_library(settings)
    idx = vector_index(settings, services.sessions)
    with RichProgress(enabled=True) as bar:
        bar.start("embedding moments", 1)
        manifest = idx.rebuild(lambda done, total: bar.update(done / max(total, 1)))
    if manifest is None:
        click.echo("no moments to index yet")
    else:
        click.echo(
            f"index generation {manifest.generation}: {manifest.count} moments, {manifest.model}, {manifest.kind}"
        )
