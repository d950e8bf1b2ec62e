"""The `legaldoc` command: one Typer app, a module per command group."""

from __future__ import annotations

from pathlib import Path

import typer

from legaldoc import __version__
from legaldoc.cli import (
    batches,
    cache,
    database,
    doctor,
    documents,
    monitor,
    recovery,
    results,
    settings,
    workers,
)
from legaldoc.cli.exit_codes import ExitCode
from legaldoc.config import use_config_file

app = typer.Typer(
    name="legaldoc",
    help="Batch processor for legal documents: text, chunks, legal entities and a relationship graph.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.command("process")(documents.process)
app.command("show")(documents.show)
app.command("entities")(documents.entities)
app.command("documents")(documents.documents)
app.command("projects")(documents.projects)
app.command("export")(results.export)
app.command("search")(results.search)
app.command("report")(results.report)
app.command("run")(batches.run)
app.command("submit")(batches.submit)
app.command("status")(batches.status)
app.command("cancel")(batches.cancel)
app.command("recover")(recovery.recover)
app.command("monitor")(monitor.monitor)
app.command("doctor")(doctor.doctor)
app.add_typer(workers.app, name="workers")
app.add_typer(cache.app, name="cache")
app.add_typer(database.app, name="db")
app.add_typer(settings.app, name="config")


def _version(value: bool) -> None:
    if value:
        typer.echo(f"legaldoc {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version and exit."),
    config: Path | None = typer.Option(None, "--config", help="Settings file (default: LEGALDOC_CONFIG, else ./legaldoc.toml)."),
) -> None:
    """legaldoc: turn legal documents into text, entities and a graph."""
    use_config_file(config)


def run() -> None:
    """Console-script entry point; Ctrl-C exits 130 without a traceback."""
    try:
        app()
    except KeyboardInterrupt:
        raise SystemExit(ExitCode.INTERRUPTED) from None
