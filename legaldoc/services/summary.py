"""What the commands, their `--json` and the dashboard show of batches and their documents:
typed rows built from the live mirror in Redis or from the database."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from legaldoc.lifecycle import IN_PROGRESS, BatchStatus, DocumentStatus, MirrorState
from legaldoc.moments import iso
from legaldoc.queues import priority_name
from legaldoc.storage.tables import Batch


def rate_and_eta(finished: int, total: int, start: float | None, finished_at: float | None,
                 now: float) -> tuple[float | None, float | None]:  # fmt: skip
    """Documents per minute over the batch's own finished documents (from `start`, until it
    finished or now), and the seconds left at that rate; None where unknown."""
    end = finished_at or now
    rate = finished / (end - start) * 60 if start and end > start and finished else None
    remaining = total - finished
    eta = remaining / rate * 60 if rate and remaining and not finished_at else None
    return (round(rate, 2) if rate else None), (round(eta, 1) if eta else None)


def _number(value: str | None) -> int:
    return int(float(value)) if value else 0


def _moment(value: str | None) -> float | None:
    return float(value) if value else None


_COUNTED = tuple(state.value for state in MirrorState)  # the order of the counts below
_STATUS = {status.value: status for status in BatchStatus}


@dataclass(slots=True)
class BatchSummary:
    """One batch: its counts by state, errors by category, rate and ETA at `now`."""

    batch_id: str
    name: str
    project: str
    priority: int
    status: BatchStatus
    total: int
    pending: int
    running: int
    succeeded: int
    failed: int
    skipped: int
    cancelled: int
    errors_by_category: dict[str, int]
    created_at: float | None
    started_at: float | None
    finished_at: float | None
    now: float
    live: bool  # read from the Redis mirror; False: from the database
    usage: dict[str, dict[str, float]] = field(default_factory=dict)  # remote provider -> calls, tokens, cost_usd
    rate_per_minute: float | None = field(init=False)
    eta_seconds: float | None = field(init=False)

    def __post_init__(self) -> None:
        start = self.started_at or self.created_at
        self.rate_per_minute, self.eta_seconds = rate_and_eta(self.done, self.total, start, self.finished_at, self.now)

    @property
    def done(self) -> int:
        return self.succeeded + self.failed + self.skipped + self.cancelled

    @property
    def open(self) -> int:
        return self.pending + self.running

    @property
    def active(self) -> bool:
        return self.status in IN_PROGRESS

    @property
    def priority_name(self) -> str:
        return priority_name(self.priority)

    @property
    def age_seconds(self) -> float:
        return max(0.0, self.now - (self.created_at or self.now))

    @classmethod
    def from_live(cls, batch_id: str, fields: Mapping[str, str], now: float) -> BatchSummary:
        """From the batch's Redis hash (the dashboard builds hundreds per refresh: no detours)."""
        get = fields.get
        pending, running, succeeded, failed, skipped, cancelled = (_number(get(state)) for state in _COUNTED)
        errors = {k[7:]: int(v) for k, v in fields.items() if k.startswith("errors:") and v != "0"}
        return cls(batch_id, get("name") or "", get("project") or "", _number(get("priority")),
                   _STATUS.get(get("status") or "", BatchStatus.RUNNING), _number(get("total")), pending, running,
                   succeeded, failed, skipped, cancelled, dict(sorted(errors.items())), _moment(get("created_at")),
                   _moment(get("started_at")), _moment(get("finished_at")), now, True, usage_of(fields))  # fmt: skip

    @classmethod
    def from_database(cls, batch: Batch, project: str, counts: Mapping[MirrorState, int], errors: Mapping[str, int],
                      now: float) -> BatchSummary:  # fmt: skip
        pending, running, succeeded, failed, skipped, cancelled = (counts[state] for state in MirrorState)
        finished = batch.finished_at.timestamp() if batch.finished_at else None
        return cls(batch.id, batch.name, project, batch.priority, BatchStatus(batch.status), sum(counts.values()),
                   pending, running, succeeded, failed, skipped, cancelled, dict(errors), batch.created_at.timestamp(),
                   None, finished, now, False, dict((batch.report or {}).get("usage") or {}))  # fmt: skip

    def as_json(self) -> dict[str, Any]:
        return {
            "batch_id": self.batch_id, "name": self.name, "project": self.project, "priority": self.priority,
            "status": self.status.value, "total": self.total, **{s.value: getattr(self, s) for s in MirrorState},
            "errors_by_category": self.errors_by_category, DocumentStatus.DONE.value: self.done,
            "rate_per_minute": self.rate_per_minute, "eta_seconds": self.eta_seconds,
            "created_at": iso(self.created_at), "started_at": iso(self.started_at), "finished_at": iso(self.finished_at),
        } | ({"usage": self.usage} if self.usage else {})  # fmt: skip


def usage_of(fields: Mapping[str, str]) -> dict[str, dict[str, float]]:
    """The ``usage:{provider}:{name}`` fields of a batch hash, by provider."""
    usage: dict[str, dict[str, float]] = {}
    for key, value in fields.items():
        if key.startswith("usage:") and key.count(":") == 2:
            _, provider, name = key.split(":")
            number = float(value)
            usage.setdefault(provider, {})[name] = round(number, 6) if name == "cost_usd" else int(number)
    return {provider: dict(sorted(names.items())) for provider, names in sorted(usage.items())}


def usage_line(provider: str, used: Mapping[str, float]) -> str:
    """'openai: 12 calls, 4 from the cache, 10234 tokens in, 2100 out, about $0.0068, 3 mentions dropped';
    'textract: 27 pages in 3 jobs, about $0.0405'."""
    if "pages" in used:
        return f"{provider}: {int(used['pages'])} pages in {int(used.get('jobs', 0))} jobs, about ${used.get('cost_usd', 0.0):.4f}"
    parts = [f"{int(used.get('calls', 0))} calls"]
    if used.get("cached"):
        parts.append(f"{int(used['cached'])} from the cache")
    parts.append(f"{int(used.get('tokens_in', 0))} tokens in, {int(used.get('tokens_out', 0))} out")
    parts.append(f"about ${used.get('cost_usd', 0.0):.4f}")
    if used.get("dropped"):
        parts.append(f"{int(used['dropped'])} mentions dropped (not in the text)")
    return f"{provider}: " + ", ".join(parts)


@dataclass(frozen=True)
class DocumentRow:
    """One document of a batch: its state in the batch, stage, attempts and, when it failed, why."""

    document_id: int
    source: str
    state: MirrorState
    stage: str | None = None
    attempts: int | None = None
    category: str | None = None
    message: str | None = None
    reason: str | None = None  # why it was skipped or cancelled
    retry_at: datetime | None = None  # a running document waiting for a delayed retry: when it is due (category: why)

    def as_json(self) -> dict[str, Any]:
        running = self.state is MirrorState.RUNNING
        row: dict[str, Any] = {"document_id": self.document_id, "source": self.source, "state": self.state.value,
                               "stage": self.stage if running else None, "attempts": self.attempts,
                               "reason": self.reason}  # fmt: skip
        if self.retry_at is not None:
            row["retry_at"] = iso(self.retry_at)
        if self.state is MirrorState.FAILED:
            row["error"] = {"category": self.category, "stage": self.stage, "message": self.message}
        return row


_NUMBERS = re.compile(r"\d+(?:\.\d+)?")


def message_pattern(message: str, source: str | None) -> str:
    """A failure message with what names one document taken out, so one cause groups as one line."""
    text = message or ""
    if source:
        text = text.replace(source, "<document>")
    return _NUMBERS.sub("N", text)[:300]
