"""`legaldoc workers start|status|scale|stop`: Celery workers per queue, on any number of machines."""

from __future__ import annotations

import os
import sys
import time
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table
from rich.text import Text

from legaldoc import hosts
from legaldoc.cli.common import JsonOption, connected, worker_log_options
from legaldoc.cli.exit_codes import ExitCode
from legaldoc.cli.output import emit_json, fail, handled, note, stdout
from legaldoc.config import Settings
from legaldoc.errors import LegaldocError, UsageError
from legaldoc.queues import CONSUME_ORDER, Queue
from legaldoc.services import workers as service
from legaldoc.services.wiring import Runtime
from legaldoc.state.workers import Heartbeat, WorkerRegistry
from legaldoc.tui import format as fmt

if TYPE_CHECKING:
    from legaldoc.tasks.control import WorkerControl

app = typer.Typer(help="Start, list, scale and stop workers (Celery) per queue.", no_args_is_help=True)

QueueNames = ", ".join(q.value for q in CONSUME_ORDER)


def _registry(rt: Runtime) -> WorkerRegistry:
    try:
        return rt.require("state").registry
    except LegaldocError as error:
        fail(error)


def _queues(queue: list[str] | None) -> list[str]:
    names = [part.strip() for value in queue or [] for part in value.split(",") if part.strip()]
    known = {q.value for q in Queue}
    unknown = [name for name in names if name not in known]
    if unknown:
        fail(UsageError(f"unknown queue(s): {', '.join(unknown)}", hint=f"known: {QueueNames}"))
    return names


def _environment(settings: Settings) -> dict[str, str]:
    """The worker's environment: ours, with this command's Redis and database made explicit."""
    return {**os.environ, "LEGALDOC_REDIS_URL": settings.redis_url, "LEGALDOC_DATA_DIR": str(settings.data_dir.resolve()),
            "LEGALDOC_DATABASE_URL": settings.resolved_database_url}  # fmt: skip


@connected("redis", "database")
def start(
    rt: Runtime,
    queue: Annotated[list[str] | None, typer.Option("--queue", "-Q", help=f"Queue to consume (repeat or comma-separate; default: all): {QueueNames}.")] = None,
    concurrency: Annotated[int | None, typer.Option("--concurrency", "-c", min=1, help="Worker processes (default: LEGALDOC_WORKER_CONCURRENCY or CPU count).")] = None,
    autoscale: Annotated[str | None, typer.Option("--autoscale", help="MAX,MIN processes, grown and shrunk with the load.")] = None,
    name: Annotated[str | None, typer.Option("--name", "-n", help="Worker name (default: legaldoc-RANDOM@HOST).")] = None,
    detach: Annotated[bool, typer.Option("--detach", "-d", help="Run in the background; print its name and pid once its first heartbeat arrives.")] = False,
    loglevel: Annotated[str | None, typer.Option("--loglevel", help="Log level of the worker (default: -v/-q, else LEGALDOC_LOG_LEVEL, else WARNING).")] = None,
    json_output: JsonOption = False,
) -> None:
    """Start a worker on some queues with the per-queue time limits from the settings; SIGTERM stops it gracefully."""
    settings = rt.settings
    queues = _queues(queue)
    if autoscale:
        try:
            service.parse_autoscale(autoscale)
        except ValueError as error:
            fail(UsageError(str(error)))
    full_name = service.worker_name(name)
    command = service.worker_command(queues=queues, concurrency=concurrency, autoscale=autoscale, name=full_name,
                                     **worker_log_options(loglevel))  # fmt: skip
    env = _environment(settings)
    registry = _registry(rt)
    if any(w.name == full_name and w.online() for w in registry.workers()):
        fail(UsageError(f"a worker named {full_name} is already running", hint="choose another --name"))
    if not detach:
        sys.stdout.flush()
        os.execvpe(command[0], command, env)
    detached = service.start_detached(command, env, settings.data_dir.resolve() / "workers", full_name)
    with handled():
        heartbeat = service.wait_for_heartbeat(registry, detached)
    if json_output:
        emit_json(heartbeat.as_json() | {"log": str(detached.log)})
        return
    sys.stdout.write(f"{heartbeat.name}\n")
    note(f"worker {heartbeat.name} started (pid {heartbeat.pid}) on {', '.join(heartbeat.queues)} with "
         f"{heartbeat.concurrency} processes; log: {detached.log}")  # fmt: skip


@connected("redis")
def status(
    rt: Runtime,
    json_output: JsonOption = False,
) -> None:
    """Every worker from its heartbeats: queues, processes, active and processed tasks, memory, last seen."""
    workers = _registry(rt).workers()
    now = time.time()
    if json_output:
        emit_json([w.as_json(now) for w in workers])
        return
    if not workers:
        note("no workers have sent a heartbeat; start one with: legaldoc workers start")
        return
    table = Table("name", "host", "pid", "queues", "procs", "active", "processed", "failures", "rss", "last seen", "state", box=None)
    for w in workers:
        online = w.online(now)
        procs = f"{w.concurrency} ({w.autoscale[1]}-{w.autoscale[0]})" if w.autoscale else str(w.concurrency)
        row = [w.name, w.host, str(w.pid), ",".join(w.queues), procs, str(w.active), str(w.processed), str(w.failed),
               fmt.size(w.rss), f"{fmt.duration(now - w.last_seen)} ago", "online" if online else ("stopped" if w.stopped else "offline")]  # fmt: skip
        table.add_row(*[Text(cell, style="" if online else "dim") for cell in row])
    stdout.print(table)


def _control(settings: Settings) -> WorkerControl:
    from legaldoc.tasks.control import WorkerControl

    return WorkerControl(settings)


@connected("redis", "database")
def scale(
    rt: Runtime,
    count: Annotated[int, typer.Argument(min=0, help="Total worker processes wanted on the queue.")],
    queue: Annotated[str, typer.Option("--queue", "-Q", help="The queue to scale.")],
    timeout: Annotated[float, typer.Option("--timeout", help="Seconds to wait for the workers to report the change.")] = 60.0,
    json_output: JsonOption = False,
) -> None:
    """Bring the total processes on a queue to COUNT: grow or shrink running pools, start or stop workers."""
    settings = rt.settings
    (queue,) = _queues([queue]) or [""]
    if not queue:
        fail(UsageError("--queue is required"))
    registry = _registry(rt)
    workers = registry.workers()
    actions = service.plan_scale(workers, queue, count)
    done: list[str] = []
    control = _control(settings) if any(a.kind != "start" for a in actions) else None
    try:
        for action in actions:
            if action.kind == "start":
                full_name = service.worker_name(None)
                command = service.worker_command(queues=[queue], concurrency=action.after, name=full_name,
                                                 **worker_log_options())  # fmt: skip
                detached = service.start_detached(command, _environment(settings),
                                                  settings.data_dir.resolve() / "workers", full_name)  # fmt: skip
                service.wait_for_heartbeat(registry, detached, timeout=timeout)
            else:
                assert control is not None and action.worker is not None  # every other action has both
                if action.kind == "grow":
                    control.grow(action.worker, action.count)
                elif action.kind == "shrink":
                    control.shrink(action.worker, action.count)
                elif action.kind == "autoscale":
                    control.autoscale(action.worker, action.after, action.minimum)
                elif action.kind == "stop":
                    control.shutdown(action.worker)
            done.append(action.describe(queue))
    except LegaldocError as error:
        for line in done:
            note(line)
        fail(error)
    finally:
        if control is not None:
            control.close()

    def reached(current: list[Heartbeat]) -> bool:
        serving = [w for w in current if w.online() and queue in w.queues]
        return sum(w.autoscale[0] if w.autoscale else w.concurrency for w in serving) == count

    settled = service.wait_until(registry, reached, timeout) if actions else True
    total = sum(w.autoscale[0] if w.autoscale else w.concurrency for w in registry.online(queue))
    if json_output:
        emit_json({"queue": queue, "requested": count, "concurrency": total, "actions": done, "settled": settled})
    else:
        for line in done or [f"{queue} already has {count} processes"]:
            note(line)
        note(f"{queue}: {total} processes now" + ("" if settled else f" (the workers have not reported {count} yet)"))
    if not settled:
        raise typer.Exit(ExitCode.TIMED_OUT)


@connected("redis", "database")
def stop(
    rt: Runtime,
    queue: Annotated[str | None, typer.Option("--queue", "-Q", help="Stop the workers consuming this queue.")] = None,
    name: Annotated[str | None, typer.Option("--name", "-n", help="Stop this worker.")] = None,
    all_workers: Annotated[bool, typer.Option("--all", help="Stop every online worker.")] = False,
    timeout: Annotated[float, typer.Option("--timeout", help="Seconds to wait for them to finish their tasks and stop.")] = 120.0,
    json_output: JsonOption = False,
) -> None:
    """Stop workers gracefully: running tasks finish, nothing new starts."""
    if not (queue or name or all_workers):
        fail(UsageError("say which workers to stop: --queue Q, --name NAME or --all"))
    settings = rt.settings
    if queue:
        _queues([queue])
    registry = _registry(rt)
    chosen = [w for w in registry.online() if (name is None or w.name == service.worker_name(name) or w.name == name)
              and (queue is None or queue in w.queues)]  # fmt: skip
    if not chosen:
        note("no online worker matches")
        if json_output:
            emit_json({"stopped": [], "still_running": []})
        return
    control = _control(settings)
    try:
        for worker in chosen:
            control.shutdown(worker.name)
    finally:
        control.close()
    names = {w.name for w in chosen}
    started = time.monotonic()
    service.wait_until(registry, lambda current: not any(w.name in names and w.online() for w in current), timeout)
    local = {w.pid: w.name for w in chosen if hosts.is_this_host(w.host, w.extra.get("pid_space"))}
    lingering = service.wait_for_exit(list(local), max(1.0, timeout - (time.monotonic() - started)))
    still = sorted({w.name for w in registry.online() if w.name in names} | {local[pid] for pid in lingering})
    stopped = sorted(names - set(still))
    if json_output:
        emit_json({"stopped": stopped, "still_running": still})
    else:
        for worker_name in stopped:
            note(f"stopped {worker_name}")
    if still:
        note(f"error: still running after {timeout:g} s: {', '.join(still)} (they finish their running tasks first; "
             "check again with: legaldoc workers status)")
        raise typer.Exit(ExitCode.TIMED_OUT)


app.command("start")(start)
app.command("status")(status)
app.command("scale")(scale)
app.command("stop")(stop)
