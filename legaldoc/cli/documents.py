"""`process`, `show` and `entities`: the in-process pipeline and what it stored."""

from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path
from typing import Annotated

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table
from rich.text import Text

from legaldoc.cli.common import JsonOption, ProjectOption, connected
from legaldoc.cli.exit_codes import ExitCode
from legaldoc.cli.output import emit_json, fail, handled, note, stderr, stdout
from legaldoc.errors import UsageError
from legaldoc.lifecycle import DocumentStatus
from legaldoc.paths import source_text
from legaldoc.services.process import expand_paths, process_sources
from legaldoc.services.queries import list_entities, show_document
from legaldoc.services.wiring import Runtime


@connected("database")
def process(
    rt: Runtime,
    paths: Annotated[list[Path], typer.Argument(help="Files or folders to process (folders are searched recursively).")],
    project: ProjectOption = None,
    json_output: JsonOption = False,
    force: Annotated[bool, typer.Option("--force", help="Re-run documents that are already done and unchanged.")] = False,
) -> None:
    """Run every stage on PATHS in this process and store the results (no Redis needed)."""
    missing = [source_text(p) for p in paths if not p.exists()]
    if missing:
        fail(UsageError(f"no such file or folder: {', '.join(missing)}"))
    settings = rt.settings
    with handled():
        database = rt.open_database().database
    expanded = expand_paths(paths, settings)
    files = [spec.source for spec in expanded.documents]
    if not files:
        fail(UsageError("no supported documents found",
                        hint="supported: PDF, DOCX, DOC, WPD, EML, MSG, TXT, HTML, PNG, JPEG, TIFF, and ZIP/TAR archives of them"))  # fmt: skip
    if left := expanded.skipped:
        shown = ", ".join(left[:3]) + (f" and {len(left) - 3} more" if len(left) > 3 else "")
        note(f"note: {len(left)} file(s) inside archives or e-mails are not documents legaldoc reads and were left out: {shown}")
    counts = Counter[DocumentStatus]()
    show_progress = not json_output and stderr.is_terminal
    progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                        console=stderr, disable=not show_progress)  # fmt: skip
    table = Table("id", "status", "pages", "ocr", "chunks", "mentions", "entities", "source / error", box=None)
    with progress:
        task = progress.add_task("processing", total=len(files))
        for report in process_sources(files, settings.project, settings, database, force=force):
            counts[report.status] += 1
            progress.advance(task)
            if json_output:
                emit_json(report.as_json())
                continue
            detail = report.source if report.error is None else f"{report.source}\n  {report.error.category}: {report.error.message}"
            table.add_row(str(report.document_id or "-"), report.status, str(report.pages), str(report.ocr_pages),
                          str(report.chunks), str(len(report.mentions)), str(report.entities), detail)  # fmt: skip
    if not json_output:
        stdout.print(table)
        note(", ".join(f"{counts[s]} {s}" for s in (DocumentStatus.DONE, DocumentStatus.FAILED, DocumentStatus.SKIPPED))
             + f" (project {settings.project})")
    if counts[DocumentStatus.FAILED]:
        raise typer.Exit(ExitCode.DOCUMENTS_FAILED)


@connected("database")
def show(
    rt: Runtime,
    document_id: Annotated[int, typer.Argument(help="Document id, as printed by process.")],
    text: Annotated[bool, typer.Option("--text", help="Include the full text and chunks.")] = False,
    json_output: JsonOption = False,
) -> None:
    """Show one document: status, pages, stage runs and its mentions."""
    with handled():
        detail = show_document(rt.database, document_id, include_text=text)
    if json_output:
        emit_json(detail)
        return
    stdout.print(Text.assemble((detail["source"], "bold"), f"  (document {detail['document_id']}, project {detail['project']})"))
    stdout.print(f"status {detail['status']}  kind {detail['kind']}  pages {len(detail['pages'])}  ocr {detail['ocr_pages']}  "
                 f"chunks {detail['chunks']}  entities {detail['entities']}  relationships {detail['relationships']}")  # fmt: skip
    if detail["error"]:
        failure = detail["error"]
        stdout.print(Text.assemble((failure["category"], "red"), f" in {failure['stage']}: {failure['message']}"))
    table = Table("type", "text", "normalized", "page", "offsets", box=None)
    for mention in detail["mentions"]:
        table.add_row(mention["type"], " ".join(mention["text"].split())[:60], mention["normalized"][:60], str(mention["page"]),
                      f"{mention['start']}-{mention['end']}")  # fmt: skip
    stdout.print(table)
    if text and detail.get("text"):
        sys.stdout.write(detail["text"] + "\n")


@connected("database")
def entities(
    rt: Runtime,
    project: ProjectOption = None,
    entity_type: Annotated[str | None, typer.Option("--type", "-t", help="Only this entity type, e.g. COURT.")] = None,
    limit: Annotated[int | None, typer.Option("--limit", help="At most this many entities.")] = None,
    json_output: JsonOption = False,
) -> None:
    """List a project's canonical entities with their aliases and mention counts."""
    from legaldoc.models import EntityType

    if entity_type and entity_type.upper() not in EntityType.__members__:
        fail(UsageError(f"unknown entity type {entity_type!r}", hint=f"one of: {', '.join(EntityType.__members__)}"))
    with handled():
        rows = list_entities(rt.database, rt.settings.project, entity_type.upper() if entity_type else None, limit)
    if json_output:
        emit_json(rows)
        return
    table = Table("type", "name", "mentions", "docs", "aliases", box=None)
    for row in rows:
        table.add_row(row["type"], row["name"][:70], str(row["mentions"]), str(row["documents"]),
                      "; ".join(a["alias"] for a in row["aliases"])[:80])  # fmt: skip
    stdout.print(table)
