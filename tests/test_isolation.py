"""Installations sharing one Redis (issue F8): every key and pub/sub channel, the broker's too, is
under the installation's `redis_prefix`, so one installation's workers never see another's messages."""

from __future__ import annotations

import threading
import time
from contextlib import ExitStack
from pathlib import Path

import psutil
import pytest
import redis
from kombu import Queue as KombuQueue
from sqlalchemy import select

from legaldoc.config import Settings, SettingsError, load_settings
from legaldoc.queues import CONSUME_ORDER, PRIORITY_STEPS, Queue, broker_priority
from legaldoc.services import batches as service
from legaldoc.services.embedded import WorkerProcess
from legaldoc.services.wiring import Runtime
from legaldoc.state.broker import Message
from legaldoc.storage.tables import StageRun
from legaldoc.tasks.app import create_app
from legaldoc.tasks.control import WorkerControl
from tests.batchkit import connect, nef_copies, write_manifest
from tests.conftest import FAST_CLAIMS, settings_env

DATABASES = range(5)  # broker, result, cache, ratelimit, state: the same numbers for every installation


class Channels:
    """Every pub/sub channel anything publishes on while it listens (PSUBSCRIBE *)."""

    def __init__(self, url: str) -> None:
        self.seen: set[str] = set()
        self._pubsub = redis.Redis.from_url(url).pubsub()
        self._pubsub.psubscribe("*")
        self._thread = threading.Thread(target=self._listen, daemon=True)
        self._stop = threading.Event()

    def _listen(self) -> None:
        while not self._stop.is_set():
            message = self._pubsub.get_message(timeout=0.2)
            if message and message["type"] == "pmessage":
                self.seen.add(message["channel"].decode())

    def __enter__(self) -> Channels:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(5)
        self._pubsub.close()


def _all_keys(url: str) -> dict[int, list[str]]:
    return {db: sorted(k.decode() for k in redis.Redis.from_url(url, db=db).scan_iter()) for db in DATABASES}


def _installation(tmp_path: Path, redis_url: str, prefix: str) -> Settings:
    return load_settings(data_dir=tmp_path / prefix.strip(":") / ".legaldoc", redis_url=redis_url, redis_prefix=prefix,
                         **FAST_CLAIMS)  # fmt: skip


def test_every_broker_key_and_channel_is_under_the_prefix(redis_url, tmp_path):
    """Given an installation's prefix, When Celery and our bulk publisher send to every queue, a
    consumer holds a message unacknowledged and remote control pings, Then every Redis key (in every
    database) and every pub/sub channel starts with the prefix, and both publishers fill the same lists."""
    prefix = "acme-7:"
    settings = _installation(tmp_path, redis_url, prefix)
    rt = Runtime(settings)
    app = create_app(settings)
    with ExitStack() as stack:
        stack.callback(app.close)
        channels = stack.enter_context(Channels(redis_url))
        connection = stack.enter_context(app.connection_for_write())
        channel = connection.default_channel
        assert channel.global_keyprefix == prefix
        for queue in Queue:  # the one naming function agrees with kombu's, list by list
            assert rt.keys.queue_lists(queue) == [prefix + channel._q_for_pri(queue.value, step) for step in PRIORITY_STEPS]
        assert app.conf.result_backend_transport_options["global_keyprefix"] == prefix

        for queue in CONSUME_ORDER:
            app.send_task("legaldoc.sweep", queue=queue.value, priority=broker_priority(7))
        rt.broker.publish(Message("legaldoc.sweep", (), queue.value, 7) for queue in CONSUME_ORDER)
        assert rt.broker.depths() == {queue.value: 2 for queue in Queue}
        assert {q: depth for q, (depth, _) in rt.broker.queue_stats().items()} == {queue.value: 2 for queue in Queue}

        held = connection.SimpleQueue(KombuQueue(Queue.OCR.value, routing_key=Queue.OCR.value)).get(timeout=5)
        assert app.control.ping(timeout=0.3) == []  # a broadcast on the pidbox, a reply queue: no worker here
        time.sleep(0.3)
        everything = _all_keys(redis_url)
        held.ack()
    unprefixed = {db: [k for k in keys if not k.startswith(prefix)] for db, keys in everything.items()}
    assert unprefixed == {db: [] for db in DATABASES}
    broker_keys = everything[0]
    held_keys = {f"{prefix}unacked", f"{prefix}unacked_index", f"{prefix}_kombu.binding_deadlines"}  # the last: the reply queue's
    assert held_keys <= set(broker_keys) and f"{prefix}ocr:2" in broker_keys
    assert channels.seen and all(c.startswith(prefix) for c in channels.seen), channels.seen
    assert any(".pidbox" in c for c in channels.seen) and any("celeryev" in c for c in channels.seen)


def test_a_prefix_with_a_redis_pattern_character_is_refused():
    for bad in ("acme*", "a?b:", "[x]:", "two words:"):
        with pytest.raises(SettingsError, match="redis-prefix"):
            load_settings(redis_prefix=bad)
    assert load_settings(redis_prefix="acme.prod-2:").redis_prefix == "acme.prod-2:"


def test_two_installations_share_one_redis_without_touching_each_others_messages(redis_url, tmp_path):
    """F8. Given two installations (own data folder and database, prefixes inst-a: and inst-b:) on
    the same redis-server and the same database numbers, each with its own worker, When both submit
    a batch at once, Then each batch finishes with every document done by its own worker, nobody
    refuses a foreign message, no key or channel outside the two prefixes exists, and remote control
    of each installation reaches only its own worker."""
    started = time.monotonic()
    prefixes = ("inst-a:", "inst-b:")
    installations = {p: _installation(tmp_path, redis_url, p) for p in prefixes}
    clusters = {p: connect(s) for p, s in installations.items()}
    names = {p: f"iso-{p.strip(':')}@test" for p in prefixes}
    trees: dict[str, set[int]] = {p: set() for p in prefixes}
    with ExitStack() as stack, Channels(redis_url) as channels:
        workers = {}
        for p, settings in installations.items():
            worker = WorkerProcess(settings_env(settings), concurrency=1, name=names[p], loglevel="INFO",
                                   log_path=tmp_path / f"worker-{p.strip(':')}.log").start()  # fmt: skip
            stack.callback(worker.stop, 20)
            workers[p] = worker
        batches = {}
        for index, p in enumerate(prefixes):
            folder = nef_copies(tmp_path / f"docs-{p.strip(':')}", 3, offset=3 * index)
            manifest = write_manifest(tmp_path / f"{p.strip(':')}.yaml", [{"glob": f"{folder}/*"}], name=f"batch-{p}")
            batches[p] = clusters[p].submit(manifest).batch_id

        deadline = time.monotonic() + 60
        final: dict[str, dict] = {}
        while len(final) < len(prefixes):
            for p in prefixes:
                tree = psutil.Process(workers[p].pid)
                trees[p] |= {tree.pid, *(child.pid for child in tree.children(recursive=True))}
                errors = clusters[p].state.client.lrange(clusters[p].rt.keys.recent_errors, 0, -1)
                refusals = [e for e in errors if b"belongs to database" in e]
                assert not refusals, f"a worker of {p} refused another installation's message: {refusals[0]!r}"
                status = service.batch_status(clusters[p].rt, batches[p]).as_json()
                if status["status"] == "finished":
                    final[p] = status
            assert time.monotonic() < deadline, f"the batches did not finish: {final}; logs: {workers[prefixes[0]].log_tail()}"
            time.sleep(0.2)

        pings = {p: WorkerControl(installations[p], timeout=1.0) for p in prefixes}
        answered = {p: control.ping() for p, control in pings.items()}
        for control in pings.values():
            control.close()
        listed = {p: sorted(w.name for w in clusters[p].rt.registry.online()) for p in prefixes}
        everything = _all_keys(redis_url)
    elapsed = time.monotonic() - started

    for p in prefixes:
        assert (final[p]["total"], final[p]["succeeded"]) == (3, 3), final[p]
        other = next(q for q in prefixes if q != p)
        with clusters[p].database.read() as session:
            runners = {int(worker.rpartition(":")[2]) for worker in session.scalars(select(StageRun.worker))}
        assert runners and runners <= trees[p] and not runners & trees[other], (p, runners, trees)
        log = workers[p].log_path.read_text() if workers[p].log_path else ""
        assert "belongs to database" not in log and "'foreign'" not in log  # refuse_foreign's line, the task's result
        assert answered[p] == [names[p]] and listed[p] == [names[p]]
    outside = {db: [k for k in keys if not k.startswith(prefixes)] for db, keys in everything.items()}
    assert outside == {db: [] for db in DATABASES}
    for p in prefixes:
        assert any(k.startswith(f"{p}_kombu.binding.") for k in everything[0])
        assert any(c.startswith(f"{p}/0.celeryev") for c in channels.seen)
    assert all(c.startswith(prefixes) for c in channels.seen), channels.seen
    print(f"\nF8 isolation: 2 installations x 3 documents on one redis-server (databases 0-4 shared) in {elapsed:.1f} s; "
          f"{sum(map(len, everything.values()))} keys and {len(channels.seen)} channels, all under their prefix; "
          f"0 foreign refusals; ping answers a={answered['inst-a:']} b={answered['inst-b:']}")  # fmt: skip
