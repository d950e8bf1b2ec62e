"""Use case: a stage attempt whose process died (a segfault in a native library, the OOM killer's
SIGKILL) counts as an attempt, like any other failure.

Two callers, one case each: the worker's main process when one of its pool processes died running
the stage (`tasks.requests`, which then acks the message), and `StageRunner` when a message finds
its attempt held by a process that died or whose lease ran out (the worker's main process died too,
and the broker gave the message back). The sweeper keeps its own case: claims whose lease expired
while no message came back. Each records the lost attempt with a conditional UPDATE on the holder
and the attempt number, so only one of them counts it.

A crash is RESOURCE and the next attempt goes to the front of its queue at once. After the RESOURCE
policy's attempts the document fails for good: DATA when every attempt of the stage died the same
way (the same bytes do it every time; retrying only kills more workers), else RESOURCE.
"""

from __future__ import annotations

import hashlib
import logging
import re
from dataclasses import dataclass, replace

from legaldoc import hosts
from legaldoc.config import Settings
from legaldoc.errors import RETRY_POLICIES, ErrorCategory
from legaldoc.lifecycle import Attempt, AttemptOutcome, Failure, Transition
from legaldoc.models import Stage
from legaldoc.queues import DEFAULT_PRIORITY
from legaldoc.state.batches import BatchState
from legaldoc.state.broker import Broker
from legaldoc.storage import claims
from legaldoc.storage import repository as repo
from legaldoc.storage.db import Database
from legaldoc.storage.tables import Batch

log = logging.getLogger("legaldoc.crashes")

_CRASH = "crash:"
_DIED = "died"
_SIGNAL = re.compile(r"\((SIG[A-Z0-9]+)\)")
_CAUSE = re.compile(r"exited prematurely: (.+?)(?: Job: \d+)?\.?$")


@dataclass(frozen=True)
class Crash:
    """A stage attempt whose process is gone."""

    document_id: int
    stage: Stage
    attempt: int
    holder: str | None = None  # the claim's holder (HOST/SPACE:pid, `hosts.holder`); None: whoever holds it, if that process is dead
    cause: str | None = None  # how the process ended: "signal 11 (SIGSEGV)", "exitcode 1"; None if unknown
    worker: str | None = None  # the worker whose pool process it was


@dataclass(frozen=True)
class CrashRecord:
    transition: Transition
    retry: bool
    category: ErrorCategory
    message: str


def holder_of(pid: int) -> str:
    """How a claim names process `pid` of this host."""
    return hosts.holder(pid)


def cause_of(worker_lost: str) -> str | None:
    """How a pool process ended, from Celery's WorkerLostError text ('Worker exited prematurely:
    signal 11 (SIGSEGV) Job: 3.')."""
    match = _CAUSE.search(worker_lost.strip())
    return match.group(1) if match else None


def _kind(cause: str | None, dead: bool) -> str | None:
    """The way a process died, compared across attempts: a signal name, an exit code, or 'died'
    (its holder is gone, how is not known); None when nothing says it died (an expired lease)."""
    if cause:
        found = _SIGNAL.search(cause)
        return found.group(1) if found else cause
    return _DIED if dead else None


def _digest(stage: Stage, kind: str) -> str:
    """How a crash is kept in its run's traceback digest: readable, so the kinds of earlier attempts
    can be compared (`_short` is the document's)."""
    return f"{_CRASH}{stage.value}:{kind}"[:64]


def _short(digest: str | None) -> str | None:
    """A document's error digest (16 hex digits) of a crash: crashes of one kind share one."""
    return hashlib.sha256(digest.encode()).hexdigest()[:16] if digest else None


def _same_way(stage: Stage, kind: str | None, earlier: dict[int, str | None], attempt: int) -> str | None:
    """The way every attempt of the stage died, when they all did and no two known ways differ
    (a process found dead, 'died', agrees with any); else None."""
    if kind is None:
        return None
    prefix = f"{_CRASH}{stage.value}:"
    kinds = {kind}
    for number in range(1, attempt):
        digest = earlier.get(number)
        if digest is None or not digest.startswith(prefix):
            return None
        kinds.add(digest.removeprefix(prefix))
    known = kinds - {_DIED}
    return known.pop() if len(known) == 1 else None if known else _DIED


def record_crash(settings: Settings, database: Database, mirror: BatchState | None, broker: Broker | None,
                 crash: Crash) -> CrashRecord | None:  # fmt: skip
    """Count the attempt as ended: close its run as lost, fail the stage (next attempt at the front of
    its queue, or the document failed for good), mirror the change. None when the attempt is no
    longer held by that process (its stage finished, or someone else counted it)."""
    stage, attempt = crash.stage, crash.attempt
    limit = RETRY_POLICIES[ErrorCategory.RESOURCE].max_attempts(settings.max_attempts)
    with database.session() as session:
        held = claims.held(session, crash.document_id, stage, attempt)
        if crash.holder is not None and crash.cause is not None and (held is None or held.claimed_by != crash.holder):
            # counted already (the sweeper found its lease expired while the process hung, then it
            # died): say how it ended in that attempt's run, for the next ones to compare
            repo.note_crash(session, crash.document_id, stage, attempt, crash.holder,
                            _digest(stage, _kind(crash.cause, True) or _DIED))  # fmt: skip
            return None
        if held is None or held.claimed_by is None:
            return None
        holder = held.claimed_by
        if crash.holder is not None:  # that process, known to have died (a cause) or found dead
            if holder != crash.holder:
                return None
            dead = crash.cause is not None or hosts.holder_is_dead(holder)
        else:  # whoever holds it, only if it died
            dead = hosts.holder_is_dead(holder)
            if not dead:
                return None
        kind = _kind(crash.cause, dead)
        digest = _digest(stage, kind) if kind else None
        same = _same_way(stage, kind, repo.earlier_attempts(session, crash.document_id, stage, attempt), attempt)
        retry = attempt < limit
        category = ErrorCategory.DATA if not retry and same else ErrorCategory.RESOURCE
        message = _message(crash, holder, same if category is ErrorCategory.DATA else kind, attempt, limit, retry,
                           category)  # fmt: skip
        failure = Failure(category, message, _short(digest), held.source)
        outcome = AttemptOutcome.RETRY if retry else AttemptOutcome.FAILED
        transition = claims.fail(session, crash.document_id, Attempt(stage, attempt, outcome, failure=failure), holder)
        if transition is None:
            return None
        repo.close_lost_run(session, crash.document_id, stage, attempt, category.value, message, digest)
        batch = session.get(Batch, held.batch_id) if held.batch_id else None
        priority = batch.priority if batch else DEFAULT_PRIORITY
    log.warning("[document %s, stage %s, attempt %s] %s", crash.document_id, stage.value, attempt, message)
    from legaldoc.services.stages import mirror_transition

    mirror_transition(mirror, broker, transition, priority)
    if retry and broker is not None:  # at once and first in line: it waited its turn already
        broker.publish_stage([(crash.document_id, stage, attempt + 1)], priority, front=True)
    return CrashRecord(transition, retry, category, message)


def record_task_crash(settings: Settings, database: Database, mirror: BatchState | None, broker: Broker | None,
                      crash: Crash) -> CrashRecord | None:  # fmt: skip
    """`record_crash` for a task whose pool process died: the stage its message named, or, when that
    stage had ended and the process ran the document's next stage in the same task (`Chain`), the
    stage it held when it died."""
    record = record_crash(settings, database, mirror, broker, crash)
    if record is not None or crash.holder is None:
        return record
    with database.read() as session:
        held = claims.held_by(session, crash.document_id, crash.holder)
    if held is None or held == (crash.stage, crash.attempt):
        return None
    return record_crash(settings, database, mirror, broker, replace(crash, stage=held[0], attempt=held[1]))


def _message(crash: Crash, holder: str, kind: str | None, attempt: int, limit: int, retry: bool,
             category: ErrorCategory) -> str:  # fmt: skip
    stage = crash.stage.value
    if kind is None:
        what = f"the worker holding the {stage} stage ({holder}) stopped answering; its claim expired"
    else:
        how = crash.cause or "it is gone"
        process = f"pool process {holder} of worker {crash.worker}" if crash.worker else f"process {holder}"
        what = f"the {stage} stage's worker process died ({how}; {process})"
    if retry:
        return f"{what}, on attempt {attempt} of {limit}"
    if category is ErrorCategory.DATA:
        return (f"the {stage} stage killed its worker process on each of {attempt} attempts "
                f"({'found dead' if kind == _DIED else kind}); this document's "
                "content crashes it, so it is not retried")  # fmt: skip
    return f"{what}, on attempt {attempt} of {limit}: not retried again (`legaldoc recover` re-runs it)"
