"""A legaldoc worker process: `python -m legaldoc.tasks.worker [--queues Q,...] [--concurrency N]`.

`legaldoc workers start` runs this. Besides Celery's consumer, the main process runs two small
threads: a heartbeat that writes what the worker is doing to the `workers` hash every
`heartbeat_interval`, and a scheduler that publishes one `sweep` per sweep interval across all
workers (a Redis lock picks the publisher) and a `retention` task once an hour, so no beat process
is needed. SIGTERM is Celery's warm shutdown: running tasks finish, nothing new starts.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import threading
import time
from pathlib import Path
from typing import Any

from celery import signals

from legaldoc import hosts
from legaldoc.config import SettingsError, load_settings
from legaldoc.errors import LegaldocError
from legaldoc.logs import LogFormat, WorkerLogHandler, configure
from legaldoc.queues import CONSUME_ORDER, MOST_URGENT, RETENTION_TASK, SWEEP_TASK, Queue
from legaldoc.services import metrics
from legaldoc.services.wiring import Runtime
from legaldoc.services.workers import parse_autoscale
from legaldoc.state.broker import Message
from legaldoc.state.workers import Heartbeat
from legaldoc.tasks import stats
from legaldoc.tasks.app import create_app
from legaldoc.tasks.runtime import main_runtime

log = logging.getLogger("legaldoc.worker")


class Scheduler(threading.Thread):
    """Publishes the periodic cleanup tasks; one publisher per interval across all workers."""

    def __init__(self, rt: Runtime) -> None:
        super().__init__(name="legaldoc-scheduler", daemon=True)
        self.rt = rt
        self.stopped = threading.Event()

    def run(self) -> None:
        broker, lock = self.rt.broker, self.rt.lock
        interval = self.rt.settings.sweep_interval
        while not self.stopped.wait(interval):
            try:
                if lock.acquire("sweep", ttl=interval * 0.9):
                    lock.tokens.pop("sweep", None)  # expires on its own: one sweep per interval
                    broker.publish([Message(SWEEP_TASK, (), Queue.CLEANUP.value, MOST_URGENT)])
                if lock.acquire("retention", ttl=3600):
                    lock.tokens.pop("retention", None)
                    broker.publish([Message(RETENTION_TASK, (), Queue.CLEANUP.value, MOST_URGENT)])
            except Exception:
                log.warning("could not publish the periodic cleanup tasks", exc_info=True)


def resident_memory(pid: int) -> int:
    """Resident bytes of a process and all its children (the pool)."""
    import psutil

    try:
        process = psutil.Process(pid)
        total = process.memory_info().rss
        for child in process.children(recursive=True):
            with contextlib.suppress(psutil.Error):
                total += child.memory_info().rss
        return total
    except psutil.Error:
        return 0


class Heartbeater(threading.Thread):
    """Writes this worker's heartbeat every interval, from Celery's own bookkeeping."""

    def __init__(self, rt: Runtime, heartbeat: Heartbeat) -> None:
        super().__init__(name="legaldoc-heartbeat", daemon=True)
        self.registry = rt.registry
        self.heartbeat = heartbeat
        self.consumer: Any = None  # celery.worker.consumer.Consumer; celery is untyped
        self.stopped = threading.Event()
        self.log_handler: WorkerLogHandler | None = None

    def refresh(self) -> None:
        from celery.worker import state

        beat = self.heartbeat
        consumer = self.consumer
        if consumer is not None:
            autoscaler = getattr(consumer.controller, "autoscaler", None)
            if autoscaler is not None:
                beat.autoscale = [autoscaler.max_concurrency, autoscaler.min_concurrency]
            processes = getattr(consumer.pool, "num_processes", None)
            if isinstance(processes, int):
                beat.concurrency = processes
        dispatcher = getattr(consumer, "event_dispatcher", None) if consumer is not None else None
        if dispatcher is not None:  # as Celery's Dispatcher.send decides for a task event
            events = bool(dispatcher.enabled) and (not dispatcher.groups or "task" in dispatcher.groups)
            stats.set_task_events(events)  # the pool processes chain stages only without them
            beat.extra["task_events"] = events
        beat.active = len(state.active_requests)
        beat.processed = int(state.all_total_count[0]) + stats.chained()  # a chained stage counts as a task
        beat.failed = stats.failures()
        beat.rss = resident_memory(beat.pid)

    def beat_once(self) -> None:
        if self.log_handler is not None:
            self.log_handler.rotate_if_needed()
        try:
            self.refresh()
            self.registry.beat(self.heartbeat)
        except Exception:
            log.warning("could not write the heartbeat", exc_info=True)

    def run(self) -> None:
        self.beat_once()
        while not self.stopped.wait(self.heartbeat.interval):
            self.beat_once()

    def stop(self) -> None:
        """The last heartbeat says the worker stopped, so it shows offline at once."""
        self.stopped.set()
        self.heartbeat.stopped = True
        self.heartbeat.active = 0
        self.beat_once()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m legaldoc.tasks.worker", description=__doc__)
    parser.add_argument("--queues", default=",".join(q.value for q in CONSUME_ORDER),
                        help="comma-separated queues (default: all)")  # fmt: skip
    parser.add_argument("--concurrency", type=int, default=None, help="processes (default: CPU count)")
    parser.add_argument("--autoscale", default=None, help="MAX,MIN processes, grown and shrunk with the load")
    parser.add_argument("--name", default=None, help="worker name (default: legaldoc-RANDOM@HOST)")
    parser.add_argument("--loglevel", default=None, help="least severe log records (default: the log_level setting)")
    parser.add_argument("--log-format", choices=[f.value for f in LogFormat], default=None,
                        help="text or json lines (default: the log_format setting)")  # fmt: skip
    parser.add_argument("--log-file", type=Path, default=None,
                        help="write the log to this file, rotated by size (default: stderr)")  # fmt: skip
    parser.add_argument("--pool", default="prefork")
    args = parser.parse_args(argv)
    try:
        settings = load_settings()
    except SettingsError as error:
        parser.error(f"invalid settings: {error}")
    app = create_app(settings)
    queues = [q.strip() for q in args.queues.split(",") if q.strip()]
    known = {q.value for q in Queue}
    unknown = [q for q in queues if q not in known]
    if unknown:
        parser.error(f"unknown queue(s): {', '.join(unknown)}; known: {', '.join(sorted(known))}")
    autoscale = None
    if args.autoscale:
        try:
            autoscale = parse_autoscale(args.autoscale)
        except ValueError as error:
            parser.error(str(error))
    ordered = [q.value for q in CONSUME_ORDER if q.value in queues]
    concurrency = args.concurrency or settings.worker_concurrency or os.cpu_count() or 1
    if autoscale:
        concurrency = autoscale[0]
    name = args.name or hosts.worker_name()
    rt = main_runtime(settings)  # unpooled: the pool processes it forks open their own connections
    try:  # the database this worker serves: migrated once here, named in every heartbeat
        identity, where = rt.database.identity, rt.database.where
    except LegaldocError as error:
        parser.exit(3, f"{parser.prog}: error: {error}\n")
    scheduler = Scheduler(rt)
    heartbeater = Heartbeater(rt, Heartbeat(
        name=name, host=hosts.HOST, pid=os.getpid(), queues=ordered,
        concurrency=autoscale[1] if autoscale else concurrency, started=time.time(),
        interval=settings.heartbeat_interval, autoscale=list(autoscale) if autoscale else None,
        database=identity, database_url=where, extra={"pid_space": hosts.SPACE},
    ))  # fmt: skip
    stats.create(task_events=settings.worker_task_events)
    app.legaldoc_queues = frozenset(ordered)  # the pool processes chain stages of these queues (`tasks.app.chain`)

    @signals.setup_logging.connect(weak=False)
    def _logging_is_ours(**_: object) -> None:
        """Celery leaves logging alone when a receiver answers: every record goes to our handler."""

    @signals.worker_ready.connect(weak=False)
    def _start_threads(sender: object = None, **_: object) -> None:
        heartbeater.consumer = sender
        heartbeater.start()
        scheduler.start()
        if settings.worker_metrics_port:
            try:
                metrics.serve(rt, settings.worker_metrics_host, settings.worker_metrics_port)
            except OSError as error:
                log.error("cannot serve metrics on %s:%s: %s", settings.worker_metrics_host,
                          settings.worker_metrics_port, error.strerror)  # fmt: skip

    @signals.worker_shutting_down.connect(weak=False)
    def _stop_scheduler(**_: object) -> None:
        scheduler.stopped.set()

    @signals.worker_shutdown.connect(weak=False)
    def _last_heartbeat(**_: object) -> None:
        heartbeater.stop()

    loglevel = (args.loglevel or settings.log_level).upper()
    handler = configure(loglevel, args.log_format or settings.log_format, file=args.log_file,
                        max_bytes=int(settings.worker_log_max_mb * 1024 * 1024), backups=settings.worker_log_backups)  # fmt: skip
    if isinstance(handler, WorkerLogHandler):
        heartbeater.log_handler = handler  # rotated by size between records too
    if Queue.ENTITY.value in ordered and settings.entity_provider == "local":
        from legaldoc.pipeline.entities import warm_up

        warm_up()  # before the pool forks: every pool process starts with the rules built
    pool_size = ["--autoscale", f"{autoscale[0]},{autoscale[1]}"] if autoscale else ["--concurrency", str(concurrency)]
    app.worker_main([
        "worker", "--queues", ",".join(ordered), *pool_size, "--hostname", name,
        "--loglevel", loglevel, "--pool", args.pool, "--without-gossip", "--without-mingle",
        "--optimization", "fair", *(["--task-events"] if settings.worker_task_events else []),
    ])  # fmt: skip


if __name__ == "__main__":
    main()
