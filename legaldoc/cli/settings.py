"""`legaldoc config show`: every effective setting, its value and where it came from."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from legaldoc.cli.common import (
    DatabaseOption,
    DataDirOption,
    JsonOption,
    ProjectOption,
    RedisOption,
    settings_from,
)
from legaldoc.cli.output import emit_json, fail, stdout
from legaldoc.config import SettingsError, config_file, masked, setting_sources
from legaldoc.errors import UsageError

app = typer.Typer(help="The settings: what each is, and where its value came from.", no_args_is_help=True)


def _shown(value: object) -> object:
    """Secrets masked: a password inside a URL never prints."""
    if isinstance(value, list):
        return [_shown(item) for item in value]
    return masked(value) if isinstance(value, str) and "://" in value else str(value) if isinstance(value, Path) else value


@app.command()
def show(
    json_output: JsonOption = False,
    project: ProjectOption = None,
    redis_url: RedisOption = None,
    database_url: DatabaseOption = None,
    data_dir: DataDirOption = None,
) -> None:
    """Every setting with its effective value and its source: flag, env (LEGALDOC_*), file or default."""
    flags = {"project": project, "redis_url": redis_url, "database_url": database_url, "data_dir": data_dir}
    settings = settings_from(project, database_url, data_dir, redis_url)
    try:
        sources = setting_sources(settings, flags)
    except SettingsError as error:
        fail(UsageError(str(error)))
    if json_output:
        emit_json({"file": str(config_file()), "settings": {s.name: {"value": _shown(s.value), "source": s.source} for s in sources}})
        return
    table = Table("setting", "value", "source", box=None, title=f"settings file: {config_file()}")
    for s in sources:
        table.add_row(s.name, str(_shown(s.value)), s.source, style="" if s.source != "default" else "grey50")
    stdout.print(table)

