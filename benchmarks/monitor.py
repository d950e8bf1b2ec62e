"""What one `legaldoc monitor` refresh costs, against the least any dashboard must do.

A throwaway redis-server is filled through `legaldoc.state` with 1,000 batches of 100 documents
(100,000 document states; 20 batches running, the rest finished), a busy hour of stage metrics
(20,000 runs per stage), a day of errors and failed documents, 20 worker heartbeats and 5,000
waiting messages over every queue's priority lists.

- baseline: ZREVRANGE of the batch index, then one pipelined HGETALL of the visible batches
  (redis-py decoding included): two round trips, no workers, no queues, no metrics.
- refresh:  `Monitor.dashboard()`, everything the main screen shows, rows computed (rate, ETA,
  age, queue consumers): the state script and the broker script.

Both read the same number of visible batches. Times are per call: the median of interleaved
rounds, reported as the ratio refresh / baseline of the same round. Round trips are counted at
the socket and INFO commandstats is checked for SCAN and KEYS.

Usage: python benchmarks/monitor.py [--rounds 7] [--calls 30] [--visible 200] [--json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import redis  # noqa: E402

from benchmarks.batches import start_redis  # noqa: E402
from legaldoc.config import load_settings  # noqa: E402
from legaldoc.errors import ErrorCategory  # noqa: E402
from legaldoc.lifecycle import (  # noqa: E402
    Attempt,
    AttemptOutcome,
    BatchStatus,
    Failure,
    MirrorState,
    Transition,
)
from legaldoc.models import Stage  # noqa: E402
from legaldoc.queues import Queue  # noqa: E402
from legaldoc.services.monitor import Monitor  # noqa: E402
from legaldoc.state.batches import BatchState  # noqa: E402
from legaldoc.state.broker import Broker, Message  # noqa: E402
from legaldoc.state.keys import Keys  # noqa: E402
from legaldoc.state.workers import Heartbeat, WorkerRegistry  # noqa: E402

BATCHES, DOCUMENTS, RUNNING = 1000, 100, 20


def fill(settings, now: float) -> None:
    client = redis.Redis.from_url(settings.redis_url_for("state"))
    keys = Keys(settings.redis_prefix)
    state = BatchState(client, keys, retention_seconds=30 * 86400)
    reset = Attempt(Stage.ENTITIES, 3, AttemptOutcome.FAILED, failure=Failure(ErrorCategory.TRANSIENT, "reset"))
    for n in range(BATCHES):
        batch_id = f"2027011{n // 100}-{n:06d}-bench"
        created = now - (BATCHES - n) * 60
        fields = {"name": f"nightly-{n}", "project": f"matter-{n % 17}", "priority": 5, "status": BatchStatus.RUNNING,
                  "created_at": created}  # fmt: skip
        state.init_batch(batch_id, fields, {n * DOCUMENTS + d: (1, MirrorState.PENDING) for d in range(DOCUMENTS)})
        finished = n < BATCHES - RUNNING
        changes = []
        for d in range(DOCUMENTS if finished else DOCUMENTS // 2):
            doc = n * DOCUMENTS + d
            if d % 50 == 7:
                changes.append(Transition(doc, batch_id, 3, MirrorState.FAILED, Stage.ENTITIES, reset))
            else:
                changes.append(Transition(doc, batch_id, 3, MirrorState.SUCCEEDED))
        state.apply_transitions(changes, now=now - (BATCHES - n) * 30)
        if finished:
            state.settle(batch_id, BatchStatus.FINISHED, created_at=created, finished_at=now - (BATCHES - n) * 30)
    pipe = client.pipeline(transaction=False)
    for stage in Stage:  # a busy hour: 20,000 runs per stage
        members = {f"{i}|1|{20 + i % 900}|done": now - 3600 + i * 0.18 for i in range(20000)}
        for offset in range(0, 20000, 5000):
            pipe.zadd(keys.stage_metrics(stage.value), dict(list(members.items())[offset : offset + 5000]))
    for category in ErrorCategory:
        pipe.zadd(keys.error_metrics(category.value), {f"{i}|entities|1": now - i * 40 for i in range(2000)})
    pipe.zadd(keys.done_metrics, {str(i): now - i * 0.1 for i in range(20000)})
    pipe.execute()
    registry = WorkerRegistry(client, keys)
    for w in range(20):
        registry.beat(Heartbeat(name=f"w{w}@host", host="host", pid=w, queues=[q.value for q in Queue], concurrency=4), now=now)
    broker = Broker(redis.Redis.from_url(settings.redis_url_for("broker")), keys)
    broker.publish(Message("legaldoc.extract", (i, "extract", 1), list(Queue)[i % 5].value, i % 10) for i in range(5000))


def baseline(client: redis.Redis, keys: Keys, visible: int) -> list[dict]:
    ids = client.zrevrange(keys.batches, 0, visible - 1)
    pipe = client.pipeline(transaction=False)
    for batch_id in ids:
        pipe.hgetall(keys.batch(batch_id.decode()))
    return pipe.execute()


def round_trips(monitor: Monitor) -> tuple[int, list[str]]:
    sent = []
    original = redis.connection.Connection.send_packed_command

    def counting(self, *args, **kwargs):
        sent.append(1)
        return original(self, *args, **kwargs)

    redis.connection.Connection.send_packed_command = counting
    try:
        monitor.runtime.client("state").config_resetstat()
        monitor.runtime.client("broker").config_resetstat()
        sent.clear()
        monitor.dashboard()
        trips = len(sent)
    finally:
        redis.connection.Connection.send_packed_command = original
    commands = sorted((set(monitor.runtime.client("state").info("commandstats")) | set(monitor.runtime.client("broker").info("commandstats"))) - {"cmdstat_config|resetstat"})
    return trips, [c.removeprefix("cmdstat_") for c in commands]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--calls", type=int, default=30)
    parser.add_argument("--visible", type=int, default=200)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        process, url = start_redis(Path(folder))
        try:
            settings = load_settings(data_dir=Path(folder) / ".legaldoc", redis_url=url)
            now = time.time()
            started = time.perf_counter()
            fill(settings, now)
            filled = time.perf_counter() - started
            monitor = Monitor(settings)
            keys = Keys(settings.redis_prefix)
            client = redis.Redis.from_url(settings.redis_url_for("state"))
            dashboard = monitor.dashboard(visible=args.visible)  # loads the scripts
            baseline(client, keys, args.visible)
            trips, commands = round_trips(monitor)
            ratios, refresh_ms, base_ms = [], [], []
            for _ in range(args.rounds):
                t0 = time.perf_counter()
                for _ in range(args.calls):
                    baseline(client, keys, args.visible)
                t1 = time.perf_counter()
                for _ in range(args.calls):
                    monitor.dashboard(visible=args.visible)
                t2 = time.perf_counter()
                base, ours = (t1 - t0) / args.calls, (t2 - t1) / args.calls
                base_ms.append(base * 1000)
                refresh_ms.append(ours * 1000)
                ratios.append(ours / base)
            states = sum(client.hlen(keys.batch_docs(b.decode())) for b in client.zrange(keys.batches, 0, -1))
        finally:
            process.terminate()
            process.wait(10)
    report = {
        "batches": BATCHES, "document_states": states, "visible": args.visible, "fill_seconds": round(filled, 1),
        "shown_batches": len(dashboard.rows), "active_batches": dashboard.active_count,
        "round_trips": trips, "commands": commands, "scan_or_keys": bool({"scan", "keys", "hscan"} & set(commands)),
        "baseline_ms": round(statistics.median(base_ms), 3), "refresh_ms": round(statistics.median(refresh_ms), 3),
        "ratio_median": round(statistics.median(ratios), 3), "ratios": [round(r, 3) for r in ratios],
    }  # fmt: skip
    if args.json:
        print(json.dumps(report))
        return
    print(f"{report['batches']} batches, {report['document_states']:,} document states, {args.visible} visible "
          f"({report['active_batches']} active); filled in {report['fill_seconds']} s")
    print(f"one refresh: {trips} round trips, commands {', '.join(commands)}; SCAN/KEYS: {report['scan_or_keys']}")
    print(f"baseline (index + pipelined HGETALL): {report['baseline_ms']} ms   refresh: {report['refresh_ms']} ms")
    print(f"refresh / baseline, median of {args.rounds} rounds: {report['ratio_median']}x  (rounds: {report['ratios']})")


if __name__ == "__main__":
    main()
