"""`export` and `search`: a project's results where users already work."""

from __future__ import annotations

import json
import sys
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table
from rich.text import Text

from legaldoc.cli.common import JsonOption, ProjectOption, connected
from legaldoc.cli.output import emit_json, fail, handled, note, stderr, stdout
from legaldoc.errors import UsageError
from legaldoc.paths import display_name
from legaldoc.services import batches
from legaldoc.services.export import ExportFormat, Tick
from legaldoc.services.export import export as export_project
from legaldoc.services.report import render_html, render_markdown
from legaldoc.services.search import search_entity, search_text
from legaldoc.services.wiring import Runtime
from legaldoc.storage.search import HIGHLIGHT


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


@connected("database")
def search(
    rt: Runtime,
    query: Annotated[str | None, typer.Argument(help='Words, "exact phrases", a or b, -excluded (same on SQLite and PostgreSQL).')] = None,
    project: ProjectOption = None,
    entity: Annotated[str | None, typer.Option("--entity", "-e", help="Instead of text: the documents and pages that mention this entity (name, alias or id).")] = None,
    entity_type: Annotated[str | None, typer.Option("--type", "-t", help="Only chunks holding a mention of this type (with --entity: only entities of this type).")] = None,
    limit: Annotated[int, typer.Option("--limit", "-n", help="At most this many results.")] = 20,
    json_output: JsonOption = False,
) -> None:
    """Search the text of a project's documents, or find where an entity is mentioned."""
    if (query is None) == (entity is None):
        fail(UsageError("give a QUERY or --entity NAME (one of them)", hint='legaldoc search "summary judgment" --project acme'))
    database = rt.open_database().database
    with handled():
        if entity is not None:
            entities = search_entity(database, rt.settings.project, entity, entity_type=entity_type, limit=limit)
        else:
            assert query is not None, "checked above"
            hits = search_text(database, rt.settings.project, query, limit=limit, entity_type=entity_type)
    if entity is not None:
        if json_output:
            emit_json([e.as_json() for e in entities])
            return
        for found in entities:
            stdout.print(Text(f"{found.type}  {found.name}  (entity {found.entity_id}; aliases: {'; '.join(found.aliases) or '-'})", style="bold"))
            table = Table("doc", "pages", "mentions", "source", box=None)
            for document in found.documents:
                table.add_row(str(document.document_id), _pages(document.pages), str(document.mentions), document.source)
            stdout.print(table)
        return
    if json_output:
        emit_json([h.as_json() for h in hits])
        return
    if not hits:
        note(f"nothing in project {rt.settings.project} matches {query!r}")
        return
    table = Table("#", "doc", "page", "snippet", "source", box=None)
    for hit in hits:
        table.add_row(str(hit.rank), str(hit.document_id), str(hit.page), _bold(hit.snippet), display_name(hit.source))
    stdout.print(table)


def _bold(snippet: str) -> Text:
    """`**word**` markers as bold text."""
    shown = Text()
    for index, part in enumerate(snippet.split(HIGHLIGHT)):
        shown.append(part, style="bold yellow" if index % 2 else "")
    return shown


def _pages(pages: list[int]) -> str:
    return ", ".join(str(p) for p in pages[:12]) + (" ..." if len(pages) > 12 else "")


class ReportFormat(StrEnum):
    MD = "md"
    HTML = "html"
    JSON = "json"


@connected("database")
def report(
    rt: Runtime,
    batch_id: Annotated[str, typer.Argument(help="A batch id (legaldoc status lists them).")],
    fmt: Annotated[ReportFormat, typer.Option("--format", "-f", help="md (Markdown), html (one self-contained file) or json.")] = ReportFormat.MD,
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Write to this file instead of stdout.")] = None,
    force: Annotated[bool, typer.Option("--force", help="Replace --out if it exists.")] = False,
) -> None:
    """A batch's report: outcomes, duration, throughput, failures by cause with what to do, new entities."""
    if out is not None and out.exists() and not force:
        fail(UsageError(f"{out} exists", hint="use --force to replace it, or choose another --out"))
    with handled():
        data = batches.report(rt.open_database(), batch_id)
    text = {ReportFormat.MD: render_markdown, ReportFormat.HTML: render_html,
            ReportFormat.JSON: lambda r: json.dumps(r, indent=2, ensure_ascii=False) + "\n"}[fmt](data)  # fmt: skip
    if out is None:
        sys.stdout.write(text)
        return
    try:
        out.write_text(text, encoding="utf-8")
    except OSError as exc:
        fail(UsageError(f"cannot write {out}: {exc.strerror}", hint="choose an --out in a folder you can write to"))
    note(f"report of batch {batch_id} written to {out}")
