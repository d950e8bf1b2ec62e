"""`legaldoc db current|upgrade`: the database's schema revision, and the upgrade to the newest."""

from __future__ import annotations

import typer

from legaldoc.cli.common import JsonOption, connected
from legaldoc.cli.exit_codes import ExitCode
from legaldoc.cli.output import emit_json, handled, note, stdout
from legaldoc.config import masked
from legaldoc.services.wiring import Runtime
from legaldoc.storage.db import get_engine, migrate, revisions

app = typer.Typer(help="The database: its schema revision, and the upgrade to the newest.", no_args_is_help=True)


@app.command()
@connected("database")
def current(rt: Runtime, json_output: JsonOption = False) -> None:
    """Show the database's schema revision and the newest this legaldoc knows; exit 1 when behind.

    Every command upgrades the schema when it opens the database; this one changes nothing."""
    url = rt.settings.resolved_database_url
    with handled():
        revision, head = revisions(url)
    if json_output:
        emit_json({"database": masked(url), "revision": revision, "head": head, "current": revision == head})
    else:
        stdout.print(f"{masked(url)}: revision {revision or 'none (empty database)'}, newest {head}")
    if revision != head:
        raise typer.Exit(ExitCode.DOCUMENTS_FAILED)


@app.command()
@connected("database")
def upgrade(rt: Runtime, json_output: JsonOption = False) -> None:
    """Bring the database's schema to the newest revision (safe while workers run: they take turns)."""
    url = rt.settings.resolved_database_url
    with handled():
        before, _ = revisions(url)
        after = migrate(get_engine(url))
    if json_output:
        emit_json({"database": masked(url), "from": before, "to": after})
        return
    note(f"{masked(url)}: " + (f"upgraded from {before or 'empty'} to {after}" if before != after else f"already at {after}"))
