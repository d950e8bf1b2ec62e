"""Logs: -v/-q/--log-format anywhere on the command line, JSON lines with the ids of the work,
worker logs rotated by size while forked pool processes keep writing."""

from __future__ import annotations

import io
import json
import logging
import os
import stat
import subprocess
import sys

import pytest

from legaldoc.cli.main import hoist_global_options
from legaldoc.logs import LogFormat, configure, log_context, verbosity
from legaldoc.services.embedded import WorkerProcess
from legaldoc.services.workers import worker_command
from tests.batchkit import connect, write_manifest
from tests.conftest import settings_env


def test_log_flags_are_read_wherever_they_stand():
    assert hoist_global_options(["status", "B", "-v", "--json"]) == ["-v", "status", "B", "--json"]
    assert hoist_global_options(["submit", "m.yaml", "--log-format", "json", "-vv", "--wait"]) == [
        "--log-format", "json", "-vv", "submit", "m.yaml", "--wait"]  # fmt: skip
    assert hoist_global_options(["run", "--log-format=json", "x", "--", "-v"]) == ["--log-format=json", "run", "x", "--", "-v"]
    assert hoist_global_options(["search", "-verbatim"]) == ["search", "-verbatim"]  # not a run of v's
    assert [verbosity(0, False), verbosity(1, False), verbosity(3, False), verbosity(2, True)] == [
        "WARNING", "INFO", "DEBUG", "ERROR"]  # fmt: skip


def test_json_lines_carry_the_ids_of_the_work():
    stream = io.StringIO()
    configure("INFO", LogFormat.JSON, stream=stream)
    try:
        log = logging.getLogger("legaldoc.test")
        with log_context(batch_id="b1", document_id=7, stage="extract", attempt=2):
            log.warning("stage failed", extra={"category": "DATA", "duration": 0.25})
            try:
                raise ValueError("boom")
            except ValueError:
                log.exception("with a traceback")
        log.info("outside")
        log.debug("below the level")
    finally:
        configure("WARNING", LogFormat.TEXT)
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert [line["message"] for line in lines] == ["stage failed", "with a traceback", "outside"]
    first = lines[0]
    assert first["level"] == "warning" and first["logger"] == "legaldoc.test" and first["ts"].endswith("Z")
    assert {k: first[k] for k in ("batch_id", "document_id", "stage", "attempt", "category", "duration")} == {
        "batch_id": "b1", "document_id": 7, "stage": "extract", "attempt": 2, "category": "DATA", "duration": 0.25}  # fmt: skip
    assert lines[1]["error"] == "ValueError" and "boom" in lines[1]["traceback"]
    assert "batch_id" not in lines[2]


def test_the_cli_logs_json_on_stderr_when_asked(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("LEGALDOC_")} | {"LEGALDOC_HOME": str(tmp_path)}
    script = ("import logging, sys; from legaldoc.cli import main; "
              "main.app.command('hello')(lambda: logging.getLogger('legaldoc.x').info('hi')); "
              "sys.argv = ['legaldoc', 'hello', '-v', '--log-format', 'json']; main.run()")  # fmt: skip
    result = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout == ""
    assert json.loads(result.stderr.strip().splitlines()[-1])["message"] == "hi"
    quiet = subprocess.run([sys.executable, "-c", script.replace("'-v'", "'-q'")], env=env, capture_output=True,
                           text=True, timeout=60)  # fmt: skip
    assert quiet.returncode == 0 and quiet.stderr == ""


_ROTATE = """
import logging, os, sys, time
from pathlib import Path
from legaldoc.services.embedded import WorkerProcess
from legaldoc.logs import configure
handler = configure("INFO", "json", file=Path(sys.argv[1]), max_bytes=4000, backups=50)
log = logging.getLogger("legaldoc.rotate")
children = []
for child in range(2):
    pid = os.fork()
    if pid == 0:
        for n in range(200):
            log.info("child %d line %d", child, n)
            time.sleep(0.001)
        os._exit(0)
    children.append(pid)
for n in range(200):
    log.info("main line %d", n)
    time.sleep(0.001)
for pid in children:
    os.waitpid(pid, 0)
handler.rotate_if_needed()
"""


def test_worker_logs_rotate_while_forked_processes_write(tmp_path):
    log = tmp_path / "workers" / "w.log"
    subprocess.run([sys.executable, "-c", _ROTATE, str(log)], check=True, timeout=60)
    files = sorted(log.parent.iterdir())
    assert len(files) > 10, files  # 600 lines of ~150 bytes in files of 4,000
    messages = [json.loads(line)["message"] for f in files for line in f.read_text().splitlines()]
    assert len(messages) == 600 and len(set(messages)) == 600  # none lost, none twice
    assert all(stat.S_IMODE(f.stat().st_mode) == 0o640 for f in files)
    assert all(f.stat().st_size < 4000 + 2 * 200 * 160 for f in files)


@pytest.mark.any_database  # log records are the same whatever the database
def test_a_worker_logs_json_with_the_failed_document(batch_settings, tmp_path):
    """A real worker with --log-format json: the failure of a document names its batch, document,
    stage, attempt and category, and no line is anything but JSON."""
    cluster = connect(batch_settings)
    empty = tmp_path / "docs" / "empty.pdf"
    empty.parent.mkdir()
    empty.write_bytes(b"")
    submitted = cluster.submit(write_manifest(tmp_path / "m.yaml", [{"path": str(empty)}]))
    log = tmp_path / "worker.log"
    command = worker_command(concurrency=1, loglevel="INFO", log_format="json", log_file=log)
    worker = WorkerProcess(settings_env(batch_settings))
    worker.args = command
    with worker:  # starts it, and stops it at the end
        final = cluster.wait(submitted.batch_id, timeout=120)
    assert final["failed"] == 1, final
    lines = [json.loads(line) for line in log.read_text().splitlines()]
    failed = [line for line in lines if line.get("category") == "DATA"]
    assert failed, lines
    assert [failed[0][k] for k in ("batch_id", "stage", "attempt")] == [submitted.batch_id, "extract", 1]
    assert isinstance(failed[0]["document_id"], int) and failed[0]["duration"] >= 0
    assert any(line["logger"].startswith("celery") for line in lines)  # Celery's own records too
