"""Durable stage claims: the database decides who runs which stage of which document.

A document row carries (status, stage, attempts, version, claimed_by, lease_expires_at). A message
names (document, stage, attempt); it may run only if a conditional UPDATE claims the row for that
exact stage and attempt, so a redelivered or duplicated message does nothing. Every change bumps
`version`; the Redis mirror applies a change only when its version is newer than what it holds.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum

from sqlalchemy import and_, func, or_, select, update
from sqlalchemy.orm import Session

from legaldoc import PIPELINE_VERSION
from legaldoc.models import STAGES, Stage
from legaldoc.storage.tables import BatchDocument, Document

ACTIVE = ("pending", "queued", "running")
HOST = socket.gethostname()


class ClaimOutcome(StrEnum):
    CLAIMED = "claimed"
    DUPLICATE = "duplicate"  # another live holder has this stage and attempt
    STALE = "stale"  # the document has moved on (later stage, later attempt, terminal, cancelled)
    MISSING = "missing"


@dataclass(frozen=True)
class Transition:
    """A document's new state, for the Redis mirror. `state` is pending, running, succeeded, failed,
    skipped or cancelled; `stage` is the stage running or next."""

    document_id: int
    batch_id: str | None
    version: int
    state: str
    stage: str | None = None


@dataclass(frozen=True)
class Claim:
    outcome: ClaimOutcome
    transition: Transition | None = None
    project_id: int | None = None
    source: str | None = None
    held_by: str | None = None


def worker_identity() -> str:
    return f"{HOST}:{os.getpid()}"


def _holder_is_dead(holder: str | None) -> bool:
    """True when the holder is a process of this host that no longer exists."""
    if not holder or ":" not in holder:
        return False
    host, _, pid = holder.rpartition(":")
    if host != HOST or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def now_utc() -> datetime:
    return datetime.now(UTC)


def aware(moment: datetime | None) -> datetime | None:
    if moment is None:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def claim(session: Session, document_id: int, stage: Stage, attempt: int, worker: str, lease: float) -> Claim:
    """Take (document, stage, attempt) if it is waiting, or if its holder's lease ran out or its holder died."""
    now = now_utc()
    row = session.execute(
        select(Document.status, Document.stage, Document.attempts, Document.claimed_by, Document.lease_expires_at)
        .where(Document.id == document_id)
    ).one_or_none()  # fmt: skip
    if row is None:
        return Claim(ClaimOutcome.MISSING)
    status, current_stage, attempts, holder, lease_end = row
    if current_stage != stage.value or attempts != attempt or status not in ACTIVE:
        return Claim(ClaimOutcome.STALE, held_by=holder)
    if status == "running":
        expired = lease_end is None or aware(lease_end) < now
        if not expired and not _holder_is_dead(holder):
            return Claim(ClaimOutcome.DUPLICATE, held_by=holder)
    result = session.execute(
        update(Document)
        .where(Document.id == document_id, Document.stage == stage.value, Document.attempts == attempt,
               Document.status == status, Document.claimed_by.is_(holder) if holder is None else Document.claimed_by == holder)
        .values(status="running", claimed_by=worker, lease_expires_at=now + timedelta(seconds=lease),
                version=Document.version + 1, updated_at=now)
    )  # fmt: skip
    if result.rowcount != 1:
        return Claim(ClaimOutcome.DUPLICATE)
    document = session.get(Document, document_id)
    session.refresh(document)
    return Claim(
        ClaimOutcome.CLAIMED,
        Transition(document_id, document.batch_id, document.version, "running", stage.value),
        project_id=document.project_id, source=document.source,
    )  # fmt: skip


def _owned(document_id: int, stage: Stage, attempt: int, worker: str):
    return and_(Document.id == document_id, Document.stage == stage.value, Document.attempts == attempt,
                Document.status == "running", Document.claimed_by == worker)  # fmt: skip


class ClaimLost(Exception):
    """Raised when a stage finished after its claim was taken over; its writes are rolled back."""


def renew(session: Session, document_id: int, stage: Stage, attempt: int, worker: str, lease: float) -> bool:
    result = session.execute(
        update(Document).where(_owned(document_id, stage, attempt, worker))
        .values(lease_expires_at=now_utc() + timedelta(seconds=lease))
    )  # fmt: skip
    return result.rowcount == 1


def _set_outcome(session: Session, batch_id: str | None, document_id: int, outcome: str, reason: str | None = None) -> None:
    if batch_id is None:
        return
    session.execute(
        update(BatchDocument).where(BatchDocument.batch_id == batch_id, BatchDocument.document_id == document_id)
        .values(outcome=outcome, reason=reason)
    )  # fmt: skip


def advance(session: Session, document_id: int, stage: Stage, attempt: int, worker: str) -> Transition:
    """The stage is done: queue the next stage, or finish the document after the last one."""
    position = STAGES.index(stage)
    now = now_utc()
    last = position == len(STAGES) - 1
    values = dict(claimed_by=None, lease_expires_at=None, version=Document.version + 1, updated_at=now)
    if last:
        values.update(status="done", stage=None, attempts=0, error_category=None, error_stage=None, error_message=None,
                      error_digest=None, processed_sha256=Document.sha256)
    else:
        values.update(status="queued", stage=STAGES[position + 1].value, attempts=1)
    result = session.execute(update(Document).where(_owned(document_id, stage, attempt, worker)).values(**values))
    if result.rowcount != 1:
        raise ClaimLost(f"document {document_id}: the {stage.value} claim was taken over")
    document = session.get(Document, document_id)
    session.refresh(document)
    if last:
        _set_outcome(session, document.batch_id, document_id, "succeeded")
        return Transition(document_id, document.batch_id, document.version, "succeeded")
    return Transition(document_id, document.batch_id, document.version, "running", document.stage)


def fail(session: Session, document_id: int, stage: Stage, attempt: int, worker: str | None, *, category: str,
         message: str, retry: bool, digest: str | None = None) -> Transition | None:  # fmt: skip
    """The stage failed: queue the next attempt (`retry`) or fail the document for good."""
    now = now_utc()
    condition = _owned(document_id, stage, attempt, worker) if worker else and_(
        Document.id == document_id, Document.stage == stage.value, Document.attempts == attempt,
        Document.status.in_(ACTIVE))  # fmt: skip
    values = dict(claimed_by=None, lease_expires_at=None, version=Document.version + 1, updated_at=now,
                  error_category=category, error_stage=stage.value, error_message=message, error_digest=digest,
                  pipeline_version=PIPELINE_VERSION)  # fmt: skip
    if retry:
        values.update(status="queued", attempts=attempt + 1)
    else:
        values.update(status="failed")
    if session.execute(update(Document).where(condition).values(**values)).rowcount != 1:
        return None
    document = session.get(Document, document_id)
    session.refresh(document)
    if retry:
        return Transition(document_id, document.batch_id, document.version, "running", stage.value)
    _set_outcome(session, document.batch_id, document_id, "failed", message[:500])
    return Transition(document_id, document.batch_id, document.version, "failed", stage.value)


def skip(session: Session, document_id: int, attempt: int, worker: str, *, duplicate_of: int | None,
         reason: str) -> Transition:  # fmt: skip
    """Extraction found the same content already done in the project: nothing to run."""
    values = dict(claimed_by=None, lease_expires_at=None, version=Document.version + 1, updated_at=now_utc(),
                  stage=None, attempts=0, error_category=None, error_stage=None, error_message=None, error_digest=None,
                  status="done" if duplicate_of is None else "skipped", duplicate_of=duplicate_of)  # fmt: skip
    result = session.execute(update(Document).where(_owned(document_id, Stage.EXTRACT, attempt, worker)).values(**values))
    if result.rowcount != 1:
        raise ClaimLost(f"document {document_id}: the extract claim was taken over")
    document = session.get(Document, document_id)
    session.refresh(document)
    _set_outcome(session, document.batch_id, document_id, "skipped", reason)
    return Transition(document_id, document.batch_id, document.version, "skipped")


def cancel_pending(session: Session, batch_id: str) -> list[Transition]:
    """Documents of the batch that have not started end as cancelled."""
    now = now_utc()
    ids = session.scalars(
        select(Document.id).where(Document.batch_id == batch_id, Document.status == "pending")
    ).all()
    transitions = []
    for offset in range(0, len(ids), 500):
        chunk = ids[offset : offset + 500]
        session.execute(
            update(Document).where(Document.id.in_(chunk), Document.status == "pending")
            .values(status="cancelled", version=Document.version + 1, updated_at=now)
        )  # fmt: skip
        session.execute(
            update(BatchDocument).where(BatchDocument.batch_id == batch_id, BatchDocument.document_id.in_(chunk))
            .values(outcome="cancelled")
        )  # fmt: skip
    for document_id, version in session.execute(
        select(Document.id, Document.version).where(Document.batch_id == batch_id, Document.status == "cancelled")
    ):
        transitions.append(Transition(document_id, batch_id, version, "cancelled"))
    return transitions


def expired_claims(session: Session, now: datetime, limit: int = 1000) -> Sequence[Document]:
    return session.scalars(
        select(Document).where(Document.status == "running", Document.lease_expires_at < now).limit(limit)
    ).all()


def waiting_since(session: Session, before: datetime, stages: Sequence[str], limit: int = 5000) -> Sequence[Document]:
    """Documents waiting for a stage (no claim) since before `before`."""
    return session.scalars(
        select(Document).where(
            or_(Document.status == "pending", Document.status == "queued"),
            Document.stage.in_(stages), Document.updated_at < before,
        ).limit(limit)
    ).all()  # fmt: skip


def touch(session: Session, document_ids: Sequence[int]) -> None:
    """Restart the waiting clock of documents whose message was published again."""
    if document_ids:
        session.execute(update(Document).where(Document.id.in_(document_ids)).values(updated_at=now_utc()))


def status_counts(session: Session, batch_id: str) -> dict[str, int]:
    """Outcome counts of a batch from the database, keyed like the Redis counters."""
    counts = {"pending": 0, "running": 0, "succeeded": 0, "failed": 0, "skipped": 0, "cancelled": 0}
    for outcome, status, count in session.execute(
        select(BatchDocument.outcome, Document.status, func.count())
        .join(Document, Document.id == BatchDocument.document_id)
        .where(BatchDocument.batch_id == batch_id).group_by(BatchDocument.outcome, Document.status)
    ):  # fmt: skip
        if outcome:
            counts[outcome] += count
        elif status == "pending":
            counts["pending"] += count
        else:
            counts["running"] += count
    return counts


def failed_in_batch(session: Session, batch_id: str) -> Sequence:
    """The batch's documents that ended failed in it and that it still owns, with their error."""
    return session.execute(
        select(Document.id, Document.source, Document.error_category, Document.error_stage, Document.error_message,
               Document.error_digest, Document.attempts, Document.batch_id)
        .join(BatchDocument, BatchDocument.document_id == Document.id)
        .where(BatchDocument.batch_id == batch_id, BatchDocument.outcome == "failed", Document.status == "failed")
        .order_by(Document.id)
    ).all()  # fmt: skip


def requeue_failed(session: Session, batch_id: str, document_ids: Sequence[int]) -> list[Transition]:
    """Failed documents of the batch go back to the stage that failed, attempt 1. Conditional: a
    document another recover already took (or that moved to another batch) is left alone, so only
    the returned documents may be published."""
    now = now_utc()
    transitions: list[Transition] = []
    for offset in range(0, len(document_ids), 500):
        chunk = list(document_ids[offset : offset + 500])
        rows = session.execute(
            update(Document)
            .where(Document.id.in_(chunk), Document.status == "failed", Document.batch_id == batch_id,
                   Document.error_stage.is_not(None))
            .values(status="queued", stage=Document.error_stage, attempts=1, claimed_by=None, lease_expires_at=None,
                    error_category=None, error_stage=None, error_message=None, error_digest=None,
                    version=Document.version + 1, updated_at=now)
            .returning(Document.id, Document.version, Document.stage)
        ).all()  # fmt: skip
        taken = [row.id for row in rows]
        if taken:
            session.execute(
                update(BatchDocument).where(BatchDocument.batch_id == batch_id, BatchDocument.document_id.in_(taken))
                .values(outcome=None, reason=None)
            )  # fmt: skip
        transitions.extend(Transition(row.id, batch_id, row.version, "running", row.stage) for row in rows)
    return transitions


def requeue_stuck(session: Session, now: datetime) -> list[tuple[Transition, int]]:
    """Running stages whose lease expired (their worker is gone) are queued again with the next
    attempt; returns each transition with that attempt."""
    rows = session.execute(
        update(Document)
        .where(Document.status == "running", Document.lease_expires_at < now)
        .values(status="queued", attempts=Document.attempts + 1, claimed_by=None, lease_expires_at=None,
                version=Document.version + 1, updated_at=now)
        .returning(Document.id, Document.batch_id, Document.version, Document.stage, Document.attempts)
    ).all()  # fmt: skip
    return [(Transition(row.id, row.batch_id, row.version, "running", row.stage), row.attempts) for row in rows]


def batch_document_states(session: Session, batch_id: str) -> dict[int, tuple[int, str, str, str]]:
    """Every document of the batch as the Redis mirror holds it: (version, state, stage, category)."""
    result: dict[int, tuple[int, str, str, str]] = {}
    for document_id, version, status, stage, category, outcome, owner in session.execute(
        select(Document.id, Document.version, Document.status, Document.stage, Document.error_category,
               BatchDocument.outcome, Document.batch_id)
        .join(BatchDocument, BatchDocument.document_id == Document.id).where(BatchDocument.batch_id == batch_id)
    ):  # fmt: skip
        if outcome:
            state = outcome
        elif status == "pending" and owner == batch_id:
            state = "pending"
        else:
            state = "running"
        result[document_id] = (version, state, stage or "", category or "" if state == "failed" else "")
    return result
