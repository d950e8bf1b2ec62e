"""Worker heartbeats: one JSON value per worker in the `workers` hash, written every few seconds.

A worker is online while it has beaten within three of its own intervals and has not said it
stopped; offline entries are purged after `purge_after` seconds.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

import redis

from legaldoc.moments import iso
from legaldoc.state.keys import Keys

MISSED_BEATS = 3


@dataclass
class Heartbeat:
    """What a worker says about itself."""

    name: str
    host: str
    pid: int
    queues: list[str]
    concurrency: int
    active: int = 0
    processed: int = 0
    failed: int = 0
    rss: int = 0
    started: float = 0.0
    last_seen: float = 0.0
    interval: float = 5.0
    autoscale: list[int] | None = None
    stopped: bool = False
    database: str = ""  # the identity of the database it serves
    database_url: str = ""  # and where that is (no password)
    extra: dict[str, Any] = field(default_factory=dict)

    def online(self, now: float | None = None) -> bool:
        now = time.time() if now is None else now
        return not self.stopped and now - self.last_seen <= MISSED_BEATS * self.interval

    def as_json(self, now: float | None = None) -> dict[str, Any]:
        """The fields `workers status --json` prints."""
        shown = {k: v for k, v in asdict(self).items() if k not in ("started", "interval", "stopped", "extra", "database_url")}
        return shown | {"online": self.online(now), "last_seen": iso(self.last_seen), "started_at": iso(self.started),
                        "task_events": bool(self.extra.get("task_events", False))}  # fmt: skip


class WorkerRegistry:
    """Reads and writes the `workers` hash of the state database."""

    def __init__(self, client: redis.Redis, keys: Keys, *, purge_after: float = 3600.0) -> None:
        self.client = client
        self.keys = keys
        self.purge_after = purge_after

    def beat(self, heartbeat: Heartbeat, *, now: float | None = None) -> None:
        heartbeat.last_seen = time.time() if now is None else now
        self.client.hset(self.keys.workers, heartbeat.name, json.dumps(asdict(heartbeat)))

    def workers(self, *, purge: bool = True) -> list[Heartbeat]:
        """Every known worker, online first, by name; long-silent ones are purged on the way."""
        now = time.time()
        found: list[Heartbeat] = []
        stale: list[bytes | str] = []
        for name, value in self.client.hgetall(self.keys.workers).items():
            try:
                heartbeat = Heartbeat(**json.loads(value))
            except (TypeError, ValueError):
                stale.append(name)
                continue
            if purge and now - heartbeat.last_seen > self.purge_after:
                stale.append(name)
                continue
            found.append(heartbeat)
        if stale:
            self.client.hdel(self.keys.workers, *stale)
        return sorted(found, key=lambda h: (not h.online(now), h.name))

    def online(self, queue: str | None = None) -> list[Heartbeat]:
        return [h for h in self.workers() if h.online() and (queue is None or queue in h.queues)]

    def queues_without_workers(self, queues: Iterable[str]) -> list[str]:
        served = {queue for heartbeat in self.online() for queue in heartbeat.queues}
        return [queue for queue in queues if queue not in served]
