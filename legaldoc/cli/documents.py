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
from legaldoc.services.openai_entities import preflight as preflight_entities
from legaldoc.services.process import expand_paths, process_sources
from legaldoc.services.queries import (
    cited_cases,
    document_mentions,
    document_relations,
    entity_detail,
    find_document,
    find_entities,
    list_documents,
    list_entities,
    list_projects,
    show_document,
)
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
        preflight_entities(settings, None)  # a model provider without its key or model: one line, exit 3
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
    document: Annotated[str, typer.Argument(help="Document id, or its path as in the manifest or absolute (archive.zip!/a.pdf for a member).")],
    project: Annotated[str | None, typer.Option("--project", "-p", help="The project, when the same file is in several.")] = None,
    mentions: Annotated[bool, typer.Option("--mentions", help="Every mention with its context line and entity.")] = False,
    relations: Annotated[bool, typer.Option("--relations", help="The document's relationships with their evidence.")] = False,
    text: Annotated[bool, typer.Option("--text", help="Include the full text and chunks.")] = False,
    json_output: JsonOption = False,
) -> None:
    """Show one document: status, pages, stage runs and its mentions (in context with --mentions)."""
    with handled():
        document_id = find_document(rt.database, document, project)
        detail = show_document(rt.database, document_id, include_text=text)
        if mentions:
            detail["mentions"] = document_mentions(rt.database, document_id)
        if relations:
            detail["relationship_list"] = document_relations(rt.database, document_id)
    if json_output:
        emit_json(detail)
        return
    stdout.print(Text.assemble((detail["source"], "bold"), f"  (document {detail['document_id']}, project {detail['project']})"))
    stdout.print(f"status {detail['status']}  kind {detail['kind']}  pages {len(detail['pages'])}  ocr {detail['ocr_pages']}  "
                 f"chunks {detail['chunks']}  entities {detail['entities']}  relationships {detail['relationships']}")  # fmt: skip
    if detail["error"]:
        failure = detail["error"]
        stdout.print(Text.assemble((failure["category"], "red"), f" in {failure['stage']}: {failure['message']}"))
    if mentions:
        table = Table("type", "page", "mention", "entity", "context", box=None)
        for mention in detail["mentions"]:
            table.add_row(mention["type"], str(mention["page"]), " ".join(mention["text"].split())[:50],
                          (mention["entity"] or "-")[:40], _highlight(mention["context"], mention["text"]))  # fmt: skip
    else:
        table = Table("type", "text", "normalized", "page", "offsets", box=None)
        for mention in detail["mentions"]:
            table.add_row(mention["type"], " ".join(mention["text"].split())[:60], mention["normalized"][:60], str(mention["page"]),
                          f"{mention['start']}-{mention['end']}")  # fmt: skip
    stdout.print(table)
    if detail["same_as"]:
        people = Table("entity", "same person as", "why", box=None)
        for row in detail["same_as"]:
            for link in row["same_as"]:
                people.add_row(f"{row['entity']['type']} {row['entity']['name']}", f"{link['type']} {link['name']}", link["reason"])
        stdout.print(people)
    if relations:
        _print_relations(detail["relationship_list"])
    if text and detail.get("text"):
        sys.stdout.write(detail["text"] + "\n")


def _highlight(context: str, mention: str) -> Text:
    shown = Text(context)
    shown.highlight_words([" ".join(mention.split())], style="bold yellow")
    return shown


def _print_relations(relations: list[dict]) -> None:
    table = Table("type", "from", "to", "weight", "evidence", box=None)
    for r in relations:
        table.add_row(r["type"], f"{r['source']['type']} {r['source']['name']}"[:45], f"{r['target']['type']} {r['target']['name']}"[:45],
                      f"{r['weight']:g}", " | ".join(e["text"] for e in r["evidence"][:2])[:120])  # fmt: skip
    stdout.print(table)


@connected("database")
def documents(
    rt: Runtime,
    project: ProjectOption = None,
    batch: Annotated[str | None, typer.Option("--batch", help="Only the documents of this batch.")] = None,
    status: Annotated[str | None, typer.Option("--status", help="Only documents in this status (done, failed, skipped, ...).")] = None,
    limit: Annotated[int, typer.Option("--limit", help="At most this many (0: all; legaldoc export streams any number).")] = 1000,
    json_output: JsonOption = False,
) -> None:
    """List a project's documents: status, pages, OCR pages, mentions, entities, relationships, last error."""
    with handled():
        rows, total = list_documents(rt.database, rt.settings.project, batch_id=batch, status=status, limit=limit or None)
    if json_output:
        emit_json(rows)
    else:
        table = Table("id", "status", "kind", "pages", "ocr", "mentions", "entities", "rels", "source / error", box=None)
        for r in rows:
            error = r["error"]
            detail = r["source"] if error is None else f"{r['source']}\n  {error['category']} in {error['stage']}: {error['message']}"
            table.add_row(str(r["document_id"]), r["status"], r["kind"] or "-", str(r["pages"]), str(r["ocr_pages"]),
                          str(r["mentions"]), str(r["entities"]), str(r["relationships"]), detail)  # fmt: skip
        stdout.print(table)
    if total > len(rows):
        note(f"showing {len(rows)} of {total} documents; --limit 0 shows all")


@connected("database")
def projects(rt: Runtime, json_output: JsonOption = False) -> None:
    """List projects with their document, entity and batch counts."""
    with handled():
        rows = list_projects(rt.open_database().database)
    if json_output:
        emit_json(rows)
        return
    table = Table("project", "documents", "entities", "batches", "last batch", box=None)
    for r in rows:
        table.add_row(r["project"], str(r["documents"]), str(r["entities"]), str(r["batches"]), r["last_batch_at"] or "-")
    stdout.print(table)


@connected("database")
def entities(
    rt: Runtime,
    entity: Annotated[str | None, typer.Argument(help="One entity in detail: its id, name, key or an alias.")] = None,
    project: ProjectOption = None,
    entity_type: Annotated[str | None, typer.Option("--type", "-t", help="Only this entity type, e.g. COURT; CASE lists the most cited cases with their citations, forms and pin cites.")] = None,
    limit: Annotated[int | None, typer.Option("--limit", help="At most this many entities.")] = None,
    json_output: JsonOption = False,
) -> None:
    """List a project's canonical entities with their aliases and mention counts; or show one.

    With --type CASE: the cases the documents cite, most cited first, each with its parallel
    citations, the documents citing it, its mentions in every form (full, parallel, short, supra,
    id) and the pages cited."""
    from legaldoc.models import EntityType

    if entity_type and entity_type.upper() not in EntityType.__members__:
        fail(UsageError(f"unknown entity type {entity_type!r}", hint=f"one of: {', '.join(EntityType.__members__)}"))
    if entity is not None:
        with handled():
            ids = [int(entity)] if entity.strip().isdigit() else find_entities(rt.database, rt.settings.project, entity)
            details = [entity_detail(rt.database, entity_id) for entity_id in ids]
        if json_output:
            emit_json(details if len(details) > 1 else details[0])
            return
        for detail in details:
            _print_entity(detail)
        return
    if entity_type and entity_type.upper() == EntityType.CASE:
        _print_cases(rt, limit, json_output)
        return
    with handled():
        rows = list_entities(rt.database, rt.settings.project, entity_type.upper() if entity_type else None, limit)
    if json_output:
        emit_json(rows)
        return
    table = Table("type", "name", "mentions", "docs", "aliases", "same person as", box=None)
    for row in rows:
        table.add_row(row["type"], row["name"][:70], str(row["mentions"]), str(row["documents"]),
                      "; ".join(a["alias"] for a in row["aliases"])[:80],
                      "; ".join(f"{link['type']} {link['name']}" for link in row["same_as"])[:60])  # fmt: skip
    stdout.print(table)


def _print_cases(rt: Runtime, limit: int | None, json_output: bool) -> None:
    with handled():
        cases = cited_cases(rt.database, rt.settings.project, limit)
    if json_output:
        emit_json([case.as_json() for case in cases])
        return
    table = Table("case", "citations", "year", "docs", "mentions", "forms", "pin cites", box=None)
    for case in cases:
        table.add_row((case.case_name or "-")[:50], "; ".join([case.name, *(a["alias"] for a in case.aliases)])[:60],
                      case.year or "-", str(case.documents), str(case.mentions),
                      ", ".join(f"{form} {count}" for form, count in case.forms.items()), ", ".join(case.pin_cites)[:60])  # fmt: skip
    stdout.print(table)


def _print_entity(detail: dict) -> None:
    stdout.print(Text.assemble((f"{detail['type']}  {detail['name']}", "bold"),
                               f"  (entity {detail['id']}, key {detail['key']}, {detail['mentions']} mentions)"))  # fmt: skip
    if detail["aliases"]:
        aliases = Table("alias", "why it merged", box=None)
        for alias in detail["aliases"]:
            aliases.add_row(alias["alias"], alias["reason"])
        stdout.print(aliases)
    if detail["same_as"]:
        people = Table("same person as", "entity", "why", box=None)
        for link in detail["same_as"]:
            people.add_row(f"{link['type']} {link['name']}", str(link["id"]), link["reason"])
        stdout.print(people)
    table = Table("doc", "page", "context", box=None)
    for document in detail["documents"]:
        stdout.print(Text(document["source"], style="dim"))
        for mention in document["mentions"]:
            table.add_row(str(document["document_id"]), str(mention["page"]), _highlight(mention["context"], mention["text"]))
    stdout.print(table)
    if detail["relationships"]:
        _print_relations(detail["relationships"])
