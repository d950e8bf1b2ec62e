"""A fixed dashboard scene in a real Redis, for the snapshot tests and the screenshot: batches in
every status, failures of several categories, stage timings, workers on and offline, waiting
messages. Everything is written through `legaldoc.state` at a fixed clock, so the screens render
the same on every run."""

from __future__ import annotations

import redis

from legaldoc.config import Settings
from legaldoc.services.monitor import Dashboard, Monitor
from legaldoc.state.batches import BatchState, StateChange
from legaldoc.state.broker import Broker, Message
from legaldoc.state.keys import Keys
from legaldoc.state.workers import Heartbeat, WorkerRegistry

NOW = 1_800_000_000.0  # 2027-01-15 08:00 UTC
STAGES = ("extract", "chunk", "entities", "resolve", "relate")
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


def _documents(first: int, count: int) -> dict[int, tuple[int, str]]:
    return {first + i: (1, "pending") for i in range(count)}


def fill_scene(settings: Settings) -> None:
    client = redis.Redis.from_url(settings.redis_url_for("state"))
    keys = Keys(settings.redis_prefix)
    state = BatchState(client, keys)
    fields = {"project": "acme", "status": "queued"}

    # finished two hours ago: 28 succeeded, 2 skipped as duplicates
    state.init_batch("20270115-053000-9f8e7d", {**fields, "name": "intake-2027-01-14", "priority": 5,
                                                "created_at": NOW - 9000}, _documents(1, 30))  # fmt: skip
    changes = [StateChange("20270115-053000-9f8e7d", 1 + i, 2, "succeeded") for i in range(28)]
    changes += [StateChange("20270115-053000-9f8e7d", 29 + i, 2, "skipped") for i in range(2)]
    state.apply([StateChange("20270115-053000-9f8e7d", 1, 1, "running")], now=NOW - 8990)
    state.apply(changes, now=NOW - 7200)

    # running: 120 documents, 70 succeeded, 6 failed, 4 running, 40 pending
    running = "20270115-075000-a1b2c3"
    state.init_batch(running, {**fields, "name": "nightly acme v. globex", "priority": 5, "created_at": NOW - 600},
                     _documents(100, 120))  # fmt: skip
    state.apply([StateChange(running, 100, 2, "running", "extract")], now=NOW - 590)
    changes = []
    for i in range(70):
        stage = STAGES[i % 5]
        changes.append(StateChange(running, 100 + i, 3, "succeeded", metric_stage=stage,
                                   stage_metric=f"{100 + i}|1|{40 * (i % 5 + 1) + i}|done"))  # fmt: skip
    for i, (category, stage, message) in enumerate(FAILURES):
        doc = 170 + i
        changes.append(StateChange(running, doc, 3, "failed", stage, category, metric_stage=stage,
                                   error={"stage": stage, "category": category, "message": message, "attempt": 3,
                                          "at": NOW - 30 * (i + 1)},
                                   stage_metric=f"{doc}|3|{900 + i}|failed", error_metric=f"{doc}|{stage}|3"))  # fmt: skip
    for i in range(4):
        changes.append(StateChange(running, 176 + i, 2, "running", "entities"))
    for offset in range(0, len(changes), 10):  # spread over the last hour for the sparklines
        state.apply(changes[offset : offset + 10], now=NOW - 3000 + offset * 35)

    # queued at high priority, nothing started
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

    broker = Broker(redis.Redis.from_url(settings.redis_url_for("broker")))
    pipe = broker.client.pipeline()
    for i in range(40):
        key, payload = broker.encode(Message("legaldoc.extract", (180 + i, "extract", 1), "ocr", 5), sent=f"{NOW - 400 + i:.3f}")
        pipe.lpush(key, payload)
    for i in range(50):
        key, payload = broker.encode(Message("legaldoc.extract", (300 + i, "extract", 1), "ocr", 8), sent=f"{NOW - 60:.3f}")
        pipe.lpush(key, payload)
    pipe.execute()
