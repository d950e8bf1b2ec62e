"""Durable stage claims: the database decides who runs which stage of which document.

A document row carries (status, stage, attempts, version, claimed_by, lease_expires_at). A message
names (document, stage, attempt); it may run only if a conditional UPDATE claims the row for that
exact stage and attempt, so a redelivered or duplicated message does nothing. Every change bumps
`version` and returns a `Transition`; the Redis mirror applies it only when it is newer than what
it holds.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, Row, and_, case, func, or_, select, update
from sqlalchemy.orm import Session

from legaldoc import PIPELINE_VERSION, hosts
from legaldoc.errors import ClaimLost
from legaldoc.lifecycle import (
    UNFINISHED,
    WAITING,
    Attempt,
    AttemptOutcome,
    DocumentStatus,
    MirrorState,
    Transition,
    mirror_state,
)
from legaldoc.models import STAGES, Stage
from legaldoc.storage.tables import Batch, BatchDocument, Document

HOST = hosts.HOST

EARLY_TOLERANCE = 0.5  # seconds: a message this close to its attempt's due time runs (clocks and timers are not exact)


@dataclass(frozen=True)
class Claim:
    """RUNNING with the transition when the stage was claimed; LOST with the `holder` when the
    attempt's holder died or its lease ran out (that attempt has to be counted, not run again);
    EARLY with the attempt's `due_at`; else DUPLICATE, STALE or MISSING."""

    outcome: AttemptOutcome
    transition: Transition | None = None
    project_id: int | None = None
    source: str | None = None
    due_at: datetime | None = None
    holder: str | None = None


def worker_identity(pid: int | None = None) -> str:
    """The holder name of this process (or of process `pid` of this host) in a claim: ``HOST/SPACE:PID``
    (`hosts.holder`), so two hosts, or two containers with one hostname, never share one."""
    return hosts.holder(pid)


def now_utc() -> datetime:
    return datetime.now(UTC)


def _changed(**values: Any) -> dict[str, Any]:
    """Column values of a state change: the version moves on, the waiting clock restarts, and the
    document has no due time unless the change sets one (a delayed retry)."""
    return {"version": Document.version + 1, "updated_at": now_utc(), "due_at": None, **values}


_RELEASED = {"claimed_by": None, "lease_expires_at": None}
_NO_ERROR = {"error_category": None, "error_stage": None, "error_message": None, "error_digest": None}
_NEW = (Document.version, Document.batch_id, Document.stage)


def _transition(document_id: int, row: Sequence[Any], state: MirrorState, attempt: Attempt | None = None) -> Transition:
    version, batch_id, stage = row[0], row[1], row[2]
    return Transition(document_id, batch_id, version, state, Stage(stage) if stage else None, attempt)


def claim(session: Session, document_id: int, stage: Stage, attempt: int, worker: str, lease: float) -> Claim:
    """Take (document, stage, attempt) if it is waiting and due. If a holder runs it, DUPLICATE; if its
    holder died or its lease ran out, LOST: that attempt ended, and the caller counts it
    (`services.crashes`) instead of running the same attempt again."""
    row = session.execute(
        select(Document.status, Document.stage, Document.attempts, Document.claimed_by, Document.lease_expires_at,
               Document.project_id, Document.source, Document.due_at)
        .where(Document.id == document_id)
    ).one_or_none()  # fmt: skip
    if row is None:
        return Claim(AttemptOutcome.MISSING)
    status, current_stage, attempts, holder, lease_end, project_id, source, due_at = row
    if current_stage != stage or attempts != attempt or status not in UNFINISHED:
        return Claim(AttemptOutcome.STALE)
    now = now_utc()
    if due_at is not None and now < due_at - timedelta(seconds=EARLY_TOLERANCE):
        return Claim(AttemptOutcome.EARLY, due_at=due_at)
    if status == DocumentStatus.RUNNING:
        if lease_end is not None and lease_end >= now and not hosts.holder_is_dead(holder):
            return Claim(AttemptOutcome.DUPLICATE)
        return Claim(AttemptOutcome.LOST, project_id=project_id, source=source, holder=holder)
    taken = session.execute(
        update(Document)
        .where(Document.id == document_id, Document.stage == stage, Document.attempts == attempt,
               Document.status == status, Document.claimed_by.is_(None) if holder is None else Document.claimed_by == holder)
        .values(_changed(status=DocumentStatus.RUNNING, claimed_by=worker, lease_expires_at=now + timedelta(seconds=lease)))
        .returning(*_NEW)
    ).one_or_none()  # fmt: skip
    if taken is None:
        return Claim(AttemptOutcome.DUPLICATE)
    return Claim(AttemptOutcome.RUNNING, _transition(document_id, taken, MirrorState.RUNNING), project_id, source)


def _owned(document_id: int, stage: Stage, attempt: int, worker: str) -> ColumnElement[bool]:
    return and_(Document.id == document_id, Document.stage == stage, Document.attempts == attempt,
                Document.status == DocumentStatus.RUNNING, Document.claimed_by == worker)  # fmt: skip


def renew(session: Session, document_id: int, stage: Stage, attempt: int, worker: str, lease: float) -> bool:
    result = session.execute(
        update(Document).where(_owned(document_id, stage, attempt, worker))
        .values(lease_expires_at=now_utc() + timedelta(seconds=lease))
    )  # fmt: skip
    return bool(result.rowcount == 1)  # type: ignore[attr-defined]


def _most(attempts: int) -> ColumnElement[int]:
    return case((BatchDocument.attempts < attempts, attempts), else_=BatchDocument.attempts)


def _set_outcome(session: Session, batch_id: str | None, document_id: int, outcome: MirrorState,
                 reason: str | None = None, *, attempt: Attempt | None = None) -> None:  # fmt: skip
    """The document's end in this batch, kept as it was (a later batch writes its own row)."""
    if batch_id is None:
        return
    failed = outcome is MirrorState.FAILED and attempt is not None and attempt.failure is not None
    session.execute(
        update(BatchDocument).where(BatchDocument.batch_id == batch_id, BatchDocument.document_id == document_id)
        .values(outcome=outcome, reason=reason, finished_at=now_utc(),
                stage=attempt.stage.value if failed and attempt else None,
                error_category=attempt.failure.category.value if failed and attempt and attempt.failure else None,
                **({"attempts": _most(attempt.number)} if attempt is not None else {}))
    )  # fmt: skip


def _note_attempts(session: Session, batch_id: str | None, document_id: int, attempt: Attempt) -> None:
    """A stage that needed more than one attempt: the batch's record says so."""
    if batch_id is not None and attempt.number > 1:
        session.execute(
            update(BatchDocument).where(BatchDocument.batch_id == batch_id, BatchDocument.document_id == document_id)
            .values(attempts=_most(attempt.number))
        )  # fmt: skip


def advance(session: Session, document_id: int, attempt: Attempt, worker: str) -> Transition:
    """The stage is done: queue the next stage, or finish the document after the last one."""
    position = STAGES.index(attempt.stage)
    last = position == len(STAGES) - 1
    if last:
        values = _changed(**_RELEASED, **_NO_ERROR, status=DocumentStatus.DONE, stage=None, attempts=0,
                          processed_sha256=Document.sha256)  # fmt: skip
    else:
        values = _changed(**_RELEASED, status=DocumentStatus.QUEUED, stage=STAGES[position + 1], attempts=1)
    row = session.execute(
        update(Document).where(_owned(document_id, attempt.stage, attempt.number, worker)).values(values).returning(*_NEW)
    ).one_or_none()
    if row is None:
        raise ClaimLost(f"document {document_id}: the {attempt.stage} claim was taken over")
    if last:
        _set_outcome(session, row.batch_id, document_id, MirrorState.SUCCEEDED, attempt=attempt)
        return _transition(document_id, row, MirrorState.SUCCEEDED, attempt)
    _note_attempts(session, row.batch_id, document_id, attempt)
    return _transition(document_id, row, MirrorState.RUNNING, attempt)


def held(session: Session, document_id: int, stage: Stage, attempt: int) -> Row[Any] | None:
    """(claimed_by, lease_expires_at, source, batch_id) of a document running this stage attempt."""
    return session.execute(
        select(Document.claimed_by, Document.lease_expires_at, Document.source, Document.batch_id)
        .where(Document.id == document_id, Document.stage == stage, Document.attempts == attempt,
               Document.status == DocumentStatus.RUNNING)
    ).one_or_none()  # type: ignore[return-value]  # fmt: skip


def held_by(session: Session, document_id: int, worker: str) -> tuple[Stage, int] | None:
    """(stage, attempt) of the document while `worker` holds it running."""
    row = session.execute(
        select(Document.stage, Document.attempts)
        .where(Document.id == document_id, Document.status == DocumentStatus.RUNNING, Document.claimed_by == worker)
    ).one_or_none()  # fmt: skip
    return (Stage(row[0]), int(row[1])) if row is not None and row[0] is not None else None


def fail(session: Session, document_id: int, attempt: Attempt, worker: str | None, *,
         delay: float | None = None) -> Transition | None:  # fmt: skip
    """The stage failed: queue the next attempt (outcome RETRY), due `delay` seconds from now, or fail
    the document for good. Without a `worker`, whoever holds (or no longer holds) the stage: the
    sweeper's expired claims."""
    failure = attempt.failure
    assert failure is not None
    condition = _owned(document_id, attempt.stage, attempt.number, worker) if worker else and_(
        Document.id == document_id, Document.stage == attempt.stage, Document.attempts == attempt.number,
        Document.status.in_(UNFINISHED))  # fmt: skip
    retry = attempt.outcome is AttemptOutcome.RETRY
    now = now_utc()
    values = _changed(**_RELEASED, error_category=failure.category, error_stage=attempt.stage,
                      error_message=failure.message, error_digest=failure.digest, pipeline_version=PIPELINE_VERSION,
                      updated_at=now, due_at=now + timedelta(seconds=delay) if retry and delay else None,
                      **({"status": DocumentStatus.QUEUED, "attempts": attempt.number + 1} if retry
                         else {"status": DocumentStatus.FAILED}))  # fmt: skip
    row = session.execute(update(Document).where(condition).values(values).returning(*_NEW)).one_or_none()
    if row is None:
        return None
    if retry:
        return _transition(document_id, row, MirrorState.RUNNING, attempt)
    _set_outcome(session, row.batch_id, document_id, MirrorState.FAILED, failure.message[:500], attempt=attempt)
    return _transition(document_id, row, MirrorState.FAILED, attempt)


def skip(session: Session, document_id: int, attempt: Attempt, worker: str, *, duplicate_of: int | None,
         reason: str) -> Transition:  # fmt: skip
    """Extraction found the same content already done in the project: nothing to run."""
    status = DocumentStatus.DONE if duplicate_of is None else DocumentStatus.SKIPPED
    values = _changed(**_RELEASED, **_NO_ERROR, stage=None, attempts=0, status=status, duplicate_of=duplicate_of)
    row = session.execute(
        update(Document).where(_owned(document_id, Stage.EXTRACT, attempt.number, worker)).values(values).returning(*_NEW)
    ).one_or_none()
    if row is None:
        raise ClaimLost(f"document {document_id}: the extract claim was taken over")
    _set_outcome(session, row.batch_id, document_id, MirrorState.SKIPPED, reason, attempt=attempt)
    return _transition(document_id, row, MirrorState.SKIPPED, attempt)


def cancel(session: Session, batch_id: str, statuses: frozenset[DocumentStatus], reason: str | None = None,
           document_id: int | None = None) -> list[Transition]:  # fmt: skip
    """The batch's documents in one of `statuses` (or only `document_id`) end as cancelled:
    WAITING ones when a batch is cancelled, UNFINISHED ones when the run that held them is gone."""
    ids = [document_id] if document_id is not None else session.scalars(
        select(Document.id).where(Document.batch_id == batch_id, Document.status.in_(statuses))).all()  # fmt: skip
    transitions = []
    for offset in range(0, len(ids), 500):
        rows = session.execute(
            update(Document).where(Document.id.in_(ids[offset : offset + 500]), Document.batch_id == batch_id,
                                   Document.status.in_(statuses))
            .values(_changed(**_RELEASED, status=DocumentStatus.CANCELLED)).returning(Document.id, Document.version)
        ).all()  # fmt: skip
        ended = [row.id for row in rows]
        if ended:
            session.execute(
                update(BatchDocument).where(BatchDocument.batch_id == batch_id, BatchDocument.document_id.in_(ended))
                .values(outcome=MirrorState.CANCELLED, reason=reason, finished_at=now_utc())
            )  # fmt: skip
        transitions += [Transition(row.id, batch_id, row.version, MirrorState.CANCELLED) for row in rows]
    return transitions


def swept_by(runner: str | None) -> ColumnElement[bool]:
    """The documents one sweeper looks after: those of the batches of its `legaldoc run` (`runner`),
    or, for the shared installation's sweeper (None), all but those of a run's batches."""
    of_runner = select(Batch.id).where(Batch.id == Document.batch_id,
                                       Batch.runner.is_not(None) if runner is None else Batch.runner == runner)  # fmt: skip
    return ~of_runner.exists() if runner is None else of_runner.exists()


def batches_of(runner: str | None) -> ColumnElement[bool]:
    """The batches of `legaldoc run` `runner`; None: the shared installation's."""
    return Batch.runner.is_(None) if runner is None else Batch.runner == runner


def expired_claims(session: Session, now: datetime, limit: int = 1000, *, runner: str | None = None) -> Sequence[Document]:
    return session.scalars(
        select(Document).where(Document.status == DocumentStatus.RUNNING, Document.lease_expires_at < now,
                               swept_by(runner)).limit(limit)
    ).all()  # fmt: skip


def waiting_since(session: Session, before: datetime, stages: Sequence[str], limit: int = 5000, *,
                  runner: str | None = None) -> Sequence[Document]:  # fmt: skip
    """Documents waiting for a stage (no claim) since before `before`, their wait counted from their
    due time when they have one: a delayed retry is not waiting before it is due. One range of the
    (status, stage, updated_at, due_at) index per status and stage; only the documents the
    sweeper of `runner` looks after (`swept_by`)."""
    return session.scalars(
        select(Document).where(Document.status.in_(WAITING), Document.stage.in_(stages), Document.updated_at < before,
                               or_(Document.due_at.is_(None), Document.due_at < before), swept_by(runner))
        .limit(limit)
    ).all()  # fmt: skip


def touch(session: Session, document_ids: Sequence[int]) -> None:
    """Restart the waiting clock of documents whose message was published again."""
    if document_ids:
        session.execute(update(Document).where(Document.id.in_(document_ids)).values(updated_at=now_utc()))


def _in_batch(batch_id: str) -> Any:
    return (select(BatchDocument.outcome, Document.status, Document.batch_id)
            .join(Document, Document.id == BatchDocument.document_id).where(BatchDocument.batch_id == batch_id))  # fmt: skip


def state_counts(session: Session, batch_id: str) -> dict[MirrorState, int]:
    """How many of the batch's documents are in each state, from the database."""
    counts = dict.fromkeys(MirrorState, 0)
    query = _in_batch(batch_id).add_columns(func.count()).group_by(BatchDocument.outcome, Document.status, Document.batch_id)
    for outcome, status, owner, count in session.execute(query):
        counts[mirror_state(status, outcome, owner == batch_id)] += count
    return counts


def batch_document_states(session: Session, batch_id: str) -> dict[int, tuple[int, MirrorState, str, str]]:
    """Every document of the batch as the Redis mirror holds it: (version, state, stage, category)."""
    result: dict[int, tuple[int, MirrorState, str, str]] = {}
    query = _in_batch(batch_id).add_columns(Document.id, Document.version, Document.stage, Document.error_category)
    for outcome, status, owner, document_id, version, stage, category in session.execute(query):
        state = mirror_state(status, outcome, owner == batch_id)
        result[document_id] = (version, state, stage or "", category or "" if state is MirrorState.FAILED else "")
    return result


def failed_in_batch(session: Session, batch_id: str) -> Sequence[Row[Any]]:
    """The batch's documents that ended failed in it and that it still owns, with their error."""
    return session.execute(
        select(Document.id, Document.source, Document.error_category, Document.error_stage, Document.error_message,
               Document.error_digest, Document.attempts, Document.batch_id, Document.updated_at)
        .join(BatchDocument, BatchDocument.document_id == Document.id)
        .where(BatchDocument.batch_id == batch_id, BatchDocument.outcome == MirrorState.FAILED,
               Document.status == DocumentStatus.FAILED)
        .order_by(Document.id)
    ).all()  # type: ignore[return-value]  # fmt: skip


def requeue_failed(session: Session, batch_id: str, document_ids: Sequence[int]) -> list[Transition]:
    """Failed documents of the batch go back to the stage that failed, attempt 1. Conditional: a
    document another recover already took (or that moved to another batch) is left alone, so only
    the returned documents may be published."""
    transitions: list[Transition] = []
    for offset in range(0, len(document_ids), 500):
        chunk = list(document_ids[offset : offset + 500])
        rows = session.execute(
            update(Document)
            .where(Document.id.in_(chunk), Document.status == DocumentStatus.FAILED, Document.batch_id == batch_id,
                   Document.error_stage.is_not(None))
            .values(_changed(**_RELEASED, **_NO_ERROR, status=DocumentStatus.QUEUED, stage=Document.error_stage, attempts=1))
            .returning(Document.id, *_NEW)
        ).all()  # fmt: skip
        taken = [row.id for row in rows]
        if taken:
            session.execute(
                update(BatchDocument).where(BatchDocument.batch_id == batch_id, BatchDocument.document_id.in_(taken))
                .values(outcome=None, reason=None, stage=None, error_category=None, finished_at=None)
            )  # fmt: skip
        transitions += [_transition(row[0], row[1:], MirrorState.RUNNING) for row in rows]
    return transitions


def requeue_stuck(session: Session, now: datetime, *, runner: str | None = None) -> list[tuple[Transition, int]]:
    """Running stages whose lease expired (their worker is gone) are queued again with the next
    attempt, those the sweeper of `runner` looks after (`swept_by`); returns each transition with
    that attempt."""
    rows = session.execute(
        update(Document)
        .where(Document.status == DocumentStatus.RUNNING, Document.lease_expires_at < now, swept_by(runner))
        .values(_changed(**_RELEASED, status=DocumentStatus.QUEUED, attempts=Document.attempts + 1))
        .returning(Document.id, *_NEW, Document.attempts)
    ).all()  # fmt: skip
    return [(_transition(row[0], row[1:4], MirrorState.RUNNING), row.attempts) for row in rows]


def held_elsewhere(document: Any, *, batch_running: bool, now: datetime | None = None) -> str | None:
    """Why a document (a row with id, status, lease_expires_at, claimed_by, batch_id) cannot be
    taken now: a live claim, or an unfinished document of a running batch; else None."""
    if document.status not in UNFINISHED:
        return None
    lease = document.lease_expires_at
    if document.status == DocumentStatus.RUNNING and lease is not None and lease > (now or now_utc()):
        return f"document {document.id} is being processed by {document.claimed_by}"
    if batch_running:
        return f"document {document.id} belongs to running batch {document.batch_id}"
    return None


def defer(session: Session, document_id: int, stage: Stage, attempt: int, worker: str) -> Transition:
    """The stage started a remote job and gives its worker back: the claim is released and the
    document waits at the same stage and attempt until a poll publishes that attempt again."""
    row = session.execute(
        update(Document).where(_owned(document_id, stage, attempt, worker))
        .values(_changed(**_RELEASED, status=DocumentStatus.QUEUED)).returning(*_NEW)
    ).one_or_none()  # fmt: skip
    if row is None:
        raise ClaimLost(f"document {document_id}: the {stage} claim was taken over")
    return _transition(document_id, row, MirrorState.RUNNING)
