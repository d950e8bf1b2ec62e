"""Least privilege and secrets: the README's Redis ACL users, rediss:// with certificate checks, and
no secret anywhere legaldoc writes or prints (F7)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import redis

from legaldoc.cli.exit_codes import ExitCode
from legaldoc.config import load_settings
from tests.batchkit import nef_copies, write_manifest
from tests.conftest import FAST_CLAIMS, REPO, _free_port
from tests.test_cli import legaldoc

ADMIN_PASSWORD = "admin-secret"


@contextmanager
def redis_server(folder: Path, *extra: str, tls: bool = False) -> Iterator[int]:
    """A throwaway redis-server on a free port (TLS-only when `tls`), with `extra` arguments."""
    port = _free_port()
    folder.mkdir(parents=True, exist_ok=True)
    ports = ["--port", "0", "--tls-port", str(port)] if tls else ["--port", str(port)]
    process = subprocess.Popen(
        [shutil.which("redis-server") or "redis-server", *ports, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
         "--dir", str(folder), "--logfile", str(folder / "redis.log"), *extra],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 20
        while (folder / "redis.log").exists() is False or "Ready to accept connections" not in (folder / "redis.log").read_text():
            assert process.poll() is None and time.monotonic() < deadline, (folder / "redis.log").read_text()
            time.sleep(0.05)
        yield port
    finally:
        process.terminate()
        process.wait(10)


def _env(tmp_path: Path, redis_url: str, **more: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LEGALDOC_")}
    env.update(LEGALDOC_REDIS_URL=redis_url, LEGALDOC_DATA_DIR=str(tmp_path / "data"), LEGALDOC_HOME=str(tmp_path / "data"),
               **{f"LEGALDOC_{k.upper()}": str(v) for k, v in FAST_CLAIMS.items()}, **more)  # fmt: skip
    return env


def _start_worker(env: dict[str, str], log: Path):
    from legaldoc.services.embedded import WorkerProcess

    return WorkerProcess(env, concurrency=1, log_path=log, loglevel="INFO").start()


# -- ACL users (README, Security) ------------------------------------------------------------------


def readme_acl() -> dict[str, list[str]]:
    """The `ACL SETUSER` lines of the README's Security section, by user name, as arguments."""
    text = (REPO / "README.md").read_text()
    lines = re.findall(r"^ACL SETUSER (\S+) (.+)$", text, re.MULTILINE)
    assert {name for name, _ in lines} == {"legaldoc-monitor", "legaldoc-worker"}, lines
    return {name: rules.split() for name, rules in lines}


def _create_users(admin: redis.Redis, passwords: dict[str, str]) -> None:
    for name, rules in readme_acl().items():
        admin.execute_command("ACL", "SETUSER", name, *[f">{passwords[name]}" if r.startswith(">") else r for r in rules])


def test_readme_acl_users_run_a_batch_and_only_read_the_dashboard(tmp_path):
    """The worker user of the README runs a batch end to end (submit, a real worker, status);
    the dashboard user renders the dashboard's data and every write through it is refused."""
    with redis_server(tmp_path / "redis", "--requirepass", ADMIN_PASSWORD) as port:
        admin = redis.Redis(port=port, password=ADMIN_PASSWORD)
        _create_users(admin, {"legaldoc-worker": "w-pass", "legaldoc-monitor": "m-pass"})
        worker_url = f"redis://legaldoc-worker:w-pass@127.0.0.1:{port}"
        monitor_url = f"redis://legaldoc-monitor:m-pass@127.0.0.1:{port}"
        env = _env(tmp_path, worker_url)
        manifest = write_manifest(tmp_path / "acl.yaml", [{"glob": f"{nef_copies(tmp_path / 'docs', 2)}/*"}], name="acl")
        worker = _start_worker(env, tmp_path / "worker.log")
        try:
            done = legaldoc("submit", str(manifest), "--wait", "--timeout", "90s", "--json", cwd=tmp_path, env=env)
            assert done.returncode == 0, (done.stderr, worker.log_tail())
            summary = json.loads(done.stdout)
            assert (summary["status"], summary["succeeded"]) == ("finished", 2), summary
            denied = [e for e in admin.acl_log(100) if e.get("username") == "legaldoc-worker"]
            assert denied == [], denied

            from legaldoc.services.monitor import Monitor

            board = Monitor(load_settings(redis_url=monitor_url, data_dir=tmp_path / "data")).dashboard()
            assert [r.batch_id for r in board.rows] == [summary["batch_id"]] and board.workers_alive == 1
            assert {q.name for q in board.queue_rows} >= {"ocr", "text"} and all(q.consumers == 1 for q in board.queue_rows)
            detail = Monitor(load_settings(redis_url=monitor_url, data_dir=tmp_path / "data")).batch(summary["batch_id"])
            assert len(detail.documents) == 2
            status = legaldoc("status", summary["batch_id"], "--json", cwd=tmp_path, env=_env(tmp_path, monitor_url))
            assert status.returncode == 0 and json.loads(status.stdout)["succeeded"] == 2, status.stderr
            assert [e for e in admin.acl_log(100) if e.get("username") == "legaldoc-monitor"] == []
        finally:
            worker.stop(timeout=20)

        reader = redis.Redis.from_url(f"{monitor_url}/4")
        batch_key = f"legaldoc:batch:{summary['batch_id']}"
        assert reader.hget(batch_key, "status") == b"finished"
        writes = [lambda: reader.hset(batch_key, "status", "running"), lambda: reader.delete(batch_key),
                  lambda: reader.set("legaldoc:x", "1"), lambda: reader.eval("return redis.call('DEL', KEYS[1])", 1, batch_key),
                  lambda: reader.flushdb(), lambda: redis.Redis.from_url(f"{monitor_url}/0").lpush("ocr", "x")]  # fmt: skip
        for write in writes:
            with pytest.raises(redis.exceptions.NoPermissionError):
                write()
        assert admin.execute_command("SELECT", 4) and admin.hget(batch_key, "status") == b"finished"

        # A command the dashboard's user may not run says so, not "cannot reach Redis".
        refused = legaldoc("submit", str(manifest), cwd=tmp_path, env=_env(tmp_path, monitor_url))
        assert refused.returncode == ExitCode.USAGE and "Traceback" not in refused.stderr, refused.stderr
        assert "refused a command to this user" in refused.stderr and "m-pass" not in refused.stderr, refused.stderr


# -- TLS -----------------------------------------------------------------------------------------


@pytest.fixture
def tls_redis(tmp_path: Path) -> Iterator[tuple[int, Path, Path]]:
    """A TLS-only redis-server with a certificate for 127.0.0.1: (port, its CA, another CA)."""
    import trustme

    folder = tmp_path / "tls"
    folder.mkdir()
    ca, other = trustme.CA(), trustme.CA()
    server = ca.issue_cert("127.0.0.1", "localhost")
    server.cert_chain_pems[0].write_to_path(str(folder / "server.pem"))
    server.private_key_pem.write_to_path(str(folder / "server.key"))
    ca.cert_pem.write_to_path(str(folder / "ca.pem"))
    other.cert_pem.write_to_path(str(folder / "other-ca.pem"))
    with redis_server(folder / "redis", "--tls-cert-file", str(folder / "server.pem"), "--tls-key-file", str(folder / "server.key"),
                      "--tls-ca-cert-file", str(folder / "ca.pem"), "--tls-auth-clients", "no", tls=True) as port:  # fmt: skip
        yield port, folder / "ca.pem", folder / "other-ca.pem"


def test_rediss_verifies_the_server_certificate_for_commands_and_workers(tmp_path, tls_redis):
    """With the right CA a batch runs over TLS (redis-py clients and Celery's broker alike); with
    another CA every command and the worker refuse the server, naming Redis and TLS."""
    from legaldoc.tasks.app import create_app

    port, ca, other = tls_redis
    good = f"rediss://127.0.0.1:{port}?ssl_cert_reqs=required&ssl_ca_certs={ca}"
    bad = f"rediss://127.0.0.1:{port}?ssl_ca_certs={other}"
    conf = create_app(load_settings(redis_url=good)).conf
    assert conf.broker_use_ssl["ssl_ca_certs"] == str(ca) and conf.redis_backend_use_ssl["ssl_cert_reqs"].name == "CERT_REQUIRED"

    manifest = write_manifest(tmp_path / "tls.yaml", [{"glob": f"{nef_copies(tmp_path / 'docs', 1)}/*"}], name="tls")
    refused_worker = _start_worker(_env(tmp_path, bad), tmp_path / "refused-worker.log")
    env = _env(tmp_path, good)
    worker = _start_worker(env, tmp_path / "worker.log")
    try:
        done = legaldoc("submit", str(manifest), "--wait", "--timeout", "90s", "--json", cwd=tmp_path, env=env)
        assert done.returncode == 0, (done.stderr, worker.log_tail())
        assert json.loads(done.stdout)["succeeded"] == 1
        assert "certificate verify failed" in refused_worker.log_tail(), refused_worker.log_tail()
    finally:
        worker.stop(timeout=20)
        refused_worker.stop(timeout=5)

    doctor = legaldoc("doctor", "--json", cwd=tmp_path, env=_env(tmp_path, bad))
    check = {c["name"]: c for c in json.loads(doctor.stdout)["checks"]}["redis"]
    assert doctor.returncode == ExitCode.UNAVAILABLE and check["verdict"] == "FAIL", doctor.stdout
    assert "TLS with Redis at rediss://127.0.0.1" in check["detail"] and "certificate verify failed" in check["detail"], check
    assert "ssl_ca_certs" in check["fix"]
    submit = legaldoc("submit", str(manifest), cwd=tmp_path, env=_env(tmp_path, bad))
    assert submit.returncode == ExitCode.UNAVAILABLE and "Traceback" not in submit.stderr, submit.stderr
    assert "TLS with Redis at rediss://127.0.0.1" in submit.stderr and "certificate verify failed" in submit.stderr, submit.stderr

    from legaldoc.config import SettingsError

    for url, problem in ((f"rediss://127.0.0.1:{port}?ssl_ca_certs={tmp_path}/nope.pem", "nope.pem' is not a readable file"),
                         (f"redis://127.0.0.1:{port}?ssl_ca_certs={ca}", "write rediss://"),
                         (f"rediss://127.0.0.1:{port}?ssl_cert_reqs=maybe", "required, optional or none")):  # fmt: skip
        with pytest.raises(SettingsError, match=re.escape(problem)):
            load_settings(redis_url=url)
