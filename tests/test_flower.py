"""Flower, Celery's monitor, understands legaldoc's tasks: a real worker and a real `celery -A legaldoc
flower` over the test's Redis, a batch where one document fails for good and one is retried, and
Flower's HTTP API checked for what a monitoring tool reads (workers, queue lengths, task states,
each document's task tree)."""

from __future__ import annotations

import base64
import json
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis
import requests
from sqlalchemy import select

from legaldoc.models import STAGES, Stage
from legaldoc.queues import stage_task
from legaldoc.storage.tables import Document
from tests.batchkit import connect, nef_copies, write_manifest
from tests.conftest import _free_port, settings_env

STAGE_TASKS = {stage_task(stage): index for index, stage in enumerate(STAGES)}


@pytest.fixture
def flower(tmp_path: Path) -> Iterator[Callable[[dict[str, str]], str]]:
    """Factory: `celery -A legaldoc flower` on a free port with the settings' environment; stopped at teardown."""
    started: list[subprocess.Popen[bytes]] = []

    def start(env: dict[str, str]) -> str:
        port = _free_port()
        log = open(tmp_path / "flower.log", "ab")  # noqa: SIM115
        env = env | {"FLOWER_UNAUTHENTICATED_API": "true"}
        started.append(subprocess.Popen([sys.executable, "-m", "celery", "-A", "legaldoc", "flower", "--address=127.0.0.1",
                                         f"--port={port}"], env=env, stdout=log, stderr=subprocess.STDOUT))  # fmt: skip
        log.close()
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while True:
            try:
                if requests.get(f"{url}/healthcheck", timeout=2).ok:
                    return url
            except requests.RequestException:
                pass
            assert time.monotonic() < deadline and started[-1].poll() is None, (tmp_path / "flower.log").read_text()
            time.sleep(0.1)

    yield start
    for process in started:
        process.terminate()
        process.wait(10)


def _until(check, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        assert time.monotonic() < deadline, what
        time.sleep(0.1)


@pytest.mark.any_database
def test_flower_shows_workers_queues_and_each_documents_task_tree(batch_settings, start_worker, flower, tmp_path):
    """Given Flower watching the installation, When a batch of two documents runs where the entity
    provider throttles both (Retry-After) and then answers one and throttles the other past its
    attempts, Then Flower lists the worker and the stage queues with their lengths, shows each first
    entities attempt RETRY, the failed document's last attempt FAILURE and the other's SUCCESS, every
    task sent (the broker's task-sent events), and one tree per document: one root_id shared by all its
    tasks, each task's parent_id the task before it, retries = attempt - 1."""
    settings = batch_settings.model_copy(update={
        "entity_provider": "failing", "failing_category": "RATE_LIMIT", "failing_attempts": 5,
        "failing_retry_after": 1.5, "max_attempts": 1,  # a rate limit gets 2 attempts
        "worker_task_events": True,  # from the worker's start: Flower's own enable_events may come 5 s late
    })  # fmt: skip
    url = flower(settings_env(settings))
    client = redis.Redis.from_url(settings.redis_url)
    _until(lambda: client.execute_command("PUBSUB", "NUMPAT") > 0, 20, "Flower never subscribed to the task events")

    cluster = connect(settings)
    manifest = write_manifest(tmp_path / "m.yaml", [{"glob": f"{nef_copies(tmp_path / 'docs', 2)}/*"}])
    submitted = cluster.submit(manifest)
    lengths = requests.get(f"{url}/api/queues/length", timeout=10).json()["active_queues"]
    queues = {q["name"]: q["messages"] for q in lengths}
    assert {"ocr", "text", "entity", "graph"} <= set(queues) and queues["ocr"] == 2, queues  # our prefix, our priorities

    worker = start_worker(concurrency=2, settings=settings)
    faults = settings.data_dir / "faults"  # the provider's count of calls per document text
    counters = _until(lambda: sorted(faults.glob("*")) if len(list(faults.glob("*"))) == 2 else None, 60,
                      "the entities stage never ran for both documents")  # fmt: skip
    with counters[0].open("ab") as counter:  # this document's retry is answered; the other's is throttled again
        counter.write(b"x" * 4)
    final = cluster.wait(submitted.batch_id, timeout=60)
    assert (final["succeeded"], final["failed"]) == (1, 1), final
    with cluster.database.read() as session:
        status = {d.id: d.status for d in session.scalars(select(Document).where(Document.batch_id == submitted.batch_id))}

    workers = requests.get(f"{url}/api/workers", params={"refresh": 1}, timeout=20).json()
    assert any(name.startswith("legaldoc-") and name.endswith(f"@{socket.gethostname()}") for name in workers), workers

    def tasks_settled() -> dict | None:
        tasks = requests.get(f"{url}/api/tasks", timeout=10).json()
        stage_tasks = [t for t in tasks.values() if t["name"] in STAGE_TASKS]
        done = [t for t in stage_tasks if t["state"] in ("SUCCESS", "FAILURE")]
        # the succeeded document: every stage; the failed one: up to its entities stage
        return tasks if len(done) == len(STAGES) + STAGES.index(Stage.ENTITIES) + 1 else None

    tasks = _until(tasks_settled, 15, "Flower never saw every stage task end")
    trees: dict[int, list[dict]] = {}
    for task in tasks.values():
        if task["name"] in STAGE_TASKS:
            document_id, _, attempt = eval(task["args"])[:3]  # noqa: S307 (the argsrepr of our own ids)
            trees.setdefault(document_id, []).append(task | {"attempt": attempt})
    assert set(trees) == set(status), (trees.keys(), status)
    for document_id, tree in trees.items():
        tree.sort(key=lambda t: (STAGE_TASKS[t["name"]], t["attempt"]))
        states = [(t["name"].removeprefix("legaldoc."), t["attempt"], t["state"]) for t in tree]
        entities = [state for name, _, state in states if name == "entities"]
        if status[document_id] == "failed":
            assert entities == ["RETRY", "FAILURE"] and states[-1][0] == "entities", states
            assert "RATE_LIMIT" in tree[-1]["exception"] and "Traceback" not in tree[-1]["exception"], tree[-1]
        else:
            assert entities == ["RETRY", "SUCCESS"] and len(tree) == len(STAGES) + 1, states
            assert all(state == "SUCCESS" for name, _, state in states if name != "entities"), states
        root = tree[0]
        assert root["root_id"] == root["uuid"] and root["parent_id"] is None, root
        for previous, task in zip(tree, tree[1:], strict=False):
            assert (task["root_id"], task["parent_id"]) == (root["uuid"], previous["uuid"]), (previous, task)
        assert all(t["retries"] == t["attempt"] - 1 for t in tree), states
        assert all(t["sent"] for t in tree), [t["uuid"] for t in tree if not t["sent"]]  # task-sent events
    unacked = [json.loads(v)[0]["headers"]["task"] for v in client.hvals(f"{settings.redis_prefix}unacked")]
    assert not set(unacked) & set(STAGE_TASKS), unacked  # FAILURE and RETRY settled their message (acks_late)
    assert worker.log_path is not None and "Traceback" not in worker.log_path.read_text()


def _pubsub_messages(pubsub, count: int) -> list[tuple[str, dict]]:
    received = []
    deadline = time.monotonic() + 10
    while len(received) < count and time.monotonic() < deadline:
        message = pubsub.get_message(timeout=0.5)
        if message and message["type"] == "pmessage":
            received.append((message["channel"].decode(), json.loads(message["data"])))
    return received


@pytest.mark.any_database
def test_the_broker_sends_the_task_sent_event_celery_would_and_only_to_a_listener(batch_settings):
    """The task-sent event our broker renders is the one a `celery.events.Dispatcher` of the app
    publishes (same channel under global_keyprefix and the fanout prefix, same envelope, same event
    fields), with the message's lineage; and with nobody listening, a bulk publish sends one event."""
    from legaldoc.state.broker import Broker, Lineage
    from legaldoc.state.keys import Keys
    from legaldoc.tasks.app import create_app

    client = redis.Redis.from_url(batch_settings.redis_url_for("broker"))
    broker = Broker(client, Keys(batch_settings.redis_prefix), database=lambda: "db-1")
    client.config_resetstat()
    assert broker.publish_stage([(index, Stage.EXTRACT, 1) for index in range(1000)], 5) == 1000
    assert client.info("commandstats")["cmdstat_publish"]["calls"] == 1  # nobody listens: one event, not 1000

    pubsub = client.pubsub()
    pubsub.psubscribe("*")
    _until(lambda: pubsub.get_message(timeout=0.1), 5, "no subscription")
    app = create_app(batch_settings)
    with app.connection_for_write() as connection:
        dispatcher = app.events.Dispatcher(connection, enabled=True)
        dispatcher.send("task-sent", uuid="celery-id", name="legaldoc.entities", args="(7,)", kwargs="{}", retries=1,
                        eta=None, expires=None, queue="entity", exchange="", routing_key="entity", root_id="root-id",
                        parent_id="parent-id")  # fmt: skip
        dispatcher.flush()
    ((celery_channel, celery_event),) = _pubsub_messages(pubsub, 1)
    broker.events.until = 0  # the listener is asked again
    broker.publish_stage([(7, Stage.ENTITIES, 2)], 5, parent=Lineage("parent-id", "root-id"))
    ((channel, event),) = _pubsub_messages(pubsub, 1)
    assert channel == celery_channel == f"{batch_settings.redis_prefix}/0.celeryev/task.sent"

    def shape(envelope: dict) -> dict:
        properties = envelope["properties"] | {"delivery_tag": None}
        return envelope | {"body": None, "headers": envelope["headers"].keys(), "properties": properties}

    assert shape(event) == shape(celery_event)
    body, celery_body = (json.loads(base64.b64decode(e["body"])) for e in (event, celery_event))
    assert body.keys() == celery_body.keys()
    assert (body["type"], body["name"], body["queue"], body["routing_key"], body["retries"], body["root_id"],
            body["parent_id"], body["uuid"]) == ("task-sent", "legaldoc.entities", "entity", "entity", 1, "root-id",
                                                 "parent-id", event["properties"]["delivery_tag"])  # fmt: skip
    (key,) = [k for k in Keys(batch_settings.redis_prefix).queue_lists("entity") if client.llen(k)]
    headers = json.loads(client.lpop(key))["headers"]
    assert (headers["id"], headers["retries"], headers["root_id"], headers["parent_id"]) == (
        body["uuid"], 1, "root-id", "parent-id")
