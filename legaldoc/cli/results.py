"""`export` and `search`: a project's results where users already work."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from legaldoc.cli.common import JsonOption, ProjectOption, connected
from legaldoc.cli.output import emit_json, handled, note, stderr
from legaldoc.services.export import ExportFormat, Tick
from legaldoc.services.export import export as export_project
from legaldoc.services.wiring import Runtime


@connected("database")
def export(
    rt: Runtime,
    project: ProjectOption = None,
    fmt: Annotated[ExportFormat, typer.Option("--format", "-f", help="jsonl, csv (a folder), graphml, neo4j (a folder with import.sh) or parquet (a folder).")] = ExportFormat.JSONL,
    out: Annotated[Path | None, typer.Option("--out", "-o", help="File or folder to write; '-' is stdout (jsonl). Default: stdout for jsonl, else PROJECT.FORMAT / PROJECT-FORMAT.")] = None,
    batch: Annotated[str | None, typer.Option("--batch", help="Only the documents of this batch (and what they mention).")] = None,
    types: Annotated[list[str] | None, typer.Option("--type", "-t", help="Only these entity types (repeat the option).")] = None,
    excel: Annotated[bool, typer.Option("--excel", help="CSV as UTF-8 with a byte-order mark, so Excel reads accents right.")] = False,
    force: Annotated[bool, typer.Option("--force", help="Replace --out if it exists.")] = False,
    json_output: JsonOption = False,
) -> None:
    """Export a project's documents, mentions, entities, aliases and relationships."""
    to_stdout = (out is None and fmt is ExportFormat.JSONL) or str(out) == "-"
    show_progress = stderr.is_terminal and not to_stdout
    bar = Progress(TextColumn("exporting"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(), console=stderr,
                   disable=not show_progress)  # fmt: skip

    def progress(total: int) -> Tick:
        task = bar.add_task("export", total=total)
        return lambda n: bar.advance(task, n)

    with handled(), bar:
        result = export_project(rt.open_database().database, rt.settings.project, fmt, out, batch_id=batch,
                                types=types or [], excel=excel, force=force, progress=progress)  # fmt: skip
    if json_output and not to_stdout:
        emit_json(result.as_json())
        return
    rows = sum(f.rows for f in result.files)
    note(f"exported project {result.project} as {fmt.value}: {rows:,} rows"
         + ("" if to_stdout else f" in {result.out}"))  # fmt: skip
