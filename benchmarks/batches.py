"""Batch machinery against bare baselines measured in the same run (ratios of medians).

1. submit: a 10,000-document manifest, from the loaded manifest until every first-stage message
   is in the broker (database rows, Redis state, messages), against a bare pipelined LPUSH of
   10,000 messages of the same size. The publish alone is also timed with a monitor subscribed to
   the task events (then each message has its task-sent event). Celery's own apply_async loop is timed on 1,000 messages and
   scaled, for reference.
2. orchestration: small text documents (real court e-mails) through a real worker of 2 processes,
   from submit to finished, against the same stage functions in a bare loop over 2 processes. By
   default the worker sends no task events, so it runs each document's stages in one task
   (`services.stages.Chain`); `--task-events` measures it as a monitor watching sees it: each stage
   its own task.
3. Redis commands per document for the whole pipeline (INFO commandstats around one batch), Lua
   calls per stage, and the round trips per stage the workers make on legaldoc's own connections
   (state, cache writes and reads, messages legaldoc publishes; counted by the proxy of
   `benchmarks/roundtrips.py`, connection setup apart) and on Celery's (consume, ack, events).

Usage: python benchmarks/batches.py [--documents 10000] [--small 300] [--rounds 3]
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import redis

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.roundtrips import CountingProxy, Counts  # noqa: E402
from legaldoc.config import load_settings  # noqa: E402
from legaldoc.manifest import load_manifest  # noqa: E402
from legaldoc.models import STAGES  # noqa: E402
from legaldoc.services import batches as service  # noqa: E402
from legaldoc.services.embedded import WorkerProcess  # noqa: E402
from legaldoc.services.process import process_paths  # noqa: E402
from legaldoc.services.wiring import Runtime  # noqa: E402
from legaldoc.state.broker import Broker, Message  # noqa: E402
from legaldoc.state.keys import Keys  # noqa: E402
from legaldoc.storage.db import Database  # noqa: E402

NEF = Path(__file__).resolve().parents[2] / "shared" / "corpus" / "nef"


def start_redis(folder: Path) -> tuple[subprocess.Popen, str]:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    process = subprocess.Popen(["redis-server", "--port", str(port), "--save", "", "--appendonly", "no",
                                "--dir", str(folder)], stdout=subprocess.DEVNULL)  # fmt: skip
    url = f"redis://127.0.0.1:{port}"
    for _ in range(200):
        try:
            redis.Redis.from_url(url).ping()
            break
        except redis.ConnectionError:
            time.sleep(0.05)
    return process, url


def cluster(settings) -> Runtime:
    rt = Runtime(settings).open_database()
    rt.require()
    return rt


def write_manifest(path: Path, folder: Path, name: str, skip: bool = False) -> Path:
    path.write_text(f"name: {name}\nproject: bench\noptions: {{skip_processed: {str(skip).lower()}}}\n"
                    f"documents:\n  - glob: '{folder}/*'\n")  # fmt: skip
    return path


# -- 1. submit ---------------------------------------------------------------------------------


def bench_submit(work: Path, redis_url: str, count: int, rounds: int) -> dict:
    folder = work / "many"
    folder.mkdir()
    for index in range(count):
        (folder / f"{index:06d}.txt").write_bytes(b"x")
    client = redis.Redis.from_url(redis_url + "/0")
    # the same size as a real first-stage message: (document id, stage, attempt, database identity)
    stamp = "00000000-0000-4000-8000-000000000000"
    sample_key, sample = Broker(client, Keys()).encode(Message("legaldoc.extract", (123456, "extract", 1, stamp), "ocr", 5))
    submit_times, bare_times, publish_times, listened_times = [], [], [], []
    for round_index in range(rounds):
        client.flushall()
        started = time.perf_counter()
        pipe = client.pipeline(transaction=False)
        for _ in range(count):
            pipe.lpush("bare", sample)
        pipe.execute()
        bare_times.append(time.perf_counter() - started)
        client.flushall()

        started = time.perf_counter()
        Broker(client, Keys(), database=lambda: stamp).publish_stage([(i, STAGES[0], 1) for i in range(count)], 5)
        publish_times.append(time.perf_counter() - started)
        client.flushall()

        # the same with a monitor (Flower, `celery events`) subscribed: every message gets its task-sent event
        monitor = subprocess.Popen(["redis-cli", "-u", redis_url + "/0", "psubscribe", "legaldoc:/0.celeryev/*"],
                                   stdout=subprocess.DEVNULL)  # fmt: skip
        while client.execute_command("PUBSUB", "NUMPAT") == 0:
            time.sleep(0.01)
        started = time.perf_counter()
        Broker(client, Keys(), database=lambda: stamp).publish_stage([(i, STAGES[0], 1) for i in range(count)], 5)
        listened_times.append(time.perf_counter() - started)
        monitor.terminate()
        monitor.wait()
        client.flushall()

        settings = load_settings(data_dir=work / f"submit-{round_index}" / ".legaldoc", redis_url=redis_url)
        rt = cluster(settings)
        loaded = load_manifest(write_manifest(work / "many.yaml", folder, f"many-{round_index}"))
        started = time.perf_counter()
        service.submit_batch(rt, loaded)
        submit_times.append(time.perf_counter() - started)
        assert rt.broker.depth("ocr") == count
    client.flushall()
    from celery import Celery

    app = Celery("bench", broker=redis_url + "/0", set_as_current=False)
    app.conf.broker_transport_options = {"priority_steps": list(range(10)), "sep": ":", "queue_order_strategy": "priority",
                                       "global_keyprefix": "legaldoc:"}
    app.conf.task_serializer = "json"
    sample_size = min(count, 1000)
    with app.producer_or_acquire() as producer:
        started = time.perf_counter()
        for index in range(sample_size):
            app.send_task("legaldoc.extract", args=(index, "extract", 1, stamp), queue="ocr", priority=4, producer=producer)
        celery_time = (time.perf_counter() - started) * count / sample_size
    bare = statistics.median(bare_times)
    return {
        "documents": count, "message_bytes": len(sample), "bare_lpush_s": bare,
        "legaldoc_publish_s": statistics.median(publish_times), "legaldoc_submit_s": statistics.median(submit_times),
        "listened_publish_s": statistics.median(listened_times), "listened_ratio": statistics.median(listened_times) / bare,
        "celery_apply_async_s": celery_time,
        "publish_ratio": statistics.median(publish_times) / bare, "submit_ratio": statistics.median(submit_times) / bare,
        "celery_ratio": celery_time / bare,
    }  # fmt: skip


# -- 2. orchestration and 3. commands -----------------------------------------------------------


def _bare_worker(args: tuple[list[str], str, str]) -> int:
    paths, data_dir, project = args
    settings = load_settings(data_dir=Path(data_dir))
    database = Database(settings.resolved_database_url)
    return sum(1 for _ in process_paths([Path(p) for p in paths], project, settings, database))


def bare_loop(files: list[Path], data_dir: Path) -> float:
    """The same stage functions (StageRunner, same database writes) over 2 processes, no queue."""
    Database(load_settings(data_dir=data_dir).resolved_database_url)  # migrate once, outside the timing
    halves = [[str(p) for p in files[0::2]], [str(p) for p in files[1::2]]]
    with multiprocessing.get_context("spawn").Pool(2) as pool:
        pool.map(_bare_worker, [([halves[0][0]], str(data_dir), "warm"), ([halves[1][0]], str(data_dir), "warm")])
        started = time.perf_counter()
        pool.map(_bare_worker, [(h, str(data_dir), "bench") for h in halves])
        return time.perf_counter() - started


def commandstats(client: redis.Redis) -> dict[str, int]:
    return {name: int(stats["calls"]) for name, stats in client.info("commandstats").items()}


def bench_orchestration(work: Path, redis_url: str, small: int, rounds: int, task_events: bool = False) -> dict:
    sources = sorted(NEF.glob("*.txt"))
    ratios, worker_times, bare_times, per_doc, per_stage = [], [], [], [], []
    lua_per_stage, celery_per_stage, publish_per_doc, reads_per_stage = [], [], [], []
    for round_index in range(rounds):
        folder = work / f"small-{round_index}-{task_events}"
        folder.mkdir()
        files = []
        for index in range(small):
            target = folder / f"{index:04d}-{sources[index % len(sources)].name}"
            shutil.copyfile(sources[index % len(sources)], target)
            files.append(target)
        bare = bare_loop(files, work / f"bare-{round_index}-{task_events}" / ".legaldoc")

        client = redis.Redis.from_url(redis_url)
        client.flushall()
        settings = load_settings(data_dir=work / f"workers-{round_index}-{task_events}" / ".legaldoc", redis_url=redis_url)
        rt = cluster(settings)
        # the workers talk to Redis through the counting proxy; this process (submit, status polls) does not
        proxy = CountingProxy(int(redis_url.rsplit(":", 1)[1])).__enter__()
        env = {**{k: v for k, v in os.environ.items() if not k.startswith("LEGALDOC_")},
               "LEGALDOC_REDIS_URL": f"redis://127.0.0.1:{proxy.port}", "LEGALDOC_DATABASE_URL": settings.resolved_database_url,
               "LEGALDOC_WORKER_TASK_EVENTS": str(task_events).lower()}  # fmt: skip
        worker = WorkerProcess(env, concurrency=2, log_path=work / "worker.log").start()
        try:
            warm = work / f"warm-{round_index}-{task_events}"
            warm.mkdir()
            shutil.copyfile(sources[0], warm / "warm.txt")
            warm_id = service.submit_batch(rt, load_manifest(write_manifest(work / "warm.yaml", warm, f"warm-{round_index}"))).batch_id
            service.wait_for_batch(rt, warm_id, timeout=120, poll=0.05)
            before = commandstats(client)
            proxy.reset()
            started = time.perf_counter()
            batch_id = service.submit_batch(rt, load_manifest(write_manifest(work / "small.yaml", folder, f"small-{round_index}"))).batch_id
            final = service.wait_for_batch(rt, batch_id, timeout=600, poll=0.05)
            elapsed = time.perf_counter() - started
            after = commandstats(client)
            trips = proxy.counts()
        finally:
            worker.stop()
            proxy.__exit__()
        assert final.succeeded == small, final
        calls = {k: after.get(k, 0) - before.get(k, 0) for k in after}
        # The status polls of this benchmark (HGETALL) are not the pipeline's; leave them out.
        pipeline_calls = sum(v for k, v in calls.items() if k not in ("cmdstat_hgetall", "cmdstat_info"))
        per_doc.append(pipeline_calls / small)
        stages = small * len(STAGES)
        lua_per_stage.append((calls.get("cmdstat_evalsha", 0) + calls.get("cmdstat_eval", 0)) / stages)
        own = trips.get("legaldoc", Counts())
        per_stage.append(own.round_trips / stages)
        reads_per_stage.append(own.reads / stages)
        celery_per_stage.append(trips.get("other", Counts()).round_trips / stages)
        publish_per_doc.append(calls.get("cmdstat_publish", 0) / small)
        worker_times.append(elapsed)
        bare_times.append(bare)
        ratios.append(elapsed / bare)
        top = sorted(calls.items(), key=lambda kv: -kv[1])[:8]
    return {
        "documents": small, "worker_s": statistics.median(worker_times), "bare_s": statistics.median(bare_times),
        "ratio": statistics.median(ratios), "redis_commands_per_document": statistics.median(per_doc),
        "legaldoc_round_trips_per_stage": statistics.median(per_stage),
        "cache_read_round_trips_per_stage": statistics.median(reads_per_stage),
        "bookkeeping_round_trips_per_stage": statistics.median([t - r for t, r in zip(per_stage, reads_per_stage, strict=True)]),
        "lua_calls_per_stage": statistics.median(lua_per_stage),
        "celery_round_trips_per_stage": statistics.median(celery_per_stage),
        "publish_per_document": statistics.median(publish_per_doc),
        "top_commands_per_document": {k.removeprefix("cmdstat_"): round(v / small, 2) for k, v in top},
    }  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--documents", type=int, default=10000)
    parser.add_argument("--small", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--only", choices=["submit", "orchestration"], default=None)
    parser.add_argument("--task-events", action="store_true",
                        help="orchestration with Celery's task events on (a monitor watching): every stage its own task")  # fmt: skip
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="legaldoc-bench-"))
    process, url = start_redis(work)
    try:
        if args.only in (None, "submit"):
            s = bench_submit(work, url, args.documents, args.rounds)
            print(f"submit {s['documents']} documents ({s['message_bytes']} B messages), medians of {args.rounds}:")
            print(f"  bare pipelined LPUSH   {s['bare_lpush_s'] * 1000:8.1f} ms")
            print(f"  legaldoc publish only  {s['legaldoc_publish_s'] * 1000:8.1f} ms   ratio {s['publish_ratio']:.2f}")
            print(f"  publish, monitor on    {s['listened_publish_s'] * 1000:8.1f} ms   ratio {s['listened_ratio']:.2f}  (task-sent events)")
            print(f"  legaldoc submit        {s['legaldoc_submit_s'] * 1000:8.1f} ms   ratio {s['submit_ratio']:.2f}  (aim <= 4)")
            print(f"  celery apply_async     {s['celery_apply_async_s'] * 1000:8.1f} ms   ratio {s['celery_ratio']:.1f}  (scaled from 1,000)")
        if args.only in (None, "orchestration"):
            o = bench_orchestration(work, url, args.small, args.rounds, args.task_events)
            events = "task events on: each stage its own task" if args.task_events else "no task events: stages chained"
            print(f"orchestration, {o['documents']} court e-mails, 2 processes, {events}, medians of {args.rounds}:")
            print(f"  bare loop of the stage functions  {o['bare_s']:6.2f} s")
            print(f"  through Redis and the workers     {o['worker_s']:6.2f} s   ratio {o['ratio']:.2f}  (aim <= 1.15)")
            print(f"  Redis commands per document       {o['redis_commands_per_document']:6.1f}")
            print(f"  legaldoc's round trips per stage  {o['legaldoc_round_trips_per_stage']:6.2f}  (its own connections, counted at a proxy)")
            print(f"    carrying a cache read           {o['cache_read_round_trips_per_stage']:6.2f}  (the extraction lookup with the running mark; entity-index reads)")
            print(f"    bookkeeping alone               {o['bookkeeping_round_trips_per_stage']:6.2f}  (aim <= 1: stage ends, heartbeats, sweeps)")
            print(f"  Lua calls per stage               {o['lua_calls_per_stage']:6.2f}  (aim <= 1)")
            print(f"  Celery's round trips per stage    {o['celery_round_trips_per_stage']:6.2f}  (consume, ack, events, heartbeats)")
            print(f"  PUBLISH per document              {o['publish_per_document']:6.1f}  (task events)")
            print(f"  most frequent commands per document: {o['top_commands_per_document']}")
    finally:
        process.terminate()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
