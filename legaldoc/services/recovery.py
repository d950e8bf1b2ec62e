"""Use cases of recovery: re-run what failed, from the stage that failed, as often as you like.

Recovery reads the database, never the broker. A per-batch Redis lock serializes recovers of one
batch, and every re-queue is a conditional UPDATE of a failed row, so two recovers at once, or
one after another, publish each document at most once and leave the same rows.
"""

from __future__ import annotations

import re
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select, update

from legaldoc.errors import ADVICE, ErrorCategory, UsageError
from legaldoc.models import Stage
from legaldoc.services.batches import BatchBusy, NoSuchBatch
from legaldoc.state.batches import BatchState, StateChange
from legaldoc.state.broker import Broker
from legaldoc.state.locks import Lock
from legaldoc.storage import claims
from legaldoc.storage import repository as repo
from legaldoc.storage.db import Database
from legaldoc.storage.tables import Batch, Project

DEFAULT_CATEGORIES = (ErrorCategory.TRANSIENT, ErrorCategory.RATE_LIMIT, ErrorCategory.RESOURCE, ErrorCategory.PERMANENT)
"""Recovered without being named: everything but DATA and CONFIGURATION, which need the operator to
change the files or the settings first."""


@dataclass
class Recovery:
    batch_id: str | None
    categories: list[str]
    dry_run: bool
    documents: list[dict[str, Any]] = field(default_factory=list)
    left_failed: dict[str, int] = field(default_factory=dict)

    @property
    def requeued(self) -> int:
        return 0 if self.dry_run else len(self.documents)

    def as_dict(self) -> dict[str, Any]:
        by_category = Counter(d["category"] for d in self.documents)
        by_stage = Counter(d["stage"] for d in self.documents)
        return {"batch_id": self.batch_id, "dry_run": self.dry_run, "categories": self.categories,
                "requeued": self.requeued, "would_requeue": len(self.documents) if self.dry_run else 0,
                "by_category": dict(sorted(by_category.items())), "by_stage": dict(sorted(by_stage.items())),
                "left_failed": self.left_failed, "documents": self.documents}  # fmt: skip


def chosen_categories(categories: list[str] | None, all_categories: bool) -> list[ErrorCategory]:
    if all_categories:
        return list(ErrorCategory)
    if categories:
        try:
            return [ErrorCategory(c.strip().upper()) for c in categories]
        except ValueError:
            raise UsageError(f"unknown category in {', '.join(categories)}",
                             hint=f"categories: {', '.join(c.value for c in ErrorCategory)}") from None  # fmt: skip
    return list(DEFAULT_CATEGORIES)


def _hold(lock: Lock, name: str, wait: float) -> None:
    deadline = time.monotonic() + wait
    while not lock.acquire(name, ttl=600):
        if time.monotonic() >= deadline:
            raise BatchBusy(f"another recover of {name.split(':', 1)[1]} is still running", hint="try again when it ends")
        time.sleep(0.1)


def recover_batch(database: Database, state: BatchState | None, broker: Broker, lock: Lock, batch_id: str, *,
                  categories: list[ErrorCategory], dry_run: bool = False, wait: float = 60.0) -> Recovery:  # fmt: skip
    """Re-queue the batch's failed documents of these categories at the stage that failed."""
    lock_name = f"recover:{batch_id}"
    _hold(lock, lock_name, wait)
    try:
        return _recover(database, state, broker, batch_id, categories, dry_run)
    finally:
        lock.release(lock_name)


def _recover(database: Database, state: BatchState | None, broker: Broker, batch_id: str,
             categories: list[ErrorCategory], dry_run: bool) -> Recovery:  # fmt: skip
    wanted = {c.value for c in categories}
    recovery = Recovery(batch_id, sorted(wanted), dry_run)
    with database.session() as session:
        batch = session.get(Batch, batch_id)
        if batch is None:
            raise NoSuchBatch(f"no batch {batch_id}", hint="list batches with: legaldoc status")
        priority = batch.priority
        failed = claims.failed_in_batch(session, batch_id)
        chosen = [row for row in failed if (row.error_category or "PERMANENT") in wanted and row.error_stage]
        chosen_ids = {row.id for row in chosen}
        left = Counter(row.error_category or "PERMANENT" for row in failed if row.id not in chosen_ids)
        recovery.left_failed = dict(sorted(left.items()))
        if dry_run:
            recovery.documents = [_entry(row) for row in chosen]
            return recovery
        rows = {row.id: row for row in chosen}
        transitions = claims.requeue_failed(session, batch_id, list(rows))
        if transitions:
            session.execute(update(Batch).where(Batch.id == batch_id).values(status="running", finished_at=None))
        recovery.documents = [_entry(rows[t.document_id]) for t in transitions]
    if not transitions:
        return recovery
    if state is not None:
        if state.read(batch_id) is None:
            rebuild_state(database, state, batch_id)
        else:
            state.apply([StateChange(batch_id, t.document_id, t.version, t.state, t.stage or "") for t in transitions])
    broker.publish_stage([(t.document_id, Stage(t.stage), 1) for t in transitions], priority)
    return recovery


def _entry(row) -> dict[str, Any]:
    return {"document_id": row.id, "source": row.source, "stage": row.error_stage,
            "category": row.error_category or "PERMANENT", "attempts": row.attempts, "message": row.error_message}  # fmt: skip


def rebuild_state(database: Database, state: BatchState, batch_id: str) -> None:
    """The batch's live state written again from the database (the source of truth)."""
    with database.read() as session:
        batch = session.get(Batch, batch_id)
        project = session.get(Project, batch.project_id).name
        documents = claims.batch_document_states(session, batch_id)
        errors = {row.id: {"stage": row.error_stage, "category": row.error_category, "message": row.error_message,
                           "attempt": row.attempts, "attempts": row.attempts, "digest": row.error_digest}
                  for row in claims.failed_in_batch(session, batch_id)}  # fmt: skip
    created = batch.created_at if batch.created_at.tzinfo else batch.created_at.replace(tzinfo=UTC)
    finished = all(s in ("succeeded", "failed", "skipped", "cancelled") for _, s, _, _ in documents.values())
    fields = {"name": batch.name, "project": project, "priority": batch.priority,
              "status": batch.status if finished else ("cancelling" if batch.status == "cancelling" else "running"),
              "created_at": created.timestamp(), "lock_name": batch.lock_name}  # fmt: skip
    state.rebuild(batch_id, fields, documents, errors, finished=finished)


def recover_stuck(database: Database, state: BatchState | None, broker: Broker, *, dry_run: bool = False) -> Recovery:
    """Stages whose claim lease expired anywhere (their worker died) are queued again."""
    now = datetime.now(UTC)
    recovery = Recovery(None, [], dry_run)
    with database.session() as session:
        if dry_run:
            recovery.documents = [{"document_id": d.id, "source": d.source, "stage": d.stage, "category": None,
                                   "attempts": d.attempts, "held_by": d.claimed_by, "batch_id": d.batch_id}
                                  for d in claims.expired_claims(session, now, limit=100000)]  # fmt: skip
            return recovery
        requeued = claims.requeue_stuck(session, now)
        for transition, _ in requeued:
            repo.close_abandoned_runs(session, transition.document_id)
        priorities = dict(session.execute(select(Batch.id, Batch.priority).where(
            Batch.id.in_({t.batch_id for t, _ in requeued if t.batch_id}))).all())  # fmt: skip
    by_priority: dict[int, list[tuple[int, Stage, int]]] = {}
    for transition, attempt in requeued:
        recovery.documents.append({"document_id": transition.document_id, "stage": transition.stage, "category": None,
                                   "attempts": attempt, "batch_id": transition.batch_id})  # fmt: skip
        by_priority.setdefault(priorities.get(transition.batch_id, 5), []).append(
            (transition.document_id, Stage(transition.stage), attempt))
    if state is not None:
        state.apply([StateChange(t.batch_id, t.document_id, t.version, t.state, t.stage or "")
                     for t, _ in requeued if t.batch_id])  # fmt: skip
    for priority, items in by_priority.items():
        broker.publish_stage(items, priority)
    return recovery


_NUMBERS = re.compile(r"\d+(?:\.\d+)?")


def message_pattern(message: str, source: str | None) -> str:
    """A failure message with what names one document taken out, so one cause groups as one line."""
    text = message or ""
    if source:
        text = text.replace(source, "<document>")
    return _NUMBERS.sub("N", text)[:300]


def analyze_failures(database: Database, batch_id: str, *, top: int = 10) -> dict[str, Any]:
    """Failures of a batch by category and stage, the most common messages, and what to do."""
    with database.read() as session:
        if session.get(Batch, batch_id) is None:
            raise NoSuchBatch(f"no batch {batch_id}", hint="list batches with: legaldoc status")
        failed = claims.failed_in_batch(session, batch_id)
    matrix: dict[str, dict[str, int]] = {}
    patterns: Counter[tuple[str, str, str]] = Counter()
    examples: dict[tuple[str, str, str], int] = {}
    for row in failed:
        category, stage = row.error_category or "PERMANENT", row.error_stage or "?"
        matrix.setdefault(category, {}).setdefault(stage, 0)
        matrix[category][stage] += 1
        key = (category, stage, message_pattern(row.error_message or "", row.source))
        patterns[key] += 1
        examples.setdefault(key, row.id)
    common = [{"category": c, "stage": s, "message": m, "count": n, "example_document": examples[(c, s, m)]}
              for (c, s, m), n in patterns.most_common(top)]  # fmt: skip
    advice = {category: ADVICE[ErrorCategory(category)] for category in sorted(matrix)}
    recoverable = sum(sum(stages.values()) for c, stages in matrix.items() if ErrorCategory(c) in DEFAULT_CATEGORIES)
    return {"batch_id": batch_id, "failed": len(failed), "by_category_stage": dict(sorted(matrix.items())),
            "common_messages": common, "advice": advice, "recoverable_by_default": recoverable}  # fmt: skip

