"""One dashboard refresh in two Redis round trips, with no SCAN or KEYS.

Round trip 1 is one script on the state database: the batch index (active batches first, then
the newest finished), the hashes of the visible batches, the worker heartbeats, completions over
the last 5 minutes, failed attempts and failed documents per category over 24 hours, the newest
errors, per-stage duration percentiles (over the hour's newest 2,000 runs) and 5-minute throughput buckets over the last
hour (computed in Redis from counts, so the cost does not grow with a busy hour and the metrics
never cross the wire), and used memory. Round trip 2 is one script on the broker database:
the length of every queue's priority lists and the publishing time of each list's oldest message.
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

PERCENTILE_SAMPLE = 300  # stage percentiles use at most this many of the hour's newest runs

SNAPSHOT = """
local prefix, now, limit = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local batches, active, workers, done, recent, failed = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6]
local ncat, nstage = tonumber(ARGV[4]), tonumber(ARGV[5])
local base = 6
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
for i = 1, ncat do errors[i] = redis.call('ZCOUNT', KEYS[base + i], now - 86400, now) end
local failed_by = {}
for _, member in ipairs(redis.call('ZRANGEBYSCORE', failed, now - 86400, now)) do
  local category = string.match(member, '|([^|]*)$') or ''
  failed_by[category] = (failed_by[category] or 0) + 1
end

local stages = {}
for i = 1, nstage do
  local key = KEYS[base + ncat + i]
  local buckets = {}
  for b = 1, 12 do  -- 5-minute buckets, oldest first, the last one ending now
    buckets[b] = redis.call('ZCOUNT', key, '(' .. (now - (13 - b) * 300), now - (12 - b) * 300)
  end
  local n = redis.call('ZCOUNT', key, now - 3600, now)
  -- percentiles over the newest runs of the hour (at most SAMPLE), so a busy hour costs no more
  local members = redis.call('ZREVRANGEBYSCORE', key, now, now - 3600, 'LIMIT', 0, tonumber(ARGV[7]))
  local durations = {}
  for j = 1, #members do
    local ms = string.match(members[j], '^[^|]*|[^|]*|([^|]*)|')
    if ms then durations[#durations + 1] = tonumber(ms) end
  end
  table.sort(durations)
  local m = #durations
  local p50, p95 = -1, -1
  if m > 0 then
    p50 = durations[math.max(1, math.ceil(m * 0.5))]
    p95 = durations[math.max(1, math.ceil(m * 0.95))]
  end
  stages[i] = {n, p50, p95, buckets}
end
local memory = string.match(redis.call('INFO', 'memory'), 'used_memory:(%d+)')
-- one JSON document: a single bulk string parses far faster than thousands of RESP elements
local first_done = redis.call('ZRANGEBYSCORE', done, now - 300, now, 'WITHSCORES', 'LIMIT', 0, 1)
local done_since = now - 300
if #first_done > 0 then done_since = tonumber(first_done[2]) end
return cjson.encode({ids, hashes, redis.call('HGETALL', workers), {redis.call('ZCOUNT', done, now - 300, now), done_since},
        errors, redis.call('LRANGE', recent, 0, tonumber(ARGV[6]) - 1), stages,
        redis.call('ZCARD', batches), redis.call('ZCARD', active), tonumber(memory or 0), failed_by})
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
    batches: list[tuple[str, dict[str, str]]] = field(default_factory=list)  # (batch id, its hash)
    batch_count: int = 0
    active_count: int = 0
    workers: list[Heartbeat] = field(default_factory=list)
    done_last_5_minutes: int = 0
    errors_24h: dict[str, int] = field(default_factory=dict)  # failed attempts per category, retries included
    failed_24h: dict[str, int] = field(default_factory=dict)  # documents failed for good (and not recovered) per category
    recent_errors: list[dict[str, Any]] = field(default_factory=list)
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


class MonitorReader:
    """Reads a `Snapshot`: one script on the state database, one on the broker's."""

    def __init__(self, state: redis.Redis, broker: redis.Redis, keys: Keys, *, categories: Sequence[str],
                 stages: Sequence[str], queues: Sequence[str]) -> None:  # fmt: skip
        self.state, self.broker, self.keys = state, broker, keys
        self.categories, self.stages, self.queues = list(categories), list(stages), list(queues)
        self._script = state.register_script(SNAPSHOT)
        self._broker = Broker(broker)

    def snapshot(self, *, visible: int = 100, recent: int = 20, now: float | None = None) -> Snapshot:
        now = time.time() if now is None else now
        k = self.keys
        keys = [k.batches, k.active_batches, k.workers, k.done_metrics, k.recent_errors, k.failed_metrics,
                *map(k.error_metrics, self.categories), *map(k.stage_metrics, self.stages)]  # fmt: skip
        reply = self._script(keys=keys, args=[k.prefix, now, visible, len(self.categories), len(self.stages), recent,
                                              PERCENTILE_SAMPLE])  # fmt: skip
        # cjson writes an empty Lua table as {}: `or []` makes every list a list
        ids, hashes, workers, done, errors, recent_errors, stages, batch_count, active_count, memory, failed = json.loads(reply)
        snapshot = Snapshot(at=now, batch_count=int(batch_count), active_count=int(active_count),
                            done_last_5_minutes=int(done[0]), done_since=float(done[1]), memory=int(memory))  # fmt: skip
        for batch_id, flat in zip(ids or [], hashes or [], strict=True):
            if flat:
                snapshot.batches.append((batch_id, dict(zip(flat[::2], flat[1::2], strict=True))))
        workers = workers or []
        for i in range(0, len(workers), 2):
            try:
                snapshot.workers.append(Heartbeat(**json.loads(workers[i + 1])))
            except (TypeError, ValueError):
                continue
        snapshot.workers.sort(key=lambda h: (not h.online(now), h.name))
        snapshot.errors_24h = {c: int(n) for c, n in zip(self.categories, errors, strict=True)}
        snapshot.failed_24h = {category: int(n) for category, n in (failed or {}).items()}
        for entry in recent_errors or []:
            batch_id, document_id, payload = entry.split("|", 2)
            try:
                error = json.loads(payload)
            except ValueError:
                continue
            snapshot.recent_errors.append({"batch_id": batch_id, "document_id": int(document_id), **error})
        for stage, (count, p50, p95, buckets) in zip(self.stages, stages, strict=True):
            snapshot.stages.append(StageStats(stage, int(count), None if int(p50) < 0 else int(p50),
                                              None if int(p95) < 0 else int(p95), [int(b) for b in buckets or []]))  # fmt: skip
        stats = self._broker.queue_stats(self.queues)  # every priority list, one script
        snapshot.queues = {queue: depth for queue, (depth, _) in stats.items()}
        snapshot.oldest_message = {queue: oldest for queue, (_, oldest) in stats.items()}
        return snapshot
