"""One dashboard refresh in two Redis round trips, with no SCAN or KEYS.

Round trip 1 is `lua/snapshot.lua` on the state database: the batch index (active batches first,
then the newest finished), the hashes of the visible batches, the worker heartbeats, completions
over the last 5 minutes, failures per category over 24 hours, the newest errors, per-stage
duration percentiles and throughput over the last hour, and used memory. Round trip 2 is
`lua/queue_stats.lua` on the broker database: every queue's depth and oldest message.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import redis

from legaldoc.state.batches import ErrorNote
from legaldoc.state.broker import Broker
from legaldoc.state.keys import Keys
from legaldoc.state.scripts import Script
from legaldoc.state.workers import Heartbeat

PERCENTILE_SAMPLE = 300  # stage percentiles use at most this many of the hour's newest runs


@dataclass(frozen=True)
class StageStats:
    stage: str
    count: int
    p50_ms: int | None
    p95_ms: int | None
    per_5_minutes: list[int]


@dataclass
class Snapshot:
    """What the dashboard shows, read at `at`."""

    at: float
    batches: list[tuple[str, dict[str, str]]] = field(default_factory=list)  # (batch id, its hash)
    batch_count: int = 0
    active_count: int = 0
    workers: list[Heartbeat] = field(default_factory=list)
    done_last_5_minutes: int = 0
    errors_24h: dict[str, int] = field(default_factory=dict)  # failed attempts per category, retries included
    failed_24h: dict[str, int] = field(default_factory=dict)  # documents failed for good (and not recovered) per category
    recent_errors: list[RecentError] = field(default_factory=list)
    stages: list[StageStats] = field(default_factory=list)
    queues: dict[str, int] = field(default_factory=dict)
    oldest_message: dict[str, float | None] = field(default_factory=dict)  # publishing time, epoch seconds
    memory: int = 0

    done_since: float = 0.0  # the first completion of those 5 minutes

    @property
    def docs_per_minute(self) -> float:
        """Completions per minute over the last 5 minutes, or over the time since the first of them
        when work started less than 5 minutes ago (at least a minute, so one early burst is not
        extrapolated)."""
        span = min(300.0, max(60.0, self.at - self.done_since))
        return self.done_last_5_minutes / span * 60


@dataclass(frozen=True)
class RecentError:
    batch_id: str
    document_id: int
    error: ErrorNote


class MonitorReader:
    """Reads a `Snapshot`: one script on the state database, one on the broker's."""

    def __init__(self, state: redis.Redis, broker: redis.Redis, keys: Keys, *, categories: Sequence[str],
                 stages: Sequence[str], queues: Sequence[str]) -> None:  # fmt: skip
        self.keys = keys
        self.categories, self.stages, self.queues = list(categories), list(stages), list(queues)
        self._snapshot = Script(state, "snapshot")
        self._broker = Broker(broker, keys)

    def snapshot(self, *, visible: int = 100, recent: int = 20, now: float | None = None) -> Snapshot:
        now = time.time() if now is None else now
        k = self.keys
        keys = {"batches": k.batches, "active": k.active_batches, "workers": k.workers, "done_metrics": k.done_metrics,
                "recent_errors": k.recent_errors, "failed_metrics": k.failed_metrics}  # fmt: skip
        args = {"batch_prefix": k.batch(""), "error_metrics_prefix": k.error_metrics(""),
                "stage_metrics_prefix": k.stage_metrics(""), "categories": json.dumps(self.categories),
                "stages": json.dumps(self.stages), "now": now, "visible": visible, "recent": recent,
                "percentile_sample": PERCENTILE_SAMPLE}  # fmt: skip
        reply = json.loads(self._snapshot(keys, args))  # cjson writes an empty list as {}: hence the `or []`
        errors = reply["errors_24h"] or {}
        snapshot = Snapshot(at=now, batch_count=int(reply["batch_count"]), active_count=int(reply["active_count"]),
                            done_last_5_minutes=int(reply["done_last_5_minutes"]), done_since=float(reply["done_since"]),
                            memory=int(reply["memory"]), errors_24h={c: int(errors.get(c, 0)) for c in self.categories},
                            failed_24h={c: int(n) for c, n in (reply["failed_24h"] or {}).items()})  # fmt: skip
        for batch in reply["batches"] or []:
            flat = batch["fields"] or []
            if flat:
                snapshot.batches.append((batch["id"], dict(zip(flat[::2], flat[1::2], strict=True))))
        workers = reply["workers"] or []
        for value in workers[1::2]:
            try:
                snapshot.workers.append(Heartbeat(**json.loads(value)))
            except (TypeError, ValueError):
                continue
        snapshot.workers.sort(key=lambda h: (not h.online(now), h.name))
        for entry in reply["recent_errors"] or []:
            batch_id, document_id, payload = entry.split("|", 2)
            if (note := ErrorNote.from_json(payload)) is not None:
                snapshot.recent_errors.append(RecentError(batch_id, int(document_id), note))
        for stage in reply["stages"] or []:
            p50, p95 = int(stage["p50_ms"]), int(stage["p95_ms"])
            snapshot.stages.append(StageStats(stage["stage"], int(stage["count"]), None if p50 < 0 else p50,
                                              None if p95 < 0 else p95, [int(b) for b in stage["per_5_minutes"] or []]))  # fmt: skip
        stats = self._broker.queue_stats(self.queues)  # every priority list, one script
        snapshot.queues = {queue: depth for queue, (depth, _) in stats.items()}
        snapshot.oldest_message = {queue: oldest for queue, (_, oldest) in stats.items()}
        return snapshot
