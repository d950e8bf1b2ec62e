"""Use cases of recovery: re-run what failed, from the stage that failed, as often as you like.

Recovery reads the database, never the broker. A per-batch Redis lock serializes recovers of one
batch, and every re-queue is a conditional UPDATE of a failed row, so two recovers at once, or
one after another, publish each document at most once and leave the same rows.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Row, select

from legaldoc.errors import ADVICE, BatchBusy, ErrorCategory, UsageError
from legaldoc.lifecycle import BatchStatus, MirrorState, settled_status
from legaldoc.models import Stage
from legaldoc.queues import DEFAULT_PRIORITY
from legaldoc.services.batches import finalize_batch, get_batch, mirror, rebuild_state
from legaldoc.services.summary import message_pattern
from legaldoc.services.wiring import Runtime
from legaldoc.state.locks import Lock
from legaldoc.storage import claims
from legaldoc.storage import repository as repo
from legaldoc.storage.tables import Batch

DEFAULT_CATEGORIES = (ErrorCategory.TRANSIENT, ErrorCategory.RATE_LIMIT, ErrorCategory.RESOURCE, ErrorCategory.PERMANENT)
"""Recovered without being named: everything but DATA and CONFIGURATION, which need the operator to
change the files or the settings first."""


@dataclass(frozen=True)
class RecoveredDocument:
    document_id: int
    stage: str | None
    attempts: int
    source: str | None = None
    category: str | None = None
    message: str | None = None
    batch_id: str | None = None
    held_by: str | None = None  # a stuck stage's holder that stopped answering


@dataclass
class Recovery:
    batch_id: str | None
    categories: list[str]
    dry_run: bool
    documents: list[RecoveredDocument] = field(default_factory=list)
    left_failed: dict[str, int] = field(default_factory=dict)

    @property
    def requeued(self) -> int:
        return 0 if self.dry_run else len(self.documents)

    def as_json(self) -> dict[str, Any]:
        by_category = Counter(d.category for d in self.documents if d.category)
        by_stage = Counter(d.stage for d in self.documents if d.stage)
        return {"batch_id": self.batch_id, "dry_run": self.dry_run, "categories": self.categories,
                "requeued": self.requeued, "would_requeue": len(self.documents) if self.dry_run else 0,
                "by_category": dict(sorted(by_category.items())), "by_stage": dict(sorted(by_stage.items())),
                "left_failed": self.left_failed, "documents": [asdict(d) for d in self.documents]}  # fmt: skip


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


def recover_batch(rt: Runtime, batch_id: str, *, categories: list[ErrorCategory], dry_run: bool = False,
                  wait: float = 60.0) -> Recovery:  # fmt: skip
    """Re-queue the batch's failed documents of these categories at the stage that failed."""
    lock_name = f"recover:{batch_id}"
    _hold(rt.lock, lock_name, wait)
    try:
        return _recover(rt, batch_id, categories, dry_run)
    finally:
        rt.lock.release(lock_name)


def _recover(rt: Runtime, batch_id: str, categories: list[ErrorCategory], dry_run: bool) -> Recovery:
    wanted = {c.value for c in categories}
    recovery = Recovery(batch_id, sorted(wanted), dry_run)
    with rt.database.session() as session:
        batch = get_batch(session, batch_id)
        priority = batch.priority
        failed = claims.failed_in_batch(session, batch_id)
        chosen = {row.id: row for row in failed if (row.error_category or ErrorCategory.PERMANENT) in wanted and row.error_stage}
        left = Counter(row.error_category or ErrorCategory.PERMANENT for row in failed if row.id not in chosen)
        recovery.left_failed = dict(sorted(left.items()))
        if dry_run:
            recovery.documents = [_recovered(row) for row in chosen.values()]
            return recovery
        transitions = claims.requeue_failed(session, batch_id, list(chosen))
        if transitions:  # open documents again: the batch runs again, by the one rule
            batch.status, batch.finished_at = settled_status(BatchStatus(batch.status), len(transitions)), None
        recovery.documents = [_recovered(chosen[t.document_id]) for t in transitions]
    if not transitions:
        return recovery
    if rt.state.read(batch_id) is None:
        rebuild_state(rt, batch_id)
    else:
        rt.state.apply_transitions(transitions)
    finalize_batch(rt, batch_id)
    rt.broker.publish_stage([(t.document_id, Stage(t.stage or Stage.EXTRACT), 1) for t in transitions], priority)
    return recovery


def _recovered(row: Row[Any]) -> RecoveredDocument:
    return RecoveredDocument(row.id, row.error_stage, row.attempts, row.source, row.error_category or ErrorCategory.PERMANENT,
                             row.error_message)  # fmt: skip


def recover_stuck(rt: Runtime, *, dry_run: bool = False) -> Recovery:
    """Stages whose claim lease expired anywhere (their worker died) are queued again: those of this
    installation's batches (a `legaldoc run`'s are its own, `claims.swept_by`)."""
    now = datetime.now(UTC)
    recovery = Recovery(None, [], dry_run)
    runner = rt.state.runner()
    with rt.database.session() as session:
        if dry_run:
            recovery.documents = [RecoveredDocument(d.id, d.stage, d.attempts, d.source, batch_id=d.batch_id,
                                                    held_by=d.claimed_by)
                                  for d in claims.expired_claims(session, now, limit=100000, runner=runner)]  # fmt: skip
            return recovery
        requeued = claims.requeue_stuck(session, now, runner=runner)
        for transition, _ in requeued:
            repo.close_abandoned_runs(session, transition.document_id)
        priorities = dict(session.execute(select(Batch.id, Batch.priority).where(
            Batch.id.in_({t.batch_id for t, _ in requeued if t.batch_id}))).all())  # fmt: skip
    mirror(rt, [t for t, _ in requeued])
    by_priority: dict[int, list[tuple[int, Stage, int]]] = {}
    for transition, attempt in requeued:
        stage = transition.stage or Stage.EXTRACT
        recovery.documents.append(RecoveredDocument(transition.document_id, stage, attempt, batch_id=transition.batch_id))
        priority = priorities.get(transition.batch_id, DEFAULT_PRIORITY) if transition.batch_id else DEFAULT_PRIORITY
        by_priority.setdefault(priority, []).append((transition.document_id, stage, attempt))
    for priority, items in by_priority.items():
        rt.broker.publish_stage(items, priority)
    return recovery


def analyze_failures(rt: Runtime, batch_id: str, *, top: int = 10) -> dict[str, Any]:
    """Failures of a batch by category and stage, the most common messages, and what to do."""
    with rt.database.read() as session:
        get_batch(session, batch_id)
        failed = claims.failed_in_batch(session, batch_id)
    matrix: dict[str, dict[str, int]] = {}
    patterns: Counter[tuple[str, str, str]] = Counter()
    examples: dict[tuple[str, str, str], int] = {}
    for row in failed:
        category, stage = row.error_category or ErrorCategory.PERMANENT, row.error_stage or "?"
        matrix.setdefault(category, {}).setdefault(stage, 0)
        matrix[category][stage] += 1
        key = (category, stage, message_pattern(row.error_message or "", row.source))
        patterns[key] += 1
        examples.setdefault(key, row.id)
    common = [{"category": c, "stage": s, "message": m, "count": n, "example_document": examples[(c, s, m)]}
              for (c, s, m), n in patterns.most_common(top)]  # fmt: skip
    advice = {category: ADVICE[ErrorCategory(category)] for category in sorted(matrix)}
    recoverable = sum(sum(stages.values()) for c, stages in matrix.items() if ErrorCategory(c) in DEFAULT_CATEGORIES)
    return {"batch_id": batch_id, MirrorState.FAILED.value: len(failed), "by_category_stage": dict(sorted(matrix.items())),
            "common_messages": common, "advice": advice, "recoverable_by_default": recoverable}  # fmt: skip

