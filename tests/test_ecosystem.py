"""Celery's own tools work on legaldoc's workers: `celery -A legaldoc inspect/control` against a
real worker, with the installation's settings (prefix, priorities) coming from the module-level app."""

from __future__ import annotations

import subprocess
import sys
import time
from collections import Counter

import pytest
from sqlalchemy import select

from legaldoc.lifecycle import AttemptOutcome
from legaldoc.models import STAGES, Stage
from legaldoc.storage.tables import StageRun
from legaldoc.tasks.app import create_app
from tests.batchkit import connect, nef_copies, write_manifest
from tests.conftest import settings_env

COMMANDS = {
    "inspect ping": "pong",
    "inspect stats": '"pool"',
    "inspect active": "empty",
    "inspect active_queues": "'name': 'ocr'",
    "inspect registered": "legaldoc.extract",
    "control add_consumer extra.queue": "add consumer extra.queue",
    "control pool_grow 1": "pool will grow",
}


def _celery(env: dict[str, str], command: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "celery", "-A", "legaldoc", *command.split(), "--timeout=5"],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip


@pytest.mark.any_database
def test_stock_celery_inspect_and_control_reach_the_workers(batch_settings, start_worker, tmp_path):
    env = settings_env(batch_settings)
    worker = start_worker(concurrency=1)
    ping = subprocess.run([sys.executable, "-m", "celery", "-A", "legaldoc", "inspect", "ping", "--timeout=2"],
                          env=env, capture_output=True, text=True, timeout=120)  # fmt: skip
    deadline = time.monotonic() + 60
    while "pong" not in ping.stdout:  # the worker may still be starting
        assert time.monotonic() < deadline, (ping.stdout, ping.stderr, worker.log_tail())
        time.sleep(1)
        ping = subprocess.run([sys.executable, "-m", "celery", "-A", "legaldoc", "inspect", "ping", "--timeout=2"],
                              env=env, capture_output=True, text=True, timeout=120)  # fmt: skip
    running = {command: _celery(env, command) for command in COMMANDS}
    for command, process in running.items():
        out, err = process.communicate(timeout=120)
        assert process.returncode == 0 and COMMANDS[command] in out, (command, out, err)
    cancel = subprocess.run([sys.executable, "-m", "celery", "-A", "legaldoc", "control", "cancel_consumer",
                             "extra.queue"], env=env, capture_output=True, text=True, timeout=120)  # fmt: skip
    assert "no longer consuming from extra.queue" in cancel.stdout, cancel
    assert worker.log_path is not None
    log = worker.log_path.read_text()
    assert "Traceback" not in log and "Control command error" not in log, log


def _stage_tasks(app, worker_name: str) -> dict[str, int]:
    """Celery's own count of the stage tasks a worker ran (`inspect stats`, its ``total``)."""
    replies = app.control.inspect(destination=[worker_name], timeout=5).stats() or {}
    total = replies.get(worker_name, {}).get("total", {})
    return {name.removeprefix("legaldoc."): count for name, count in total.items() if name in STAGE_TASK_NAMES}


STAGE_TASK_NAMES = {f"legaldoc.{stage.value}" for stage in STAGES}


@pytest.mark.any_database
def test_a_documents_stages_run_in_one_task_until_a_monitor_turns_task_events_on(batch_settings, start_worker, tmp_path):
    """Given a worker that consumes every queue and sends no task events (the default), When a batch
    of 3 court e-mails runs, Then each document's stages ran in the task of its first stage: Celery
    counts 3 extract tasks and no other stage task, yet every stage had its own claim and run (5 runs
    per document, attempt 1, done), the heartbeat counts every stage as processed, and the live state
    matches the database. When a monitor turns task
    events on with the stock `celery control enable_events` (what Flower sends every 5 s), Then the
    worker's heartbeat says so and the next batch runs each stage as its own task."""
    settings = batch_settings.model_copy(update={"heartbeat_interval": 0.5})
    worker = start_worker(concurrency=2, settings=settings)
    cluster = connect(settings)
    app = create_app(settings)
    first = cluster.submit(write_manifest(tmp_path / "a.yaml", [{"glob": f"{nef_copies(tmp_path / 'a', 3)}/*"}], name="a"))
    assert cluster.wait(first.batch_id, timeout=90)["succeeded"] == 3
    name = _until(lambda: next((h.name for h in cluster.rt.registry.online()), None), 30, "no heartbeat")
    assert _stage_tasks(app, name) == {"extract": 3}, worker.log_tail()
    # its heartbeat counts each chained stage as processed, like a task
    _until(lambda: all(h.processed >= 3 * len(STAGES) for h in cluster.rt.registry.online()), 30, "processed")
    with cluster.database.read() as session:
        runs = session.execute(select(StageRun.document_id, StageRun.stage, StageRun.attempt, StageRun.outcome)).all()
    assert sorted(Counter(r.document_id for r in runs).values()) == [len(STAGES)] * 3, runs
    assert {(r.stage, r.attempt, r.outcome) for r in runs} == {(s.value, 1, AttemptOutcome.DONE) for s in STAGES}, runs
    assert cluster.counts(first.batch_id)[0] == cluster.counts(first.batch_id)[1]

    subprocess.run([sys.executable, "-m", "celery", "-A", "legaldoc", "control", "enable_events", "--timeout=5"],
                   env=settings_env(settings), capture_output=True, text=True, timeout=120, check=True)  # fmt: skip
    _until(lambda: all(h.extra.get("task_events") for h in cluster.rt.registry.online()), 30,
           "the heartbeat never said task events are on")  # fmt: skip
    second = cluster.submit(write_manifest(tmp_path / "b.yaml", [{"glob": f"{nef_copies(tmp_path / 'b', 3, 3)}/*"}], name="b"))
    assert cluster.wait(second.batch_id, timeout=90)["succeeded"] == 3
    assert _stage_tasks(app, name) == {"extract": 6} | {s.value: 3 for s in STAGES if s is not Stage.EXTRACT}
    assert worker.log_path is not None and "Traceback" not in worker.log_path.read_text()


def _until(check, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while not (value := check()):
        assert time.monotonic() < deadline, what
        time.sleep(0.1)
    return value


def test_a_task_chains_only_stages_of_queues_its_worker_consumes_and_only_without_task_events(batch_settings, monkeypatch):
    """Outside a worker nothing chains; a worker of the ocr queue alone chains nothing (and asks
    Redis nothing); one of ocr and text chains the chunk stage, probing those two queues; with
    `worker_chain_stages` off, or while the worker sends task events, nothing chains."""
    from legaldoc.tasks import stats
    from legaldoc.tasks.app import chain

    for name in ("_failed", "_chained", "_task_events"):
        monkeypatch.setattr(stats, name, None)  # restored after: this process is no worker
    app = create_app(batch_settings)
    stats.create(task_events=False)
    assert chain(app, batch_settings, "ocr") is None
    app.legaldoc_queues = frozenset({"ocr", "cleanup"})
    assert chain(app, batch_settings, "ocr") is None
    app.legaldoc_queues = frozenset({"ocr", "text", "cleanup"})
    made = chain(app, batch_settings, "ocr")
    assert made is not None and made.stages == {Stage.CHUNK} and made.queues == {"ocr", "text"}
    assert made.allows(Stage.CHUNK, batch_settings) and not made.allows(Stage.ENTITIES, batch_settings)
    assert chain(app, batch_settings.model_copy(update={"worker_chain_stages": False}), "ocr") is None
    stats.set_task_events(True)
    assert chain(app, batch_settings, "ocr") is None
