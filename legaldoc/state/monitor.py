"""One dashboard refresh in two Redis round trips, with no SCAN or KEYS.

Round trip 1 is one script on the state database: the batch index (active batches first, then
the newest finished), the hashes of the visible batches, the worker heartbeats, completions over
the last 5 minutes, failures per category over 24 hours, the newest errors, per-stage duration
percentiles and 5-minute throughput buckets over the last hour (computed in Redis, so the
metrics never cross the wire), and used memory. Round trip 2 is one pipeline on the broker
database: the length of every queue's priority lists.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import redis

from legaldoc.state.broker import Broker
from legaldoc.state.keys import Keys
from legaldoc.state.workers import Heartbeat

SNAPSHOT = """
local prefix, now, limit = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local batches, active, workers, done, recent = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local ncat, nstage = tonumber(ARGV[4]), tonumber(ARGV[5])
local ids, seen = {}, {}
for _, id in ipairs(redis.call('ZREVRANGE', active, 0, limit - 1)) do ids[#ids + 1] = id; seen[id] = true end
if #ids < limit then
  for _, id in ipairs(redis.call('ZREVRANGE', batches, 0, limit - 1)) do
    if not seen[id] and #ids < limit then ids[#ids + 1] = id; seen[id] = true end
  end
end
local hashes = {}
for i, id in ipairs(ids) do hashes[i] = redis.call('HGETALL', prefix .. 'batch:' .. id) end
local errors = {}
for i = 1, ncat do errors[i] = redis.call('ZCOUNT', KEYS[5 + i], now - 86400, now) end
local stages = {}
for i = 1, nstage do
  local members = redis.call('ZRANGEBYSCORE', KEYS[5 + ncat + i], now - 3600, now, 'WITHSCORES')
  local durations, buckets = {}, {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}
  for j = 1, #members, 2 do
    local ms = string.match(members[j], '^[^|]*|[^|]*|([^|]*)|')
    if ms then durations[#durations + 1] = tonumber(ms) end
    local bucket = 12 - math.floor((now - tonumber(members[j + 1])) / 300)
    if bucket >= 1 and bucket <= 12 then buckets[bucket] = buckets[bucket] + 1 end
  end
  table.sort(durations)
  local n = #durations
  local p50, p95 = -1, -1
  if n > 0 then
    p50 = durations[math.max(1, math.ceil(n * 0.5))]
    p95 = durations[math.max(1, math.ceil(n * 0.95))]
  end
  stages[i] = {n, p50, p95, buckets}
end
local memory = string.match(redis.call('INFO', 'memory'), 'used_memory:(%d+)')
return {ids, hashes, redis.call('HGETALL', workers), redis.call('ZCOUNT', done, now - 300, now),
        errors, redis.call('LRANGE', recent, 0, tonumber(ARGV[6]) - 1), stages,
        redis.call('ZCARD', batches), redis.call('ZCARD', active), tonumber(memory or 0)}
"""


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
    batches: list[dict[str, str]] = field(default_factory=list)
    batch_count: int = 0
    active_count: int = 0
    workers: list[Heartbeat] = field(default_factory=list)
    done_last_5_minutes: int = 0
    errors_24h: dict[str, int] = field(default_factory=dict)
    recent_errors: list[dict[str, Any]] = field(default_factory=list)
    stages: list[StageStats] = field(default_factory=list)
    queues: dict[str, int] = field(default_factory=dict)
    memory: int = 0

    @property
    def docs_per_minute(self) -> float:
        return self.done_last_5_minutes / 5.0


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class MonitorReader:
    """Reads a `Snapshot`: one script on the state database, one pipeline on the broker's."""

    def __init__(self, state: redis.Redis, broker: redis.Redis, keys: Keys, *, categories: Sequence[str],
                 stages: Sequence[str], queues: Sequence[str]) -> None:  # fmt: skip
        self.state, self.broker, self.keys = state, broker, keys
        self.categories, self.stages, self.queues = list(categories), list(stages), list(queues)
        self._script = state.register_script(SNAPSHOT)

    def snapshot(self, *, visible: int = 100, recent: int = 20, now: float | None = None) -> Snapshot:
        now = time.time() if now is None else now
        k = self.keys
        keys = [k.batches, k.active_batches, k.workers, k.done_metrics, k.recent_errors,
                *map(k.error_metrics, self.categories), *map(k.stage_metrics, self.stages)]  # fmt: skip
        reply = self._script(keys=keys, args=[k.prefix, now, visible, len(self.categories), len(self.stages), recent])
        ids, hashes, workers, done, errors, recent_errors, stages, batch_count, active_count, memory = reply
        snapshot = Snapshot(at=now, batch_count=int(batch_count), active_count=int(active_count),
                            done_last_5_minutes=int(done), memory=int(memory))  # fmt: skip
        for batch_id, flat in zip(ids, hashes, strict=True):
            if flat:
                fields = {_text(flat[i]): _text(flat[i + 1]) for i in range(0, len(flat), 2)}
                snapshot.batches.append({"id": _text(batch_id), **fields})
        for i in range(0, len(workers), 2):
            try:
                snapshot.workers.append(Heartbeat(**json.loads(workers[i + 1])))
            except (TypeError, ValueError):
                continue
        snapshot.workers.sort(key=lambda h: (not h.online(now), h.name))
        snapshot.errors_24h = {c: int(n) for c, n in zip(self.categories, errors, strict=True)}
        for entry in recent_errors:
            batch_id, document_id, payload = _text(entry).split("|", 2)
            try:
                error = json.loads(payload)
            except ValueError:
                continue
            snapshot.recent_errors.append({"batch_id": batch_id, "document_id": int(document_id), **error})
        for stage, (count, p50, p95, buckets) in zip(self.stages, stages, strict=True):
            snapshot.stages.append(StageStats(stage, int(count), None if int(p50) < 0 else int(p50),
                                              None if int(p95) < 0 else int(p95), [int(b) for b in buckets]))  # fmt: skip
        snapshot.queues = Broker(self.broker).depths(self.queues)  # every priority list, one pipeline
        return snapshot
