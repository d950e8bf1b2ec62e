"""Options shared by commands, and the Settings and Database they build."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from legaldoc.cli.output import fail
from legaldoc.config import Settings, load_settings
from legaldoc.errors import LegaldocError
from legaldoc.storage.db import Database

JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON to stdout instead of a table.")]
ProjectOption = Annotated[str | None, typer.Option("--project", "-p", help="Project name (default: LEGALDOC_PROJECT or 'default').")]
DatabaseOption = Annotated[str | None, typer.Option("--database-url", help="SQLAlchemy URL (default: SQLite under --data-dir).", envvar=None)]
DataDirOption = Annotated[Path | None, typer.Option("--data-dir", help="Folder for the SQLite database and runtime files.")]
RedisOption = Annotated[str | None, typer.Option("--redis-url", help="Redis URL (default: LEGALDOC_REDIS_URL or redis://127.0.0.1:6379).")]


def open_database(settings: Settings) -> Database:
    try:
        return Database(settings.resolved_database_url)
    except LegaldocError as error:
        fail(error)


def settings_from(project: str | None = None, database_url: str | None = None, data_dir: Path | None = None) -> Settings:
    try:
        return load_settings(project=project, database_url=database_url, data_dir=data_dir)
    except ValueError as error:  # pydantic ValidationError for a bad environment variable or legaldoc.toml
        from legaldoc.errors import UsageError

        fail(UsageError(f"invalid settings: {error}"))


def redis_settings(redis_url: str | None, database_url: str | None = None, data_dir: Path | None = None) -> Settings:
    """Settings of a command that talks to Redis: `--redis-url` overrides LEGALDOC_REDIS_URL."""
    settings = settings_from(None, database_url, data_dir)
    if redis_url:
        settings = settings.model_copy(update={"redis_url": redis_url})
    return settings
