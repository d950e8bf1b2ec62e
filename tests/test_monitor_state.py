"""The dashboard's read path on a real redis-server holding 1,000 batches and 100,000 document
states: one refresh is at most 3 round trips, never SCAN or KEYS, and reads the right numbers."""

from __future__ import annotations

import time

import redis

from legaldoc.errors import ErrorCategory
from legaldoc.lifecycle import Attempt, AttemptOutcome, Failure, MirrorState, Transition
from legaldoc.models import Stage
from legaldoc.queues import Queue
from legaldoc.state.batches import BatchState
from legaldoc.state.broker import Broker, Message
from legaldoc.state.keys import Keys
from legaldoc.state.monitor import MonitorReader
from legaldoc.state.workers import Heartbeat, WorkerRegistry


def _fill(client: redis.Redis, keys: Keys, batches: int, documents: int) -> BatchState:
    state = BatchState(client, keys, retention_seconds=86400)
    for n in range(batches):
        fields = {"name": f"nightly-{n}", "project": "acme", "priority": 5, "status": "running", "created_at": 1_000 + n}
        state.init_batch(f"b{n:04d}", fields, {n * documents + d: (1, MirrorState.PENDING) for d in range(documents)})
    return state


def test_one_refresh_is_two_round_trips_without_scan(redis_url, monkeypatch):
    client = redis.Redis.from_url(redis_url)
    keys = Keys()
    state = _fill(client, keys, 1000, 100)
    now = time.time()
    changes = []
    for d in range(3):  # batch b0999: three documents succeed through extract, two fail
        done = Attempt(Stage.EXTRACT, 1, AttemptOutcome.DONE, 100 * (d + 1))
        changes.append(Transition(99_900 + d, "b0999", 2, MirrorState.RUNNING, Stage.CHUNK, done))
    for d, category in ((3, ErrorCategory.TRANSIENT), (4, ErrorCategory.DATA)):
        failed = Attempt(Stage.EXTRACT, 1, AttemptOutcome.FAILED, 50, Failure(category, f"failure {d}"))
        changes.append(Transition(99_900 + d, "b0999", 2, MirrorState.FAILED, Stage.EXTRACT, failed))
    state.apply_transitions(changes, now=now)
    WorkerRegistry(client, keys).beat(Heartbeat(name="w1", host="h", pid=1, queues=["ocr"], concurrency=2, interval=5))
    Broker(client, keys).publish([Message("legaldoc.extract", (1, "extract", 1), "ocr", 8)] * 3)

    reader = MonitorReader(client, client, keys, categories=list(ErrorCategory), stages=[s.value for s in Stage],
                           queues=list(Queue))  # fmt: skip
    reader.snapshot()  # loads the script once
    sent = []
    original = redis.connection.Connection.send_packed_command
    monkeypatch.setattr(redis.connection.Connection, "send_packed_command",
                        lambda self, *a, **k: (sent.append(1), original(self, *a, **k))[1])  # fmt: skip
    client.config_resetstat()
    sent.clear()
    snapshot = reader.snapshot(visible=50)
    round_trips = len(sent)
    stats = client.info("commandstats")
    assert round_trips <= 3, round_trips
    assert not {"cmdstat_scan", "cmdstat_keys", "cmdstat_hscan"} & set(stats), sorted(stats)

    assert (snapshot.batch_count, snapshot.active_count) == (1000, 1000)  # unfinished batches are all active
    assert snapshot.batches[0][0] == "b0999" and snapshot.batches[0][1]["status"] == "running"  # newest first
    assert len(snapshot.batches) == 50 and snapshot.batches[1][0] == "b0998"
    assert snapshot.errors_24h["TRANSIENT"] == 1 and snapshot.errors_24h["DATA"] == 1
    assert [(e.batch_id, e.document_id, e.error.message) for e in snapshot.recent_errors] == [
        ("b0999", 99_904, "failure 4"), ("b0999", 99_903, "failure 3")]  # fmt: skip
    extract = next(s for s in snapshot.stages if s.stage == "extract")
    assert (extract.count, extract.p50_ms, extract.p95_ms, extract.per_5_minutes[-1]) == (5, 100, 300, 5)
    assert [w.name for w in snapshot.workers] == ["w1"] and snapshot.workers[0].online(now)
    assert snapshot.queues["ocr"] == 3 and snapshot.memory > 1_000_000
    assert now - 60 < snapshot.oldest_message["ocr"] <= time.time() and snapshot.oldest_message["text"] is None


def test_documents_per_minute_counts_the_last_five_minutes_or_since_work_began(redis_url):
    """Completions per minute: over 5 minutes once work has run that long; since the first
    completion before that (never over less than a minute); older completions do not count."""
    client = redis.Redis.from_url(redis_url)
    keys = Keys()
    state = _fill(client, keys, 1, 40)
    now = time.time()
    reader = MonitorReader(client, client, keys, categories=list(ErrorCategory), stages=[], queues=[])
    state.apply_transitions([Transition(d, "b0000", 2, MirrorState.SUCCEEDED) for d in range(10)], now=now - 120)
    snapshot = reader.snapshot(now=now)
    assert (snapshot.done_last_5_minutes, round(snapshot.docs_per_minute, 3)) == (10, 5.0)  # 10 over 2 minutes
    state.apply_transitions([Transition(d, "b0000", 2, MirrorState.SUCCEEDED) for d in range(10, 20)], now=now - 20)
    assert round(reader.snapshot(now=now).docs_per_minute, 3) == 10.0  # 20 over 2 minutes
    state.apply_transitions([Transition(d, "b0000", 2, MirrorState.SUCCEEDED) for d in range(20, 40)], now=now - 1000)
    later = reader.snapshot(now=now)
    assert later.done_last_5_minutes == 20 and round(later.docs_per_minute, 3) == 10.0
    fresh = reader.snapshot(now=now + 90)  # the earliest of the window is now 210 s old
    assert round(fresh.docs_per_minute, 3) == round(20 / 210 * 60, 3)
    assert reader.snapshot(now=now + 600).docs_per_minute == 0
