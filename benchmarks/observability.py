"""What watching costs: Celery task events and the Prometheus counters, per document.

1. events: small documents (real court e-mails) through a real worker of 2 processes, from submit
   to finished, with task events on (what Flower, `celery events` and celery-exporter read; the
   worker then runs every stage as its own task) and off (the default: each document's stages run
   in one task, `services.stages.Chain`), in interleaved rounds; the ratio of medians, the Redis
   commands per document either way (INFO commandstats), and the CPU seconds of the worker's process
   tree plus redis-server (steadier than wall time on a shared machine).
2. counters: the transition script that mirrors a stage's end, called as a stage calls it (one
   EVALSHA), with the exporter's counters (5 HINCRBYFLOAT inside the script) and without them,
   interleaved: microseconds per stage and per document (5 stages).
3. scrape: one `legaldoc metrics` exposition with the batches and workers of part 1 in Redis.

Usage: python benchmarks/observability.py [--small 150] [--rounds 3]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import psutil
import redis

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.batches import NEF, cluster, commandstats, start_redis, write_manifest  # noqa: E402
from legaldoc.config import load_settings  # noqa: E402
from legaldoc.errors import ErrorCategory  # noqa: E402
from legaldoc.lifecycle import Attempt, AttemptOutcome, Failure, MirrorState, Transition  # noqa: E402
from legaldoc.manifest import load_manifest  # noqa: E402
from legaldoc.models import STAGES, Stage  # noqa: E402
from legaldoc.services import batches as service  # noqa: E402
from legaldoc.services.embedded import WorkerProcess  # noqa: E402
from legaldoc.services.metrics import exposition  # noqa: E402
from legaldoc.state import batches as state_batches  # noqa: E402


def tree_cpu(pid: int) -> float:
    """CPU seconds of a process, its live descendants and the children it has reaped."""
    root = psutil.Process(pid)
    times = root.cpu_times()
    total = times.user + times.system + times.children_user + times.children_system
    for child in root.children(recursive=True):
        with contextlib.suppress(psutil.Error):
            child_times = child.cpu_times()
            total += child_times.user + child_times.system
    return total


def redis_cpu(client: redis.Redis) -> float:
    info = client.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


def one_batch(work: Path, redis_url: str, files: Path, events: bool, tag: str) -> tuple[float, float, int, float]:
    """(seconds, Redis commands per document, documents, CPU seconds of the worker and Redis) of one
    batch on a fresh worker."""
    client = redis.Redis.from_url(redis_url)
    client.flushall()
    settings = load_settings(data_dir=work / f"data-{tag}" / ".legaldoc", redis_url=redis_url)
    rt = cluster(settings)
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("LEGALDOC_")}, "LEGALDOC_REDIS_URL": redis_url,
           "LEGALDOC_DATABASE_URL": settings.resolved_database_url,
           "LEGALDOC_WORKER_TASK_EVENTS": "true" if events else "false"}  # fmt: skip
    worker = WorkerProcess(env, concurrency=2, log_path=work / f"worker-{tag}.log").start()
    try:
        warm = work / f"warm-{tag}"
        warm.mkdir()
        shutil.copyfile(next(iter(sorted(files.iterdir()))), warm / "warm.txt")
        warm_id = service.submit_batch(rt, load_manifest(write_manifest(work / f"warm-{tag}.yaml", warm, f"warm-{tag}"))).batch_id
        service.wait_for_batch(rt, warm_id, timeout=120, poll=0.05)
        before = commandstats(client)
        cpu_before = tree_cpu(worker.pid) + redis_cpu(client)
        started = time.perf_counter()
        batch_id = service.submit_batch(rt, load_manifest(write_manifest(work / f"b-{tag}.yaml", files, f"b-{tag}"))).batch_id
        final = service.wait_for_batch(rt, batch_id, timeout=900, poll=0.05)
        elapsed = time.perf_counter() - started
        after = commandstats(client)
        cpu = tree_cpu(worker.pid) + redis_cpu(client) - cpu_before
    finally:
        worker.stop()
    count = final.succeeded
    calls = sum(after.get(k, 0) - before.get(k, 0) for k in after if k not in ("cmdstat_hgetall", "cmdstat_info"))
    return elapsed, calls / max(count, 1), count, cpu


def bench_events(work: Path, redis_url: str, small: int, rounds: int) -> dict:
    sources = sorted(NEF.glob("*.txt"))
    files = work / "docs"
    files.mkdir()
    for index in range(small):
        shutil.copyfile(sources[index % len(sources)], files / f"{index:04d}-{sources[index % len(sources)].name}")
    on, off, on_calls, off_calls, ratios, cpu_ratios, on_cpu, off_cpu = [], [], [], [], [], [], [], []
    for round_index in range(rounds):
        first, second = (True, False) if round_index % 2 == 0 else (False, True)
        results = {}
        for events in (first, second):
            results[events] = one_batch(work, redis_url, files, events, f"{round_index}-{'on' if events else 'off'}")
        on.append(results[True][0])
        off.append(results[False][0])
        on_calls.append(results[True][1])
        off_calls.append(results[False][1])
        ratios.append(results[True][0] / results[False][0])
        on_cpu.append(results[True][3])
        off_cpu.append(results[False][3])
        cpu_ratios.append(results[True][3] / results[False][3])
        print(f"  round {round_index + 1}: events on {results[True][0]:.2f} s ({results[True][3]:.2f} CPU s), "
              f"off {results[False][0]:.2f} s ({results[False][3]:.2f} CPU s)", flush=True)  # fmt: skip
    return {"documents": small, "on_s": statistics.median(on), "off_s": statistics.median(off),
            "ratio": statistics.median(ratios), "cpu_ratio": statistics.median(cpu_ratios),
            "cpu_per_document_ms": (statistics.median(on_cpu) - statistics.median(off_cpu)) / small * 1000,
            "per_document_ms": (statistics.median(on) - statistics.median(off)) / small * 1000,
            "commands_per_document_on": statistics.median(on_calls),
            "commands_per_document_off": statistics.median(off_calls)}  # fmt: skip


def bench_counters(redis_url: str, calls: int, rounds: int) -> dict:
    client = redis.Redis.from_url(redis_url)
    client.flushall()
    settings = load_settings(data_dir=Path(tempfile.mkdtemp()) / ".legaldoc", redis_url=redis_url)
    state = cluster(settings).state
    state.init_batch("bench", {"name": "bench", "created_at": time.time(), "status": "running"},
                     {d: (1, MirrorState.PENDING) for d in range(calls * rounds * 2 + 1)})  # fmt: skip
    failure = Failure(ErrorCategory.TRANSIENT, "reset", None, "a.pdf")
    real = state_batches.counted
    version = iter(range(2, 10**9))
    timings: dict[bool, list[float]] = {True: [], False: []}
    document = iter(range(1, 10**9))
    for _ in range(rounds):
        for with_counters in (True, False):
            state_batches.counted = real if with_counters else (lambda _t: [])  # type: ignore[assignment]
            started = time.perf_counter()
            for _ in range(calls):
                doc = next(document)
                state.apply_transitions([Transition(doc, "bench", next(version), MirrorState.RUNNING, Stage.CHUNK,
                                                    Attempt(Stage.EXTRACT, 1, AttemptOutcome.DONE, 420))])  # fmt: skip
            timings[with_counters].append((time.perf_counter() - started) / calls)
    state_batches.counted = real
    del failure
    with_c, without = statistics.median(timings[True]), statistics.median(timings[False])
    return {"per_stage_us_with": with_c * 1e6, "per_stage_us_without": without * 1e6,
            "per_document_us": (with_c - without) * 1e6 * len(STAGES), "ratio": with_c / without}  # fmt: skip


def bench_scrape(work: Path, redis_url: str, rounds: int) -> dict:
    settings = load_settings(data_dir=work / "scrape" / ".legaldoc", redis_url=redis_url)
    rt = cluster(settings)
    times = []
    for _ in range(rounds * 5):
        started = time.perf_counter()
        exposition(rt)
        times.append(time.perf_counter() - started)
    return {"scrape_ms": statistics.median(times) * 1000}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--small", type=int, default=150)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--calls", type=int, default=3000)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="legaldoc-observability-"))
    server, url = start_redis(work)
    try:
        counters = bench_counters(url, args.calls, args.rounds)
        print(f"counters: transition script {counters['per_stage_us_with']:.0f} us with the exporter's counters, "
              f"{counters['per_stage_us_without']:.0f} us without ({counters['ratio']:.2f}x); "
              f"{counters['per_document_us']:.0f} us per document of {len(STAGES)} stages", flush=True)  # fmt: skip
        events = bench_events(work, url, args.small, args.rounds)
        print(f"events: {events['documents']} documents in {events['on_s']:.2f} s with task events, {events['off_s']:.2f} s "
              f"without ({events['ratio']:.3f}x, {events['per_document_ms']:+.1f} ms per document); Redis commands per "
              f"document {events['commands_per_document_on']:.1f} with, {events['commands_per_document_off']:.1f} without; "
              f"CPU of the worker and Redis {events['cpu_ratio']:.3f}x ({events['cpu_per_document_ms']:+.1f} ms per document)",
              flush=True)  # fmt: skip
        scrape = bench_scrape(work, url, args.rounds)
        print(f"scrape: one exposition in {scrape['scrape_ms']:.1f} ms", flush=True)
    finally:
        server.terminate()
        server.wait(10)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
