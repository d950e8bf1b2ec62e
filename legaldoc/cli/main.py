"""The `legaldoc` command: one Typer app, a module per command group."""

from __future__ import annotations

import sys
from pathlib import Path

import typer

from legaldoc import __version__
from legaldoc.cli import (
    batches,
    cache,
    database,
    doctor,
    documents,
    metrics,
    monitor,
    recovery,
    results,
    settings,
    workers,
)
from legaldoc.cli.common import LogFlags, use_log_flags
from legaldoc.cli.exit_codes import ExitCode
from legaldoc.config import use_config_file
from legaldoc.logs import LogFormat

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
app.add_typer(metrics.app, name="metrics")


def _version(value: bool) -> None:
    if value:
        typer.echo(f"legaldoc {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version and exit."),
    config: Path | None = typer.Option(None, "--config", help="Settings file (default: LEGALDOC_CONFIG, else ./legaldoc.toml)."),
    verbose: int = typer.Option(0, "--verbose", "-v", count=True, help="More in the log on stderr: -v info, -vv debug."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Only errors in the log on stderr."),
    log_format: LogFormat | None = typer.Option(None, "--log-format", help="Log lines as text or json (default: LEGALDOC_LOG_FORMAT, else text)."),
) -> None:
    """legaldoc: turn legal documents into text, entities and a graph.

    -v, -q and --log-format may also follow the command's name (`legaldoc submit m.yaml -v`)."""
    use_config_file(config)
    use_log_flags(LogFlags(verbose, quiet, log_format))


GLOBAL_FLAGS = {"-v", "--verbose", "-q", "--quiet"}
GLOBAL_OPTIONS = {"--log-format"}  # take a value


def hoist_global_options(args: list[str]) -> list[str]:
    """The log flags wherever they stand (up to a `--`) moved before the command, where the main
    callback reads them: `legaldoc status B -v` is `legaldoc -v status B`."""
    hoisted: list[str] = []
    rest: list[str] = []
    position = 0
    while position < len(args):
        arg = args[position]
        if arg == "--":
            rest += args[position:]
            break
        if arg in GLOBAL_FLAGS or (arg.startswith("-v") and set(arg[1:]) == {"v"}):
            hoisted.append(arg)
        elif arg in GLOBAL_OPTIONS and position + 1 < len(args):
            hoisted += args[position : position + 2]
            position += 1
        elif arg.split("=", 1)[0] in GLOBAL_OPTIONS:
            hoisted.append(arg)
        else:
            rest.append(arg)
        position += 1
    return hoisted + rest


def run() -> None:
    """Console-script entry point; Ctrl-C exits 130 without a traceback."""
    try:
        app(args=hoist_global_options(sys.argv[1:]), prog_name="legaldoc")
    except KeyboardInterrupt:
        raise SystemExit(ExitCode.INTERRUPTED) from None
