"""`legaldoc doctor`: is everything a batch needs in place? Exit 0 all OK, 1 warnings, 3 failures."""

from __future__ import annotations

import typer
from rich.table import Table
from rich.text import Text

from legaldoc.cli.common import JsonOption, connected
from legaldoc.cli.exit_codes import ExitCode
from legaldoc.cli.output import emit_json, stdout
from legaldoc.services.doctor import Verdict, diagnose, worst
from legaldoc.services.wiring import Runtime

STYLE = {Verdict.OK: "green", Verdict.WARN: "yellow", Verdict.FAIL: "bold red"}


@connected("redis", "database")
def doctor(rt: Runtime, json_output: JsonOption = False) -> None:
    """Check the settings, data folder, database, Redis, tesseract, soffice and workers; say how to fix each problem.

    Exit 0 when all is OK, 1 with warnings, 3 when something a batch needs fails."""
    checks = diagnose(rt)
    verdict = worst(checks)
    if json_output:
        emit_json({"verdict": verdict.value, "checks": [c.as_json() for c in checks]})
    else:
        table = Table("", "check", "detail", "what to do", box=None)
        for c in checks:
            table.add_row(Text(c.verdict.value, style=STYLE[c.verdict]), c.name, Text(c.detail), Text(c.fix))
        stdout.print(table)
    if verdict is not Verdict.OK:
        raise typer.Exit(ExitCode.UNAVAILABLE if verdict is Verdict.FAIL else ExitCode.DOCUMENTS_FAILED)
