"""`legaldoc workers` as an operator runs it: detached workers on real queues, their heartbeats,
scaling through Celery remote control, graceful stops; and submit's warning about unserved queues."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import stat
import sys

import pytest

from legaldoc.config import load_settings
from legaldoc.services.workers import plan_scale, process_alive, start_detached
from legaldoc.state.workers import Heartbeat
from tests.batchkit import nef_copies, write_manifest
from tests.conftest import FAST_CLAIMS, settings_env
from tests.test_cli import legaldoc

STATUS_KEYS = {"name", "host", "pid", "queues", "concurrency", "active", "processed", "failed", "rss", "last_seen", "task_events",
               "started_at", "online"}


@pytest.fixture
def worker_env(tmp_path, redis_url):
    """The environment of CLI calls: this test's Redis and SQLite, heartbeats every half second;
    every worker still alive at the end is killed."""
    settings = load_settings(data_dir=tmp_path / ".legaldoc", redis_url=redis_url, heartbeat_interval=0.5,
                             **FAST_CLAIMS)  # fmt: skip
    env = settings_env(settings)
    yield env
    listed = legaldoc("workers", "status", "--json", cwd=tmp_path, env=env)
    for worker in json.loads(listed.stdout or "[]"):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(worker["pid"], signal.SIGKILL)


def _status(tmp_path, env) -> dict[str, dict]:
    result = legaldoc("workers", "status", "--json", cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stderr
    return {w["name"].split("@")[0]: w for w in json.loads(result.stdout)}


def test_start_status_scale_stop(tmp_path, worker_env):
    """Given two workers started detached on different queues, Then both show online with their queues
    and processes; When ocr is scaled to 3 and back to 1, Then the reported concurrency follows; When
    they are stopped, Then they show offline and their processes have exited."""
    env = worker_env
    first = legaldoc("workers", "start", "--detach", "--queue", "ocr", "--concurrency", "1", "--name", "ocr1", "--json",
                     cwd=tmp_path, env=env)  # fmt: skip
    assert first.returncode == 0, first.stderr
    second = legaldoc("workers", "start", "--detach", "-Q", "text", "-Q", "entity,graph", "-c", "2", "--name", "nlp1",
                      cwd=tmp_path, env=env)  # fmt: skip
    assert second.returncode == 0, second.stderr
    assert second.stdout.strip().startswith("nlp1@")

    workers = _status(tmp_path, env)
    assert set(workers) == {"ocr1", "nlp1"}
    assert all(set(w) >= STATUS_KEYS and w["online"] for w in workers.values())
    assert workers["ocr1"]["queues"] == ["ocr"] and workers["ocr1"]["concurrency"] == 1
    assert set(workers["nlp1"]["queues"]) == {"text", "entity", "graph"} and workers["nlp1"]["concurrency"] == 2
    assert workers["ocr1"]["rss"] > 10_000_000 and workers["ocr1"]["pid"] == json.loads(first.stdout)["pid"]

    grown = legaldoc("workers", "scale", "--queue", "ocr", "3", "--json", cwd=tmp_path, env=env)
    assert grown.returncode == 0, grown.stderr
    assert json.loads(grown.stdout)["concurrency"] == 3
    assert _status(tmp_path, env)["ocr1"]["concurrency"] == 3
    shrunk = legaldoc("workers", "scale", "--queue", "ocr", "1", cwd=tmp_path, env=env)
    assert shrunk.returncode == 0, shrunk.stderr
    assert "shrank ocr1@" in shrunk.stderr
    assert _status(tmp_path, env)["ocr1"]["concurrency"] == 1
    assert _status(tmp_path, env)["nlp1"]["concurrency"] == 2  # other queues untouched

    pids = [w["pid"] for w in _status(tmp_path, env).values()]
    stopped = legaldoc("workers", "stop", "--queue", "ocr", "--json", cwd=tmp_path, env=env)
    assert stopped.returncode == 0, stopped.stderr
    assert [n.split("@")[0] for n in json.loads(stopped.stdout)["stopped"]] == ["ocr1"]
    workers = _status(tmp_path, env)
    assert not workers["ocr1"]["online"] and workers["nlp1"]["online"]
    assert legaldoc("workers", "stop", "--name", workers["nlp1"]["name"], cwd=tmp_path, env=env).returncode == 0
    assert not any(w["online"] for w in _status(tmp_path, env).values())
    assert not [pid for pid in pids if process_alive(pid)]  # stop returns once they have exited


def test_scale_starts_a_worker_for_an_unserved_queue_and_stops_it_at_zero(tmp_path, worker_env):
    started = legaldoc("workers", "scale", "-Q", "graph", "2", cwd=tmp_path, env=worker_env)
    assert started.returncode == 0, started.stderr
    assert "started a worker on graph with 2 processes" in started.stderr
    (worker,) = _status(tmp_path, worker_env).values()
    assert worker["queues"] == ["graph"] and worker["concurrency"] == 2 and worker["online"]
    gone = legaldoc("workers", "scale", "-Q", "graph", "0", cwd=tmp_path, env=worker_env)
    assert gone.returncode == 0, gone.stderr
    assert not any(w["online"] for w in _status(tmp_path, worker_env).values())


def test_submit_warns_when_no_live_worker_consumes_a_needed_queue(tmp_path, worker_env):
    started = legaldoc("workers", "start", "-d", "-Q", "ocr,text", "-c", "1", cwd=tmp_path, env=worker_env)
    assert started.returncode == 0, started.stderr
    manifest = write_manifest(tmp_path / "m.yaml", [{"glob": f"{nef_copies(tmp_path / 'docs', 2)}/*"}], priority="high")
    submitted = legaldoc("submit", str(manifest), cwd=tmp_path, env=worker_env)
    assert submitted.returncode == 0, submitted.stderr
    assert "warning: no live worker consumes entity, graph, batch.high" in submitted.stderr


def test_bad_input_is_a_usage_error(tmp_path, worker_env):
    unknown = legaldoc("workers", "start", "--queue", "pdf", cwd=tmp_path, env=worker_env)
    assert unknown.returncode == 2 and "unknown queue(s): pdf" in unknown.stderr
    scale = legaldoc("workers", "start", "--autoscale", "2,5", cwd=tmp_path, env=worker_env)
    assert scale.returncode == 2 and "MIN <= MAX" in scale.stderr
    nothing = legaldoc("workers", "stop", cwd=tmp_path, env=worker_env)
    assert nothing.returncode == 2 and "--queue Q, --name NAME or --all" in nothing.stderr
    for result in (unknown, scale, nothing):
        assert "Traceback" not in result.stderr


def _beat(name: str, queues: list[str], concurrency: int, autoscale: list[int] | None = None) -> Heartbeat:
    import time

    return Heartbeat(name=name, host="h", pid=1, queues=queues, concurrency=concurrency, last_seen=time.time(),
                     autoscale=autoscale)  # fmt: skip


def test_plan_scale():
    workers = [_beat("a", ["ocr"], 4), _beat("b", ["ocr", "text"], 1), _beat("c", ["text"], 3)]
    assert plan_scale(workers, "ocr", 5) == []
    (grow,) = plan_scale(workers, "ocr", 8)
    assert (grow.kind, grow.worker, grow.count) == ("grow", "b", 3)
    shrink = plan_scale(workers, "ocr", 2)
    assert [(a.kind, a.worker, a.after) for a in shrink] == [("shrink", "a", 1)]
    one = plan_scale(workers, "ocr", 1)
    assert [(a.kind, a.worker) for a in one] == [("stop", "b"), ("shrink", "a")] and one[1].after == 1
    assert [(a.kind, a.worker) for a in plan_scale(workers, "ocr", 0)] == [("stop", "b"), ("stop", "a")]
    assert [(a.kind, a.after) for a in plan_scale(workers, "graph", 2)] == [("start", 2)]
    auto = plan_scale([_beat("d", ["ocr"], 1, [6, 2])], "ocr", 3)
    assert [(a.kind, a.after, a.minimum) for a in auto] == [("autoscale", 3, 2)]


def test_worker_logs_are_readable_by_their_group_only(tmp_path):
    """Logs name documents: 0640 files in a 0750 folder whatever the umask (a log shipper's group
    may read them), and ones an older version left readable to all are tightened."""
    folder = tmp_path / "workers"
    folder.mkdir(mode=0o755)
    (folder / "old_host.log").write_text("left by an older version\n")
    os.chmod(folder / "old_host.log", 0o644)
    previous = os.umask(0o022)
    try:
        started = [start_detached([sys.executable, "-c", "print('hello')"], os.environ, folder, name)
                   for name in ("old@host", "new@host")]  # fmt: skip
    finally:
        os.umask(previous)
    for detached in started:
        os.waitpid(detached.pid, 0)
        assert stat.S_IMODE(detached.output.stat().st_mode) == 0o640, detached.output
    assert stat.S_IMODE((folder / "old_host.log").stat().st_mode) == 0o640
    assert stat.S_IMODE(folder.stat().st_mode) == 0o750
    assert (folder / "new_host.out").read_text() == "hello\n"  # raw output beside the log the worker writes
    assert (folder / "old_host.log").read_text() == "left by an older version\n"


def test_a_run_worker_log_is_0640_whatever_the_umask(tmp_path):
    """`legaldoc run`'s worker (services.embedded.WorkerProcess) writes its log like a detached one."""
    from legaldoc.services.embedded import WorkerProcess

    previous = os.umask(0o022)
    try:
        worker = WorkerProcess({**os.environ, "LEGALDOC_REDIS_URL": "redis://127.0.0.1:1"}, log_path=tmp_path / "worker.log").start()
    finally:
        os.umask(previous)
    worker.stop(timeout=10)
    assert stat.S_IMODE((tmp_path / "worker.log").stat().st_mode) == 0o640
