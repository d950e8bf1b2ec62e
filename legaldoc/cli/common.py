"""Options shared by commands, and the Runtime they build from them."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, TypedDict

import typer

from legaldoc.cli.output import fail
from legaldoc.config import Settings, load_settings
from legaldoc.errors import UsageError
from legaldoc.logs import LogFormat, configure, verbosity
from legaldoc.services.wiring import Runtime

JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON to stdout instead of a table.")]
ProjectOption = Annotated[str | None, typer.Option("--project", "-p", help="Project name (default: LEGALDOC_PROJECT or 'default').")]
DatabaseOption = Annotated[str | None, typer.Option("--database-url", help="SQLAlchemy URL (default: SQLite under --data-dir).", envvar=None)]
DataDirOption = Annotated[Path | None, typer.Option("--data-dir", help="Folder for the SQLite database and runtime files.")]
RedisOption = Annotated[str | None, typer.Option("--redis-url", help="Redis URL (default: LEGALDOC_REDIS_URL or redis://127.0.0.1:6379).")]


@dataclass(frozen=True)
class LogFlags:
    """The command line's say on logging; None/0/False leave it to the settings."""

    verbose: int = 0
    quiet: bool = False
    log_format: LogFormat | None = None


_log_flags = LogFlags()


def use_log_flags(flags: LogFlags) -> None:
    """Log on stderr as the flags say, until settings are read (then `apply_logging` again)."""
    global _log_flags
    _log_flags = flags
    apply_logging(None)


def log_flags() -> LogFlags:
    return _log_flags


class WorkerLogOptions(TypedDict):
    loglevel: str | None
    log_format: str | None


def worker_log_options(loglevel: str | None = None) -> WorkerLogOptions:
    """What a worker this command starts logs: its own --loglevel, else -v/-q, else its settings."""
    flags = _log_flags
    asked = verbosity(flags.verbose, flags.quiet, "") or None
    return {"loglevel": loglevel or asked, "log_format": flags.log_format.value if flags.log_format else None}


def apply_logging(settings: Settings | None) -> None:
    """The flags over the settings' log level and format (over WARNING and text)."""
    flags = _log_flags
    level = verbosity(flags.verbose, flags.quiet, settings.log_level if settings else "WARNING")
    log_format = flags.log_format or (settings.log_format if settings else LogFormat.TEXT)
    configure(level, log_format)


def settings_from(project: str | None = None, database_url: str | None = None, data_dir: Path | None = None,
                  redis_url: str | None = None) -> Settings:  # fmt: skip
    """Settings with the command line's flags over LEGALDOC_*, legaldoc.toml and the defaults."""
    try:
        settings = load_settings(project=project, database_url=database_url, data_dir=data_dir, redis_url=redis_url)
    except ValueError as error:  # pydantic ValidationError for a bad environment variable or legaldoc.toml
        fail(UsageError(f"invalid settings: {error}"))
    apply_logging(settings)
    return settings


def runtime(redis_url: str | None = None, database_url: str | None = None, data_dir: Path | None = None, *,
            project: str | None = None) -> Runtime:  # fmt: skip
    """The command's Runtime; its parts connect when first used (inside `handled()`)."""
    return Runtime(settings_from(project, database_url, data_dir, redis_url))


WHERE = {"redis": {"redis_url": RedisOption}, "database": {"database_url": DatabaseOption, "data_dir": DataDirOption}}


def connected(*where: str) -> Callable[[Callable[..., None]], Callable[..., None]]:
    """Give a command the options saying where its data lives (`redis`: --redis-url; `database`:
    --database-url and --data-dir) and call it with the `rt: Runtime` they build instead."""

    def decorate(command: Callable[..., None]) -> Callable[..., None]:
        options = {name: kind for group in where for name, kind in WHERE[group].items()}
        signature = inspect.signature(command, eval_str=True)
        own = [p for p in signature.parameters.values() if p.name != "rt"]
        added = [inspect.Parameter(n, inspect.Parameter.KEYWORD_ONLY, default=None, annotation=a) for n, a in options.items()]

        @functools.wraps(command)
        def run(**values: Any) -> None:
            given = {name: values.pop(name) for name in options}
            command(**values, rt=runtime(**given, project=values.get("project")))

        run.__signature__ = signature.replace(parameters=[*own, *added])  # type: ignore[attr-defined]
        return run

    return decorate
