"""`submit`, `status`, `cancel` and `run`: batches on Celery workers over Redis."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import sys
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from legaldoc.cli.common import JsonOption, connected, worker_log_options
from legaldoc.cli.exit_codes import ExitCode
from legaldoc.cli.output import emit_json, fail, handled, note, stderr, stdout
from legaldoc.errors import ConfigurationError, LegaldocError, UsageError, WaitTimedOut
from legaldoc.lifecycle import BatchStatus, MirrorState
from legaldoc.manifest import load_manifest
from legaldoc.services import batches as service
from legaldoc.services.doctor import CHEAP, Verdict, diagnose
from legaldoc.services.embedded import (
    EmbeddedRedis,
    RunLock,
    WorkerProcess,
    mark_runner,
    reap_dead_run,
)
from legaldoc.services.summary import BatchSummary, DocumentRow, usage_line
from legaldoc.services.textract import batch_usage as textract_usage
from legaldoc.services.wiring import Runtime

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


def _warn_unserved_queues(rt: Runtime, submitted: service.Submitted) -> None:
    """A batch whose queues no live worker consumes would wait for ever: say so on stderr."""
    if submitted.settled:
        return
    missing = rt.registry.queues_without_workers(service.queues_needed(submitted.priority))
    if missing:
        note(f"warning: no live worker consumes {', '.join(missing)}; batch {submitted.batch_id} waits until one does "
             f"(start one with: legaldoc workers start --queue {','.join(missing)})")  # fmt: skip


def _exit_code(summary: BatchSummary) -> ExitCode:
    if summary.failed or summary.cancelled or summary.status is BatchStatus.CANCELLED:
        return ExitCode.DOCUMENTS_FAILED
    return ExitCode.OK


def _counts(summary: BatchSummary, states: tuple[MirrorState, ...]) -> list[str]:
    return [f"{getattr(summary, state)} {state}" for state in states if getattr(summary, state)]


def _line(summary: BatchSummary) -> str:
    parts = [f"{summary.done}/{summary.total} done", f"{summary.succeeded} succeeded",
             *_counts(summary, (MirrorState.FAILED, MirrorState.SKIPPED, MirrorState.CANCELLED, MirrorState.RUNNING,
                                MirrorState.PENDING))]  # fmt: skip
    if summary.rate_per_minute:
        parts.append(f"{summary.rate_per_minute:g}/min")
    return f"batch {summary.batch_id} {summary.status}: " + ", ".join(parts)


def _wait(rt: Runtime, batch_id: str, timeout: float | None, quiet: bool,
          alive: Callable[[], str | None] | None = None) -> BatchSummary:  # fmt: skip
    """Wait with a progress bar on a terminal, a line every 10 s otherwise (nothing with --json)."""
    tty = stderr.is_terminal and not quiet
    progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[detail]}"),
                        TimeElapsedColumn(), console=stderr, disable=not tty, transient=False)  # fmt: skip
    last_line = [0.0]
    redis_down: list[float | None] = [None]  # seconds Redis has been down, told once by the log, then here

    def outage() -> str:
        seconds = redis_down[0]
        return "" if seconds is None else f"Redis unavailable for {seconds:.0f} s, retrying"

    def update(summary: BatchSummary) -> None:
        if tty:
            detail = " ".join([*_counts(summary, (MirrorState.RUNNING, MirrorState.FAILED, MirrorState.SKIPPED)), outage()])
            progress.update(task, completed=summary.done, total=summary.total, detail=detail.strip())
        elif not quiet and time.monotonic() - last_line[0] >= 10:  # a log file's line: with its time
            last_line[0] = time.monotonic()
            note(f"{datetime.now(UTC):%Y-%m-%dT%H:%M:%SZ} {_line(summary)}" + (f"; {outage()}" if outage() else ""))

    def on_redis(seconds: float | None) -> None:
        redis_down[0] = seconds

    with progress:
        task = progress.add_task(f"batch {batch_id}", total=None, detail="")
        try:
            return service.wait_for_batch(rt, batch_id, timeout=timeout, on_update=update, alive=alive, on_redis=on_redis,
                                          on_stall=lambda why: progress.console.print(f"warning: {why}", markup=False))  # fmt: skip
        except WaitTimedOut as error:
            note(f"error: {error}")
            raise typer.Exit(ExitCode.TIMED_OUT) from None
        except LegaldocError as error:
            fail(error)


def _print_summary(summary: BatchSummary) -> None:
    stdout.print(Text.assemble((f"batch {summary.batch_id}", "bold"), f"  {summary.name}  (project {summary.project}, "
                               f"priority {summary.priority})"))  # fmt: skip
    stdout.print(f"status {summary.status}: {summary.total} documents, {summary.succeeded} succeeded, "
                 f"{summary.failed} failed, {summary.skipped} skipped, {summary.cancelled} cancelled"
                 + (f", {summary.running} running, {summary.pending} pending" if summary.open else ""))  # fmt: skip
    if summary.errors_by_category:
        stdout.print("errors: " + ", ".join(f"{k} {v}" for k, v in summary.errors_by_category.items()))
    if summary.rate_per_minute:
        eta = f", about {summary.eta_seconds:.0f} s left" if summary.eta_seconds else ""
        stdout.print(f"rate {summary.rate_per_minute:g} documents/min{eta}")
    for provider, used in summary.usage.items():
        stdout.print(usage_line(provider, used), markup=False)


def _report(rt: Runtime, summary: BatchSummary, json_output: bool) -> None:
    if json_output:
        emit_json(summary.as_json() | {"failed_documents": service.failed_documents(rt, summary.batch_id)})
    else:
        _print_summary(summary)
    code = _exit_code(summary)
    if code:
        raise typer.Exit(code)


@connected("redis", "database")
def submit(
    rt: Runtime,
    manifest: Annotated[Path, typer.Argument(help="Manifest YAML (see manifests/sample.yaml).")],
    wait: Annotated[bool, typer.Option("--wait", help="Wait for the batch to finish; exit 0 all done, 1 some failed, 4 timed out.")] = False,
    timeout: TimeoutOption = None,
    skip_processed: SkipOption = None,
    json_output: JsonOption = False,
) -> None:
    """Submit a manifest as a batch to the workers; print its id."""
    limit = parse_duration(timeout)
    with handled():
        loaded = load_manifest(manifest, max_mb=rt.settings.manifest_max_mb, roots=rt.settings.documents_root)
        for check in diagnose(rt.require(), only=CHEAP):  # what doctor would say, the quick part
            if check.verdict is Verdict.FAIL:
                fail(ConfigurationError(f"{check.name}: {check.detail}", hint=check.fix))
            if check.verdict is Verdict.WARN:
                note(f"warning: {check.name}: {check.detail} ({check.fix})")
        if reaped := reap_dead_run(rt):
            note(f"note: {reaped}")
        submitted = service.submit_batch(rt, loaded, skip_processed=skip_processed)
    _note_left_out(submitted)
    _warn_unserved_queues(rt, submitted)
    if not wait:
        if json_output:
            emit_json(submitted.as_json())
        else:
            sys.stdout.write(submitted.batch_id + "\n")
            note(f"submitted batch {submitted.batch_id} ({submitted.name}): {submitted.queued} queued, "
                 f"{submitted.skipped} skipped; follow it with: legaldoc status {submitted.batch_id}")  # fmt: skip
        return
    if not json_output:
        note(f"submitted batch {submitted.batch_id} ({submitted.name}): {submitted.total} documents")
    _report(rt, _wait(rt, submitted.batch_id, limit, json_output), json_output)


def _note_left_out(submitted: service.Submitted) -> None:
    if left := submitted.not_documents:
        shown = ", ".join(left[:3]) + (f" and {len(left) - 3} more" if len(left) > 3 else "")
        note(f"note: {len(left)} file(s) inside archives or e-mails are not documents legaldoc reads "
             f"and were left out: {shown}")  # fmt: skip


def _live(rt: Runtime) -> None:
    """Live state when Redis answers; the database alone otherwise (status still works)."""
    if rt.mirror is None:
        note(f"note: cannot reach Redis at {rt.where()}; showing what the database holds")


DEFAULT_LIMIT = 50


@connected("redis", "database")
def status(
    rt: Runtime,
    batch_id: Annotated[str | None, typer.Argument(help="A batch id; without it, recent batches.")] = None,
    docs: Annotated[bool, typer.Option("--docs", help="Also list the batch's documents with their state, in id order, "
                                                      "one page at a time (see --limit, --offset, --after).")] = False,
    limit: Annotated[int, typer.Option("--limit", min=0, help="How many recent batches, or documents with --docs, "
                                                              "to list; 0: all (documents are streamed).")] = DEFAULT_LIMIT,
    offset: Annotated[int, typer.Option("--offset", min=0, help="With --docs: skip this many documents first.")] = 0,
    after: Annotated[int | None, typer.Option("--after", min=0, help="With --docs: start after this document id (the "
                                                                     "cursor a page ends with: as fast on any page).")] = None,
    json_output: JsonOption = False,
) -> None:
    """Batches with progress, rate and ETA; or one batch with errors by category (and --docs).

    With --docs, one page of documents: `--limit 20 --offset 40`, or `--after ID` to go on from the
    last id shown; the end of a page says how to get the next (on stderr; `documents_page` in --json)."""
    with handled():
        _live(rt.open_database())
        if batch_id is None:
            rows = service.list_batches(rt, limit=limit or None)
        else:
            one = service.batch_status(rt, batch_id)
            textract = textract_usage(rt.database, batch_id)
            page = limit + 1 if limit else None  # one more than shown says whether a next page exists
            documents = service.iter_batch_documents(rt, batch_id, limit=page, offset=offset, after=after) if docs else iter(())
    if batch_id is None:
        if json_output:
            emit_json([r.as_json() for r in rows])
            return
        table = Table("batch", "name", "project", "pri", "status", "done/total", MirrorState.FAILED, "rate/min", "eta", box=None)
        for r in rows:
            table.add_row(r.batch_id, r.name, r.project, str(r.priority), r.status, f"{r.done}/{r.total}", str(r.failed),
                          f"{r.rate_per_minute:g}" if r.rate_per_minute else "-",
                          f"{r.eta_seconds:.0f}s" if r.eta_seconds else "-")  # fmt: skip
        stdout.print(table)
        return
    if json_output:
        head = one.as_json() | {"textract": textract.as_json()}
        if not docs:
            emit_json(head)
            return
        with handled():
            shown = _stream_json_documents(head, documents, limit)
        last = shown[1]
        more = bool(limit) and shown[0] > limit
        sys.stdout.write(", " + json.dumps("documents_page") + ": " + json.dumps(
            {"offset": offset, "after": after, "limit": limit or None, "returned": min(shown[0], limit or shown[0]),
             "next_offset": offset + limit if more else None, "next_after": last if more else None}) + "}\n")  # fmt: skip
        sys.stdout.flush()
        return
    _print_summary(one)
    if textract.pages:
        stdout.print(f"textract: {textract.pages} pages sent in {textract.jobs} jobs, estimated ${textract.cost:,.2f}")
    if docs:
        stdout.file.flush()
        with handled():
            count, last = _stream_document_lines(documents, limit)
        if limit and count > limit:
            note(f"documents {offset + 1:,}-{offset + limit:,} of {one.total:,} shown; next page: --offset {offset + limit} "
                 f"(or --after {last})")  # fmt: skip


_DOC_LINE = "{:>10}  {:<9}  {:<9}  {:>8}  {}\n"


def _doc_detail(d: DocumentRow) -> str:
    if d.state is MirrorState.FAILED:
        return f"{d.category} in {d.stage}: {d.message}"
    if d.reason:
        return d.reason
    if d.retry_at is not None:
        return f"retry at {d.retry_at:%H:%M:%S} UTC" + (f" after {d.category}" if d.category else "")
    return ""


def _stream_document_lines(documents: Iterator[DocumentRow], limit: int) -> tuple[int, int | None]:
    """Write document rows as they are read (never a whole table in memory): at most `limit` of
    them (0: all); (rows read, id of the last one written)."""
    write = sys.stdout.write
    write(_DOC_LINE.format("id", "state", "stage", "attempts", "source / error"))
    count, last = 0, None
    for d in documents:
        count += 1
        if limit and count > limit:
            break
        last = d.document_id
        running = d.state is MirrorState.RUNNING
        write(_DOC_LINE.format(d.document_id, d.state.value, (d.stage or "") if running else "", d.attempts, d.source))
        if detail := _doc_detail(d):
            write(f"{'':>10}    {detail}\n")
    sys.stdout.flush()
    return count, last


def _stream_json_documents(head: dict[str, Any], documents: Iterator[DocumentRow], limit: int) -> tuple[int, int | None]:
    """Write `head` with a "documents" list, row by row, leaving the object open for what follows;
    (rows read, id of the last one written)."""
    text = json.dumps(head, ensure_ascii=False, default=str)
    write = sys.stdout.write
    write(text[:-1] + (", " if head else "") + '"documents": [')
    count, last = 0, None
    for d in documents:
        count += 1
        if limit and count > limit:
            break
        write((", " if last is not None else "") + json.dumps(d.as_json(), ensure_ascii=False, default=str))
        last = d.document_id
    write("]")
    return count, last


@connected("redis", "database")
def cancel(
    rt: Runtime,
    batch_id: Annotated[str, typer.Argument(help="The batch to cancel.")],
    json_output: JsonOption = False,
) -> None:
    """Cancel a batch: documents not started end as cancelled; running ones finish."""
    with handled():
        _live(rt.open_database())
        result = service.cancel_batch(rt, batch_id)
    if json_output:
        emit_json(result.as_json())
    elif result.already:
        note(f"batch {batch_id} is already {result.summary.status}; nothing to cancel")
    else:
        note(f"batch {batch_id}: {result.cancelled_now} documents cancelled, {result.summary.running} still running "
             f"(they end after their current stage); status {result.summary.status}")  # fmt: skip


@connected("database")
def run(
    rt: Runtime,
    manifest: Annotated[Path, typer.Argument(help="Manifest YAML (see manifests/sample.yaml).")],
    concurrency: Annotated[int | None, typer.Option("--concurrency", "-c", help="Worker processes (default: CPU count).")] = None,
    timeout: TimeoutOption = None,
    skip_processed: SkipOption = None,
    json_output: JsonOption = False,
) -> None:
    """Process a manifest with a private Redis and workers started here; stop them after (main job).

    Ctrl-C or SIGTERM cancels what has not started, gives running stages 10 s to finish, ends the
    rest as cancelled and exits 130; a run killed outright is cleaned up by the next one here."""
    limit = parse_duration(timeout)
    data = rt.settings.data_dir.resolve()
    embedded, lock = EmbeddedRedis(data), RunLock(data)
    with handled():
        loaded = load_manifest(manifest, max_mb=rt.settings.manifest_max_mb, roots=rt.settings.documents_root)
        rt.open_database()
        lock.take()
        redis_url = embedded.start()
    worker: WorkerProcess | None = None
    batch_id, settled = None, False
    previous = signal.signal(signal.SIGTERM, _interrupted)
    try:
        roles = ("broker", "result", "cache", "ratelimit", "state")
        rt = Runtime(rt.settings.model_copy(update={"redis_url": redis_url, **{f"{r}_url": None for r in roles}}))
        mark_runner(rt)  # its batch is swept by its own worker only
        if reaped := reap_dead_run(rt, lock):
            note(f"note: {reaped}")
        processes = concurrency or rt.settings.worker_concurrency or os.cpu_count() or 1
        env = {k: v for k, v in os.environ.items() if k not in {f"LEGALDOC_{r.upper()}_URL" for r in roles}}
        env.update(LEGALDOC_REDIS_URL=redis_url, LEGALDOC_DATA_DIR=str(data),
                   LEGALDOC_DATABASE_URL=_absolute(rt.settings.resolved_database_url))  # fmt: skip
        worker = WorkerProcess(env, concurrency=processes, log_path=data / "run" / "worker.log", **worker_log_options()).start()
        lock.save(redis_pid=embedded.pid, worker_pid=worker.pid)
        with handled():
            submitted = service.submit_batch(rt.require(), loaded, skip_processed=skip_processed)
            _note_left_out(submitted)
        batch_id = submitted.batch_id
        lock.save(batch_id=batch_id)
        if not json_output:
            note(f"batch {batch_id} ({submitted.name}): {submitted.total} documents, {processes} worker processes")

        def worker_alive() -> str | None:
            if worker is None or worker.alive():
                return None
            return f"the worker stopped unexpectedly; its log ({data / 'run' / 'worker.log'}) ends with:\n{worker.log_tail()}"

        result = _wait(rt, batch_id, limit, json_output, alive=worker_alive)
        settled = True
    except KeyboardInterrupt:
        note("interrupted: cancelling what has not started; running stages get 10 s to finish")
        with contextlib.suppress(LegaldocError):
            if batch_id is not None:
                service.cancel_batch(rt, batch_id)
            if worker is not None:
                worker.stop(timeout=10)
            if batch_id is not None:
                ended = service.abandon_batch(rt, batch_id, "legaldoc run was interrupted")
                note(f"batch {batch_id} cancelled" + (f" ({ended} documents stopped mid-way)" if ended else ""))
            settled = True
        raise typer.Exit(ExitCode.INTERRUPTED) from None
    finally:
        signal.signal(signal.SIGTERM, previous)
        if worker is not None:
            worker.stop()
        embedded.stop()
        if settled or batch_id is None:
            lock.release()
    _report(rt, result, json_output)


def _interrupted(signum: int, frame: object) -> None:
    """SIGTERM ends `run` the way Ctrl-C does."""
    raise KeyboardInterrupt


def _absolute(url: str) -> str:
    if url.startswith("sqlite:///") and not url.startswith("sqlite:////"):
        path = url.removeprefix("sqlite:///")
        if path and path != ":memory:":
            return f"sqlite:///{Path(path).resolve()}"
    return url
