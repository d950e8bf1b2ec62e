"""Helpers for batch tests: connect to the test's Redis and database, write manifests, wait on batches."""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import yaml
from sqlalchemy import func, select

from legaldoc.config import Settings
from legaldoc.lifecycle import MirrorState
from legaldoc.manifest import load_manifest
from legaldoc.services import batches as service
from legaldoc.services.wiring import Runtime
from legaldoc.state.batches import BatchState, DocumentState, ErrorNote
from legaldoc.state.broker import Broker
from legaldoc.storage import claims
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
    rt: Runtime

    @property
    def settings(self) -> Settings:
        return self.rt.settings

    @property
    def database(self) -> Database:
        return self.rt.database

    @property
    def state(self) -> BatchState:
        return self.rt.state

    @property
    def broker(self) -> Broker:
        return self.rt.broker

    def submit(self, manifest: Path, **kwargs) -> service.Submitted:
        return service.submit_batch(self.rt, load_manifest(manifest), **kwargs)

    def wait(self, batch_id: str, timeout: float = 240) -> dict:
        """The batch's `--json` summary once it has settled."""
        return service.wait_for_batch(self.rt, batch_id, timeout=timeout, poll=0.2).as_json()

    def wait_until(self, batch_id: str, predicate, timeout: float = 120) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            status = service.batch_status(self.rt, batch_id).as_json()
            if predicate(status):
                return status
            assert time.monotonic() < deadline, f"condition not reached: {status}"
            time.sleep(0.1)

    def counts(self, batch_id: str) -> tuple[dict[str, int], dict[str, int]]:
        """(Redis counters, database counts) of a batch."""
        live = self.state.read(batch_id) or {}
        with self.database.read() as session:
            stored = claims.state_counts(session, batch_id)
        return {s.value: int(live.get(s, 0)) for s in MirrorState}, {s.value: n for s, n in stored.items()}

    def stored(self, batch_id: str) -> dict:
        """The batch's summary from the database alone."""
        return service.batch_status(self.rt, batch_id, live=False).as_json()

    def documents(self, batch_id: str) -> list[dict]:
        """`status --docs --json` rows."""
        return [d.as_json() for d in service.batch_documents(self.rt, batch_id)]

    def live(self, batch_id: str) -> tuple[dict[int, DocumentState], dict[int, ErrorNote]]:
        """Every document's state and the failures, as the mirror holds them."""
        _, states, errors = self.state.detail(batch_id)
        return states, errors


def connect(settings: Settings) -> Cluster:
    return Cluster(Runtime(settings))


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


def children(pid: int) -> list[int]:
    """The child processes of a process (a worker's pool)."""
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        found.extend(int(c) for c in (task / "children").read_text().split())
    return found
