"""Options shared by commands, and the Runtime they build from them."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer

from legaldoc.cli.output import fail
from legaldoc.config import Settings, load_settings
from legaldoc.errors import UsageError
from legaldoc.services.wiring import Runtime

JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON to stdout instead of a table.")]
ProjectOption = Annotated[str | None, typer.Option("--project", "-p", help="Project name (default: LEGALDOC_PROJECT or 'default').")]
DatabaseOption = Annotated[str | None, typer.Option("--database-url", help="SQLAlchemy URL (default: SQLite under --data-dir).", envvar=None)]
DataDirOption = Annotated[Path | None, typer.Option("--data-dir", help="Folder for the SQLite database and runtime files.")]
RedisOption = Annotated[str | None, typer.Option("--redis-url", help="Redis URL (default: LEGALDOC_REDIS_URL or redis://127.0.0.1:6379).")]


def settings_from(project: str | None = None, database_url: str | None = None, data_dir: Path | None = None,
                  redis_url: str | None = None) -> Settings:  # fmt: skip
    """Settings with the command line's flags over LEGALDOC_*, legaldoc.toml and the defaults."""
    try:
        return load_settings(project=project, database_url=database_url, data_dir=data_dir, redis_url=redis_url)
    except ValueError as error:  # pydantic ValidationError for a bad environment variable or legaldoc.toml
        fail(UsageError(f"invalid settings: {error}"))


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
