"""What `legaldoc monitor` shows and does, with no UI: the dashboard's rows computed from one
`state.monitor` snapshot, a batch's documents and failures, and the recover and cancel actions.

Every Redis failure comes out as `ServiceUnavailable`, so a screen can show "disconnected" and
simply try again on its next refresh: the clients connect again by themselves.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import redis

from legaldoc.config import Settings
from legaldoc.errors import ErrorCategory, LegaldocError, ServiceUnavailable
from legaldoc.models import Stage
from legaldoc.queues import Queue, priority_name
from legaldoc.services import batches as batch_service
from legaldoc.services import recovery as recovery_service
from legaldoc.state.batches import BatchState
from legaldoc.state.broker import Broker
from legaldoc.state.connection import describe, interactive_client
from legaldoc.state.keys import Keys
from legaldoc.state.locks import Lock
from legaldoc.state.monitor import MonitorReader, StageStats
from legaldoc.state.workers import Heartbeat
from legaldoc.storage.db import Database

ACTIVE = ("queued", "running", "cancelling")
DOCUMENT_STATES = ("failed", "running", "pending", "cancelled", "skipped", "succeeded")
SHOWN_FIRST = {state: i for i, state in enumerate(DOCUMENT_STATES)}  # what needs attention at the top


@dataclass(frozen=True)
class BatchRow:
    id: str
    name: str
    project: str
    priority: int
    status: str
    total: int
    succeeded: int
    failed: int
    skipped: int
    cancelled: int
    running: int
    pending: int
    rate_per_minute: float | None
    eta_seconds: float | None
    age_seconds: float
    errors_by_category: dict[str, int] = field(default_factory=dict)

    @property
    def done(self) -> int:
        return self.succeeded + self.failed + self.skipped + self.cancelled

    @property
    def active(self) -> bool:
        return self.status in ACTIVE

    @property
    def priority_name(self) -> str:
        return priority_name(self.priority)


@dataclass(frozen=True)
class QueueRow:
    name: str
    depth: int
    consumers: int  # live workers consuming the queue
    processes: int  # their pool processes
    oldest_age: float | None  # seconds the oldest waiting message has waited


@dataclass
class Dashboard:
    at: float
    batches: list[BatchRow]
    batch_count: int
    active_count: int
    docs_per_minute: float
    errors_24h: dict[str, int]  # failed attempts per category, retries included
    failed_24h: dict[str, int]  # documents that failed for good (and were not recovered since) per category
    recent_errors: list[dict[str, Any]]
    workers: list[Heartbeat]
    workers_alive: int
    queues: list[QueueRow]
    stages: list[StageStats]
    memory: int

    @property
    def failures_24h(self) -> int:
        return sum(self.failed_24h.values())

    @property
    def attempts_failed_24h(self) -> int:
        return sum(self.errors_24h.values())


@dataclass(frozen=True)
class DocumentRow:
    id: int
    source: str
    state: str
    stage: str | None
    category: str | None
    attempts: int | None
    message: str | None


@dataclass(frozen=True)
class ErrorGroup:
    category: str
    count: int
    messages: list[tuple[int, str, str]]  # (count, stage, an example message), most common cause first


@dataclass
class BatchDetail:
    batch: BatchRow
    documents: list[DocumentRow]
    errors: list[ErrorGroup]
    live: bool  # from Redis; False when only the database still knows the batch


def _row(summary: dict[str, Any], now: float) -> BatchRow:
    return BatchRow(
        id=summary["batch_id"], name=summary.get("name") or "", project=summary.get("project") or "",
        priority=int(summary.get("priority") or 0), status=summary.get("status") or "",
        total=summary["total"], succeeded=summary["succeeded"], failed=summary["failed"], skipped=summary["skipped"],
        cancelled=summary["cancelled"], running=summary["running"], pending=summary["pending"],
        rate_per_minute=summary.get("rate_per_minute"), eta_seconds=summary.get("eta_seconds"),
        age_seconds=max(0.0, now - (summary.get("created_at") or now)),
        errors_by_category=summary.get("errors_by_category") or {},
    )  # fmt: skip


def _number(value: str | None) -> int:
    return int(float(value)) if value else 0


def _moment(value: str | None) -> float | None:
    return float(value) if value else None


def live_row(batch_id: str, f: dict[str, str], now: float) -> BatchRow:
    """A batch row straight from its Redis hash, with the rate and ETA `legaldoc status` shows;
    no intermediate dicts, as the dashboard builds hundreds per refresh."""
    get = f.get
    succeeded, failed, skipped, cancelled = (_number(get(k)) for k in ("succeeded", "failed", "skipped", "cancelled"))
    total = _number(get("total"))
    finished = succeeded + failed + skipped + cancelled
    created = _moment(get("created_at"))
    rate, eta = batch_service.rate_and_eta(finished, total, _moment(get("started_at")) or created,
                                           _moment(get("finished_at")), now)  # fmt: skip
    errors = {k[7:]: int(v) for k, v in f.items() if k.startswith("errors:") and v != "0"}
    return BatchRow(batch_id, get("name") or "", get("project") or "", _number(get("priority")), get("status") or "",
                    total, succeeded, failed, skipped, cancelled, _number(get("running")), _number(get("pending")),
                    rate, eta, max(0.0, now - (created or now)), dict(sorted(errors.items())))  # fmt: skip


def group_errors(failures: list[tuple[str, str, str, str | None]]) -> list[ErrorGroup]:
    """(category, stage, message, source) per failed document, as groups by category, each with its
    messages folded (numbers and the document's own path taken out) and counted."""
    by_category: dict[str, Counter[tuple[str, str]]] = {}
    examples: dict[tuple[str, str], str] = {}
    for category, stage, message, source in failures:
        key = (stage or "?", recovery_service.message_pattern(message or "", source))
        by_category.setdefault(category or "PERMANENT", Counter())[key] += 1
        examples.setdefault(key, message or "")
    groups = [ErrorGroup(category, sum(counter.values()), [(n, stage, examples[(stage, pattern)])
                                                           for (stage, pattern), n in counter.most_common()])
              for category, counter in by_category.items()]  # fmt: skip
    return sorted(groups, key=lambda g: (-g.count, g.category))


class Monitor:
    """The dashboard's data and actions for one set of settings."""

    def __init__(self, settings: Settings, *, clock: Callable[[], float] = time.time) -> None:
        self.settings = settings
        self.clock = clock
        self.keys = Keys(settings.redis_prefix)
        self.state_client = interactive_client(settings, "state")
        self.broker_client = interactive_client(settings, "broker")
        self.state = BatchState(self.state_client, self.keys, retention_seconds=int(settings.batch_retention_days * 86400))
        self.reader = MonitorReader(self.state_client, self.broker_client, self.keys, categories=list(ErrorCategory),
                                    stages=[s.value for s in Stage], queues=list(Queue))  # fmt: skip
        self._database: Database | None = None
        self._sources: dict[str, dict[int, tuple[str, int]]] = {}

    @property
    def where(self) -> str:
        """The state Redis, safe to show (no password)."""
        return describe(self.settings.redis_url_for("state"))

    def _unavailable(self, error: Exception) -> ServiceUnavailable:
        return ServiceUnavailable(f"cannot reach Redis at {self.where}: {error}", hint="retrying on every refresh")

    @property
    def database(self) -> Database:
        if self._database is None:
            self._database = Database(self.settings.resolved_database_url)
        return self._database

    # -- the main screen --------------------------------------------------------------------------

    def dashboard(self, *, visible: int = 200, recent: int = 20) -> Dashboard:
        """One refresh: two Redis round trips, whatever the number of batches and documents."""
        now = self.clock()
        try:
            snap = self.reader.snapshot(visible=visible, recent=recent, now=now)
        except redis.RedisError as error:
            raise self._unavailable(error) from None
        rows = [live_row(batch_id, fields, now) for batch_id, fields in snap.batches]
        rows.sort(key=lambda r: not r.active)  # stable: active first, each part newest first
        workers = [w for w in snap.workers if now - w.last_seen <= self.settings.worker_purge_after]
        alive = [w for w in workers if w.online(now)]
        queues = []
        for queue, depth in snap.queues.items():
            serving = [w for w in alive if queue in w.queues]
            oldest = snap.oldest_message.get(queue)
            queues.append(QueueRow(queue, depth, len(serving), sum(w.concurrency for w in serving),
                                   max(0.0, now - oldest) if oldest else None))  # fmt: skip
        return Dashboard(at=now, batches=rows, batch_count=snap.batch_count, active_count=snap.active_count,
                         docs_per_minute=snap.docs_per_minute, errors_24h=snap.errors_24h, failed_24h=snap.failed_24h,
                         recent_errors=snap.recent_errors, workers=workers, workers_alive=len(alive),
                         queues=queues, stages=snap.stages, memory=snap.memory)  # fmt: skip

    # -- the batch screen -------------------------------------------------------------------------

    def _document_sources(self, batch_id: str, ids: set[int]) -> dict[int, tuple[str, int]]:
        """Document id -> (source, attempts) from the database, read again only when new ids appear
        (Redis holds states, not file names)."""
        known = self._sources.get(batch_id)
        if known is None or not ids <= known.keys():
            try:
                rows = batch_service.batch_documents(self.database, None, batch_id)
            except LegaldocError:
                rows = []
            known = {r["document_id"]: (r["source"], r["attempts"]) for r in rows}
            self._sources[batch_id] = known
        return known

    def batch(self, batch_id: str) -> BatchDetail:
        """One batch's documents (live states from Redis, names from the database) and its failures
        grouped by category; from the database alone once Redis no longer holds the batch."""
        now = self.clock()
        try:
            fields, states, failures = self.state.detail(batch_id)
        except redis.RedisError as error:
            raise self._unavailable(error) from None
        if fields is None:
            return self._batch_from_database(batch_id, now)
        sources = self._document_sources(batch_id, set(states))
        documents = []
        for doc_id in sorted(states, key=lambda d: (SHOWN_FIRST.get(states[d]["state"], 9), d)):
            live = states[doc_id]
            source, attempts = sources.get(doc_id, (f"document {doc_id}", None))
            failure = failures.get(doc_id) if live["state"] == "failed" else None
            documents.append(DocumentRow(doc_id, source, live["state"], live["stage"], live["category"],
                                         (failure or {}).get("attempt", attempts), (failure or {}).get("message")))  # fmt: skip
        groups = group_errors([(f.get("category"), f.get("stage"), f.get("message"), sources.get(d, ("", 0))[0])
                               for d, f in failures.items()])  # fmt: skip
        row = live_row(batch_id, fields, now)
        return BatchDetail(row, documents, groups, live=True)

    def _batch_from_database(self, batch_id: str, now: float) -> BatchDetail:
        summary = batch_service.batch_status(self.database, None, batch_id)
        documents, failures = [], []
        for entry in batch_service.batch_documents(self.database, None, batch_id):
            error = entry.get("error") or {}
            documents.append(DocumentRow(entry["document_id"], entry["source"], entry["state"], entry.get("stage") or error.get("stage"),
                                         error.get("category"), entry["attempts"], error.get("message")))  # fmt: skip
            if error:
                failures.append((error.get("category"), error.get("stage"), error.get("message"), entry["source"]))
        documents.sort(key=lambda d: (SHOWN_FIRST.get(d.state, 9), d.id))
        return BatchDetail(_row(summary, now), documents, group_errors(failures), live=False)

    # -- actions ----------------------------------------------------------------------------------

    def recover(self, batch_id: str) -> dict[str, Any]:
        """`legaldoc recover BATCH`: the default categories, under the batch's recover lock."""
        try:
            result = recovery_service.recover_batch(
                self.database, self.state, Broker(self.broker_client), Lock(self.state_client, self.keys), batch_id,
                categories=recovery_service.chosen_categories(None, False))  # fmt: skip
        except redis.RedisError as error:
            raise self._unavailable(error) from None
        self._sources.pop(batch_id, None)
        return result.as_dict()

    def cancel(self, batch_id: str) -> dict[str, Any]:
        """`legaldoc cancel BATCH`: documents not started end as cancelled; running ones finish."""
        try:
            return batch_service.cancel_batch(self.database, self.state, batch_id)
        except redis.RedisError as error:
            raise self._unavailable(error) from None

