"""`legaldoc monitor`: the full-screen dashboard (a thin command around `legaldoc.tui`)."""

from __future__ import annotations

import os
import sys
from typing import Annotated

import typer

from legaldoc.cli.common import DatabaseOption, DataDirOption, RedisOption, settings_from
from legaldoc.cli.output import fail
from legaldoc.errors import UsageError
from legaldoc.services.embedded import running_embedded


def monitor(
    refresh: Annotated[float, typer.Option("--refresh", help="Seconds between refreshes.", min=0.2)] = 2.0,
    read_only: Annotated[bool, typer.Option("--read-only", help="Hide the recover and cancel actions.")] = False,
    redis_url: RedisOption = None,
    database_url: DatabaseOption = None,
    data_dir: DataDirOption = None,
) -> None:
    """Full-screen dashboard: batches, queues, workers, errors and stage timings, live.

    Watches the Redis of --redis-url / LEGALDOC_REDIS_URL; when neither is given and a `legaldoc run`
    is working in this data folder, its private Redis.

    Keys: ? help, q quit, Tab next panel, / filter, Enter open a batch, Esc back; on a batch:
    s state filter, r recover, c cancel (each asks first). For a one-off report use `legaldoc status`.
    """
    settings = settings_from(None, database_url, data_dir, redis_url)
    if not (sys.stdin.isatty() and sys.stdout.isatty()):
        fail(UsageError("legaldoc monitor needs a terminal", hint="for a report in a script, use: legaldoc status --json"))
    if redis_url is None and "LEGALDOC_REDIS_URL" not in os.environ:
        embedded = running_embedded(settings.data_dir)
        if embedded:  # a `legaldoc run` is working here: watch its private Redis
            settings = settings.model_copy(update={"redis_url": embedded})
    from legaldoc.services.monitor import Monitor
    from legaldoc.tui.app import MonitorApp

    MonitorApp(Monitor(settings), refresh=refresh, read_only=read_only).run()
