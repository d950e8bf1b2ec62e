"""What `legaldoc monitor` shows and does, with no UI: the dashboard's rows computed from one
`state.monitor` snapshot, a batch's documents and failures, and the recover and cancel actions.

Every Redis failure comes out as `ServiceUnavailable`, so a screen can show "disconnected" and
simply try again on its next refresh: the clients connect again by themselves.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import redis

from legaldoc.config import Settings
from legaldoc.errors import ErrorCategory, LegaldocError, ServiceUnavailable
from legaldoc.lifecycle import ATTENTION_ORDER, MirrorState
from legaldoc.models import Stage
from legaldoc.queues import Queue
from legaldoc.services import batches as batch_service
from legaldoc.services import queries
from legaldoc.services import recovery as recovery_service
from legaldoc.services.summary import BatchSummary, DocumentRow
from legaldoc.services.wiring import Runtime
from legaldoc.state.connection import explain
from legaldoc.state.monitor import MonitorReader, Snapshot

SHOWN_FIRST = {state: i for i, state in enumerate(ATTENTION_ORDER)}


@dataclass(frozen=True)
class QueueRow:
    name: str
    depth: int
    consumers: int  # live workers consuming the queue
    processes: int  # their pool processes
    oldest_age: float | None  # seconds the oldest waiting message has waited


@dataclass
class Dashboard(Snapshot):
    """A snapshot with the rows the screen shows: batch summaries (active first), the workers not
    yet purged, queues with their consumers."""

    rows: list[BatchSummary] = field(default_factory=list)
    workers_alive: int = 0
    queue_rows: list[QueueRow] = field(default_factory=list)

    @property
    def failures_24h(self) -> int:
        return sum(self.failed_24h.values())

    @property
    def attempts_failed_24h(self) -> int:
        return sum(self.errors_24h.values())


@dataclass(frozen=True)
class ErrorGroup:
    category: str
    count: int
    messages: list[tuple[int, str, str]]  # (count, stage, an example message), most common cause first


@dataclass
class DocumentView:
    detail: dict[str, Any]  # as `show --json`
    mentions: list[dict[str, Any]]  # as `show --mentions --json`: with context and entity


@dataclass
class BatchDetail:
    batch: BatchSummary
    documents: list[DocumentRow]
    errors: list[ErrorGroup]

    @property
    def live(self) -> bool:
        """From Redis; False when only the database still knows the batch."""
        return self.batch.live


def group_errors(documents: Iterable[DocumentRow]) -> list[ErrorGroup]:
    """The failed documents as groups by category, each with its messages folded (numbers and the
    document's own path taken out) and counted."""
    by_category: dict[str, Counter[tuple[str, str]]] = {}
    examples: dict[tuple[str, str], str] = {}
    for d in documents:
        if d.state is not MirrorState.FAILED:
            continue
        key = (d.stage or "?", recovery_service.message_pattern(d.message or "", d.source))
        by_category.setdefault(d.category or ErrorCategory.PERMANENT, Counter())[key] += 1
        examples.setdefault(key, d.message or "")
    groups = [ErrorGroup(category, sum(counter.values()), [(n, stage, examples[(stage, pattern)])
                                                           for (stage, pattern), n in counter.most_common()])
              for category, counter in by_category.items()]  # fmt: skip
    return sorted(groups, key=lambda g: (-g.count, g.category))


class Monitor:
    """The dashboard's data and actions for one set of settings."""

    def __init__(self, settings: Settings, *, clock: Callable[[], float] = time.time) -> None:
        self.settings = settings
        self.clock = clock
        self.runtime = Runtime(settings, interactive=True)
        self.reader = MonitorReader(self.runtime.client("state"), self.runtime.client("broker"), self.runtime.keys,
                                    categories=list(ErrorCategory), stages=list(Stage), queues=list(Queue))  # fmt: skip
        self._sources: dict[str, dict[int, tuple[str, int | None]]] = {}

    @property
    def where(self) -> str:
        """The state Redis, safe to show (no password)."""
        return self.runtime.where("state")

    def _unavailable(self, error: Exception) -> ServiceUnavailable:
        message, _ = explain(error, self.where) if isinstance(error, redis.RedisError) else (f"cannot reach Redis at {self.where}: {error}", "")
        return ServiceUnavailable(message, hint="retrying on every refresh")

    # -- the main screen --------------------------------------------------------------------------

    def dashboard(self, *, visible: int = 200, recent: int = 20) -> Dashboard:
        """One refresh: two Redis round trips, whatever the number of batches and documents."""
        now = self.clock()
        try:
            snap = self.reader.snapshot(visible=visible, recent=recent, now=now)
        except redis.RedisError as error:
            raise self._unavailable(error) from None
        board = Dashboard(**vars(snap))
        board.rows = sorted((BatchSummary.from_live(b, fields, now) for b, fields in snap.batches), key=lambda r: not r.active)
        board.workers = [w for w in snap.workers if now - w.last_seen <= self.settings.worker_purge_after]
        alive = [w for w in board.workers if w.online(now)]
        board.workers_alive = len(alive)
        for queue, depth in snap.queues.items():
            serving = [w for w in alive if queue in w.queues]
            oldest = snap.oldest_message.get(queue)
            board.queue_rows.append(QueueRow(queue, depth, len(serving), sum(w.concurrency for w in serving),
                                             max(0.0, now - oldest) if oldest else None))  # fmt: skip
        return board

    # -- the batch screen -------------------------------------------------------------------------

    def _document_sources(self, batch_id: str, ids: set[int]) -> dict[int, tuple[str, int | None]]:
        """Document id -> (source, attempts) from the database, read again only when new ids appear
        (Redis holds states, not file names)."""
        known = self._sources.get(batch_id)
        if known is None or not ids <= known.keys():
            try:
                rows = batch_service.batch_documents(self.runtime, batch_id)
            except LegaldocError:
                rows = []
            known = {r.document_id: (r.source, r.attempts) for r in rows}
            self._sources[batch_id] = known
        return known

    def batch(self, batch_id: str) -> BatchDetail:
        """One batch's documents (live states from Redis, names from the database) and its failures
        grouped by category; from the database alone once Redis no longer holds the batch."""
        now = self.clock()
        try:
            fields, states, failures = self.runtime.state.detail(batch_id)
        except redis.RedisError as error:
            raise self._unavailable(error) from None
        if fields is None:
            documents = batch_service.batch_documents(self.runtime, batch_id)
            summary = batch_service.batch_status(self.runtime, batch_id, live=False)
        else:
            sources = self._document_sources(batch_id, set(states))
            documents = []
            for doc_id, live in states.items():
                source, attempts = sources.get(doc_id, (f"document {doc_id}", None))
                failure = failures.get(doc_id) if live.state is MirrorState.FAILED else None
                documents.append(DocumentRow(doc_id, source, live.state, live.stage,
                                             failure.attempt if failure else attempts, live.category,
                                             failure.message if failure else None))  # fmt: skip
            summary = BatchSummary.from_live(batch_id, fields, now)
        documents.sort(key=lambda d: (SHOWN_FIRST.get(d.state, 9), d.document_id))
        return BatchDetail(summary, documents, group_errors(documents))

    # -- the document screen ----------------------------------------------------------------------

    def document(self, document_id: int) -> DocumentView:
        """One document with its mentions in context (the same service as `show --mentions`)."""
        database = self.runtime.database
        return DocumentView(queries.show_document(database, document_id), queries.document_mentions(database, document_id))

    # -- actions ----------------------------------------------------------------------------------

    def recover(self, batch_id: str) -> recovery_service.Recovery:
        """`legaldoc recover BATCH`: the default categories, under the batch's recover lock."""
        try:
            result = recovery_service.recover_batch(self.runtime, batch_id,
                                                    categories=recovery_service.chosen_categories(None, False))  # fmt: skip
        except redis.RedisError as error:
            raise self._unavailable(error) from None
        self._sources.pop(batch_id, None)
        return result

    def cancel(self, batch_id: str) -> batch_service.Cancelled:
        """`legaldoc cancel BATCH`: documents not started end as cancelled; running ones finish."""
        try:
            return batch_service.cancel_batch(self.runtime, batch_id)
        except redis.RedisError as error:
            raise self._unavailable(error) from None
