"""Use cases of batches: submit, status, cancel, settle, wait, and the sweeper that keeps them moving.

`finalize_batch` settles a batch by the rule of `lifecycle`: it counts the batch's documents in
the database, applies `settled_status`, and copies the result to the live state. Everything that
may have ended (or reopened) a batch calls it.
"""

from __future__ import annotations

import contextlib
import logging
import secrets
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import redis
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from legaldoc.errors import (
    RETRY_POLICIES,
    BatchBusy,
    ErrorCategory,
    LegaldocError,
    NoSuchBatch,
    ServiceUnavailable,
    UsageError,
    WaitTimedOut,
)
from legaldoc.lifecycle import (
    FINAL,
    IN_PROGRESS,
    UNFINISHED,
    WAITING,
    Attempt,
    AttemptOutcome,
    BatchStatus,
    Failure,
    MirrorState,
    Transition,
    mirror_state,
    settled_status,
)
from legaldoc.manifest import LoadedManifest
from legaldoc.models import STAGES, Stage
from legaldoc.pipeline.extract.textract import OcrMode
from legaldoc.queues import DEFAULT_PRIORITY, STAGE_QUEUE, batch_queue, broker_priority
from legaldoc.services.openai_entities import MODEL_ENTITY_PROVIDERS
from legaldoc.services.openai_entities import preflight as preflight_entities
from legaldoc.services.report import batch_report, build_report
from legaldoc.services.sources import expand_documents
from legaldoc.services.summary import BatchSummary, DocumentRow, usage_of
from legaldoc.services.textract import preflight as textract_preflight
from legaldoc.services.wiring import Runtime
from legaldoc.state.batches import ErrorNote
from legaldoc.state.purge import TooManyMessages, drop_stage_messages
from legaldoc.storage import claims
from legaldoc.storage import repository as repo
from legaldoc.storage.tables import Batch, BatchDocument, Document, Project

log = logging.getLogger("legaldoc.batches")

KNOWN_PROVIDERS = {"ocr": {mode.value for mode in OcrMode}, "entities": {"local", *MODEL_ENTITY_PROVIDERS}}


@dataclass
class Submitted:
    batch_id: str
    name: str
    project: str
    priority: int
    total: int
    queued: int
    skipped: int
    settled: bool = False  # at once: nothing to run
    not_documents: list[str] = field(default_factory=list)  # archive members legaldoc does not read

    def as_json(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if k != "settled"}


def new_batch_id() -> str:
    return f"{datetime.now(UTC):%Y%m%d-%H%M%S}-{secrets.token_hex(3)}"


def _check_options(loaded: LoadedManifest) -> None:
    options = loaded.manifest.options
    for name, known in KNOWN_PROVIDERS.items():
        value = getattr(options, name)
        if value is not None and value not in known:
            raise UsageError(f"{loaded.path}: options.{name}: unknown provider {value!r}",
                             hint=f"available: {', '.join(sorted(known))}")  # fmt: skip


def submit_batch(rt: Runtime, loaded: LoadedManifest, *, skip_processed: bool | None = None) -> Submitted:
    """Insert the batch and its documents, initialize its live state, publish its first-stage messages."""
    _check_options(loaded)
    preflight_entities(rt.settings, loaded.manifest.options.entities)
    textract_preflight(rt.settings, loaded.manifest.options.ocr)
    expanded = expand_documents(loaded.documents, rt.settings)
    loaded = loaded.model_copy(update={"documents": expanded.documents})
    manifest = loaded.manifest
    skip = manifest.options.skip_processed if skip_processed is None else skip_processed
    if foreign := foreign_workers(rt, manifest.priority):
        raise ServiceUnavailable(foreign, hint="start workers with this --data-dir or --database-url, or submit with theirs")
    lock_key = f"submit:{manifest.project}:{loaded.lock_name}"
    if not rt.lock.acquire(lock_key, ttl=300):
        raise BatchBusy(f"another submit of manifest {loaded.lock_name!r} is in progress", hint="wait for it to finish")
    try:
        submitted = _submit(rt, loaded, skip)
        submitted.not_documents = expanded.skipped
        return submitted
    finally:
        rt.lock.release(lock_key)


def _submit(rt: Runtime, loaded: LoadedManifest, skip: bool) -> Submitted:
    manifest = loaded.manifest
    batch_id = new_batch_id()
    created = datetime.now(UTC)
    sources = [spec.source for spec in loaded.documents]
    metadata = {spec.source: spec.metadata for spec in loaded.documents if spec.metadata}
    with rt.database.session() as session:
        project_id = repo.get_or_create_project(session, manifest.project).id
        running = session.scalars(
            select(Batch.id).where(Batch.project_id == project_id, Batch.lock_name == loaded.lock_name,
                                   Batch.status.in_(IN_PROGRESS))
        ).first()  # fmt: skip
        if running:
            raise BatchBusy(f"batch {running} of manifest {loaded.lock_name!r} is still running",
                            hint=f"wait for it (legaldoc status {running}) or cancel it (legaldoc cancel {running})")  # fmt: skip
        session.add(Batch(id=batch_id, name=loaded.name, lock_name=loaded.lock_name, project_id=project_id,
                          priority=manifest.priority, status=BatchStatus.RUNNING, total=len(sources),
                          options={**manifest.options.model_dump(), "skip_processed": skip},
                          manifest=str(loaded.path), created_at=created, runner=rt.state.runner()))  # fmt: skip
        session.flush()
        rows = repo.ensure_documents(session, project_id, sources, batch_id)
        running_batches = set(session.scalars(select(Batch.id).where(Batch.status.in_(IN_PROGRESS), Batch.id != batch_id)))
        now = datetime.now(UTC)
        queued: list[int] = []
        reset: list[int] = []
        busy: dict[int, str] = {}
        versions: dict[int, tuple[int, MirrorState]] = {}
        for row in rows:
            if row.batch_id == batch_id:  # created just now, already pending in this batch
                queued.append(row.id)
                versions[row.id] = (row.version, MirrorState.PENDING)
            elif reason := claims.held_elsewhere(row, batch_running=row.batch_id in running_batches, now=now):
                busy[row.id] = reason
                versions[row.id] = (row.version, MirrorState.SKIPPED)
            else:
                queued.append(row.id)
                reset.append(row.id)
                versions[row.id] = (row.version + 1, MirrorState.PENDING)
        repo.reset_for_run(session, reset, batch_id=batch_id)
        repo.release_from_other_batches(session, reset, batch_id)
        if metadata:
            by_source = {row.source: row.id for row in rows}
            repo.set_user_metadata(session, {by_source[s]: m for s, m in metadata.items()})
        repo.add_batch_documents(session, batch_id, queued, busy)
        session.execute(update(Batch).where(Batch.id == batch_id).values(skipped=len(busy)))
    fields = {"name": loaded.name, "project": manifest.project, "priority": manifest.priority,
              "status": BatchStatus.RUNNING, "created_at": created.timestamp(), "lock_name": loaded.lock_name}  # fmt: skip
    rt.state.init_batch(batch_id, fields, versions)
    rt.broker.publish_stage([(document_id, STAGES[0], 1) for document_id in queued], manifest.priority)
    submitted = Submitted(batch_id, loaded.name, manifest.project, manifest.priority, len(sources), len(queued), len(busy))
    if not queued:
        submitted.settled = not finalize_batch(rt, batch_id).active
    return submitted


def queues_needed(priority: int) -> list[str]:
    """The queues a batch of this priority goes through: its stages' and its control queue."""
    stage_queues = [STAGE_QUEUE[stage].value for stage in STAGES]
    return list(dict.fromkeys([*stage_queues, batch_queue(priority).value]))


def foreign_workers(rt: Runtime, priority: int) -> str | None:
    """Why a batch would wait for ever: every live worker of a queue it needs serves another database."""
    online = rt.registry.online()
    for queue in queues_needed(priority):
        serving = [w for w in online if queue in w.queues]
        if serving and all(w.database and w.database != rt.database.identity for w in serving):
            return (f"the live workers on {queue} ({', '.join(sorted(w.name for w in serving))}) serve the database at "
                    f"{serving[0].database_url or serving[0].database}, not this one at {rt.database.where}")  # fmt: skip
    return None


def stall_reason(rt: Runtime, priority: int) -> str:
    """What holds a batch that makes no progress, as far as Redis can tell."""
    if missing := rt.registry.queues_without_workers(queues_needed(priority)):
        return f"no live worker consumes {', '.join(missing)} (start one with: legaldoc workers start)"
    if foreign := foreign_workers(rt, priority):
        return foreign
    memory = rt.client("broker").info("memory")
    if memory.get("maxmemory") and memory.get("used_memory", 0) >= 0.95 * memory["maxmemory"]:
        return "Redis is out of memory (maxmemory reached)"
    return "the workers are busy with other work, or slow"


# -- settling -----------------------------------------------------------------------------------


def finalize_batch(rt: Runtime, batch_id: str) -> BatchSummary:
    """Count the batch's documents, settle its status (`lifecycle.settled_status`) and copy it to
    the live state; safe to call any number of times, from anywhere."""
    with rt.database.session() as session:
        batch = get_batch(session, batch_id, lock=True)  # finalizers take turns: one of them settles it
        counts = claims.state_counts(session, batch_id)
        errors = _errors_by_category(session, batch_id)
        batch.succeeded, batch.failed = counts[MirrorState.SUCCEEDED], counts[MirrorState.FAILED]
        batch.skipped, batch.cancelled = counts[MirrorState.SKIPPED], counts[MirrorState.CANCELLED]
        batch.total = sum(counts.values())
        batch.errors_by_category = errors
        status = settled_status(BatchStatus(batch.status), counts[MirrorState.PENDING] + counts[MirrorState.RUNNING])
        if status != batch.status:
            log.info("batch %s settled %s (was %s): %d succeeded, %d failed, %d skipped, %d cancelled", batch_id,
                     status.value, batch.status, batch.succeeded, batch.failed, batch.skipped, batch.cancelled)  # fmt: skip
            batch.status = status
            batch.finished_at = None if status in IN_PROGRESS else datetime.now(UTC)
            batch.report = None
        if status not in IN_PROGRESS and batch.report is None:  # kept as settled: later batches do not rewrite it
            session.flush()
            batch.report = build_report(session, batch)
            if usage := _live_usage(rt, batch_id):  # what remote providers cost, kept with the report
                batch.report = {**batch.report, "usage": usage}
        summary = BatchSummary.from_database(batch, _project_name(session, batch), counts, errors, time.time())
    if rt.mirror is not None:
        try:
            rt.mirror.settle(batch_id, summary.status, created_at=summary.created_at or 0.0,
                             finished_at=summary.finished_at)  # fmt: skip
        except redis.RedisError:
            log.warning("could not copy the status of batch %s to Redis", batch_id, exc_info=True)
    return summary


def _live_usage(rt: Runtime, batch_id: str) -> dict[str, dict[str, float]]:
    if rt.mirror is None:
        return {}
    try:
        return usage_of(rt.mirror.read(batch_id) or {})
    except redis.RedisError:
        return {}


def mirror(rt: Runtime, transitions: Sequence[Transition]) -> None:
    """Copy document state changes to the live state and settle the batches they leave with no
    open document. A mirror failure never fails the caller: the database has it all."""
    if not transitions or rt.mirror is None:
        return
    try:
        settleable = rt.mirror.apply_transitions(transitions)
    except redis.RedisError:
        log.warning("could not mirror %d document changes to Redis", len(transitions), exc_info=True)
        return
    for batch_id in settleable:
        finalize_batch(rt, batch_id)


def get_batch(session: Session, batch_id: str, *, lock: bool = False) -> Batch:
    """The batch's row; with `lock`, held until the transaction ends (PostgreSQL's SELECT ... FOR
    UPDATE; SQLite's writers hold the whole database already), so two workers settling it at once
    take turns and the second finds it settled."""
    batch = session.get(Batch, batch_id, with_for_update=lock or None)
    if batch is None:
        raise NoSuchBatch(f"no batch {batch_id}", hint="list batches with: legaldoc status")
    return batch


def _project_name(session: Session, batch: Batch) -> str:
    return session.scalar(select(Project.name).where(Project.id == batch.project_id)) or ""


def _errors_by_category(session: Session, batch_id: str) -> dict[str, int]:
    rows = session.execute(
        select(category := func.coalesce(BatchDocument.error_category, Document.error_category), func.count())
        .select_from(Document).join(BatchDocument, BatchDocument.document_id == Document.id)
        .where(BatchDocument.batch_id == batch_id, BatchDocument.outcome == MirrorState.FAILED)
        .group_by(category)
    ).all()  # fmt: skip
    return {category or ErrorCategory.PERMANENT: count for category, count in sorted(rows, key=lambda r: str(r[0]))}


# -- reading ------------------------------------------------------------------------------------


def batch_status(rt: Runtime, batch_id: str, *, live: bool = True,
                 on_redis_error: Callable[[redis.RedisError], None] | None = None) -> BatchSummary:  # fmt: skip
    """One batch: live from Redis when it has the batch (and `live`), else from the database.

    When Redis fails, `on_redis_error(error)` hears it; without it a warning is logged."""
    if live and rt.mirror is not None:
        try:
            fields = rt.mirror.read(batch_id)
        except redis.RedisError as error:
            if on_redis_error is None:
                log.warning("Redis unavailable; reading batch %s from the database", batch_id)
            else:
                on_redis_error(error)
            fields = None
        if fields:
            return BatchSummary.from_live(batch_id, fields, time.time())
    with rt.database.read() as session:
        batch = get_batch(session, batch_id)
        counts = claims.state_counts(session, batch_id)
        errors = _errors_by_category(session, batch_id)
        return BatchSummary.from_database(batch, _project_name(session, batch), counts, errors, time.time())


def list_batches(rt: Runtime, *, limit: int | None = 50) -> list[BatchSummary]:
    """Recent batches, newest first, with live counts where Redis has them."""
    with rt.database.read() as session:
        stored = session.execute(
            select(Batch, Project.name).join(Project, Project.id == Batch.project_id)
            .order_by(Batch.created_at.desc()).limit(limit)
        ).all()  # fmt: skip
        lives: list[dict[str, str] | None] = [None] * len(stored)
        if rt.mirror is not None and stored:
            try:
                lives = rt.mirror.read_many([batch.id for batch, _ in stored])
            except redis.RedisError:
                log.warning("Redis unavailable; batch counts come from the database")
        now = time.time()
        result = []
        for (batch, project), live in zip(stored, lives, strict=True):
            if live:
                result.append(BatchSummary.from_live(batch.id, live, now))
                continue
            if batch.status in IN_PROGRESS:
                counts = claims.state_counts(session, batch.id)
            else:
                counts = dict.fromkeys(MirrorState, 0) | {state: getattr(batch, state) or 0 for state in FINAL}
            result.append(BatchSummary.from_database(batch, project, counts, batch.errors_by_category or {}, now))
    return result


def batch_documents(rt: Runtime, batch_id: str, *, limit: int | None = None, offset: int = 0,
                    after: int | None = None) -> list[DocumentRow]:  # fmt: skip
    """The batch's documents in id order with their state in the batch, stage, attempts and error: as
    each ended in this batch (the batch's own record), or live while the batch still holds it. One
    page: `limit` rows (None: all) from `offset`, or after document id `after` (a cursor, which
    costs the same on any page); the page is read with LIMIT/OFFSET on the batch's primary key."""
    with rt.database.read() as session:
        get_batch(session, batch_id)
        return _document_rows(session, batch_id, limit=limit, offset=offset, after=after)


def iter_batch_documents(rt: Runtime, batch_id: str, *, limit: int | None = None, offset: int = 0,
                         after: int | None = None, page: int = 1000) -> Iterator[DocumentRow]:  # fmt: skip
    """`batch_documents`, read `page` rows at a time (each page a short read by cursor): a batch of
    any size is listed in constant memory. NoSuchBatch is raised here, before any row is read."""
    with rt.database.read() as session:
        get_batch(session, batch_id)
    return _pages(rt, batch_id, limit=limit, offset=offset, after=after, page=page)


def _pages(rt: Runtime, batch_id: str, *, limit: int | None, offset: int, after: int | None, page: int) -> Iterator[DocumentRow]:
    left = limit
    while left is None or left > 0:
        size = page if left is None else min(page, left)
        with rt.database.read() as session:
            rows = _document_rows(session, batch_id, limit=size, offset=offset, after=after)
        yield from rows
        if len(rows) < size:
            return
        offset, after = 0, rows[-1].document_id
        if left is not None:
            left -= len(rows)


def count_batch_documents(rt: Runtime, batch_id: str) -> int:
    with rt.database.read() as session:
        return session.scalar(select(func.count()).select_from(BatchDocument).where(BatchDocument.batch_id == batch_id)) or 0


def _document_rows(session: Session, batch_id: str, *, limit: int | None, offset: int, after: int | None) -> list[DocumentRow]:
    query = (
        select(Document.id, Document.source, Document.status, Document.stage, Document.attempts,
               Document.error_category, Document.error_stage, Document.error_message, BatchDocument.outcome,
               BatchDocument.reason, Document.batch_id, BatchDocument.stage, BatchDocument.error_category,
               BatchDocument.attempts, Document.due_at)
        .join(BatchDocument, BatchDocument.document_id == Document.id)
        .where(BatchDocument.batch_id == batch_id).order_by(Document.id)
    )  # fmt: skip
    if limit is not None or offset or after is not None:  # the page's ids first, on the primary key alone
        page = (select(BatchDocument.document_id).where(BatchDocument.batch_id == batch_id)
                .order_by(BatchDocument.document_id).limit(limit).offset(offset or None))  # fmt: skip
        if after is not None:
            page = page.where(BatchDocument.document_id > after)
        query = query.where(BatchDocument.document_id.in_(select(page.subquery().c.document_id)))
    rows = session.execute(query).all()
    documents = []
    for (doc_id, source, status, stage, attempts, category, error_stage, message, outcome, reason, owner,
         ended_stage, ended_category, ended_attempts, due_at) in rows:  # fmt: skip
        state = mirror_state(status, outcome, owner == batch_id)
        recorded = ended_category is not None or (outcome is not None and ended_attempts)
        if state is MirrorState.FAILED:
            if ended_category is not None:  # the batch's own record of the failure
                documents.append(DocumentRow(doc_id, source, state, ended_stage, ended_attempts, ended_category, reason, reason))
            else:  # ended before batches kept their own record
                documents.append(DocumentRow(doc_id, source, state, error_stage, attempts, category, message, reason))
        elif outcome is not None:
            documents.append(DocumentRow(doc_id, source, state, None, ended_attempts if recorded else attempts, reason=reason))
        else:
            running = state is MirrorState.RUNNING
            documents.append(DocumentRow(doc_id, source, state, stage if running else None, attempts, reason=reason,
                                         retry_at=due_at if running and owner == batch_id else None,
                                         category=category if running and due_at else None))  # fmt: skip
    return documents


def failed_documents(rt: Runtime, batch_id: str, limit: int = 1000) -> list[dict[str, Any]]:
    """The batch's failed documents as the batch recorded them: id, source, category, stage, message."""
    with rt.database.read() as session:
        rows = session.execute(
            select(Document.id, Document.source, func.coalesce(BatchDocument.error_category, Document.error_category),
                   func.coalesce(BatchDocument.stage, Document.error_stage), BatchDocument.reason)
            .select_from(Document).join(BatchDocument, BatchDocument.document_id == Document.id)
            .where(BatchDocument.batch_id == batch_id, BatchDocument.outcome == MirrorState.FAILED)
            .order_by(Document.id).limit(limit)
        ).all()  # fmt: skip
    return [{"document_id": d, "source": s, "category": c, "stage": st, "message": m} for d, s, c, st, m in rows]


def report(rt: Runtime, batch_id: str) -> dict[str, Any]:
    """The batch's report: stored when it settled, live while it runs (see `services.report`)."""
    with rt.database.read() as session:
        return batch_report(session, get_batch(session, batch_id))


# -- cancel -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Cancelled:
    summary: BatchSummary
    cancelled_now: int
    already: bool = False  # the batch had ended before: nothing was done

    def as_json(self) -> dict[str, Any]:
        return self.summary.as_json() | {"cancelled_now": self.cancelled_now, "already_ended": self.already}


def cancel_batch(rt: Runtime, batch_id: str) -> Cancelled:
    """Documents waiting for a stage end as cancelled; a stage that runs finishes, and its document
    ends cancelled at its next stage. Cancelling a batch that has ended does nothing."""
    with rt.database.session() as session:
        batch = get_batch(session, batch_id)
        already = batch.status not in IN_PROGRESS
        priority = batch.priority
        if not already:
            batch.status = BatchStatus.CANCELLING
    if already:
        return Cancelled(batch_status(rt, batch_id), 0, already=True)
    with rt.database.session() as session:
        transitions = claims.cancel(session, batch_id, WAITING)
    mirror(rt, transitions)
    _drop_messages(rt, [t.document_id for t in transitions], priority)
    finalize_batch(rt, batch_id)
    return Cancelled(batch_status(rt, batch_id), len(transitions))


def _drop_messages(rt: Runtime, document_ids: list[int], priority: int) -> None:
    """The cancelled documents' stage messages out of the queues (`state.purge`): workers never pop
    them. Best effort: a message left (Redis failed) is a no-op for the worker that pops it."""
    if not document_ids or rt.mirror is None:
        return
    lists = [rt.keys.queue_lists(STAGE_QUEUE[stage].value)[broker_priority(priority)] for stage in STAGES]
    try:
        dropped = drop_stage_messages(rt.broker.client, dict.fromkeys(lists), document_ids, rt.database.identity)
    except TooManyMessages as busy:
        log.warning("left the messages of %d cancelled documents in the queues (workers skip them): %s",
                    len(document_ids), busy)  # fmt: skip
        return
    except redis.RedisError:
        log.warning("could not take the messages of %d cancelled documents out of the queues", len(document_ids),
                    exc_info=True)  # fmt: skip
        return
    log.info("took %d messages of cancelled documents out of the queues", dropped)


def abandon_batch(rt: Runtime, batch_id: str, reason: str) -> int:
    """End every unfinished document of a batch whose workers are known to be gone (the `legaldoc
    run` that held it stopped or was killed) as cancelled, and settle the batch; the count ended."""
    with rt.database.session() as session:
        batch = get_batch(session, batch_id)
        if batch.status not in IN_PROGRESS:
            return 0
        batch.status = BatchStatus.CANCELLING
        transitions = claims.cancel(session, batch_id, UNFINISHED, reason[:500])
        for transition in transitions:
            repo.close_abandoned_runs(session, transition.document_id)
    mirror(rt, transitions)
    finalize_batch(rt, batch_id)
    return len(transitions)


def refuse_foreign(rt: Runtime, document_id: int, stage: Stage, database: str) -> AttemptOutcome:
    """A message of another database reached this worker (two installations share a Redis, or a
    worker was started on another data folder): say so loudly and do nothing with it."""
    message = (f"worker serves database {rt.database.identity[:8]} ({rt.database.where}), but the {stage} message of "
               f"document {document_id} belongs to database {database[:8]}: start workers with that database's "
               "--data-dir or --database-url")  # fmt: skip
    log.error("%s", message)
    try:
        rt.state.note_error("", document_id, ErrorNote(stage, ErrorCategory.CONFIGURATION, message, 0, time.time()))
    except redis.RedisError:
        log.warning("could not record the refusal in Redis", exc_info=True)
    return AttemptOutcome.FOREIGN


# -- waiting ------------------------------------------------------------------------------------


def wait_for_batch(rt: Runtime, batch_id: str, *, timeout: float | None,
                   on_update: Callable[[BatchSummary], None] | None = None, poll: float = 0.5,
                   alive: Callable[[], str | None] | None = None,
                   on_stall: Callable[[str], None] | None = None,
                   on_redis: Callable[[float | None], None] | None = None) -> BatchSummary:  # fmt: skip
    """Poll the batch until it has settled; `on_update(summary)` sees every poll.

    When every document has ended the batch is settled here at once (idempotent), not left to
    the finalize task. `alive()`, when given, is checked each poll; a message stops the wait.
    `on_stall(why)` hears when nothing has moved for the `stall_warning` setting, with the reason.
    While Redis is down the batch is read from the database: the outage is logged once, then
    `on_redis(seconds_down)` hears every poll that still finds it down, and `on_redis(None)` the
    first that finds it back (also logged once)."""
    deadline = None if timeout is None else time.monotonic() + timeout
    seen, since = None, time.monotonic()
    down_since: float | None = None
    failures: list[redis.RedisError] = []
    while True:
        failures.clear()
        summary = batch_status(rt, batch_id, on_redis_error=failures.append)
        down = bool(failures) or rt.mirror is None  # None: it did not answer lately, asked again in a while
        if down and down_since is None:
            down_since = time.monotonic()
            log.warning("Redis unavailable (%s); reading batch %s from the database, retrying every %g s",
                        failures[0] if failures else "not answering", batch_id, poll)  # fmt: skip
        elif down and down_since is not None and on_redis:
            on_redis(time.monotonic() - down_since)
        elif not down and down_since is not None:
            log.warning("Redis is back after %.0f s; batch %s is read live again", time.monotonic() - down_since, batch_id)
            down_since = None
            if on_redis:
                on_redis(None)
        if (summary.done, summary.running, summary.pending) != seen:
            seen, since = (summary.done, summary.running, summary.pending), time.monotonic()
        elif on_stall and time.monotonic() - since >= rt.settings.stall_warning and summary.open:
            with contextlib.suppress(redis.RedisError):
                on_stall(f"batch {batch_id} has made no progress for {time.monotonic() - since:.0f} s: "
                         f"{stall_reason(rt, summary.priority)}")  # fmt: skip
            since = time.monotonic()
        if summary.active and summary.open == 0:
            finalize_batch(rt, batch_id)
            summary = batch_status(rt, batch_id)
        if on_update:
            on_update(summary)
        if not summary.active:
            return summary
        if alive is not None and (problem := alive()):
            raise LegaldocError(problem)
        if deadline is not None and time.monotonic() >= deadline:
            raise WaitTimedOut(f"batch {batch_id} did not finish within {timeout:g} s",
                               hint=f"it goes on; follow it with: legaldoc status {batch_id}")  # fmt: skip
        time.sleep(poll)


# -- sweeper ------------------------------------------------------------------------------------


@dataclass
class SweepReport:
    requeued: int = 0
    failed: int = 0
    republished: int = 0
    finalized: int = 0
    rebuilt: int = 0


def sweep(rt: Runtime) -> SweepReport:
    """Re-enqueue stages whose claim expired (killed worker) up to the RESOURCE policy's attempts,
    then fail them; re-publish waiting documents whose message was lost; settle batches that are done."""
    now = datetime.now(UTC)
    attempts = RETRY_POLICIES[ErrorCategory.RESOURCE].max_attempts(rt.settings.max_attempts)
    report = SweepReport()
    transitions: list[Transition] = []
    runner = rt.state.runner()  # a `legaldoc run`'s private Redis: sweep its batches only
    with rt.database.session() as session:
        for document in claims.expired_claims(session, now, runner=runner):
            stage, number = document.current_stage, document.attempts  # (the UPDATE below refreshes the row)
            failure = Failure(ErrorCategory.RESOURCE, f"the worker holding the {stage} stage ({document.claimed_by}) "
                              "stopped answering; its claim expired", source=document.source)  # fmt: skip
            outcome = AttemptOutcome.RETRY if number < attempts else AttemptOutcome.FAILED
            transition = claims.fail(session, document.id, Attempt(stage, number, outcome, failure=failure), None)
            if transition is not None:
                repo.close_lost_run(session, document.id, stage, number, failure.category.value, failure.message, None)
                transitions.append(transition)
        priorities = _priorities(session, {t.batch_id for t in transitions})
    mirror(rt, transitions)
    for t in transitions:
        assert t.attempt is not None
        if t.attempt.outcome is AttemptOutcome.RETRY:
            rt.broker.publish_stage([(t.document_id, t.attempt.stage, t.attempt.number + 1)],
                                    priorities.get(t.batch_id, DEFAULT_PRIORITY))  # fmt: skip
            report.requeued += 1
        else:
            report.failed += 1
    report.rebuilt = _rebuild_lost_mirrors(rt, runner)
    report.republished = _republish_lost(rt, now, runner)
    report.finalized = _finalize_done(rt, runner)
    return report


def _rebuild_lost_mirrors(rt: Runtime, runner: str | None) -> int:
    """Unfinished batches whose live state Redis no longer holds (it restarted empty, or was
    flushed) get it back from the database, so `status` and the dashboard count them again."""
    with rt.database.read() as session:
        running = session.scalars(select(Batch.id).where(Batch.status.in_(IN_PROGRESS), claims.batches_of(runner))).all()
    if not running:
        return 0
    pipe = rt.state.client.pipeline(transaction=False)
    for batch_id in running:
        pipe.exists(rt.state.keys.batch(batch_id))
    lost = [batch_id for batch_id, held in zip(running, pipe.execute(), strict=True) if not held]
    for batch_id in lost:
        rebuild_state(rt, batch_id)
    if lost:
        log.warning("rebuilt the live state of %d batches Redis had lost", len(lost))
    return len(lost)


def rebuild_state(rt: Runtime, batch_id: str) -> None:
    """The batch's live state written again from the database (the source of truth)."""
    with rt.database.read() as session:
        batch = get_batch(session, batch_id)
        project = session.scalar(select(Project.name).where(Project.id == batch.project_id))
        documents = claims.batch_document_states(session, batch_id)
        errors = {row.id: ErrorNote(row.error_stage, row.error_category, row.error_message or "", row.attempts,
                                    row.updated_at.timestamp(), digest=row.error_digest, source=row.source)
                  for row in claims.failed_in_batch(session, batch_id)}  # fmt: skip
    fields = {"name": batch.name, "project": project, "priority": batch.priority, "status": batch.status,
              "created_at": batch.created_at.timestamp(), "lock_name": batch.lock_name}  # fmt: skip
    rt.state.rebuild(batch_id, fields, documents, errors,
                     finished_at=batch.finished_at.timestamp() if batch.finished_at else None)  # fmt: skip


def _priorities(session: Session, batch_ids: set[str | None]) -> dict[str | None, int]:
    ids = [b for b in batch_ids if b]
    if not ids:
        return {}
    return dict(session.execute(select(Batch.id, Batch.priority).where(Batch.id.in_(ids))).all())


def _republish_lost(rt: Runtime, now: datetime, runner: str | None) -> int:
    """A document waiting longer than two leases while its stage's queue is empty lost its message. A
    delayed retry waits from its due time: its message is held by a worker until then, off the queue."""
    depths = rt.broker.depths({q.value for q in STAGE_QUEUE.values()})
    empty_stages = [s.value for s, q in STAGE_QUEUE.items() if depths[q.value] == 0]
    if not empty_stages:
        return 0
    before = now - timedelta(seconds=2 * rt.settings.claim_lease)
    with rt.database.session() as session:
        waiting = claims.waiting_since(session, before, empty_stages, runner=runner)
        items = [(d.id, d.current_stage, d.attempts, d.batch_id) for d in waiting if d.batch_id]
        priorities = _priorities(session, {b for *_, b in items})
        claims.touch(session, [i[0] for i in items])
    by_priority: dict[int, list[tuple[int, Stage, int]]] = {}
    for document_id, stage, attempt, batch_id in items:
        by_priority.setdefault(priorities.get(batch_id, DEFAULT_PRIORITY), []).append((document_id, stage, attempt))
    for priority, batch_items in by_priority.items():
        rt.broker.publish_stage(batch_items, priority)
    if items:
        log.warning("re-published %d documents whose messages were lost", len(items))
    return len(items)


def _finalize_done(rt: Runtime, runner: str | None) -> int:
    unfinished = select(BatchDocument.document_id).where(BatchDocument.batch_id == Batch.id, BatchDocument.outcome.is_(None))
    with rt.database.read() as session:  # one indexed query, not a count per running batch
        done = session.scalars(select(Batch.id).where(Batch.status.in_(IN_PROGRESS), claims.batches_of(runner),
                                                      ~unfinished.exists())).all()  # fmt: skip
    for batch_id in done:
        finalize_batch(rt, batch_id)
    return len(done)


def retention(rt: Runtime) -> int:
    """Drop metrics older than the retention period."""
    before = time.time() - rt.settings.metrics_retention_days * 86400
    return rt.state.trim_metrics(before, [s.value for s in STAGES], [c.value for c in ErrorCategory])
