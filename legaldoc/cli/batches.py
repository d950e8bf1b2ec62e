"""`submit`, `status`, `cancel` and `run`: batches on Celery workers over Redis."""

from __future__ import annotations

import contextlib
import os
import re
import sys
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from legaldoc.cli.common import (
    DatabaseOption,
    DataDirOption,
    JsonOption,
    RedisOption,
    open_database,
    redis_settings,
    settings_from,
)
from legaldoc.cli.exit_codes import ExitCode
from legaldoc.cli.output import emit_json, fail, note, stderr, stdout
from legaldoc.config import Settings
from legaldoc.errors import LegaldocError, UsageError
from legaldoc.manifest import load_manifest
from legaldoc.services import batches as service
from legaldoc.services.embedded import EmbeddedRedis, WorkerProcess
from legaldoc.state.batches import BatchState
from legaldoc.state.broker import Broker
from legaldoc.state.connection import client_for, ping
from legaldoc.state.keys import Keys
from legaldoc.state.locks import Lock
from legaldoc.state.workers import WorkerRegistry
from legaldoc.storage.db import Database

TimeoutOption = Annotated[str | None, typer.Option("--timeout", help="Stop waiting after this long, e.g. 90s, 30m, 2h (exit 4).")]
SkipOption = Annotated[bool | None, typer.Option("--skip-processed/--no-skip-processed",
                                                 help="Skip documents whose content is already done in the project (default: the manifest's option).")]  # fmt: skip

_DURATION = re.compile(r"^(?:(\d+(?:\.\d+)?)h)?(?:(\d+(?:\.\d+)?)m)?(?:(\d+(?:\.\d+)?)s?)?$")


def parse_duration(text: str | None) -> float | None:
    """Seconds in '90', '90s', '30m', '2h', '1h30m'."""
    if text is None:
        return None
    match = _DURATION.match(text.strip().lower())
    if not text.strip() or not match or not any(match.groups()):
        fail(UsageError(f"invalid duration {text!r}", hint="use e.g. 90s, 30m, 2h or 1h30m"))
    hours, minutes, seconds = (float(g) if g else 0.0 for g in match.groups())
    return hours * 3600 + minutes * 60 + seconds


def _connect(settings: Settings) -> tuple[BatchState, Broker, Lock]:
    try:
        state_client = ping(settings, "state")
        ping(settings, "broker")
    except LegaldocError as error:
        fail(error)
    keys = Keys(settings.redis_prefix)
    state = BatchState(state_client, keys, retention_seconds=int(settings.batch_retention_days * 86400))
    return state, Broker(client_for(settings, "broker")), Lock(state_client, keys)


def _load(manifest: Path, settings: Settings):
    try:
        return load_manifest(manifest, max_mb=settings.manifest_max_mb)
    except LegaldocError as error:
        fail(error)


def _submit(settings: Settings, database: Database, loaded, skip_processed: bool | None) -> tuple[BatchState, service.Submitted]:
    state, broker, lock = _connect(settings)
    try:
        return state, service.submit_batch(settings, database, state, broker, lock, loaded, skip_processed=skip_processed)
    except LegaldocError as error:
        fail(error)


def _warn_unserved_queues(settings: Settings, state: BatchState, submitted: service.Submitted) -> None:
    """A batch whose queues no live worker consumes would wait for ever: say so on stderr."""
    if submitted.finished:
        return
    registry = WorkerRegistry(state.client, state.keys, purge_after=settings.worker_purge_after)
    missing = registry.queues_without_workers(service.queues_needed(submitted.priority))
    if missing:
        note(f"warning: no live worker consumes {', '.join(missing)}; batch {submitted.batch_id} waits until one does "
             f"(start one with: legaldoc workers start --queue {','.join(missing)})")  # fmt: skip


def _exit_code(status: dict[str, Any]) -> ExitCode:
    if status["failed"] or status["cancelled"] or status["status"] == "cancelled":
        return ExitCode.DOCUMENTS_FAILED
    return ExitCode.OK


def _line(status: dict[str, Any]) -> str:
    parts = [f"{status['done']}/{status['total']} done", f"{status['succeeded']} succeeded"]
    for key in ("failed", "skipped", "cancelled", "running", "pending"):
        if status[key]:
            parts.append(f"{status[key]} {key}")
    if status.get("rate_per_minute"):
        parts.append(f"{status['rate_per_minute']:g}/min")
    return f"batch {status['batch_id']} {status['status']}: " + ", ".join(parts)


def _wait(database: Database, state: BatchState, batch_id: str, timeout: float | None, quiet: bool,
          alive=None) -> dict[str, Any]:  # fmt: skip
    """Wait with a progress bar on a terminal, a line every 10 s otherwise (nothing with --json)."""
    tty = stderr.is_terminal and not quiet
    progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[detail]}"),
                        TimeElapsedColumn(), console=stderr, disable=not tty, transient=False)  # fmt: skip
    last_line = [0.0]

    def update(status: dict[str, Any]) -> None:
        if tty:
            detail = " ".join(f"{status[k]} {k}" for k in ("running", "failed", "skipped") if status[k])
            progress.update(task, completed=status["done"], total=status["total"], detail=detail)
        elif not quiet and time.monotonic() - last_line[0] >= 10:
            last_line[0] = time.monotonic()
            note(_line(status))

    with progress:
        task = progress.add_task(f"batch {batch_id}", total=None, detail="")
        try:
            status = service.wait_for_batch(database, state, batch_id, timeout=timeout, on_update=update, alive=alive)
        except service.WaitTimedOut as error:
            note(f"error: {error}")
            raise typer.Exit(ExitCode.TIMED_OUT) from None
        except LegaldocError as error:
            fail(error)
    return status


def _print_summary(status: dict[str, Any]) -> None:
    stdout.print(Text.assemble((f"batch {status['batch_id']}", "bold"), f"  {status['name']}  (project {status['project']}, "
                               f"priority {status['priority']})"))  # fmt: skip
    stdout.print(f"status {status['status']}: {status['total']} documents, {status['succeeded']} succeeded, "
                 f"{status['failed']} failed, {status['skipped']} skipped, {status['cancelled']} cancelled"
                 + (f", {status['running']} running, {status['pending']} pending" if status['running'] or status['pending'] else ""))  # fmt: skip
    if status["errors_by_category"]:
        stdout.print("errors: " + ", ".join(f"{k} {v}" for k, v in status["errors_by_category"].items()))
    if status.get("rate_per_minute"):
        eta = f", about {status['eta_seconds']:.0f} s left" if status.get("eta_seconds") else ""
        stdout.print(f"rate {status['rate_per_minute']:g} documents/min{eta}")


def _public(status: dict[str, Any]) -> dict[str, Any]:
    keys = ("batch_id", "name", "project", "priority", "status", "total", "succeeded", "failed", "skipped",
            "cancelled", "errors_by_category", "pending", "running", "done", "rate_per_minute", "eta_seconds",
            "created_at", "started_at", "finished_at")  # fmt: skip
    return {k: status.get(k) for k in keys}


def submit(
    manifest: Annotated[Path, typer.Argument(help="Manifest YAML (see manifests/sample.yaml).")],
    wait: Annotated[bool, typer.Option("--wait", help="Wait for the batch to finish; exit 0 all done, 1 some failed, 4 timed out.")] = False,
    timeout: TimeoutOption = None,
    skip_processed: SkipOption = None,
    json_output: JsonOption = False,
    redis_url: RedisOption = None,
    database_url: DatabaseOption = None,
    data_dir: DataDirOption = None,
) -> None:
    """Submit a manifest as a batch to the workers; print its id."""
    settings = redis_settings(redis_url, database_url, data_dir)
    limit = parse_duration(timeout)
    loaded = _load(manifest, settings)
    database = open_database(settings)
    state, submitted = _submit(settings, database, loaded, skip_processed)
    _warn_unserved_queues(settings, state, submitted)
    if not wait:
        if json_output:
            emit_json(submitted.as_dict())
        else:
            sys.stdout.write(submitted.batch_id + "\n")
            note(f"submitted batch {submitted.batch_id} ({submitted.name}): {submitted.queued} queued, "
                 f"{submitted.skipped} skipped; follow it with: legaldoc status {submitted.batch_id}")  # fmt: skip
        return
    if not json_output:
        note(f"submitted batch {submitted.batch_id} ({submitted.name}): {submitted.total} documents")
    status = _wait(database, state, submitted.batch_id, limit, json_output)
    _report(status, json_output)


def _report(status: dict[str, Any], json_output: bool) -> None:
    if json_output:
        emit_json(_public(status))
    else:
        _print_summary(status)
    code = _exit_code(status)
    if code:
        raise typer.Exit(code)


def status(
    batch_id: Annotated[str | None, typer.Argument(help="A batch id; without it, recent batches.")] = None,
    docs: Annotated[bool, typer.Option("--docs", help="Also list every document of the batch with its state.")] = False,
    limit: Annotated[int, typer.Option("--limit", help="How many recent batches to list.")] = 50,
    json_output: JsonOption = False,
    redis_url: RedisOption = None,
    database_url: DatabaseOption = None,
    data_dir: DataDirOption = None,
) -> None:
    """Batches with progress, rate and ETA; or one batch with errors by category (and --docs)."""
    settings = redis_settings(redis_url, database_url, data_dir)
    database = open_database(settings)
    state = _optional_state(settings)
    try:
        if batch_id is None:
            rows = service.list_batches(database, state, limit=limit)
        else:
            one = service.batch_status(database, state, batch_id)
            documents = service.batch_documents(database, state, batch_id) if docs else None
    except LegaldocError as error:
        fail(error)
    if batch_id is None:
        if json_output:
            emit_json([_public(r) for r in rows])
            return
        table = Table("batch", "name", "project", "pri", "status", "done/total", "failed", "rate/min", "eta", box=None)
        for r in rows:
            table.add_row(r["batch_id"], r["name"] or "", r["project"] or "", str(r["priority"]), r["status"] or "",
                          f"{r['done']}/{r['total']}", str(r["failed"]), f"{r['rate_per_minute']:g}" if r["rate_per_minute"] else "-",
                          f"{r['eta_seconds']:.0f}s" if r["eta_seconds"] else "-")  # fmt: skip
        stdout.print(table)
        return
    if json_output:
        emit_json(_public(one) | ({"documents": documents} if docs else {}))
        return
    _print_summary(one)
    if docs:
        table = Table("id", "state", "stage", "attempts", "source / error", box=None)
        for d in documents:
            detail = d["source"]
            if d.get("error"):
                detail += f"\n  {d['error']['category']} in {d['error']['stage']}: {d['error']['message']}"
            elif d.get("reason"):
                detail += f"\n  {d['reason']}"
            table.add_row(str(d["document_id"]), d["state"], d["stage"] or "", str(d["attempts"]), Text(detail))
        stdout.print(table)


def _optional_state(settings: Settings) -> BatchState | None:
    """Live state when Redis answers; the database alone otherwise (status still works)."""
    try:
        client = ping(settings, "state")
    except LegaldocError as error:
        note(f"note: {error.message}; showing what the database holds")
        return None
    return BatchState(client, Keys(settings.redis_prefix))


def cancel(
    batch_id: Annotated[str, typer.Argument(help="The batch to cancel.")],
    json_output: JsonOption = False,
    redis_url: RedisOption = None,
    database_url: DatabaseOption = None,
    data_dir: DataDirOption = None,
) -> None:
    """Cancel a batch: documents not started end as cancelled; running ones finish."""
    settings = redis_settings(redis_url, database_url, data_dir)
    database = open_database(settings)
    state = _optional_state(settings)
    try:
        result = service.cancel_batch(database, state, batch_id)
    except LegaldocError as error:
        fail(error)
    if json_output:
        emit_json(_public(result) | {"cancelled_now": result["cancelled_now"]})
        return
    note(f"batch {batch_id}: {result['cancelled_now']} documents cancelled, {result['running']} still running "
         f"(they finish); status {result['status']}")  # fmt: skip


def run(
    manifest: Annotated[Path, typer.Argument(help="Manifest YAML (see manifests/sample.yaml).")],
    concurrency: Annotated[int | None, typer.Option("--concurrency", "-c", help="Worker processes (default: CPU count).")] = None,
    timeout: TimeoutOption = None,
    skip_processed: SkipOption = None,
    json_output: JsonOption = False,
    database_url: DatabaseOption = None,
    data_dir: DataDirOption = None,
) -> None:
    """Process a manifest with a private Redis and workers started here; stop them after (main job)."""
    settings = settings_from(None, database_url, data_dir)
    limit = parse_duration(timeout)
    loaded = _load(manifest, settings)
    database = open_database(settings)
    data = settings.data_dir.resolve()
    embedded = EmbeddedRedis(data)
    try:
        redis_url = embedded.start()
    except LegaldocError as error:
        fail(error)
    worker = None
    batch_id = None
    try:
        settings = settings.model_copy(update={"redis_url": redis_url, **{f"{r}_url": None for r in ("broker", "result", "cache", "ratelimit", "state")}})
        roles = ("broker", "result", "cache", "ratelimit", "state")
        env = {k: v for k, v in os.environ.items() if k not in {f"LEGALDOC_{r.upper()}_URL" for r in roles}}
        env.update(LEGALDOC_REDIS_URL=redis_url, LEGALDOC_DATA_DIR=str(data),
                   LEGALDOC_DATABASE_URL=_absolute(settings.resolved_database_url))  # fmt: skip
        worker = WorkerProcess(env, concurrency=concurrency or settings.worker_concurrency or os.cpu_count(),
                               log_path=data / "run" / "worker.log").start()  # fmt: skip
        state, submitted = _submit(settings, database, loaded, skip_processed)
        batch_id = submitted.batch_id
        if not json_output:
            note(f"batch {batch_id} ({submitted.name}): {submitted.total} documents, "
                 f"{concurrency or settings.worker_concurrency or os.cpu_count()} worker processes")  # fmt: skip

        def worker_alive() -> str | None:
            if worker.alive():
                return None
            return f"the worker stopped unexpectedly; its log ({data / 'run' / 'worker.log'}) ends with:\n{worker.log_tail()}"

        _wait(database, state, batch_id, limit, json_output, alive=worker_alive)
        service.finalize_batch(database, state, batch_id)
    except KeyboardInterrupt:
        note("interrupted: cancelling documents not started and stopping the worker")
        if batch_id is not None:
            with contextlib.suppress(LegaldocError):
                service.cancel_batch(database, None, batch_id)
        if worker is not None:
            worker.stop(timeout=10)
        embedded.stop()
        raise typer.Exit(ExitCode.INTERRUPTED) from None
    finally:
        if worker is not None:
            worker.stop()
        embedded.stop()
    result = service.batch_status(database, None, batch_id)
    _report(result, json_output)


def _absolute(url: str) -> str:
    if url.startswith("sqlite:///") and not url.startswith("sqlite:////"):
        path = url.removeprefix("sqlite:///")
        if path and path != ":memory:":
            return f"sqlite:///{Path(path).resolve()}"
    return url
