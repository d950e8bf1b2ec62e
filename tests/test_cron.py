"""Unattended operation: a cron job (empty environment, another working directory) finds the same data
home as the workers; a worker serving another database makes `submit` fail at once, naming both;
a batch that makes no progress says why."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from legaldoc.services.embedded import WorkerProcess
from tests.batchkit import nef_copies, write_manifest
from tests.conftest import settings_env
from tests.test_cli import legaldoc


def _cron(args: list[str], home: Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    """As cron runs a command: `env -i PATH=/usr/bin:/bin HOME=...`, in the home folder."""
    return subprocess.run(["env", "-i", "PATH=/usr/bin:/bin", f"HOME={home}", sys.executable, "-m", "legaldoc", *args],
                          cwd=cwd, capture_output=True, text=True, timeout=300)  # fmt: skip


def test_submit_wait_under_cron_uses_the_workers_data_home(tmp_path, redis_url):
    """Given a worker started by the user (data home by default) and a nightly manifest, When cron
    runs `submit --wait` with an empty environment from $HOME, Then the batch finishes: both found
    the same database, under the user's data folder, not the working directory."""
    home = tmp_path / "home"
    home.mkdir()
    manifest = write_manifest(tmp_path / "nightly.yaml", [{"glob": f"{nef_copies(tmp_path / 'docs', 6)}/*"}], name="nightly")
    env = {"PATH": "/usr/bin:/bin", "HOME": str(home), "LEGALDOC_REDIS_URL": redis_url}
    with WorkerProcess(env, concurrency=1, log_path=tmp_path / "worker.log"):
        result = _cron(["submit", str(manifest), "--wait", "--timeout", "4m", "--json", "--redis-url", redis_url],
                       home, cwd=home)  # fmt: skip
    assert result.returncode == 0, (result.stderr, (tmp_path / "worker.log").read_text()[-2000:])
    assert json.loads(result.stdout)["succeeded"] == 6
    assert list(home.glob(".local/share/legaldoc/legaldoc.db")) and not list(home.glob("*.db"))


@pytest.mark.any_database  # the refusal compares identities; test_a_worker_refuses... keeps the PostgreSQL run
def test_workers_of_another_database_make_submit_fail_at_once(batch_settings, start_worker, tmp_path):
    """Given the only live worker serves another data folder's database, When a batch is submitted
    here, Then submit exits 3 in one line naming both databases, and publishes nothing."""
    theirs = batch_settings.model_copy(update={"data_dir": tmp_path / "theirs", "database_url": None})
    start_worker(concurrency=1, settings=theirs)
    ours = settings_env(batch_settings)
    manifest = write_manifest(tmp_path / "m.yaml", [{"glob": f"{nef_copies(tmp_path / 'docs', 2)}/*"}])
    status = None
    for _ in range(100):  # the worker's first heartbeat
        status = legaldoc("workers", "status", "--json", cwd=tmp_path, env=ours)
        if json.loads(status.stdout or "[]"):
            break
        time.sleep(0.1)
    result = legaldoc("submit", str(manifest), cwd=tmp_path, env=ours)
    assert result.returncode == 3, result.stderr
    assert "serve the database at" in result.stderr and str(tmp_path / "theirs") in result.stderr
    assert batch_settings.resolved_database_url.split("///")[-1] in result.stderr and "Traceback" not in result.stderr
    listed = json.loads(legaldoc("status", "--json", cwd=tmp_path, env=ours).stdout)
    assert listed == []


@pytest.mark.any_database  # the wait is read from Redis
def test_a_batch_without_workers_says_why_it_waits(batch_settings, tmp_path):
    """Given no worker at all, When `submit --wait` waits past the stall warning, Then stderr says the
    batch makes no progress because no live worker consumes its queues, before the timeout (exit 4)."""
    env = settings_env(batch_settings.model_copy(update={"stall_warning": 1.0}))
    manifest = write_manifest(tmp_path / "m.yaml", [{"glob": f"{nef_copies(tmp_path / 'docs', 2)}/*"}])
    result = legaldoc("submit", str(manifest), "--wait", "--timeout", "4s", cwd=tmp_path, env=env)
    assert result.returncode == 4, result.stderr
    assert "has made no progress" in result.stderr and "no live worker consumes ocr" in result.stderr


def test_a_worker_refuses_a_message_of_another_database_loudly(batch_settings, start_worker, tmp_path):
    """Given a message stamped with another database's identity, When a worker receives it, Then it
    runs nothing and the dashboard's newest errors say which databases disagree (CONFIGURATION)."""
    from legaldoc.models import Stage
    from legaldoc.services.wiring import Runtime
    from legaldoc.state.broker import Broker

    rt = Runtime(batch_settings)
    Broker(rt.client("broker"), rt.keys, database=lambda: "0000-another-database").publish_stage([(1, Stage.EXTRACT, 1)], 5)
    start_worker(concurrency=1)
    deadline = time.monotonic() + 60
    while not (errors := rt.client("state").lrange(rt.keys.recent_errors, 0, -1)):
        assert time.monotonic() < deadline, "the worker said nothing"
        time.sleep(0.2)
    note = json.loads(errors[0].decode().split("|", 2)[2])
    assert note["category"] == "CONFIGURATION" and "belongs to database 0000-ano" in note["message"]
    assert rt.database.identity[:8] in note["message"]
