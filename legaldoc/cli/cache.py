"""`legaldoc cache warm|stats|clear`: the result cache in Redis."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from legaldoc.cli.common import JsonOption, connected
from legaldoc.cli.output import emit_json, fail, handled, note, stderr, stdout
from legaldoc.errors import UsageError
from legaldoc.services import caching as service
from legaldoc.services.wiring import Runtime
from legaldoc.tui import format as fmt

app = typer.Typer(help="The result cache: warm it for a project, see its hit rates, clear it.", no_args_is_help=True)


@app.command()
@connected("redis", "database")
def warm(
    rt: Runtime,
    project: Annotated[str, typer.Option("--project", "-p", help="The project to warm.")],
    batch: Annotated[str | None, typer.Option("--batch", "-b", help="Only the extraction results of this batch's documents.")] = None,
    json_output: JsonOption = False,
) -> None:
    """Preload the project's canonical entity index and its documents' extraction results."""
    with handled():
        rt.require("cache").open_database()
    progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                        console=stderr, disable=json_output or not stderr.is_terminal)  # fmt: skip
    with progress:
        task = progress.add_task("extraction results", total=None)

        def advance(done: int, total: int) -> None:
            progress.update(task, completed=done, total=total)

        with handled():
            report = service.warm_project(rt, project, batch_id=batch, progress=advance)
    if json_output:
        emit_json(report.as_json())
        return
    note(f"project {project}: entity index of {report.entities} entities ({report.entity_types} types); "
         f"extraction results of {report.documents} documents ({report.extractions_inline} inline, "
         f"{report.extractions_by_reference} by reference) in {report.seconds:.2f}s")  # fmt: skip


@app.command()
@connected("redis")
def stats(
    rt: Runtime,
    json_output: JsonOption = False,
) -> None:
    """Hit rate, keys and memory per cache namespace (hits and misses since the counters last expired)."""
    with handled():
        found = rt.require("cache").cache.stats()
    if json_output:
        emit_json([entry.as_json() for entry in found])
        return
    table = Table("namespace", "hits", "misses", "from database", "hit rate", "keys", "memory", box=None)
    for entry in found:
        rate = "-" if entry.hit_rate is None else f"{entry.hit_rate:.1%}"
        table.add_row(entry.namespace, str(entry.hits), str(entry.misses), str(entry.database_hits), rate,
                      str(entry.keys), fmt.size(entry.memory))  # fmt: skip
    stdout.print(table)


@app.command()
@connected("redis", "database")
def clear(
    rt: Runtime,
    project: Annotated[str | None, typer.Option("--project", "-p", help="Only this project's entity index and its documents' extraction results.")] = None,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Clear the whole cache without asking.")] = False,
    json_output: JsonOption = False,
) -> None:
    """Remove cached results (the database keeps every result; only speed is lost)."""
    if project is None and not yes:
        if not stderr.is_terminal:
            fail(UsageError("clearing the whole cache needs --yes (or --project P for one project)"))
        if not typer.confirm("Clear the whole result cache?", err=True):
            raise typer.Exit(0)
    with handled():
        removed = service.clear_cache(rt.require("cache"), project)
    if json_output:
        emit_json({"project": project, "removed": removed})
        return
    note(f"removed {removed} cache keys" + (f" of project {project}" if project else ""))
