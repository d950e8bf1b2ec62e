"""The vocabulary of a document's and a batch's life, and the rules that move between states.

Pure: the database, its Redis mirror, the commands and the dashboard all speak these enums. A
document's row says where it is (`DocumentStatus`); its place in one batch is a `MirrorState`
(what the batch counts); a batch is a `BatchStatus`, settled by `settled_status` alone. Every
change of a document's state is a `Transition`, made by storage and copied to Redis as it is.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from legaldoc.errors import ErrorCategory
from legaldoc.models import Stage


class DocumentStatus(StrEnum):
    """Where a document stands in the database (``documents.status``)."""

    PENDING = "pending"  # waiting for its first stage
    QUEUED = "queued"  # waiting for a later stage or a retry; its message is in the broker
    RUNNING = "running"  # a worker holds the claim of its current stage
    DONE = "done"
    FAILED = "failed"
    SKIPPED = "skipped"  # same content already done in the project
    CANCELLED = "cancelled"


WAITING = frozenset({DocumentStatus.PENDING, DocumentStatus.QUEUED})  # the next stage is nobody's yet
UNFINISHED = WAITING | {DocumentStatus.RUNNING}  # more to run: a claim may take them


class MirrorState(StrEnum):
    """A document's state in one batch: the batch's counters in Redis, `status --docs`, the dashboard."""

    PENDING = "pending"
    RUNNING = "running"  # started: a stage runs or the next one waits
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    SKIPPED = "skipped"
    CANCELLED = "cancelled"


FINAL = frozenset({MirrorState.SUCCEEDED, MirrorState.FAILED, MirrorState.SKIPPED, MirrorState.CANCELLED})
ATTENTION_ORDER = (MirrorState.FAILED, MirrorState.RUNNING, MirrorState.PENDING, MirrorState.CANCELLED,
                   MirrorState.SKIPPED, MirrorState.SUCCEEDED)  # how documents are listed: what needs attention first


def mirror_state(status: str, outcome: str | None, owned: bool) -> MirrorState:
    """A document's state in a batch from its row: the batch's recorded outcome if it has one, else
    pending while the batch owns it and it has not started, else running."""
    if outcome:
        return MirrorState(outcome)
    return MirrorState.PENDING if owned and status == DocumentStatus.PENDING else MirrorState.RUNNING


class BatchStatus(StrEnum):
    """Where a batch stands (``batches.status`` and the live hash)."""

    RUNNING = "running"
    CANCELLING = "cancelling"  # documents not started were cancelled; running ones finish
    FINISHED = "finished"
    CANCELLED = "cancelled"


IN_PROGRESS = frozenset({BatchStatus.RUNNING, BatchStatus.CANCELLING})


def settled_status(status: BatchStatus, open_documents: int) -> BatchStatus:
    """The one rule of completion: a batch with no open document has finished (or, when it was
    being cancelled, is cancelled); one that has open documents again (recovered) runs again."""
    if open_documents == 0:
        if status is BatchStatus.CANCELLING:
            return BatchStatus.CANCELLED
        return BatchStatus.FINISHED if status is BatchStatus.RUNNING else status
    return status if status in IN_PROGRESS else BatchStatus.RUNNING


class AttemptOutcome(StrEnum):
    """How one stage attempt ended: ``stage_runs.outcome``, the stage metrics, a stage task's result."""

    RUNNING = "running"
    DONE = "done"
    CACHED = "cached"  # done, with the result taken from the cache
    SKIPPED = "skipped"
    RETRY = "retry"  # failed; the next attempt is queued
    WAITING = "waiting"  # not finished: a remote job runs (Textract); a poll brings the stage back
    FAILED = "failed"  # failed for good
    LOST = "lost"  # the claim was taken over (the worker was presumed dead); its writes rolled back
    CANCELLED = "cancelled"  # not run: the document's batch is being cancelled
    FOREIGN = "foreign"  # not run: the message belongs to another database than this worker's
    DUPLICATE = "duplicate"  # the message did nothing: another live worker holds this attempt
    STALE = "stale"  # the message did nothing: the document has moved on
    MISSING = "missing"  # the message did nothing: the document is gone
    EARLY = "early"  # not run: the attempt is due later (a retry's delay); the message is published again for the rest


FAILURES = frozenset({AttemptOutcome.RETRY, AttemptOutcome.FAILED})


class RemoteJobStatus(StrEnum):
    """A remote provider's job (a Textract text detection), as the provider spells its status."""

    IN_PROGRESS = "IN_PROGRESS"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    PARTIAL_SUCCESS = "PARTIAL_SUCCESS"


JOB_FINISHED = frozenset({RemoteJobStatus.SUCCEEDED, RemoteJobStatus.PARTIAL_SUCCESS})


@dataclass(frozen=True)
class Failure:
    """Why a stage attempt failed."""

    category: ErrorCategory
    message: str
    digest: str | None = None  # of the traceback: failures sharing one cause share one digest
    source: str | None = None


@dataclass(frozen=True)
class Attempt:
    """A stage attempt that just ended, as the metrics record it."""

    stage: Stage
    number: int
    outcome: AttemptOutcome
    elapsed_ms: int | None = None  # None when nobody timed it (its worker is gone)
    failure: Failure | None = None


@dataclass(frozen=True)
class Transition:
    """A document's new state in its batch, at its database `version`; the only input of the mirror."""

    document_id: int
    batch_id: str | None
    version: int
    state: MirrorState
    stage: Stage | None = None  # the stage running or next
    attempt: Attempt | None = None  # the attempt that ended, when one did
