"""Shared fixtures: the corpus in place, settings on a temporary data dir, databases to run against."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from legaldoc.config import Settings, load_settings
from legaldoc.storage.db import Database

REPO = Path(__file__).resolve().parent.parent
CORPUS = REPO.parent / "shared" / "corpus"
DOCUMENTS = CORPUS / "documents"
NEF = CORPUS / "nef"
SAMPLES = REPO / "samples"


def pytest_configure(config: pytest.Config) -> None:
    if not DOCUMENTS.is_dir():
        raise pytest.UsageError(f"the test corpus is missing: expected {CORPUS} beside the repository")


def _postgres_url() -> str | None:
    return os.environ.get("LEGALDOC_TEST_POSTGRES_URL") or None


DATABASE_KINDS = ["sqlite"] + (["postgresql"] if _postgres_url() else [])


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """A test marked `any_database` runs on SQLite only: its PostgreSQL twin would prove nothing more."""
    twins = [item for item in items if item.get_closest_marker("any_database") is not None
             and getattr(getattr(item, "callspec", None), "params", {}).get("database_url") == "postgresql"]  # fmt: skip
    if twins:
        config.hook.pytest_deselected(items=twins)
        items[:] = [item for item in items if item not in twins]


@pytest.fixture(params=DATABASE_KINDS)
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh, empty database: SQLite in tmp_path, or a throwaway PostgreSQL schema-per-test database."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'legaldoc.db'}"
        return
    import sqlalchemy as sa

    base = _postgres_url()
    name = f"legaldoc_test_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(base, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(sa.text(f'CREATE DATABASE "{name}"'))
    url = sa.make_url(base).set(database=name).render_as_string(hide_password=False)
    try:
        yield url
    finally:
        from legaldoc.storage.db import get_engine

        get_engine(url).dispose()
        with admin.connect() as connection:
            connection.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture
def settings(tmp_path: Path, database_url: str) -> Settings:
    return load_settings(data_dir=tmp_path / ".legaldoc", database_url=database_url)


@pytest.fixture
def database(settings: Settings) -> Database:
    return Database(settings.resolved_database_url)


@pytest.fixture(scope="session")
def corpus_run(tmp_path_factory: pytest.TempPathFactory):
    """The whole documents/ corpus processed once, in-process, into a SQLite database."""
    from legaldoc.services.process import process_paths

    data_dir = tmp_path_factory.mktemp("corpus") / ".legaldoc"
    settings = load_settings(data_dir=data_dir)
    database = Database(settings.resolved_database_url)
    reports = {Path(r.source).name: r for r in process_paths([DOCUMENTS], "corpus", settings, database)}
    return settings, database, reports


# -- Redis and workers ---------------------------------------------------------------------------


def _free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A throwaway redis-server on a free port for the whole session (never the machine's own)."""
    import shutil
    import subprocess
    import time

    import redis

    binary = shutil.which("redis-server")
    if binary is None:
        raise pytest.UsageError("redis-server is required for the tests (apt-get install redis-server)")
    port = _free_port()
    folder = tmp_path_factory.mktemp("redis")
    process = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
         "--dir", str(folder), "--logfile", str(folder / "redis.log")],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    url = f"redis://127.0.0.1:{port}"
    client = redis.Redis.from_url(url)
    deadline = time.monotonic() + 20
    while True:
        try:
            client.ping()
            break
        except redis.ConnectionError:
            if time.monotonic() > deadline or process.poll() is not None:
                raise RuntimeError(f"redis-server did not start: {(folder / 'redis.log').read_text()}") from None
            time.sleep(0.05)
    try:
        yield url
    finally:
        process.terminate()
        process.wait(10)


@pytest.fixture(autouse=True)
def data_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test's own data home (LEGALDOC_HOME), never the user's: the commands it runs default there."""
    home = tmp_path / ".legaldoc"
    monkeypatch.setenv("LEGALDOC_HOME", str(home))
    return home


@pytest.fixture
def redis_url(redis_server: str) -> str:
    """The session's Redis, emptied before the test (queues and state of earlier tests gone)."""
    import redis

    redis.Redis.from_url(redis_server).flushall()
    return redis_server


FAST_CLAIMS = {"claim_lease": 3.0, "sweep_interval": 1.0, "retry_base_delay": 0.2}


@pytest.fixture
def batch_settings(tmp_path: Path, database_url: str, redis_url: str) -> Settings:
    """Settings for batch tests: the test's database and Redis, short leases so faults heal fast."""
    return load_settings(data_dir=tmp_path / ".legaldoc", database_url=database_url, redis_url=redis_url, **FAST_CLAIMS)


def settings_env(settings: Settings) -> dict[str, str]:
    """The environment that gives a subprocess these settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LEGALDOC_")}
    for name, value in settings.model_dump(exclude_none=True).items():
        env[f"LEGALDOC_{name.upper()}"] = str(value)
    env["LEGALDOC_DATABASE_URL"] = settings.resolved_database_url
    return env


@pytest.fixture
def start_worker(batch_settings: Settings, tmp_path: Path):
    """Factory: start a real worker subprocess (`python -m legaldoc.tasks.worker`); all stop at teardown."""
    from legaldoc.services.embedded import WorkerProcess

    started: list[WorkerProcess] = []

    def start(*, concurrency: int = 2, queues: str | None = None, settings: Settings | None = None) -> WorkerProcess:
        env = settings_env(settings or batch_settings)
        log = tmp_path / f"worker-{len(started)}.log"
        worker = WorkerProcess(env, concurrency=concurrency, queues=queues, log_path=log, loglevel="INFO").start()
        started.append(worker)
        return worker

    yield start
    for worker in started:
        worker.stop(timeout=20)


# -- outside services as local protocol peers ------------------------------------------------------


@pytest.fixture
def s3_endpoint():
    """moto's standalone S3 server on a free port (a local protocol peer for the real SDK)."""
    port = _free_port()
    binary = shutil.which("moto_server") or f"{sys.prefix}/bin/moto_server"
    process = subprocess.Popen([binary, "-H", "127.0.0.1", "-p", str(port)], stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    try:
        while True:
            try:
                requests.get(url, timeout=5)
                break
            except requests.RequestException:
                assert time.monotonic() < deadline and process.poll() is None, "moto_server did not start"
                time.sleep(0.2)
        yield url
    finally:
        process.terminate()
        process.wait(10)
