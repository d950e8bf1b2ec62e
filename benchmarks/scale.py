"""A 100,000-document batch through the commands a user types, against bare baselines of the same run.

A tree of N small text files (default 100,000, in folders of 1,000) is written to a temporary
folder, with a manifest of one glob over it. Each round (interleaved, medians reported):

1. start-up: `legaldoc --help` and `legaldoc --version`, whole processes.
2. bare LPUSH: a Python process that renders N messages of the size legaldoc's first-stage messages
   have and pushes them with pipelined LPUSHes of 1,000 (no CLI, no database): the floor of
   putting N messages into Redis from a fresh process.
3. bare listing: a Python process that globs the tree with `glob`, sorts the paths and checks
   `os.path.isfile` on each: the floor of turning the manifest into N file names. The same listing
   in this process, against `load_manifest` of the manifest in this process.
4. `legaldoc submit MANIFEST --json`: the whole command (start-up, manifest, database rows, live
   state, messages), with its peak RSS (`os.wait4`). Each round submits to a project of its own.
5. `legaldoc status BATCH --docs --limit 20` (and `--offset` half-way, and `--json`), whole processes.
6. `legaldoc cancel BATCH`, then the messages the batch left in the broker's lists are counted
   (every first-stage message names its document; none may remain) and the lists of the batch
   submitted before (left queued on purpose, at the same priority) must keep all of theirs.

Also, in-process: the time Redis spends in the cancel's script (INFO commandstats).

Usage: python benchmarks/scale.py [--documents 100000] [--rounds 3] [--json]
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import redis

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.batches import start_redis  # noqa: E402
from legaldoc.manifest import load_manifest  # noqa: E402

LEGALDOC = [sys.executable, "-m", "legaldoc"]

BARE_LPUSH = r"""
import sys, time, redis
url, count, size = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
client = redis.Redis.from_url(url)
pipe = client.pipeline(transaction=False)
filler = "x" * max(size - 60, 0)
batch = []
for i in range(count):
    batch.append('{"id": "%012d", "args": [%d, "ingest", 1], "pad": "%s"}' % (i, i, filler))
    if len(batch) == 1000:
        pipe.lpush("bare", *batch)
        batch = []
        if i % 5000 == 4999:
            pipe.execute()
if batch:
    pipe.lpush("bare", *batch)
pipe.execute()
assert client.llen("bare") == count
client.delete("bare")
"""

BARE_LISTING = r"""
import glob, os, sys
found = sorted(glob.glob(os.path.join(sys.argv[1], "**", "*.txt"), recursive=True))
files = [path for path in found if os.path.isfile(path)]
assert len(files) == int(sys.argv[2]), len(files)
"""


def bare_listing(tree: Path) -> int:
    found = sorted(glob.glob(os.path.join(tree, "**", "*.txt"), recursive=True))
    return len([path for path in found if os.path.isfile(path)])


def write_tree(root: Path, count: int) -> None:
    for index in range(count):
        folder = root / f"box-{index // 1000:03d}"
        if index % 1000 == 0:
            folder.mkdir(parents=True, exist_ok=True)
        (folder / f"doc-{index:06d}.txt").write_text(f"Exhibit {index}: the parties agree.\n")


def timed(command: list[str], env: dict[str, str], cwd: Path, out: Path | None = None) -> tuple[float, float, str]:
    """(seconds, peak RSS in MB, stdout) of one whole process; a failure stops the benchmark."""
    out = out or cwd / "stdout.txt"
    with out.open("wb") as sink, (cwd / "stderr.txt").open("wb") as errors:
        started = time.perf_counter()
        process = subprocess.Popen(command, env=env, cwd=cwd, stdout=sink, stderr=errors)
        _, status, usage = os.wait4(process.pid, 0)
        seconds = time.perf_counter() - started
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode not in (0, 1):
        raise SystemExit(f"{' '.join(command[2:])} exited {process.returncode}: {(cwd / 'stderr.txt').read_text()[-2000:]}")
    return seconds, usage.ru_maxrss / 1024, out.read_text()


def stage_lists(client: redis.Redis) -> list[bytes]:
    return [key for key in client.scan_iter(count=1000) if client.type(key) == b"list"]


def messages_of(client: redis.Redis, ids: set[int]) -> tuple[int, int]:
    """(messages in all lists naming one of `ids`, messages in all lists)."""
    found = total = 0
    for key in stage_lists(client):
        for start in range(0, client.llen(key), 5000):
            for payload in client.lrange(key, start, start + 4999):
                total += 1
                marker = payload.find(b'"argsrepr": "(')
                if marker >= 0 and int(payload[marker + 14 : payload.index(b",", marker)]) in ids:
                    found += 1
    return found, total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--documents", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="legaldoc-scale-"))
    server, url = start_redis(work)
    client = redis.Redis.from_url(url)
    try:
        tree = work / "tree"
        write_tree(tree, args.documents)
        env = {k: v for k, v in os.environ.items() if not k.startswith("LEGALDOC_")}
        env.update(LEGALDOC_DATA_DIR=str(work / "data"), LEGALDOC_REDIS_URL=url, PYTHONPATH=str(Path(__file__).resolve().parents[1]))
        timed([*LEGALDOC, "db", "upgrade"], env, work)  # the database exists before the first round
        figures: dict[str, list[float]] = {}

        def add(name: str, value: float) -> None:
            figures.setdefault(name, []).append(value)

        # A batch of another project submitted first and left queued: cancel must not touch it.
        keep_folder = work / "keep"
        write_tree(keep_folder, 50)
        (work / "keep.yaml").write_text(f"project: keep\nname: keep\ndocuments:\n  - glob: '{keep_folder}/**/*.txt'\n")
        timed([*LEGALDOC, "submit", str(work / "keep.yaml")], env, work)
        _, keep_total = messages_of(client, set())
        message_size = len(client.lindex(stage_lists(client)[0], 0) or b"")
        left_after_cancel: list[int] = []
        for index in range(args.rounds):
            add("startup_help_s", timed([*LEGALDOC, "--help"], env, work)[0])
            add("startup_version_s", timed([*LEGALDOC, "--version"], env, work)[0])
            add("bare_lpush_s", timed([sys.executable, "-c", BARE_LPUSH, url, str(args.documents), str(message_size)], env, work)[0])
            add("bare_listing_s", timed([sys.executable, "-c", BARE_LISTING, str(tree), str(args.documents)], env, work)[0])
            manifest = work / f"round-{index}.yaml"
            manifest.write_text(f"project: scale-{index}\nname: scale-{index}\ndocuments:\n  - glob: '{tree}/**/*.txt'\n")
            started = time.perf_counter()
            assert bare_listing(tree) == args.documents
            add("bare_listing_in_process_s", time.perf_counter() - started)
            started = time.perf_counter()
            assert len(load_manifest(manifest).documents) == args.documents
            add("load_manifest_in_process_s", time.perf_counter() - started)
            seconds, peak, out = timed([*LEGALDOC, "submit", str(manifest), "--json"], env, work)
            submitted = json.loads(out)
            assert submitted["queued"] == args.documents, submitted
            add("submit_s", seconds)
            add("submit_peak_rss_mb", peak)
            batch = submitted["batch_id"]
            seconds, peak, out = timed([*LEGALDOC, "status", batch, "--docs", "--limit", "20"], env, work)
            assert out.count("\n") < 40, out
            add("status_docs_limit20_s", seconds)
            add("status_docs_peak_rss_mb", peak)
            seconds, _, out = timed([*LEGALDOC, "status", batch, "--docs", "--limit", "20", "--offset",
                                     str(args.documents // 2), "--json"], env, work)  # fmt: skip
            assert len(json.loads(out)["documents"]) == 20
            add("status_docs_offset_half_json_s", seconds)
            with_ids = json.loads(timed([*LEGALDOC, "status", batch, "--docs", "--limit", "0", "--json"], env, work)[2])
            ids = {row["document_id"] for row in with_ids["documents"]}
            assert len(ids) == args.documents
            before = client.info("commandstats")
            seconds, peak, _ = timed([*LEGALDOC, "cancel", batch], env, work)
            after = client.info("commandstats")
            script_us = sum(after[k]["usec"] - before.get(k, {"usec": 0})["usec"] for k in after if k.startswith("cmdstat_evalsha"))
            add("cancel_s", seconds)
            add("cancel_peak_rss_mb", peak)
            add("cancel_script_in_redis_s", script_us / 1e6)
            left, total = messages_of(client, ids)
            left_after_cancel.append(left)
            assert total == keep_total, (total, keep_total, (work / "stderr.txt").read_text()[-3000:])  # the other batch's messages all remain
    finally:
        server.terminate()
        server.wait()
        shutil.rmtree(work, ignore_errors=True)
    result: dict[str, float | int | list[int]] = {name: round(statistics.median(values), 3) for name, values in figures.items()}
    startup = float(result["startup_help_s"])
    result.update(documents=args.documents, rounds=args.rounds, message_bytes=message_size,
                  messages_left_after_cancel=left_after_cancel, other_batch_messages_kept=keep_total,
                  load_average=round(os.getloadavg()[0], 2))  # fmt: skip
    result["submit_over_lpush_plus_startup"] = round(float(result["submit_s"]) / (float(result["bare_lpush_s"]) + startup), 2)
    result["submit_minus_startup_over_lpush"] = round((float(result["submit_s"]) - startup) / float(result["bare_lpush_s"]), 2)
    result["load_manifest_over_bare_listing"] = round(float(result["load_manifest_in_process_s"]) /
                                                      float(result["bare_listing_in_process_s"]), 2)  # fmt: skip
    result["status_docs_over_startup"] = round(float(result["status_docs_limit20_s"]) / startup, 2)
    if args.json:
        json.dump(result, sys.stdout)
        print()
        return
    for name, value in result.items():
        print(f"{name:34} {value}")


if __name__ == "__main__":
    main()
