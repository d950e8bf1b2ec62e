"""`legaldoc recover`: re-run failed documents from the stage that failed; stuck claims; analysis."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.table import Table
from rich.text import Text

from legaldoc.cli.common import JsonOption, connected
from legaldoc.cli.output import emit_json, fail, handled, note, stdout
from legaldoc.errors import UsageError
from legaldoc.lifecycle import MirrorState
from legaldoc.services import recovery as service
from legaldoc.services.embedded import reap_dead_run
from legaldoc.services.wiring import Runtime


@connected("redis", "database")
def recover(
    rt: Runtime,
    batch_id: Annotated[str | None, typer.Argument(help="The batch whose failed documents to re-run.")] = None,
    category: Annotated[list[str] | None, typer.Option("--category", "-C", help="Re-run failures of this category (repeatable). Default: TRANSIENT, RATE_LIMIT, RESOURCE, PERMANENT.")] = None,
    all_categories: Annotated[bool, typer.Option("--all", help="Re-run failures of every category, DATA and CONFIGURATION included.")] = False,
    stuck: Annotated[bool, typer.Option("--stuck", help="Instead: re-queue every stage whose claim lease expired (its worker died), in any batch.")] = False,
    analyze: Annotated[bool, typer.Option("--analyze", help="Instead: show failures by category and stage, the most common messages and what to do.")] = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Show what would be re-queued; change nothing.")] = False,
    json_output: JsonOption = False,
) -> None:
    """Re-run a batch's failed documents from the stage that failed; safe to run any number of times."""
    if stuck and (batch_id or analyze):
        fail(UsageError("--stuck covers every batch: give no BATCH_ID and no --analyze"))
    if not stuck and not batch_id:
        fail(UsageError("name a batch (legaldoc status lists them), or use --stuck"))
    with handled():
        rt.open_database()
        if batch_id is None:
            if not dry_run and (reaped := reap_dead_run(rt.require())):
                note(f"note: {reaped}")
            result = service.recover_stuck(rt.require(), dry_run=dry_run)
        elif analyze:
            _print_analysis(service.analyze_failures(rt, batch_id), json_output)
            return
        else:
            categories = service.chosen_categories(category, all_categories)
            result = service.recover_batch(rt.require(), batch_id, categories=categories, dry_run=dry_run)
    report = result.as_json()
    if json_output:
        emit_json(report)
        return
    verb = "would re-queue" if dry_run else "re-queued"
    where = f"batch {batch_id}" if batch_id else "stuck stages"
    if not result.documents:
        note(f"{where}: nothing to re-queue" + (f" (still failed: {_counts(report['left_failed'])})" if report["left_failed"] else ""))
        return
    table = Table("id", "stage", "category", "source", box=None)
    for entry in result.documents:
        table.add_row(str(entry.document_id), entry.stage or "", entry.category or "", Text(entry.source or ""))
    stdout.print(table)
    note(f"{where}: {verb} {len(result.documents)} documents"
         + (f" ({_counts(report['by_category'])})" if report["by_category"] and batch_id else "")
         + (f"; left failed: {_counts(report['left_failed'])} (add --category or --all)" if report["left_failed"] else ""))  # fmt: skip


def _counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{k} {v}" for k, v in counts.items())


def _print_analysis(analysis: dict[str, Any], json_output: bool) -> None:
    if json_output:
        emit_json(analysis)
        return
    if not analysis[MirrorState.FAILED]:
        note(f"batch {analysis['batch_id']}: no failed documents")
        return
    stages = sorted({s for row in analysis["by_category_stage"].values() for s in row})
    table = Table("category", *stages, "total", box=None)
    for category, row in analysis["by_category_stage"].items():
        table.add_row(category, *[str(row.get(s, "")) for s in stages], str(sum(row.values())))
    stdout.print(Text(f"batch {analysis['batch_id']}: {analysis[MirrorState.FAILED]} failed", style="bold"))
    stdout.print(table)
    stdout.print(Text("\nmost common messages", style="bold"))
    messages = Table("count", "category", "stage", "message (e.g. document)", box=None)
    for entry in analysis["common_messages"]:
        messages.add_row(str(entry["count"]), entry["category"], entry["stage"],
                         Text(f"{entry['message']}  (e.g. {entry['example_document']})"))  # fmt: skip
    stdout.print(messages)
    stdout.print(Text("\nwhat to do", style="bold"))
    for category, advice in analysis["advice"].items():
        stdout.print(Text(f"{category}: {advice}"))
    if analysis["recoverable_by_default"]:
        stdout.print(Text(f"\n`legaldoc recover {analysis['batch_id']}` re-runs {analysis['recoverable_by_default']} of them."))

