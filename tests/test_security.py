"""Least privilege and secrets: the README's Redis ACL users, rediss:// with certificate checks, and
no secret anywhere legaldoc writes or prints (F7)."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import subprocess
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
                  lambda: reader.flushdb(), lambda: redis.Redis.from_url(f"{monitor_url}/0").lpush("legaldoc:ocr", "x")]  # fmt: skip
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
    another CA, or none (the system's), Celery's connection and every command refuse the server,
    naming Redis and TLS."""
    from legaldoc.tasks.app import create_app

    port, ca, other = tls_redis
    good = f"rediss://127.0.0.1:{port}?ssl_cert_reqs=required&ssl_ca_certs={ca}"
    bad = f"rediss://127.0.0.1:{port}?ssl_ca_certs={other}"
    conf = create_app(load_settings(redis_url=good)).conf
    assert conf.broker_use_ssl["ssl_ca_certs"] == str(ca) and conf.redis_backend_use_ssl["ssl_cert_reqs"].name == "CERT_REQUIRED"
    # Celery's own connection (what a worker consumes through) verifies too, also when the URL names
    # no CA (the system's then): kombu alone connects to any rediss:// server without a check.
    for unverified in (f"rediss://127.0.0.1:{port}", bad):
        with (create_app(load_settings(redis_url=unverified)).connection_for_write() as connection,
              pytest.raises(Exception, match="certificate verify failed")):  # fmt: skip
            connection.ensure_connection(max_retries=1)

    manifest = write_manifest(tmp_path / "tls.yaml", [{"glob": f"{nef_copies(tmp_path / 'docs', 1)}/*"}], name="tls")
    env = _env(tmp_path, good)
    worker = _start_worker(env, tmp_path / "worker.log")
    try:
        done = legaldoc("submit", str(manifest), "--wait", "--timeout", "90s", "--json", cwd=tmp_path, env=env)
        assert done.returncode == 0, (done.stderr, worker.log_tail())
        assert json.loads(done.stdout)["succeeded"] == 1
    finally:
        worker.stop(timeout=20)

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


# -- F7: no secret anywhere ----------------------------------------------------------------------

CANARIES = {
    "redis password": "CanaryRedisPw7f3a9",
    "wrong redis password": "CanaryWrongPw51c2",
    "database password": "CanaryDbPw4e8a0",
    "OpenAI key": "sk-CanaryOpenAIKey0b6e",
    "AWS secret": "CanaryAwsSecret9d1fQ",
    "AWS key id": "AKIACANARY7Q2W3E4R5T",
}


def _forms(value: bytes) -> list[bytes]:
    """A stored value and what it hides: zlib-compressed cache entries, base64 bodies of Celery messages."""
    import base64
    import zlib

    forms = [value]
    with contextlib.suppress(zlib.error):
        forms.append(zlib.decompress(value))
    with contextlib.suppress(ValueError, UnicodeDecodeError, TypeError, AttributeError):
        envelope = json.loads(value)
        if isinstance(envelope, dict) and isinstance(envelope.get("body"), str):
            forms.append(base64.b64decode(envelope["body"]))
    return forms


def _redis_places(admin: redis.Redis) -> Iterator[tuple[str, bytes]]:
    """Every key name and value of every database (by type, and DUMP's bytes)."""
    for db in range(16):
        client = redis.Redis(connection_pool=redis.ConnectionPool(**{**admin.connection_pool.connection_kwargs, "db": db}))
        for key in client.scan_iter(count=1000):
            kind = client.type(key).decode()
            value: object = (client.get(key) if kind == "string" else client.hgetall(key) if kind == "hash"
                             else client.lrange(key, 0, -1) if kind == "list" else client.smembers(key) if kind == "set"
                             else client.zrange(key, 0, -1, withscores=True) if kind == "zset"
                             else client.xrange(key) if kind == "stream" else None)  # fmt: skip
            parts = [key, client.dump(key) or b""]
            if isinstance(value, bytes):
                parts.append(value)
            elif isinstance(value, dict):
                parts += [b for pair in value.items() for b in pair]
            elif value is not None:
                parts += [item if isinstance(item, bytes) else repr(item).encode() for item in value]  # type: ignore[attr-defined]
            for part in parts:
                yield f"redis db {db} key {key[:60]!r}", part
        client.close()


def _database_places(url: str) -> Iterator[tuple[str, bytes]]:
    """Every cell of every table."""
    import sqlalchemy as sa

    engine = sa.create_engine(url)
    try:
        with engine.connect() as connection:
            metadata = sa.MetaData()
            metadata.reflect(connection)
            for table in metadata.sorted_tables:
                for row in connection.execute(sa.select(table)):
                    for column, value in zip(table.columns.keys(), row, strict=True):
                        if value is not None:
                            yield f"database {table.name}.{column}", value if isinstance(value, bytes) else str(value).encode()
    finally:
        engine.dispose()


@contextmanager
def _database_with_password(tmp_path: Path, password: str) -> Iterator[tuple[str, bool]]:
    """(URL, has a password): a PostgreSQL role and database of their own with `password` when
    LEGALDOC_TEST_POSTGRES_URL is set, else SQLite (no password to leak)."""
    base = os.environ.get("LEGALDOC_TEST_POSTGRES_URL")
    if not base:
        yield f"sqlite:///{tmp_path / 'f7.db'}", False
        return
    import uuid

    import sqlalchemy as sa

    name = f"legaldoc_f7_{uuid.uuid4().hex[:8]}"
    admin = sa.create_engine(base, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(sa.text(f"CREATE ROLE {name} LOGIN PASSWORD '{password}'"))
        connection.execute(sa.text(f'CREATE DATABASE "{name}" OWNER {name}'))
    url = sa.make_url(base).set(username=name, password=password, database=name).render_as_string(hide_password=False)
    try:
        yield url, True
    finally:
        from legaldoc.storage.db import get_engine

        get_engine(url).dispose()
        with admin.connect() as connection:
            connection.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            connection.execute(sa.text(f"DROP ROLE IF EXISTS {name}"))
        admin.dispose()


def test_f7_no_secret_reaches_logs_redis_database_output_or_command_lines(tmp_path):
    """Canary secrets in the Redis URL, the database URL, the OpenAI and AWS keys: a batch with a
    real worker (hybrid entities, so the OpenAI key is used), status, doctor, config show and a
    wrong Redis password; none of them appears in a worker log, a Redis key or value, a database
    cell, any command's output or a worker's command line."""
    import concurrent.futures

    import psutil

    from tests.openai_peer import running_peer

    with (redis_server(tmp_path / "redis", "--requirepass", CANARIES["redis password"]) as port,
          _database_with_password(tmp_path, CANARIES["database password"]) as (database_url, has_password),
          running_peer() as peer):  # fmt: skip
        redis_url = f"redis://:{CANARIES['redis password']}@127.0.0.1:{port}"
        secrets = {"OPENAI_API_KEY": CANARIES["OpenAI key"], "OPENAI_BASE_URL": peer.url,
                   "AWS_SECRET_ACCESS_KEY": CANARIES["AWS secret"], "AWS_ACCESS_KEY_ID": CANARIES["AWS key id"]}  # fmt: skip
        env = _env(tmp_path, redis_url, LEGALDOC_DATABASE_URL=database_url, LEGALDOC_OPENAI_MODEL="peer-small",
                   LEGALDOC_CACHE_COMPRESS_ABOVE="1000000000", **secrets)  # fmt: skip
        sources = sorted(nef_copies(tmp_path / "docs", 2).iterdir())
        manifest = tmp_path / "f7.yaml"
        manifest.write_text(json.dumps({"project": "f7", "name": "f7", "options": {"entities": "hybrid"},
                                        "documents": [{"path": str(s)} for s in sources]}))  # fmt: skip
        places: list[tuple[str, bytes]] = []
        (tmp_path / "data" / "workers").mkdir(parents=True)
        worker = _start_worker(env, tmp_path / "data" / "workers" / "f7.log")
        try:
            done = legaldoc("submit", str(manifest), "--wait", "--timeout", "120s", "--json", cwd=tmp_path, env=env)
            assert done.returncode == 0, (done.stderr, worker.log_tail())
            batch = json.loads(done.stdout)["batch_id"]
            assert len(peer.calls) >= 2  # the OpenAI key was used
            main = psutil.Process(worker.pid)
            processes = [main, *main.children(recursive=True)]
            for process in processes:
                places.append((f"/proc/{process.pid}/cmdline", Path(f"/proc/{process.pid}/cmdline").read_bytes()))
            # The search finds what is there: the workers' environments do hold the secrets.
            assert all(CANARIES["OpenAI key"].encode() in Path(f"/proc/{p.pid}/environ").read_bytes() for p in processes)
            wrong = _env(tmp_path, f"redis://:{CANARIES['wrong redis password']}@127.0.0.1:{port}",
                         LEGALDOC_DATABASE_URL=database_url, **secrets)  # fmt: skip
            commands = [(env, ["status", batch, "--docs"]), (env, ["doctor"]), (env, ["config", "show", "--json"]),
                        (wrong, ["submit", str(manifest)])]  # fmt: skip
            with concurrent.futures.ThreadPoolExecutor(2) as pool:
                results = list(pool.map(lambda c: legaldoc(*c[1], cwd=tmp_path, env=c[0]), commands))
        finally:
            worker.stop(timeout=20)
        refused = results[-1]
        assert refused.returncode == ExitCode.UNAVAILABLE and "refused the user or password" in refused.stderr, refused.stderr
        for (_, command), result in zip([(None, ["submit", "--wait"]), *commands], [done, *results], strict=True):
            places += [(f"{' '.join(command)} stdout", result.stdout.encode()), (f"{' '.join(command)} stderr", result.stderr.encode())]
        logs = [p for p in (tmp_path / "data").rglob("*.log")]
        assert logs and all(p.stat().st_size for p in logs), logs
        places += [(f"log {p.name}", p.read_bytes()) for p in logs]
        places += list(_redis_places(redis.Redis(port=port, password=CANARIES["redis password"])))
        places += list(_database_places(database_url))

    hits = [(where, name) for where, value in places for form in _forms(value)
            for name, canary in CANARIES.items() if canary.encode() in form]  # fmt: skip
    kinds = {"proc cmdline" if where.startswith("/proc") else where.split(" ")[0] for where, _ in places}
    print(f"\nF7: {len(places)} places searched ({', '.join(sorted(kinds))}), "
          f"database password {'planted' if has_password else 'absent (SQLite)'}, {len(hits)} hits")
    assert hits == [], hits[:20]
