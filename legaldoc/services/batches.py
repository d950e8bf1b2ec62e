"""Use cases of batches: submit, status, cancel, finalize, and the sweeper that keeps them moving."""

from __future__ import annotations

import logging
import secrets
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import func, select, update

from legaldoc.config import Settings
from legaldoc.errors import ErrorCategory, LegaldocError, UsageError
from legaldoc.manifest import LoadedManifest
from legaldoc.models import STAGES, Stage
from legaldoc.queues import STAGE_QUEUE, batch_queue, priority_name
from legaldoc.state.batches import COUNTERS, BatchState, StateChange
from legaldoc.state.broker import Broker
from legaldoc.state.locks import Lock
from legaldoc.storage import claims
from legaldoc.storage import repository as repo
from legaldoc.storage.db import Database
from legaldoc.storage.tables import Batch, BatchDocument, Document, Project

log = logging.getLogger("legaldoc.batches")

KNOWN_PROVIDERS = {"ocr": {"local"}, "entities": {"local"}}
RUNNING = ("running", "cancelling")


class BatchBusy(LegaldocError):
    """Raised when a batch of the same manifest name is still running (cron overlap)."""

    category = ErrorCategory.CONFIGURATION


class NoSuchBatch(UsageError):
    """Raised when a batch id is unknown."""


@dataclass
class Submitted:
    batch_id: str
    name: str
    project: str
    priority: int
    total: int
    queued: int
    skipped: int
    finished: bool = False
    warnings: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"batch_id": self.batch_id, "name": self.name, "project": self.project, "priority": self.priority,
                "total": self.total, "queued": self.queued, "skipped": self.skipped}  # fmt: skip


def new_batch_id() -> str:
    return f"{datetime.now(UTC):%Y%m%d-%H%M%S}-{secrets.token_hex(3)}"


def _check_options(loaded: LoadedManifest) -> None:
    options = loaded.manifest.options
    for name, known in KNOWN_PROVIDERS.items():
        value = getattr(options, name)
        if value is not None and value not in known:
            raise UsageError(f"{loaded.path}: options.{name}: unknown provider {value!r}",
                             hint=f"available: {', '.join(sorted(known))}")  # fmt: skip


def submit_batch(settings: Settings, database: Database, state: BatchState, broker: Broker, lock: Lock,
                 loaded: LoadedManifest, *, skip_processed: bool | None = None) -> Submitted:  # fmt: skip
    """Insert the batch and its documents, initialize its live state, publish its first-stage messages."""
    _check_options(loaded)
    manifest = loaded.manifest
    skip = manifest.options.skip_processed if skip_processed is None else skip_processed
    lock_key = f"submit:{manifest.project}:{loaded.lock_name}"
    if not lock.acquire(lock_key, ttl=300):
        raise BatchBusy(f"another submit of manifest {loaded.lock_name!r} is in progress", hint="wait for it to finish")
    try:
        return _submit(settings, database, state, broker, loaded, skip)
    finally:
        lock.release(lock_key)


def _submit(settings: Settings, database: Database, state: BatchState, broker: Broker, loaded: LoadedManifest,
            skip: bool) -> Submitted:  # fmt: skip
    manifest = loaded.manifest
    batch_id = new_batch_id()
    created = datetime.now(UTC)
    sources = [spec.source for spec in loaded.documents]
    metadata = {spec.source: spec.metadata for spec in loaded.documents if spec.metadata}
    with database.session() as session:
        project_id = repo.get_or_create_project(session, manifest.project).id
        running = session.scalars(
            select(Batch.id).where(Batch.project_id == project_id, Batch.lock_name == loaded.lock_name, Batch.status.in_(RUNNING))
        ).first()  # fmt: skip
        if running:
            raise BatchBusy(f"batch {running} of manifest {loaded.lock_name!r} is still running",
                            hint=f"wait for it (legaldoc status {running}) or cancel it (legaldoc cancel {running})")  # fmt: skip
        session.add(Batch(id=batch_id, name=loaded.name, lock_name=loaded.lock_name, project_id=project_id,
                          priority=manifest.priority, status="running", total=len(sources),
                          options={**manifest.options.model_dump(), "skip_processed": skip},
                          manifest=str(loaded.path), created_at=created))  # fmt: skip
        session.flush()
        rows = repo.ensure_documents(session, project_id, sources, batch_id)
        running_batches = set(session.scalars(select(Batch.id).where(Batch.status.in_(RUNNING), Batch.id != batch_id)))
        now = datetime.now(UTC)
        queued: list[int] = []
        reset: list[int] = []
        busy: dict[int, str] = {}
        versions: dict[int, tuple[int, str]] = {}
        for row in rows:
            if row.batch_id == batch_id:  # created just now, already pending in this batch
                queued.append(row.id)
                versions[row.id] = (row.version, "pending")
                continue
            reason = None
            if row.status in claims.ACTIVE:
                lease = claims.aware(row.lease_expires_at)
                if row.status == "running" and lease is not None and lease > now:
                    reason = f"being processed by {row.claimed_by}"
                elif row.batch_id in running_batches:
                    reason = f"belongs to running batch {row.batch_id}"
            if reason:
                busy[row.id] = reason
                versions[row.id] = (row.version, "skipped")
            else:
                queued.append(row.id)
                reset.append(row.id)
                versions[row.id] = (row.version + 1, "pending")
        repo.reset_for_run(session, reset, batch_id=batch_id)
        repo.release_from_other_batches(session, reset, batch_id)
        if metadata:
            by_source = {row.source: row.id for row in rows}
            repo.set_user_metadata(session, {by_source[s]: m for s, m in metadata.items()})
        repo.add_batch_documents(session, batch_id, queued, busy)
        session.execute(update(Batch).where(Batch.id == batch_id).values(skipped=len(busy)))
    fields = {"name": loaded.name, "project": manifest.project, "priority": manifest.priority, "status": "running",
              "created_at": created.timestamp(), "lock_name": loaded.lock_name}  # fmt: skip
    state.init_batch(batch_id, fields, versions)
    first = STAGES[0]
    broker.publish_stage([(document_id, first, 1) for document_id in queued], manifest.priority)
    submitted = Submitted(batch_id, loaded.name, manifest.project, manifest.priority, len(sources), len(queued), len(busy))
    if not queued:
        finalize_batch(database, state, batch_id)
        state.set_fields(batch_id, status="finished", finished_at=time.time())
        state.client.zrem(state.keys.active_batches, batch_id)
        submitted.finished = True
    return submitted


def queues_needed(priority: int) -> list[str]:
    """The queues a batch of this priority goes through: its stages' and its control queue."""
    stage_queues = [STAGE_QUEUE[stage].value for stage in STAGES]
    return list(dict.fromkeys([*stage_queues, batch_queue(priority).value]))


def finalize_batch(database: Database, state: BatchState | None, batch_id: str) -> dict[str, Any]:
    """Write the batch summary from the database's document states; safe to call any number of times."""
    with database.session() as session:
        batch = session.get(Batch, batch_id)
        if batch is None:
            raise NoSuchBatch(f"no batch {batch_id}")
        counts = claims.status_counts(session, batch_id)
        errors = _errors_by_category(session, batch_id)
        batch.succeeded, batch.failed = counts["succeeded"], counts["failed"]
        batch.skipped, batch.cancelled = counts["skipped"], counts["cancelled"]
        batch.total = sum(counts.values())
        batch.errors_by_category = errors
        if counts["pending"] == 0 and counts["running"] == 0:
            if batch.status in RUNNING:
                batch.status = "cancelled" if batch.status == "cancelling" else "finished"
                batch.finished_at = datetime.now(UTC)
        elif batch.status in ("finished", "cancelled"):
            batch.status, batch.finished_at = "running", None
        return {"batch_id": batch_id, "status": batch.status, **counts, "errors_by_category": errors}


def _errors_by_category(session, batch_id: str) -> dict[str, int]:
    rows = session.execute(
        select(Document.error_category, func.count()).join(BatchDocument, BatchDocument.document_id == Document.id)
        .where(BatchDocument.batch_id == batch_id, BatchDocument.outcome == "failed").group_by(Document.error_category)
    ).all()  # fmt: skip
    return {category or "PERMANENT": count for category, count in sorted(rows, key=lambda r: str(r[0]))}


# -- reading ------------------------------------------------------------------------------------


def _summary_from_db(batch: Batch, project: str, counts: dict[str, int], errors: dict[str, int]) -> dict[str, Any]:
    return {
        "batch_id": batch.id, "name": batch.name, "project": project, "priority": batch.priority,
        "status": batch.status, "total": batch.total, **{k: counts[k] for k in COUNTERS},
        "errors_by_category": errors, "created_at": _ts(batch.created_at), "started_at": None,
        "finished_at": _ts(batch.finished_at), "source": "database",
    }  # fmt: skip


def _ts(moment: datetime | None) -> float | None:
    if moment is None:
        return None
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()


def _summary_from_redis(batch_id: str, live: dict[str, str]) -> dict[str, Any]:
    def number(key: str) -> int:
        return int(float(live.get(key) or 0))

    def moment(key: str) -> float | None:
        return float(live[key]) if live.get(key) else None

    errors = {k.removeprefix("errors:"): int(v) for k, v in live.items() if k.startswith("errors:") and int(v) > 0}
    return {
        "batch_id": batch_id, "name": live.get("name"), "project": live.get("project"),
        "priority": number("priority"), "status": live.get("status"), "total": number("total"),
        **{k: number(k) for k in COUNTERS}, "errors_by_category": dict(sorted(errors.items())),
        "created_at": moment("created_at"), "started_at": moment("started_at"),
        "finished_at": moment("finished_at"), "source": "redis",
    }  # fmt: skip


def rate_and_eta(finished: int, total: int, start: float | None, finished_at: float | None,
                 now: float) -> tuple[float | None, float | None]:  # fmt: skip
    """Documents per minute over the batch's own finished documents (from `start`, until it
    finished or now), and the seconds left at that rate; None where unknown."""
    end = finished_at or now
    rate = finished / (end - start) * 60 if start and end > start and finished else None
    remaining = total - finished
    eta = remaining / rate * 60 if rate and remaining and not finished_at else None
    return (round(rate, 2) if rate else None), (round(eta, 1) if eta else None)


def _with_rate(summary: dict[str, Any], now: float) -> dict[str, Any]:
    finished = summary["succeeded"] + summary["failed"] + summary["skipped"] + summary["cancelled"]
    start = summary.get("started_at") or summary.get("created_at")
    summary["done"] = finished
    summary["priority_name"] = priority_name(summary["priority"])
    summary["rate_per_minute"], summary["eta_seconds"] = rate_and_eta(finished, summary["total"], start,
                                                                      summary.get("finished_at"), now)  # fmt: skip
    return summary


def batch_status(database: Database, state: BatchState | None, batch_id: str) -> dict[str, Any]:
    """One batch: live from Redis when it has the batch, else from the database."""
    live = None
    if state is not None:
        try:
            live = state.read(batch_id)
        except Exception:
            log.warning("Redis unavailable; reading batch %s from the database", batch_id)
    if live:
        return _with_rate(_summary_from_redis(batch_id, live), time.time())
    with database.read() as session:
        batch = session.get(Batch, batch_id)
        if batch is None:
            raise NoSuchBatch(f"no batch {batch_id}", hint="list batches with: legaldoc status")
        project = session.get(Project, batch.project_id).name
        counts = claims.status_counts(session, batch_id)
        errors = _errors_by_category(session, batch_id)
        return _with_rate(_summary_from_db(batch, project, counts, errors), time.time())


def list_batches(database: Database, state: BatchState | None, *, limit: int = 50) -> list[dict[str, Any]]:
    """Recent batches, newest first, with live counts where Redis has them."""
    with database.read() as session:
        rows = session.execute(
            select(Batch, Project.name).join(Project, Project.id == Batch.project_id).order_by(Batch.created_at.desc()).limit(limit)
        ).all()  # fmt: skip
        stored = [(batch, project) for batch, project in rows]
    lives: list[dict[str, str] | None] = [None] * len(stored)
    if state is not None and stored:
        try:
            lives = state.read_many([batch.id for batch, _ in stored])
        except Exception:
            log.warning("Redis unavailable; batch counts come from the database")
    now = time.time()
    result = []
    for (batch, project), live in zip(stored, lives, strict=True):
        if live:
            result.append(_with_rate(_summary_from_redis(batch.id, live), now))
        else:
            counts = {k: getattr(batch, k, 0) or 0 for k in ("succeeded", "failed", "skipped", "cancelled")}
            counts.update(pending=0, running=0)
            if batch.status in RUNNING:
                with database.read() as session:
                    counts = claims.status_counts(session, batch.id)
            result.append(_with_rate(_summary_from_db(batch, project, counts, batch.errors_by_category or {}), now))
    return result


def batch_documents(database: Database, state: BatchState | None, batch_id: str) -> list[dict[str, Any]]:
    """Every document of a batch with its state in the batch, stage, attempts and error."""
    with database.read() as session:
        if session.get(Batch, batch_id) is None:
            raise NoSuchBatch(f"no batch {batch_id}", hint="list batches with: legaldoc status")
        rows = session.execute(
            select(Document.id, Document.source, Document.status, Document.stage, Document.attempts,
                   Document.error_category, Document.error_stage, Document.error_message, BatchDocument.outcome,
                   BatchDocument.reason, Document.batch_id)
            .join(BatchDocument, BatchDocument.document_id == Document.id)
            .where(BatchDocument.batch_id == batch_id).order_by(Document.id)
        ).all()  # fmt: skip
    result = []
    for doc_id, source, status, stage, attempts, category, error_stage, message, outcome, reason, owner in rows:
        if outcome:
            shown = outcome
        elif owner != batch_id:
            shown = "moved"
        else:
            shown = {"pending": "pending", "done": "succeeded"}.get(status, "running" if status in ("queued", "running") else status)
        entry = {"document_id": doc_id, "source": source, "state": shown, "stage": stage if shown == "running" else None,
                 "attempts": attempts, "reason": reason}  # fmt: skip
        if shown == "failed":
            entry["error"] = {"category": category, "stage": error_stage, "message": message}
        result.append(entry)
    return result


# -- cancel -------------------------------------------------------------------------------------


def cancel_batch(database: Database, state: BatchState | None, batch_id: str) -> dict[str, Any]:
    """Pending documents end as cancelled; running ones finish. Returns the batch status."""
    with database.session() as session:
        batch = session.get(Batch, batch_id)
        if batch is None:
            raise NoSuchBatch(f"no batch {batch_id}", hint="list batches with: legaldoc status")
        if batch.status not in RUNNING:
            raise UsageError(f"batch {batch_id} is already {batch.status}")
        batch.status = "cancelling"
    if state is not None:
        state.set_fields(batch_id, status="cancelling")
    with database.session() as session:
        transitions = claims.cancel_pending(session, batch_id)
    finished = False
    if state is not None and transitions:
        results = state.apply([StateChange(batch_id, t.document_id, t.version, t.state) for t in transitions])
        finished = 2 in results
    summary = finalize_batch(database, state, batch_id)
    if (finished or summary["status"] == "cancelled") and state is not None and state.read(batch_id):
        state.set_fields(batch_id, status="cancelled")
    return batch_status(database, state, batch_id) | {"cancelled_now": len(transitions)}


# -- sweeper ------------------------------------------------------------------------------------


def sweep(settings: Settings, database: Database, state: BatchState | None, broker: Broker) -> dict[str, int]:
    """Re-enqueue stages whose claim expired (killed worker) up to max_attempts, then fail them as
    RESOURCE; re-publish waiting documents whose message was lost; finalize batches that are done."""
    now = datetime.now(UTC)
    report = {"requeued": 0, "failed": 0, "republished": 0, "finalized": 0}
    with database.session() as session:
        expired = claims.expired_claims(session, now)
        changes: list[tuple[claims.Transition, Stage, int, bool]] = []
        for document in expired:
            stage, attempt = Stage(document.stage), document.attempts
            retry = attempt < settings.max_attempts
            message = (f"the worker holding the {stage.value} stage ({document.claimed_by}) stopped answering; "
                       f"its claim expired")  # fmt: skip
            transition = claims.fail(session, document.id, stage, attempt, None, category=ErrorCategory.RESOURCE.value,
                                     message=message, retry=retry)  # fmt: skip
            if transition is not None:
                repo.close_abandoned_runs(session, document.id)
                changes.append((transition, stage, attempt, retry))
        priorities = _priorities(session, {t.batch_id for t, *_ in changes})
    for transition, stage, attempt, retry in changes:
        priority = priorities.get(transition.batch_id, 5)
        if state is not None and transition.batch_id:
            state.apply([StateChange(transition.batch_id, transition.document_id, transition.version, transition.state,
                                     stage.value, ErrorCategory.RESOURCE.value,
                                     {"stage": stage.value, "category": "RESOURCE", "message": "claim expired",
                                      "attempt": attempt, "at": time.time()} if not retry else None,
                                     error_metric=f"{transition.document_id}|{stage.value}|{attempt}")])  # fmt: skip
        if retry:
            broker.publish_stage([(transition.document_id, stage, attempt + 1)], priority)
            report["requeued"] += 1
        else:
            report["failed"] += 1
    report["republished"] = _republish_lost(settings, database, broker, now)
    report["finalized"] = _finalize_done(database, state)
    return report


def _priorities(session, batch_ids: set[str | None]) -> dict[str, int]:
    ids = [b for b in batch_ids if b]
    if not ids:
        return {}
    return dict(session.execute(select(Batch.id, Batch.priority).where(Batch.id.in_(ids))).all())


def _republish_lost(settings: Settings, database: Database, broker: Broker, now: datetime) -> int:
    """A document waiting longer than two leases while its stage's queue is empty lost its message."""
    depths = broker.depths({q.value for q in STAGE_QUEUE.values()})
    empty_stages = [s.value for s, q in STAGE_QUEUE.items() if depths[q.value] == 0]
    if not empty_stages:
        return 0
    before = now - timedelta(seconds=2 * settings.claim_lease)
    with database.session() as session:
        waiting = claims.waiting_since(session, before, empty_stages)
        items = [(d.id, Stage(d.stage), d.attempts, d.batch_id) for d in waiting if d.batch_id]
        priorities = _priorities(session, {b for *_, b in items})
        claims.touch(session, [i[0] for i in items])
    by_priority: dict[int, list[tuple[int, Stage, int]]] = {}
    for document_id, stage, attempt, batch_id in items:
        by_priority.setdefault(priorities.get(batch_id, 5), []).append((document_id, stage, attempt))
    for priority, batch_items in by_priority.items():
        broker.publish_stage(batch_items, priority)
    if items:
        log.warning("re-published %d documents whose messages were lost", len(items))
    return len(items)


def _finalize_done(database: Database, state: BatchState | None) -> int:
    unfinished = select(BatchDocument.document_id).where(BatchDocument.batch_id == Batch.id, BatchDocument.outcome.is_(None))
    with database.read() as session:  # one indexed query, not a count per running batch
        done = session.scalars(select(Batch.id).where(Batch.status.in_(RUNNING), ~unfinished.exists())).all()
    for batch_id in done:
        finalize_batch(database, state, batch_id)
    return len(done)


def retention(settings: Settings, state: BatchState) -> int:
    """Drop metrics older than the retention period."""
    before = time.time() - settings.metrics_retention_days * 86400
    return state.trim_metrics(before, [s.value for s in STAGES], [c.value for c in ErrorCategory])


def counts_match(database: Database, state: BatchState, batch_id: str) -> tuple[dict[str, int], dict[str, int]]:
    """(Redis counters, database counts) of a batch, for checks."""
    live = state.read(batch_id) or {}
    with database.read() as session:
        stored = claims.status_counts(session, batch_id)
    return {k: int(live.get(k, 0)) for k in COUNTERS}, stored



class WaitTimedOut(LegaldocError):
    """Raised when a batch did not finish within the time given to wait for it."""

    category = ErrorCategory.RESOURCE


def wait_for_batch(database: Database, state: BatchState | None, batch_id: str, *, timeout: float | None,
                   on_update=None, poll: float = 0.5, alive=None) -> dict[str, Any]:  # fmt: skip
    """Poll the batch until it is finished or cancelled, and see the database row finalized;
    `on_update(status)` sees every poll.

    `alive()`, when given, is checked each poll; returning a message stops the wait with that error.
    """
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        status = batch_status(database, state, batch_id)
        if on_update:
            on_update(status)
        if status["status"] in ("finished", "cancelled"):
            # the live state moves first; the finalize task may not have written the batch row yet.
            # Finalizing here (idempotent) means a submit of the same manifest right after a wait
            # never finds the batch "still running" (cron: `submit --wait` twice in a row).
            finalize_batch(database, state, batch_id)
            return status
        if alive is not None and (problem := alive()):
            raise LegaldocError(problem)
        if deadline is not None and time.monotonic() >= deadline:
            raise WaitTimedOut(f"batch {batch_id} did not finish within {timeout:g} s",
                               hint=f"it goes on; follow it with: legaldoc status {batch_id}")  # fmt: skip
        time.sleep(poll)
