"""Celery's own tools work on legaldoc's workers: `celery -A legaldoc inspect/control` against a
real worker, with the installation's settings (prefix, priorities) coming from the module-level app."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

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
