"""Nothing wedges a batch: `legaldoc run` interrupted (Ctrl-C, SIGTERM) or killed outright mid-batch
leaves every document in a state the next run moves on, and the next run of the same manifest
finishes; a batch is never "still running" for ever."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
from sqlalchemy import func, select

from legaldoc.lifecycle import UNFINISHED
from legaldoc.storage.db import Database
from legaldoc.storage.tables import Batch, Document
from tests.batchkit import nef_copies, write_manifest
from tests.test_cli import legaldoc

ISOLATED = {"LEGALDOC_REDIS_URL": "redis://127.0.0.1:1"}  # run must never need a shared Redis


def _start_run(manifest: Path, cwd: Path) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "legaldoc", "run", str(manifest), "--concurrency", "1", "--json"],
                            cwd=cwd, env={**os.environ, **ISOLATED}, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)  # fmt: skip


def _database(cwd: Path) -> Database:
    return Database(f"sqlite:///{cwd / '.legaldoc' / 'legaldoc.db'}")


def _wait_until_some_done(cwd: Path, process: subprocess.Popen[str], at_least: int = 3) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        assert process.poll() is None, process.communicate()
        if (cwd / ".legaldoc" / "legaldoc.db").exists():
            with _database(cwd).read() as session:
                done = session.scalar(select(func.count()).where(Document.status == "done"))
            if done and done >= at_least:
                return
        time.sleep(0.1)
    raise AssertionError("the run did not get going")


def _unfinished(cwd: Path) -> int:
    with _database(cwd).read() as session:
        return session.scalar(select(func.count()).where(Document.status.in_(UNFINISHED))) or 0


def _batches(cwd: Path) -> list[str]:
    with _database(cwd).read() as session:
        return list(session.scalars(select(Batch.status).order_by(Batch.created_at)))


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_interrupted_run_ends_its_batch_and_the_next_run_finishes(tmp_path, signum):
    """Given `run` of 40 court e-mails with a few done, When it gets Ctrl-C (or SIGTERM), Then it
    exits 130 with its batch cancelled and no document left waiting or running; the next `run` of
    the same manifest exits 0 with every document done."""
    manifest = write_manifest(tmp_path / "nightly.yaml", [{"glob": f"{nef_copies(tmp_path / 'docs', 40)}/*"}],
                              name="nightly")  # fmt: skip
    process = _start_run(manifest, tmp_path)
    _wait_until_some_done(tmp_path, process)
    process.send_signal(signum)
    out, err = process.communicate(timeout=120)
    assert process.returncode == 130, err
    assert "Traceback" not in err and "cancelled" in err
    assert _batches(tmp_path) == ["cancelled"] and _unfinished(tmp_path) == 0
    assert not (tmp_path / ".legaldoc" / "run" / "run.json").exists()

    again = legaldoc("run", str(manifest), "--json", cwd=tmp_path, env=ISOLATED)
    assert again.returncode == 0, again.stderr
    summary = json.loads(again.stdout)
    assert summary["status"] == "finished" and summary["succeeded"] + summary["skipped"] == 40
    assert _unfinished(tmp_path) == 0


def test_killed_run_is_cleaned_up_by_the_next_one(tmp_path):
    """Given `run` SIGKILLed mid-batch (its Redis and worker orphaned), When `run` of the same manifest
    starts again, Then it stops the orphans, ends the dead run's unfinished documents as cancelled,
    and finishes: every document done, nothing stuck, no process left behind."""
    manifest = write_manifest(tmp_path / "nightly.yaml", [{"glob": f"{nef_copies(tmp_path / 'docs', 40)}/*"}],
                              name="nightly")  # fmt: skip
    process = _start_run(manifest, tmp_path)
    _wait_until_some_done(tmp_path, process)
    record = json.loads((tmp_path / ".legaldoc" / "run" / "run.json").read_text())
    process.kill()
    process.communicate(timeout=30)
    orphans = [record["worker_pid"], record["redis_pid"]]

    again = legaldoc("run", str(manifest), "--json", cwd=tmp_path, env=ISOLATED)
    assert again.returncode == 0, again.stderr
    assert "died here before its batch" in again.stderr or _batches(tmp_path)[0] == "finished"
    summary = json.loads(again.stdout)
    assert summary["status"] == "finished" and summary["succeeded"] + summary["skipped"] == 40
    assert _unfinished(tmp_path) == 0 and _batches(tmp_path)[0] in ("cancelled", "finished")
    deadline = time.monotonic() + 30
    while any(psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE for p in orphans):
        assert time.monotonic() < deadline, "the dead run's worker or Redis is still running"
        time.sleep(0.2)


def test_a_second_run_in_the_same_folder_waits_its_turn(tmp_path):
    """While one `run` works in a data folder, another there exits 5 naming it, and touches nothing."""
    manifest = write_manifest(tmp_path / "m.yaml", [{"glob": f"{nef_copies(tmp_path / 'docs', 40)}/*"}])
    process = _start_run(manifest, tmp_path)
    try:
        _wait_until_some_done(tmp_path, process, at_least=1)
        second = legaldoc("run", str(manifest), cwd=tmp_path, env=ISOLATED)
        assert second.returncode == 5 and "another legaldoc run" in second.stderr and "Traceback" not in second.stderr
    finally:
        process.send_signal(signal.SIGINT)
        process.communicate(timeout=120)
