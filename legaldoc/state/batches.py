"""Live batch state in Redis, a mirror of the database: `apply_transitions` copies every document
state change through one Lua script, `settle` copies the batch status the database decided.

The transition script is idempotent and order-proof: each change carries the document's database
version and is applied only when newer than what the mirror holds, so a replayed or late change
does nothing. It moves the batch counters only when a document's state class really changes, and
records the metrics the change carries.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import redis
from redis.typing import EncodableT, FieldT

from legaldoc.lifecycle import FINAL, AttemptOutcome, BatchStatus, MirrorState, Transition
from legaldoc.state.keys import Keys
from legaldoc.state.metrics import add_usage_counters, counted
from legaldoc.state.roundtrip import RoundTrip, send_packed
from legaldoc.state.scripts import Script

USAGE = "usage:"  # batch hash fields usage:{provider}:{name}: what remote providers cost
SETTLEABLE = 2  # the transition script's answer when no document of the batch is open any more
CHANGES_PER_CALL = 200  # document changes per call of the transition script
RECENT_ERRORS = 200  # as transition.lua keeps


@dataclass(frozen=True)
class ErrorNote:
    """A failed stage attempt as the mirror keeps it: the batch's errors hash, the recent errors."""

    stage: str
    category: str
    message: str
    attempt: int
    at: float
    retrying: bool = False
    digest: str | None = None
    source: str | None = None

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str | bytes) -> ErrorNote | None:
        try:
            data = json.loads(text)
            return cls(**{k: data.get(k) for k in ("stage", "category", "message", "attempt", "at", "retrying",
                                                   "digest", "source")})  # fmt: skip
        except (TypeError, ValueError):
            return None


@dataclass(frozen=True)
class DocumentState:
    """A document as its batch's mirror holds it (the ``docs`` hash: ``version|state|stage|category``)."""

    version: int
    state: MirrorState
    stage: str | None
    category: str | None

    @classmethod
    def parse(cls, value: bytes) -> DocumentState:
        version, state, stage, category = (value.decode().split("|") + ["", "", ""])[:4]
        return cls(int(version), MirrorState(state), stage or None, category or None)


def _text(fields: Any) -> dict[str, str]:
    """A hash as redis-py returns it, decoded."""
    return {k.decode(): v.decode() for k, v in fields.items()}


class BatchState:
    """Reads and writes of batch state in the state database."""

    def __init__(self, client: redis.Redis, keys: Keys, *, retention_seconds: int) -> None:
        self.client = client
        self.keys = keys
        self.retention_seconds = retention_seconds
        self._transition = Script(client, "transition")
        self._settle = Script(client, "settle")

    def runner(self) -> str | None:
        """The `legaldoc run` this Redis is private to; None for a shared Redis."""
        value = self.client.get(self.keys.runner)
        return value.decode() if isinstance(value, bytes) else value

    def mark_runner(self, runner: str) -> None:
        self.client.set(self.keys.runner, runner)

    def _batch_keys(self, batch_id: str) -> dict[str, str]:
        k = self.keys
        return {"batch": k.batch(batch_id), "docs": k.batch_docs(batch_id), "errors": k.batch_errors(batch_id)}

    def queue_transition(self, trip: RoundTrip, t: Transition, *, now: float | None = None,
                         settleable: Callable[[str], None] | None = None) -> None:  # fmt: skip
        """Add one change to a round trip, where every change it carries goes in one script call;
        `settleable` gets the batch id when the change leaves its batch with no open document."""
        if t.batch_id is None:
            return
        trip.gather(self, (self._change(t, time.time() if now is None else now), t.batch_id, settleable), self._emit)

    def _emit(self, trip: RoundTrip, items: list[Any]) -> None:
        """The changes a round trip gathered, as script calls (`CHANGES_PER_CALL` each)."""
        for offset in range(0, len(items), CHANGES_PER_CALL):
            part = items[offset : offset + CHANGES_PER_CALL]

            def reply(codes: Any, part: list[Any] = part) -> None:
                refused = []
                for (_, batch_id, settleable), code in zip(part, codes, strict=True):
                    if isinstance(code, bytes | str):  # this change failed, the others of the call did not
                        refused.append(code.decode() if isinstance(code, bytes) else code)
                    elif settleable is not None and int(code) == SETTLEABLE:
                        settleable(batch_id)
                if refused:
                    raise redis.ResponseError(f"{len(refused)} of {len(part)} state changes refused: {refused[0]}")

            self._transition.queue(trip, *self._call([change for change, _, _ in part]), reply=reply)

    def _change(self, t: Transition, now: float) -> tuple[list[str], str]:
        """One change as the transition script takes it: its five keys and its JSON object, with the
        metric entries of the attempt it ends: ``doc|attempt|ms|outcome`` (stage durations),
        ``doc|stage|attempt`` (failed attempts) and the error note."""
        assert t.batch_id is not None
        attempt, k = t.attempt, self.keys
        failure = attempt.failure if attempt else None
        keys = [k.batch(t.batch_id), k.batch_docs(t.batch_id), k.batch_errors(t.batch_id),
                k.stage_metrics(attempt.stage if attempt else "none"), k.error_metrics(failure.category if failure else "none")]  # fmt: skip
        change = {"batch_id": t.batch_id, "document": str(t.document_id), "version": str(t.version), "state": str(t.state),
                  "stage": str(t.stage) if t.stage and t.state in (MirrorState.RUNNING, MirrorState.FAILED) else "",
                  "category": str(failure.category) if failure else "",
                  "stage_member": f"{t.document_id}|{attempt.number}|{attempt.elapsed_ms}|{attempt.outcome}"
                  if attempt and attempt.elapsed_ms is not None else "",
                  "error_member": f"{t.document_id}|{attempt.stage}|{attempt.number}" if attempt and failure else "",
                  "error": ErrorNote(attempt.stage, failure.category, failure.message, attempt.number, now,
                                     attempt.outcome is AttemptOutcome.RETRY, failure.digest, failure.source).to_json()
                  if attempt and failure else "", "now": repr(now), "counted": [str(v) for v in counted(t)]}  # fmt: skip
        return keys, json.dumps(change)

    def _call(self, changes: Sequence[tuple[list[str], str]]) -> tuple[dict[str, Any], dict[str, Any]]:
        """The transition script's keys and arguments for these changes."""
        k = self.keys
        keys = {"done_metrics": k.done_metrics, "recent_errors": k.recent_errors, "failed_metrics": k.failed_metrics,
                "counters": k.counters, "change_keys": [key for change_keys, _ in changes for key in change_keys]}  # fmt: skip
        return keys, {"changes": [change for _, change in changes]}

    def apply_transitions(self, transitions: Sequence[Transition], *, now: float | None = None) -> set[str]:
        """Copy document state changes to the mirror, `CHANGES_PER_CALL` per script call and every
        call in one round trip; returns the batches that no longer have an open document (to be
        settled). `now` (default: the clock) stamps the metrics and timestamps the changes write."""
        now = time.time() if now is None else now
        settleable: set[str] = set()
        trip = RoundTrip(self.client)
        for t in transitions:
            self.queue_transition(trip, t, now=now, settleable=settleable.add)
        errors = trip.send()
        if errors:
            raise errors[0]
        return settleable

    def settle(self, batch_id: str, status: BatchStatus, *, created_at: float, finished_at: float | None) -> bool:
        """Copy the status the database settled; refused (False) where the mirror's counters say
        otherwise, or when the mirror does not hold the batch."""
        keys = {**self._batch_keys(batch_id), "active": self.keys.active_batches}
        args = {"batch_id": batch_id, "status": status, "finished_at": finished_at or time.time(),
                "created_at": created_at, "retention": self.retention_seconds}  # fmt: skip
        return bool(self._settle(keys, args))

    def _write_batch(self, batch_id: str, fields: Mapping[str, Any], states: Mapping[int, tuple[int, str, str, str]],
                     errors: Mapping[int, str] | None = None) -> None:  # fmt: skip
        counts = {state.value: 0 for state in MirrorState}
        for _, state, _, category in states.values():
            counts[state] += 1
            if state == MirrorState.FAILED and category:
                counts[f"errors:{category}"] = counts.get(f"errors:{category}", 0) + 1
        keys = self._batch_keys(batch_id)
        values: dict[FieldT, EncodableT] = {k: v for k, v in fields.items() if v is not None}
        values.update(counts, total=len(states))
        commands: list[list[Any]] = [["MULTI"], ["DEL", *keys.values()],
                                     ["HSET", keys["batch"], *(x for kv in values.items() for x in kv)]]  # fmt: skip
        items = list(states.items())
        for offset in range(0, len(items), 10000):
            commands.append(["HSET", keys["docs"], *(x for d, (v, s, st, c) in items[offset : offset + 10000]
                                                     for x in (d, f"{v}|{s}|{st}|{c}"))])  # fmt: skip
        if errors:
            commands.append(["HSET", keys["errors"], *(x for kv in errors.items() for x in kv)])
        created = float(fields["created_at"])
        commands += [["ZADD", self.keys.batches, created, batch_id], ["ZADD", self.keys.active_batches, created, batch_id], ["EXEC"]]
        replies = send_packed(self.client, commands)  # one transaction, packed here: thousands of documents
        if isinstance(replies[-1], list) and (failed := next((r for r in replies[-1] if isinstance(r, Exception)), None)):
            raise failed

    def init_batch(self, batch_id: str, fields: Mapping[str, Any], documents: Mapping[int, tuple[int, MirrorState]]) -> None:
        """Create the batch hash and every document's starting state (pending or skipped)."""
        self._write_batch(batch_id, fields, {d: (v, s, "", "") for d, (v, s) in documents.items()})

    def rebuild(self, batch_id: str, fields: Mapping[str, Any], documents: Mapping[int, tuple[int, MirrorState, str, str]],
                errors: Mapping[int, ErrorNote], *, finished_at: float | None) -> None:  # fmt: skip
        """Write a batch's live state again from the database (after Redis lost it or it expired)."""
        self._write_batch(batch_id, fields, documents, {d: e.to_json() for d, e in errors.items()})
        if all(state in FINAL for _, state, _, _ in documents.values()):
            self.settle(batch_id, BatchStatus(fields["status"]), created_at=float(fields["created_at"]),
                        finished_at=finished_at)  # fmt: skip

    def add_usage(self, batch_id: str, provider: str, counts: Mapping[str, int], cost: float = 0.0) -> None:
        """Add what a remote provider cost (calls, tokens, estimated US dollars) to the batch's
        ``usage:{provider}:{name}`` fields."""
        pipe = self.client.pipeline(transaction=False)
        key = self.keys.batch(batch_id)
        for name, count in counts.items():
            if count:
                pipe.hincrby(key, f"{USAGE}{provider}:{name}", count)
        if cost:
            pipe.hincrbyfloat(key, f"{USAGE}{provider}:cost_usd", cost)
        add_usage_counters(pipe, self.keys, provider, [*counts.items(), ("cost_usd", cost)])
        pipe.execute()

    def read(self, batch_id: str) -> dict[str, str] | None:
        return _text(self.client.hgetall(self.keys.batch(batch_id))) or None

    def read_many(self, batch_ids: Iterable[str]) -> list[dict[str, str] | None]:
        pipe = self.client.pipeline(transaction=False)
        for batch_id in batch_ids:
            pipe.hgetall(self.keys.batch(batch_id))
        return [_text(data) or None for data in pipe.execute()]

    def detail(self, batch_id: str) -> tuple[dict[str, str] | None, dict[int, DocumentState], dict[int, ErrorNote]]:
        """The batch hash, every document's state and the failures, in one round trip (for the
        dashboard's batch screen; the main screen never reads per-document state)."""
        pipe = self.client.pipeline(transaction=False)
        pipe.hgetall(self.keys.batch(batch_id))
        pipe.hgetall(self.keys.batch_docs(batch_id))
        pipe.hgetall(self.keys.batch_errors(batch_id))
        fields, docs, errors = pipe.execute()
        notes = {int(d): note for d, v in errors.items() if (note := ErrorNote.from_json(v)) is not None}
        return _text(fields) or None, {int(d): DocumentState.parse(v) for d, v in docs.items()}, notes

    def note_error(self, batch_id: str, document_id: int, note: ErrorNote) -> None:
        """Add an error to the newest errors the dashboard shows, outside any document's transition."""
        pipe = self.client.pipeline(transaction=False)
        pipe.lpush(self.keys.recent_errors, f"{batch_id}|{document_id}|{note.to_json()}")
        pipe.ltrim(self.keys.recent_errors, 0, RECENT_ERRORS - 1)
        pipe.execute()

    def trim_metrics(self, before: float, stages: Iterable[str], categories: Iterable[str]) -> int:
        """Drop metrics older than `before` (epoch seconds)."""
        k = self.keys
        pipe = self.client.pipeline(transaction=False)
        for key in [k.done_metrics, k.failed_metrics, *map(k.stage_metrics, stages), *map(k.error_metrics, categories)]:
            pipe.zremrangebyscore(key, "-inf", before)
        return sum(pipe.execute())
