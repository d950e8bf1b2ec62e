"""A legaldoc worker process: `python -m legaldoc.tasks.worker [--queues Q,...] [--concurrency N]`.

Besides Celery's consumer, the main process runs a small scheduler thread: every sweep interval it
publishes one `sweep` task to the cleanup queue (a Redis lock makes that one per interval across all
workers), and once an hour a `retention` task. No separate beat process is needed.
"""

from __future__ import annotations

import argparse
import logging
import os
import socket
import threading

from celery import signals

from legaldoc.config import Settings, load_settings
from legaldoc.queues import CONSUME_ORDER, MOST_URGENT, RETENTION_TASK, SWEEP_TASK, Queue
from legaldoc.state.broker import Broker, Message
from legaldoc.state.connection import client_for
from legaldoc.state.keys import Keys
from legaldoc.state.locks import Lock
from legaldoc.tasks.app import create_app

log = logging.getLogger("legaldoc.worker")


class Scheduler(threading.Thread):
    """Publishes the periodic cleanup tasks; one publisher per interval across all workers."""

    def __init__(self, settings: Settings) -> None:
        super().__init__(name="legaldoc-scheduler", daemon=True)
        self.settings = settings
        self.stopped = threading.Event()

    def run(self) -> None:
        broker = Broker(client_for(self.settings, "broker"))
        lock = Lock(client_for(self.settings, "state"), Keys(self.settings.redis_prefix))
        interval = self.settings.sweep_interval
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


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m legaldoc.tasks.worker", description=__doc__)
    parser.add_argument("--queues", default=",".join(q.value for q in CONSUME_ORDER),
                        help="comma-separated queues (default: all)")  # fmt: skip
    parser.add_argument("--concurrency", type=int, default=None, help="processes (default: CPU count)")
    parser.add_argument("--name", default=None, help="worker name (default: legaldoc-PID@HOST)")
    parser.add_argument("--loglevel", default="WARNING")
    parser.add_argument("--pool", default="prefork")
    args = parser.parse_args(argv)
    settings = load_settings()
    app = create_app(settings)
    queues = [q.strip() for q in args.queues.split(",") if q.strip()]
    known = {q.value for q in Queue}
    unknown = [q for q in queues if q not in known]
    if unknown:
        parser.error(f"unknown queue(s): {', '.join(unknown)}; known: {', '.join(sorted(known))}")
    ordered = [q.value for q in CONSUME_ORDER if q.value in queues]
    concurrency = args.concurrency or settings.worker_concurrency or os.cpu_count() or 1
    name = args.name or f"legaldoc-{os.getpid()}@{socket.gethostname()}"
    scheduler = Scheduler(settings)

    @signals.worker_ready.connect(weak=False)
    def _start_scheduler(**_: object) -> None:
        scheduler.start()

    @signals.worker_shutting_down.connect(weak=False)
    def _stop_scheduler(**_: object) -> None:
        scheduler.stopped.set()

    logging.basicConfig(level=args.loglevel.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    app.worker_main([
        "worker", "--queues", ",".join(ordered), "--concurrency", str(concurrency), "--hostname", name,
        "--loglevel", args.loglevel, "--pool", args.pool, "--without-gossip", "--without-mingle",
        "--optimization", "fair", "--task-events",
    ])  # fmt: skip


if __name__ == "__main__":
    main()
