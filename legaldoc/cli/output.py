"""The one place that writes diagnostics to stderr and maps errors to exit codes."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, NoReturn

import typer
from rich.console import Console
from rich.text import Text

from legaldoc.cli.exit_codes import ExitCode
from legaldoc.errors import (
    BatchBusy,
    ConfigurationError,
    LegaldocError,
    PreflightError,
    ServiceUnavailable,
    UsageError,
)

stdout = Console(highlight=False, soft_wrap=True)
if not stdout.is_terminal:
    stdout.width = 240  # piped tables keep one row per line for grep and logs
stderr = Console(stderr=True, highlight=False)


def emit_json(value: Any) -> None:
    """One JSON document on one line of stdout."""
    sys.stdout.write(json.dumps(value, ensure_ascii=False, default=str) + "\n")
    sys.stdout.flush()


def fail(error: LegaldocError) -> NoReturn:
    """Print an expected error (no traceback) and exit with its code."""
    stderr.print(Text.assemble(("error: ", "bold red"), str(error)), soft_wrap=True)
    if isinstance(error, ServiceUnavailable | PreflightError):  # what the batch needs is not there
        raise typer.Exit(ExitCode.UNAVAILABLE)
    if isinstance(error, UsageError | ConfigurationError):  # fix the command line, the settings or the setup
        raise typer.Exit(ExitCode.USAGE)
    if isinstance(error, BatchBusy):
        raise typer.Exit(ExitCode.BUSY)
    raise typer.Exit(ExitCode.DOCUMENTS_FAILED)


@contextmanager
def handled() -> Iterator[None]:
    """An expected error (LegaldocError) raised inside ends the command through `fail`."""
    try:
        yield
    except LegaldocError as error:
        fail(error)


def note(message: str) -> None:
    stderr.print(message, markup=False, highlight=False, soft_wrap=True)
