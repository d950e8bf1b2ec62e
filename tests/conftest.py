"""Shared fixtures: the corpus in place, settings on a temporary data dir, databases to run against."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

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
