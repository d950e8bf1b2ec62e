"""Live batch state in Redis: one Lua script applies every document state change.

The script is idempotent and order-proof: each change carries the document's database version and
is applied only when newer than what the mirror holds, so a replayed or late change does nothing.
It moves the batch counters only when a document's state class really changes, records metrics,
appends the change to the batch's event stream, and reports when the batch has just finished.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import redis

from legaldoc.state.keys import Keys

COUNTERS = ("pending", "running", "succeeded", "failed", "skipped", "cancelled")
TERMINAL = ("succeeded", "failed", "skipped", "cancelled")
EVENTS_MAXLEN = 20000
RECENT_ERRORS = 200  # the capped list of the newest failures and retries, for the dashboard

# Return codes: -1 unknown batch, 0 stale (already applied), 1 applied, 2 applied and batch finished.
TRANSITION = """
local RECENT_ERRORS = 200  -- RECENT_ERRORS
local batch, docs, errors, active, events, done, stage_metrics, error_metrics, recent, failed_set = unpack(KEYS)
local doc, version, state, stage, category = ARGV[1], tonumber(ARGV[2]), ARGV[3], ARGV[4], ARGV[5]
local err, stage_member, error_member, now = ARGV[6], ARGV[7], ARGV[8], tonumber(ARGV[9])
local retention, maxlen = tonumber(ARGV[10]), ARGV[11]
if redis.call('EXISTS', batch) == 0 then return -1 end
local current = redis.call('HGET', docs, doc)
local old_version, old_state, old_category = -1, false, ''
if current then
  local parts = {}
  for part in string.gmatch(current .. '|', '([^|]*)|') do parts[#parts + 1] = part end
  old_version, old_state, old_category = tonumber(parts[1]), parts[2], parts[4] or ''
end
if old_version >= version then return 0 end
if stage_member ~= '' then redis.call('ZADD', stage_metrics, now, stage_member) end
if error_member ~= '' then redis.call('ZADD', error_metrics, now, error_member) end
if err ~= '' then
  redis.call('LPUSH', recent, ARGV[12] .. '|' .. doc .. '|' .. err)
  redis.call('LTRIM', recent, 0, RECENT_ERRORS - 1)
end
redis.call('HSET', docs, doc, version .. '|' .. state .. '|' .. stage .. '|' .. category)
if old_state ~= state then
  if old_state then redis.call('HINCRBY', batch, old_state, -1) end
  redis.call('HINCRBY', batch, state, 1)
end
if old_state == 'failed' and old_category ~= '' then redis.call('HINCRBY', batch, 'errors:' .. old_category, -1) end
if old_state == 'failed' then redis.call('ZREM', failed_set, ARGV[12] .. '|' .. doc .. '|' .. old_category) end
if state == 'failed' then
  redis.call('HINCRBY', batch, 'errors:' .. category, 1)
  redis.call('HSET', errors, doc, err)
  redis.call('ZADD', failed_set, now, ARGV[12] .. '|' .. doc .. '|' .. category)
elseif old_state == 'failed' then
  redis.call('HDEL', errors, doc)
end
if state == 'succeeded' then redis.call('ZADD', done, now, doc) end
if state == 'running' and redis.call('HEXISTS', batch, 'started_at') == 0 then
  redis.call('HSET', batch, 'started_at', now)
end
redis.call('XADD', events, 'MAXLEN', '~', maxlen, '*', 'doc', doc, 'version', version, 'state', state,
           'stage', stage, 'category', category, 'err', err, 'stage_member', stage_member,
           'error_member', error_member, 'metric_stage', ARGV[13], 'at', now)
local c = redis.call('HMGET', batch, 'total', 'succeeded', 'failed', 'skipped', 'cancelled', 'status')
local finished = 0
for i = 2, 5 do finished = finished + (tonumber(c[i]) or 0) end
local status = c[6]
if finished >= tonumber(c[1]) then
  if status ~= 'finished' and status ~= 'cancelled' then
    local final = 'finished'
    if status == 'cancelling' then final = 'cancelled' end
    redis.call('HSET', batch, 'status', final, 'finished_at', now)
    redis.call('ZREM', active, ARGV[12])
    for _, key in ipairs({batch, docs, errors, events}) do redis.call('EXPIRE', key, retention) end
    return 2
  end
elseif status == 'finished' or status == 'cancelled' or status == 'queued' then
  redis.call('HSET', batch, 'status', 'running')
  redis.call('HDEL', batch, 'finished_at')
  redis.call('ZADD', active, redis.call('HGET', batch, 'created_at'), ARGV[12])
  for _, key in ipairs({batch, docs, errors, events}) do redis.call('PERSIST', key) end
end
return 1
"""


@dataclass(frozen=True)
class StateChange:
    """One document's new state for the mirror; `version` is its database version."""

    batch_id: str
    document_id: int
    version: int
    state: str
    stage: str = ""
    category: str = ""
    error: Mapping[str, Any] | None = None
    stage_metric: str = ""
    error_metric: str = ""
    metric_stage: str = ""


def _document_state(value: bytes) -> dict[str, Any]:
    """A `batch_docs` value, ``version|state|stage|category``, as a dict."""
    version, state, stage, category = (value.decode().split("|") + ["", "", ""])[:4]
    return {"version": int(version), "state": state, "stage": stage or None, "category": category or None}


class BatchState:
    """Reads and writes of batch state in the state database."""

    def __init__(self, client: redis.Redis, keys: Keys, *, retention_seconds: int = 30 * 86400) -> None:
        self.client = client
        self.keys = keys
        self.retention_seconds = retention_seconds
        self._script = client.register_script(TRANSITION)

    def _key_list(self, change: StateChange) -> list[str]:
        k = self.keys
        return [k.batch(change.batch_id), k.batch_docs(change.batch_id), k.batch_errors(change.batch_id),
                k.active_batches, k.batch_events(change.batch_id), k.done_metrics,
                k.stage_metrics(change.metric_stage or change.stage or "none"),
                k.error_metrics(change.category or "none"), k.recent_errors, k.failed_metrics]  # fmt: skip

    def _args(self, change: StateChange, now: float) -> list[Any]:
        return [change.document_id, change.version, change.state, change.stage, change.category,
                json.dumps(change.error, default=str) if change.error else "", change.stage_metric,
                change.error_metric, now, self.retention_seconds, EVENTS_MAXLEN, change.batch_id,
                change.metric_stage]  # fmt: skip

    def apply(self, changes: Sequence[StateChange], *, now: float | None = None) -> list[int]:
        """Apply changes in one round trip; returns each script result (2 = its batch just finished).
        `now` (default: the clock) stamps the metrics and timestamps the changes write."""
        if not changes:
            return []
        now = time.time() if now is None else now
        if len(changes) == 1:
            change = changes[0]
            return [int(self._script(keys=self._key_list(change), args=self._args(change, now)))]
        results: list[int] = []
        for offset in range(0, len(changes), 1000):
            pipe = self.client.pipeline(transaction=False)
            for change in changes[offset : offset + 1000]:
                self._script(keys=self._key_list(change), args=self._args(change, now), client=pipe)
            results.extend(int(r) for r in pipe.execute())
        return results

    def replay(self, event: Mapping[str, str], batch_id: str) -> int:
        """Apply a recorded event again (what `events` returned); a no-op unless state was lost."""
        change = StateChange(
            batch_id=batch_id, document_id=int(event["doc"]), version=int(event["version"]), state=event["state"],
            stage=event["stage"], category=event["category"], error=json.loads(event["err"]) if event["err"] else None,
            stage_metric=event["stage_member"], error_metric=event["error_member"],
            metric_stage=event.get("metric_stage", ""),
        )  # fmt: skip
        return self.apply([change])[0]

    def init_batch(self, batch_id: str, fields: Mapping[str, Any], documents: Mapping[int, tuple[int, str]]) -> None:
        """Create the batch hash and every document's starting state (pending or skipped)."""
        counts = dict.fromkeys(COUNTERS, 0)
        for _, state in documents.values():
            counts[state] += 1
        created = float(fields["created_at"])
        pipe = self.client.pipeline(transaction=True)
        batch_key, docs_key = self.keys.batch(batch_id), self.keys.batch_docs(batch_id)
        pipe.delete(batch_key, docs_key, self.keys.batch_errors(batch_id), self.keys.batch_events(batch_id))
        pipe.hset(batch_key, mapping={**{k: v for k, v in fields.items() if v is not None}, **counts,
                                      "total": len(documents)})  # fmt: skip
        items = list(documents.items())
        for offset in range(0, len(items), 10000):
            pipe.hset(docs_key, mapping={str(d): f"{v}|{s}||" for d, (v, s) in items[offset : offset + 10000]})
        pipe.zadd(self.keys.batches, {batch_id: created})
        pipe.zadd(self.keys.active_batches, {batch_id: created})
        pipe.execute()

    def rebuild(self, batch_id: str, fields: Mapping[str, Any], documents: Mapping[int, tuple[int, str, str, str]],
                errors: Mapping[int, Mapping[str, Any]], *, finished: bool) -> None:
        """Write a batch's live state again from the database (after Redis lost it or it expired)."""
        counts = dict.fromkeys(COUNTERS, 0)
        by_category: dict[str, int] = {}
        for _, state, _, category in documents.values():
            counts[state] += 1
            if state == "failed" and category:
                by_category[f"errors:{category}"] = by_category.get(f"errors:{category}", 0) + 1
        created = float(fields["created_at"])
        batch_key, docs_key, errors_key = self.keys.batch(batch_id), self.keys.batch_docs(batch_id), self.keys.batch_errors(batch_id)
        pipe = self.client.pipeline(transaction=True)
        pipe.delete(batch_key, docs_key, errors_key)
        pipe.hset(batch_key, mapping={**{k: v for k, v in fields.items() if v is not None}, **counts, **by_category,
                                      "total": len(documents)})  # fmt: skip
        items = list(documents.items())
        for offset in range(0, len(items), 10000):
            pipe.hset(docs_key, mapping={str(d): f"{v}|{s}|{st}|{c}" for d, (v, s, st, c) in items[offset : offset + 10000]})
        if errors:
            pipe.hset(errors_key, mapping={str(d): json.dumps(e, default=str) for d, e in errors.items()})
        pipe.zadd(self.keys.batches, {batch_id: created})
        if finished:
            pipe.zrem(self.keys.active_batches, batch_id)
            for key in (batch_key, docs_key, errors_key):
                pipe.expire(key, self.retention_seconds)
        else:
            pipe.zadd(self.keys.active_batches, {batch_id: created})
        pipe.execute()

    def set_fields(self, batch_id: str, **fields: Any) -> None:
        self.client.hset(self.keys.batch(batch_id), mapping=fields)

    def read(self, batch_id: str) -> dict[str, str] | None:
        data = self.client.hgetall(self.keys.batch(batch_id))
        return {k.decode(): v.decode() for k, v in data.items()} or None

    def read_many(self, batch_ids: Iterable[str]) -> list[dict[str, str] | None]:
        pipe = self.client.pipeline(transaction=False)
        for batch_id in batch_ids:
            pipe.hgetall(self.keys.batch(batch_id))
        return [{k.decode(): v.decode() for k, v in data.items()} or None for data in pipe.execute()]

    def batch_ids(self, *, active_only: bool = False, limit: int = 100) -> list[str]:
        key = self.keys.active_batches if active_only else self.keys.batches
        return [b.decode() for b in self.client.zrevrange(key, 0, limit - 1)]

    def documents(self, batch_id: str) -> dict[int, dict[str, Any]]:
        """Document id -> {version, state, stage, category}."""
        return {int(doc): _document_state(value)
                for doc, value in self.client.hscan_iter(self.keys.batch_docs(batch_id), count=1000)}  # fmt: skip

    def detail(self, batch_id: str) -> tuple[dict[str, str] | None, dict[int, dict[str, Any]], dict[int, dict[str, Any]]]:
        """The batch hash, every document's state and the failures, in one round trip (for the
        dashboard's batch screen; the main screen never reads per-document state)."""
        pipe = self.client.pipeline(transaction=False)
        pipe.hgetall(self.keys.batch(batch_id))
        pipe.hgetall(self.keys.batch_docs(batch_id))
        pipe.hgetall(self.keys.batch_errors(batch_id))
        fields, docs, errors = pipe.execute()
        documents = {int(doc): _document_state(value) for doc, value in docs.items()}
        failures = {}
        for doc, value in errors.items():
            try:
                failures[int(doc)] = json.loads(value)
            except ValueError:
                continue
        return ({k.decode(): v.decode() for k, v in fields.items()} or None), documents, failures

    def errors(self, batch_id: str) -> dict[int, dict[str, Any]]:
        return {int(d): json.loads(v) for d, v in self.client.hgetall(self.keys.batch_errors(batch_id)).items()}

    def events(self, batch_id: str, count: int | None = None) -> list[dict[str, str]]:
        """Recorded transitions, oldest first (the newest `count` when given)."""
        if count is None:
            entries = self.client.xrange(self.keys.batch_events(batch_id))
        else:
            entries = list(reversed(self.client.xrevrange(self.keys.batch_events(batch_id), count=count)))
        return [{k.decode(): v.decode() for k, v in fields.items()} for _, fields in entries]

    def trim_metrics(self, before: float, stages: Iterable[str], categories: Iterable[str]) -> int:
        """Drop metrics older than `before` (epoch seconds)."""
        pipe = self.client.pipeline(transaction=False)
        for key in [self.keys.done_metrics, self.keys.failed_metrics, *map(self.keys.stage_metrics, stages), *map(self.keys.error_metrics, categories)]:
            pipe.zremrangebyscore(key, "-inf", before)
        return sum(pipe.execute())
