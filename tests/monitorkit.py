"""A fixed dashboard scene in a real Redis, for the snapshot tests and the screenshot: batches in
every status, failures of several categories, stage timings, workers on and offline, waiting
messages. Everything is written through `legaldoc.state` at a fixed clock, so the screens render
the same on every run."""

from __future__ import annotations

import redis

from legaldoc.config import Settings
from legaldoc.errors import ErrorCategory
from legaldoc.lifecycle import (
    Attempt,
    AttemptOutcome,
    BatchStatus,
    Failure,
    MirrorState,
    Transition,
)
from legaldoc.models import Stage
from legaldoc.services.monitor import Dashboard, Monitor
from legaldoc.state.batches import BatchState
from legaldoc.state.broker import Broker, Message
from legaldoc.state.keys import Keys
from legaldoc.state.workers import Heartbeat, WorkerRegistry

NOW = 1_800_000_000.0  # 2027-01-15 08:00 UTC
STAGES = list(Stage)
FAILURES = [
    ("DATA", "extract", "PDF has no pages: the file is empty or truncated; re-export it from the source system"),
    ("DATA", "extract", "PDF has no pages: the file is empty or truncated; re-export it from the source system"),
    ("TRANSIENT", "entities", "connection reset by peer after 3 attempts"),
    ("TRANSIENT", "entities", "connection reset by peer after 3 attempts"),
    ("TRANSIENT", "entities", "connection reset by peer after 3 attempts"),
    ("RATE_LIMIT", "entities", "429 Too Many Requests (retry after 20 s) after 6 attempts"),
]


class FixedMemory(Monitor):
    """The real monitor, with the two things no test can fix pinned: Redis's used memory, which
    depends on the allocator and on what earlier tests loaded, and the server's random port."""

    @property
    def where(self) -> str:
        return "redis://127.0.0.1:6379/4"

    def dashboard(self, **kwargs) -> Dashboard:
        dashboard = super().dashboard(**kwargs)
        dashboard.memory = 3_456_789
        return dashboard


def _documents(first: int, count: int) -> dict[int, tuple[int, MirrorState]]:
    return {first + i: (1, MirrorState.PENDING) for i in range(count)}


def fill_scene(settings: Settings) -> None:
    client = redis.Redis.from_url(settings.redis_url_for("state"))
    keys = Keys(settings.redis_prefix)
    state = BatchState(client, keys, retention_seconds=30 * 86400)
    fields = {"project": "acme", "status": BatchStatus.RUNNING}

    # finished two hours ago: 28 succeeded, 2 skipped as duplicates
    done = "20270115-053000-9f8e7d"
    state.init_batch(done, {**fields, "name": "intake-2027-01-14", "priority": 5, "created_at": NOW - 9000},
                     _documents(1, 30))  # fmt: skip
    state.apply_transitions([Transition(1, done, 1, MirrorState.RUNNING)], now=NOW - 8990)
    state.apply_transitions([Transition(1 + i, done, 2, MirrorState.SUCCEEDED) for i in range(28)]
                            + [Transition(29 + i, done, 2, MirrorState.SKIPPED) for i in range(2)], now=NOW - 7200)  # fmt: skip
    state.settle(done, BatchStatus.FINISHED, created_at=NOW - 9000, finished_at=NOW - 7200)

    # running: 120 documents, 70 succeeded, 6 failed, 4 running, 40 pending
    running = "20270115-075000-a1b2c3"
    state.init_batch(running, {**fields, "name": "nightly acme v. globex", "priority": 5, "created_at": NOW - 600},
                     _documents(100, 120))  # fmt: skip
    state.apply_transitions([Transition(100, running, 2, MirrorState.RUNNING, Stage.EXTRACT)], now=NOW - 590)
    changes = []
    for i in range(70):
        ran = Attempt(STAGES[i % 5], 1, AttemptOutcome.DONE, 40 * (i % 5 + 1) + i)
        changes.append(Transition(100 + i, running, 3, MirrorState.SUCCEEDED, attempt=ran))
    for i in range(4):
        changes.append(Transition(176 + i, running, 2, MirrorState.RUNNING, Stage.ENTITIES))
    for offset in range(0, len(changes), 10):  # spread over the last hour for the sparklines
        state.apply_transitions(changes[offset : offset + 10], now=NOW - 3000 + offset * 35)
    for i, (category, stage, message) in enumerate(FAILURES):  # the newest errors, the last 3 minutes
        failed = Attempt(Stage(stage), 3, AttemptOutcome.FAILED, 900 + i, Failure(ErrorCategory(category), message))
        state.apply_transitions([Transition(170 + i, running, 3, MirrorState.FAILED, Stage(stage), failed)],
                                now=NOW - 30 * (len(FAILURES) - i))  # fmt: skip

    # at high priority, nothing started
    state.init_batch("20270115-075900-d4e5f6", {**fields, "name": "urgent production set 7", "priority": 8,
                                                "project": "initech", "created_at": NOW - 60}, _documents(300, 50))  # fmt: skip

    registry = WorkerRegistry(client, keys)
    registry.beat(Heartbeat(name="ocr-1@node-a", host="node-a", pid=4100, queues=["ocr"], concurrency=4, active=3,
                            processed=212, rss=812 * 2**20, started=NOW - 4000), now=NOW - 2)  # fmt: skip
    registry.beat(Heartbeat(name="text-1@node-b", host="node-b", pid=4200, queues=["text", "entity", "graph"],
                            concurrency=2, active=1, processed=530, rss=402 * 2**20, started=NOW - 4000,
                            ), now=NOW - 1)  # fmt: skip
    registry.beat(Heartbeat(name="old@node-c", host="node-c", pid=77, queues=["ocr"], concurrency=2,
                            processed=41, rss=300 * 2**20, started=NOW - 9000), now=NOW - 900)  # fmt: skip

    broker = Broker(redis.Redis.from_url(settings.redis_url_for("broker")), keys)
    pipe = broker.client.pipeline()
    for i in range(40):
        key, payload = broker.encode(Message("legaldoc.extract", (180 + i, "extract", 1), "ocr", 5), sent=f"{NOW - 400 + i:.3f}")
        pipe.lpush(key, payload)
    for i in range(50):
        key, payload = broker.encode(Message("legaldoc.extract", (300 + i, "extract", 1), "ocr", 8), sent=f"{NOW - 60:.3f}")
        pipe.lpush(key, payload)
    pipe.execute()
