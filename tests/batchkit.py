"""Helpers for batch tests: connect to the test's Redis and database, write manifests, wait on batches."""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import redis
import yaml
from sqlalchemy import func, select

from legaldoc.config import Settings
from legaldoc.manifest import load_manifest
from legaldoc.services import batches as service
from legaldoc.state.batches import BatchState
from legaldoc.state.broker import Broker
from legaldoc.state.keys import Keys
from legaldoc.state.locks import Lock
from legaldoc.storage.db import Database
from legaldoc.storage.tables import (
    ChunkRow,
    Document,
    Entity,
    EntityAlias,
    MentionRow,
    Page,
    Project,
    RelationshipRow,
)
from tests.conftest import NEF

OUTPUT_TABLES = [Project, Document, Page, ChunkRow, MentionRow, Entity, EntityAlias, RelationshipRow]


@dataclass
class Cluster:
    settings: Settings
    database: Database
    state: BatchState
    broker: Broker
    lock: Lock

    def submit(self, manifest: Path, **kwargs) -> service.Submitted:
        loaded = load_manifest(manifest)
        return service.submit_batch(self.settings, self.database, self.state, self.broker, self.lock, loaded, **kwargs)

    def wait(self, batch_id: str, timeout: float = 240) -> dict:
        return service.wait_for_batch(self.database, self.state, batch_id, timeout=timeout, poll=0.2)

    def wait_until(self, batch_id: str, predicate, timeout: float = 120) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            status = service.batch_status(self.database, self.state, batch_id)
            if predicate(status):
                return status
            assert time.monotonic() < deadline, f"condition not reached: {status}"
            time.sleep(0.1)

    def counts(self, batch_id: str) -> tuple[dict[str, int], dict[str, int]]:
        return service.counts_match(self.database, self.state, batch_id)


def connect(settings: Settings) -> Cluster:
    client = redis.Redis.from_url(settings.redis_url_for("state"))
    keys = Keys(settings.redis_prefix)
    return Cluster(settings, Database(settings.resolved_database_url), BatchState(client, keys),
                   Broker(redis.Redis.from_url(settings.redis_url_for("broker"))), Lock(client, keys))  # fmt: skip


def write_manifest(path: Path, entries: list[dict], *, name: str | None = None, project: str = "acme",
                   priority: str | int = "normal", skip_processed: bool = True) -> Path:  # fmt: skip
    data = {"project": project, "priority": priority, "options": {"skip_processed": skip_processed}, "documents": entries}
    if name:
        data["name"] = name
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def nef_copies(folder: Path, count: int, offset: int = 0) -> Path:
    """`count` real court e-mails (the NEF corpus from `offset`, cycled) as distinct files under `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    sources = sorted(NEF.glob("*.txt"))
    for index in range(count):
        source = sources[(offset + index) % len(sources)]
        shutil.copyfile(source, folder / f"{index:04d}-{source.name}")
    return folder


def output_row_counts(database: Database) -> dict[str, int]:
    with database.read() as session:
        return {t.__tablename__: session.scalar(select(func.count()).select_from(t)) for t in OUTPUT_TABLES}
