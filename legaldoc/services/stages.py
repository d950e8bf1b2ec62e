"""Use case: run one stage of one document under a durable claim, mirror the change, queue what follows.

`StageRunner.execute(document_id, stage, attempt)` is the whole body of every stage task. It claims
the stage in the database (a duplicate or stale message does nothing), keeps the claim's lease
alive while the stage runs, writes the stage's outputs and the document's next state in one
transaction, then mirrors the change to Redis in one round trip and publishes the next message.

With a `Chain` (a worker that consumes the next stage's queue), the next stage runs at once in the
same process instead of being published: its own claim, attempt and run row, as if its message had
come, and the end of the stage before it rides in the chained stage's first round trip.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
import traceback
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from legaldoc import PIPELINE_VERSION
from legaldoc.config import Settings
from legaldoc.errors import (
    RETRY_POLICIES,
    ClaimLost,
    LegaldocError,
    categorize,
    retry_after_of,
    retry_delay,
)
from legaldoc.lifecycle import (
    Attempt,
    AttemptOutcome,
    BatchStatus,
    DocumentStatus,
    Failure,
    MirrorState,
    Transition,
)
from legaldoc.logs import bind_log_context, log_context
from legaldoc.models import PERSON_TYPES, EntityRef, EntityType, RelationType, Stage, StageError
from legaldoc.paths import is_remote, split_container
from legaldoc.pipeline.chunk import chunk_document
from legaldoc.pipeline.entities import EntityProvider
from legaldoc.pipeline.entities.llm import ModelEntityProvider, ModelUsage
from legaldoc.pipeline.extract import RECORD_KEY, extract, ocr_provider_from_settings
from legaldoc.pipeline.extract.textract import OcrMode, ocr_mode
from legaldoc.pipeline.people import link_people, surname_word
from legaldoc.pipeline.relate import chunk_of, relate
from legaldoc.pipeline.resolve import resolve_mentions
from legaldoc.queues import DEFAULT_PRIORITY, FINALIZE_TASK, STAGE_QUEUE, batch_queue
from legaldoc.services.caching import StageCache, extract_key
from legaldoc.services.openai_entities import entity_provider_for
from legaldoc.services.sources import read_source, s3_stamp
from legaldoc.services.textract import Defer, RemoteOcr
from legaldoc.services.timelimit import stage_time_limit
from legaldoc.state.batches import BatchState
from legaldoc.state.broker import Broker, Lineage, Message
from legaldoc.state.cache import ResultCache
from legaldoc.state.roundtrip import RoundTrip
from legaldoc.storage import claims
from legaldoc.storage import repository as repo
from legaldoc.storage.db import Database
from legaldoc.storage.tables import Batch, Document

log = logging.getLogger("legaldoc.stages")
S3_STAMP = "s3_object"  # the document's metadata: ETag:size of the S3 object it was processed from

@dataclass(frozen=True)
class Written:
    """What a writer may return: an action to run once its transaction has committed, and the
    outcome the stage metric records (CACHED when the result came from the cache)."""

    after_commit: Callable[[], None] | None = None
    outcome: AttemptOutcome = AttemptOutcome.DONE


Writer = Callable[[Session], Written | None]


@dataclass(frozen=True)
class Skip:
    duplicate_of: int | None
    reason: str


@dataclass(frozen=True)
class StageOutcome:
    """What `execute` did (DONE, SKIPPED, RETRY, FAILED; or LOST, DUPLICATE, STALE, MISSING: nothing)."""

    status: AttemptOutcome
    error: StageError | None = None
    retry_in: float | None = None  # RETRY: seconds until the next attempt's message is due
    then: StageOutcome | None = None  # the next stage, run chained after this one (`Chain`)

    def chained(self) -> list[StageOutcome]:
        """This outcome and those of the stages chained after it, in order."""
        outcomes: list[StageOutcome] = []
        outcome: StageOutcome | None = self
        while outcome is not None:
            outcomes.append(outcome)
            outcome = outcome.then
        return outcomes


CHAIN_SHARE = 0.9  # a chained stage starts only with this share of its own queue's soft time limit left
PROBE_AGE = 1.0  # seconds an answer to "does a more urgent message wait?" holds for chaining


@dataclass(frozen=True)
class Chain:
    """Which next stages a task may run itself, right after the stage its message named: those whose
    queue this worker consumes (`queues.chainable`), while the task's soft time limit leaves at
    least `CHAIN_SHARE` of the time a message of the stage's own would get, and no message more
    urgent than the document waits in the stage queues the worker consumes (asked at most
    `PROBE_AGE` seconds before). A stage not chained is published to its queue as usual."""

    stages: frozenset[Stage]
    deadline: float  # time.monotonic() at which the task's soft time limit falls due
    queues: frozenset[str]  # the stage queues this worker consumes (for the priority probe)

    def allows(self, stage: Stage, settings: Settings) -> bool:
        if stage not in self.stages:
            return False
        return self.deadline - time.monotonic() >= CHAIN_SHARE * settings.soft_time_limit(STAGE_QUEUE[stage].value)


def _retrying(delay: float | None, asked: float | None, cap: float) -> str:
    """When the retry comes, for the failure's log line; and that `retry_max_delay` cut the wait when
    the server asked for more."""
    if delay is None:
        return ""
    due = datetime.now(UTC) + timedelta(seconds=delay)
    capped = f"; the server asked for {asked:g} s, retry_max_delay caps it" if asked is not None and asked > cap >= delay else ""
    return f", will retry in {delay:.1f} s (at {due:%H:%M:%S} UTC{capped})"


def error_message(exc: BaseException) -> str:
    if isinstance(exc, LegaldocError):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"


def mirror_transition(mirror: BatchState | None, broker: Broker | None, transition: Transition, priority: int) -> None:
    """One round trip to Redis; a mirror failure never fails the document (the database has it).
    A change that leaves its batch with no open document has the batch settled."""
    if mirror is None or transition.batch_id is None:
        return
    try:
        settleable = mirror.apply_transitions([transition])
    except Exception:
        log.warning("could not mirror document %s to Redis", transition.document_id, exc_info=True)
        return
    if settleable and broker:
        broker.publish([Message(FINALIZE_TASK, (transition.batch_id,), batch_queue(priority), priority)])


class _LeaseKeeper:
    """Renews a claim's lease every third of its length while a stage runs."""

    def __init__(self, runner: StageRunner, document_id: int, stage: Stage, attempt: int) -> None:
        self.runner, self.args = runner, (document_id, stage, attempt)
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._run, name="legaldoc-lease", daemon=True)

    def _run(self) -> None:
        lease = self.runner.settings.claim_lease
        while not self.stopped.wait(lease / 3):
            try:
                with self.runner.database.session() as session:
                    if not claims.renew(session, *self.args, self.runner.worker, lease):
                        return
            except Exception:  # a failed renewal only shortens the lease; the stage goes on
                log.warning("could not renew the claim of document %s", self.args[0], exc_info=True)

    def __enter__(self) -> _LeaseKeeper:
        self.thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stopped.set()


class StageRunner:
    """Runs stages for documents: claims, pure stage functions, idempotent writes, state mirror."""

    def __init__(self, settings: Settings, database: Database, *, mirror: BatchState | None = None,
                 broker: Broker | None = None, worker: str | None = None, retries: bool = True,
                 cache: ResultCache | None = None, use_cache: bool = True, time_limits: bool = False) -> None:  # fmt: skip
        self.settings = settings
        self.time_limits = time_limits  # in-process stages (no worker to enforce them): the queues' soft limits
        self.database = database
        self.cache = StageCache(settings, database, cache)
        self.use_cache = use_cache
        self.mirror = mirror
        self.broker = broker
        self.retries = retries
        self.worker = worker or claims.worker_identity()
        self.ocr = ocr_provider_from_settings(settings)
        self.remote_ocr = RemoteOcr(settings, database, self.ocr, on_pages=self._pages_sent)
        self._entity_providers: dict[str, EntityProvider] = {}  # made on first use: a model provider needs its key then
        self._trip: RoundTrip | None = None  # the running stage's Redis commands, sent together (`_send`)
        self._settleable: list[str] = []
        self._priority = DEFAULT_PRIORITY  # the running stage's batch priority
        self._chain: Chain | None = None  # the running task's
        # the last answer to "does a message more urgent than priority wait?": (monotonic time, priority, answer)
        self._urgent: tuple[float, int, bool] | None = None

    def entity_provider(self, name: str | None) -> EntityProvider:
        """The provider a batch's ``options.entities`` names (else the settings'), made once."""
        name = name or self.settings.entity_provider
        if name not in self._entity_providers:
            self._entity_providers[name] = entity_provider_for(self.settings, name, self.cache.redis)
        return self._entity_providers[name]

    # -- the unit of work -------------------------------------------------------------------------

    def execute(self, document_id: int, stage: Stage, attempt: int, parent: Lineage | None = None,
                chain: Chain | None = None) -> StageOutcome:  # fmt: skip
        """Run (document, stage, attempt) if its claim is taken; every log record inside names them.
        `parent`: the task running it (plain ids), which the messages it publishes name as their parent.
        `chain`: the next stages this process may run itself (their outcomes in `StageOutcome.then`)."""
        self._trip = self._new_trip()
        self._settleable = []
        self._priority = DEFAULT_PRIORITY
        self._chain = chain
        outcomes: list[StageOutcome] = []
        while True:
            with log_context(document_id=document_id, stage=stage.value, attempt=attempt):
                try:
                    outcome, follow = self._execute(document_id, stage, attempt, parent)
                except Exception:
                    if not outcomes:
                        self._flush(failing=True)
                        raise
                    # a chained stage that could not even start (the database refused its claim):
                    # its message goes out instead, so the document is not left waiting for the sweeper
                    log.warning("could not run the %s stage in this task; its message is published instead",
                                stage.value, exc_info=True)  # fmt: skip
                    if self.broker is not None and self._trip is not None:
                        self.broker.queue_stage(self._trip, [(document_id, stage, attempt)], self._priority, parent=parent)
                    self._flush()
                    break
                outcomes.append(outcome)
                if follow is None:
                    self._flush()  # what the last stage left for a next turn that will not come
                    break
            stage, attempt = follow, 1
        result: StageOutcome | None = None
        for outcome in reversed(outcomes):
            result = replace(outcome, then=result)
        assert result is not None
        return result

    def _flush(self, *, failing: bool = False) -> None:
        """Send what the round trip still holds; while an error propagates, a failure here is only logged."""
        try:
            self._send(self._priority)
        except Exception:
            if not failing:
                raise
            log.warning("could not send the document's state changes to Redis", exc_info=True)

    def _may_chain(self, stage: Stage, priority: int) -> bool:
        """Whether the next stage runs here: the chain allows it, and no message more urgent than this
        document waits in this worker's stage queues (asked in the round trip, which then goes now
        with what it holds, unless an answer of the last `PROBE_AGE` seconds says so already)."""
        chain = self._chain
        if chain is None or self.broker is None or self._trip is None or not chain.allows(stage, self.settings):
            return False
        known = self._urgent
        if known is None or known[1] != priority or time.monotonic() - known[0] > PROBE_AGE:
            self._queue_probe(priority)
            self._send(priority)
            known = self._urgent
        return known is not None and known[1] == priority and not known[2]

    def _queue_probe(self, priority: int) -> None:
        """Ask in the round trip whether a message more urgent than `priority` waits (see `_may_chain`)."""
        chain = self._chain
        if chain is None or self.broker is None or self._trip is None:
            return
        self._urgent = None

        def answer(waiting: bool) -> None:
            self._urgent = (time.monotonic(), priority, waiting)

        self.broker.queue_more_urgent(self._trip, chain.queues, priority, answer)

    def _execute(self, document_id: int, stage: Stage, attempt: int,
                 parent: Lineage | None) -> tuple[StageOutcome, Stage | None]:  # fmt: skip
        """One stage; the stage to run next in this process when the task's chain allows it (its message is
        then not published, and this stage's end waits in the round trip for the next turn)."""
        self.cache.begin(self._trip)
        with self.database.session() as session:
            claim = claims.claim(session, document_id, stage, attempt, self.worker, self.settings.claim_lease)
            if claim.outcome is AttemptOutcome.EARLY:
                return self._early(session, document_id, stage, attempt, claim.due_at, parent), None
            if claim.transition is not None:
                bind_log_context(batch_id=claim.transition.batch_id)
                batch = session.get(Batch, claim.transition.batch_id) if claim.transition.batch_id else None
                priority = self._priority = batch.priority if batch else DEFAULT_PRIORITY
                if batch is not None and batch.status == BatchStatus.CANCELLING:  # the batch stops: so does this document
                    stopped = claims.cancel(session, batch.id, frozenset({DocumentStatus.RUNNING}), document_id=document_id)
                else:
                    options = dict(batch.options or {}) if batch else {}
                    run_id = repo.start_run(session, document_id, stage, attempt, self.worker).id
                    stopped = []
        if claim.outcome is AttemptOutcome.LOST:  # its holder died or stopped answering: that attempt counts
            from legaldoc.services.crashes import Crash, record_crash

            record_crash(self.settings, self.database, self.mirror, self.broker,
                         Crash(document_id, stage, attempt, holder=claim.holder))  # fmt: skip
            return StageOutcome(AttemptOutcome.LOST), None
        if claim.transition is None:
            log.debug("message not run: %s", claim.outcome.value)
            return StageOutcome(claim.outcome), None
        if stopped:
            self._mirror(stopped[0], priority)
            return StageOutcome(AttemptOutcome.CANCELLED), None
        if stage is Stage.EXTRACT:  # running from now on: rides with the cache lookup (or alone) before extraction
            self._queue(claim.transition)
        started = time.monotonic()
        try:
            with _LeaseKeeper(self, document_id, stage, attempt):
                limit = stage_time_limit(self.settings, stage, claim.source) if self.time_limits else nullcontext()
                with limit:
                    work = getattr(self, f"_{stage.value}")(document_id, options)
                if isinstance(work, Defer):
                    return self._defer(document_id, stage, attempt, run_id, work, priority), None
                with self.database.session() as session:
                    written = None if isinstance(work, Skip) else work(session)
                    outcome = AttemptOutcome.SKIPPED if isinstance(work, Skip) else (written or Written()).outcome
                    ended = Attempt(stage, attempt, outcome, int((time.monotonic() - started) * 1000))
                    if isinstance(work, Skip):
                        transition = claims.skip(session, document_id, ended, self.worker,
                                                 duplicate_of=work.duplicate_of, reason=work.reason)  # fmt: skip
                    else:
                        transition = claims.advance(session, document_id, ended, self.worker)
                    repo.finish_run(session, run_id, AttemptOutcome.SKIPPED if isinstance(work, Skip) else AttemptOutcome.DONE)
                self.cache.committed()
                if written is not None and written.after_commit is not None:
                    written.after_commit()
        except ClaimLost:
            with self.database.session() as session:
                repo.finish_run(session, run_id, AttemptOutcome.LOST)
            return StageOutcome(AttemptOutcome.LOST), None
        except Exception as exc:
            return self._failed(document_id, stage, attempt, run_id, exc, started, priority, claim.source, parent), None
        self._queue(transition)
        follow = None
        if transition.state is MirrorState.RUNNING and transition.stage and self.broker and self._trip is not None:
            if self._may_chain(transition.stage, priority):
                follow = transition.stage  # runs next here: this end rides in its first round trip
            else:
                self.broker.queue_stage(self._trip, [(document_id, transition.stage, 1)], priority, parent=parent)
        if follow is None or (self._trip is not None and self._trip.prompt):
            self._send(priority)  # the stage's end: state, cache writes and the next message in one round trip
        done = AttemptOutcome.SKIPPED if isinstance(work, Skip) else AttemptOutcome.DONE
        log.info("stage %s", done.value, extra={"duration": round(time.monotonic() - started, 3)})
        return StageOutcome(done), follow

    def _failed(self, document_id: int, stage: Stage, attempt: int, run_id: int, exc: Exception, started: float,
                priority: int, source: str | None, parent: Lineage | None = None) -> StageOutcome:  # fmt: skip
        category = categorize(exc)
        message = error_message(exc)
        policy = RETRY_POLICIES[category]
        retry = self.retries and policy.retry and attempt < policy.max_attempts(self.settings.max_attempts)
        outcome = AttemptOutcome.RETRY if retry else AttemptOutcome.FAILED
        delay = retry_delay(category, attempt, exc, self.settings.retry_base_delay, self.settings.retry_max_delay) if retry else None
        where = f"[document {document_id}: {source}, stage {stage.value}, attempt {attempt}]"
        log.warning("%s failed (%s)%s: %s", where, category.value,
                    _retrying(delay, retry_after_of(exc), self.settings.retry_max_delay), message,
                    extra={"category": category.value, "duration": round(time.monotonic() - started, 3)})  # fmt: skip
        trace = traceback.format_exc()
        failure = Failure(category, message, repo.traceback_digest(trace), source)
        ended = Attempt(stage, attempt, outcome, int((time.monotonic() - started) * 1000), failure)
        with self.database.session() as session:
            transition = claims.fail(session, document_id, ended, self.worker, delay=delay)
            repo.finish_run(session, run_id, outcome, category.value, f"{message} {where}", trace)
        if transition is None:
            self._send(priority)
            return StageOutcome(AttemptOutcome.LOST)
        self._queue(transition)
        if retry and self.broker and self._trip is not None:
            self.broker.queue_stage(self._trip, [(document_id, stage, attempt + 1)], priority, countdown=delay, parent=parent)
        self._send(priority)
        return StageOutcome(outcome, StageError(category=category, stage=stage, message=message), delay)

    def _early(self, session: Session, document_id: int, stage: Stage, attempt: int, due_at: datetime | None,
               parent: Lineage | None = None) -> StageOutcome:  # fmt: skip
        """A message came before its attempt is due (a stray duplicate, a broker that ignored the
        ETA): it runs nothing, and the attempt's message is published again for the rest of the wait,
        so the attempt runs on time whatever became of the message that had the delay."""
        assert due_at is not None
        remaining = max(0.0, (due_at - claims.now_utc()).total_seconds())
        if self.broker is not None:
            priority = session.scalar(select(Batch.priority).join(Document, Document.batch_id == Batch.id)
                                      .where(Document.id == document_id))  # fmt: skip
            self.broker.publish_stage([(document_id, stage, attempt)], DEFAULT_PRIORITY if priority is None else priority,
                                      countdown=remaining, parent=parent)  # fmt: skip
        log.info("document %s: %s attempt %d is due in %.1f s; its message came early%s", document_id, stage.value,
                 attempt, remaining, " and was published again" if self.broker is not None else "")  # fmt: skip
        return StageOutcome(AttemptOutcome.EARLY)

    def _defer(self, document_id: int, stage: Stage, attempt: int, run_id: int, work: Defer, priority: int) -> StageOutcome:
        """A remote job runs: release the claim (the document waits at this attempt), queue its poll."""
        with self.database.session() as session:
            transition = claims.defer(session, document_id, stage, attempt, self.worker)
            repo.finish_run(session, run_id, AttemptOutcome.WAITING)
        self._mirror(transition, priority)
        if self.broker is None:  # `legaldoc process`: no worker to give back, so this process waits
            time.sleep(work.delay)
            return self.execute(document_id, stage, attempt)
        work.publish(self.broker, document_id, attempt, priority)
        return StageOutcome(AttemptOutcome.WAITING)

    def _new_trip(self) -> RoundTrip | None:
        """The round trip a stage's Redis commands ride in, on the state database's connection."""
        home = self.mirror.client if self.mirror else self.broker.client if self.broker else \
            self.cache.redis.client if self.cache.redis else None  # fmt: skip
        return RoundTrip(home) if home is not None else None

    def _queue(self, transition: Transition) -> None:
        """A state change into the stage's round trip (sent by `_send`)."""
        if self.mirror is not None and self._trip is not None:
            self.mirror.queue_transition(self._trip, transition, settleable=self._settleable.append)

    def _send(self, priority: int) -> None:
        """Send the stage's round trip: a failed state or cache command is logged (the database has
        it), a failed message raises. A batch left with no open document is settled."""
        if self._trip is None:
            return
        for error in self._trip.send():
            log.warning("Redis refused a state or cache write: %s", error)
        settleable, self._settleable = self._settleable, []
        if self.broker:
            for batch_id in dict.fromkeys(settleable):
                self.broker.publish([Message(FINALIZE_TASK, (batch_id,), batch_queue(priority), priority)])

    def _mirror(self, transition: Transition, priority: int) -> None:
        """A state change sent now, with whatever the stage's round trip holds."""
        self._queue(transition)
        self._send(priority)

    def _pages_sent(self, batch_id: str | None, pages: int, cost: float) -> None:
        """Pages sent to Textract, added to the batch's live usage (status, the dashboard)."""
        if self.mirror is None or batch_id is None or not pages:
            return
        try:
            self.mirror.add_usage(batch_id, "textract", {"pages": pages, "jobs": 1}, cost)
        except Exception:
            log.warning("could not record the Textract usage of batch %s", batch_id, exc_info=True)

    def _spent(self, batch_id: str | None, usage: ModelUsage) -> None:
        """What the model calls of one stage cost, added to the batch's live usage."""
        if self.mirror is None or batch_id is None or not (usage.calls or usage.cached):
            return
        try:
            self.mirror.add_usage(batch_id, "openai", usage.as_counts(),
                                  usage.cost(self.settings.openai_price_in, self.settings.openai_price_out))  # fmt: skip
        except Exception:
            log.warning("could not record the model usage of batch %s", batch_id, exc_info=True)

    # -- stages: read inputs, call the pure stage, return a writer for one transaction -------------

    def _extract(self, document_id: int, options: dict[str, Any]) -> Writer | Skip | Defer:
        with self.database.read() as session:
            document = session.get_one(Document, document_id)
            source, project_id = document.source, document.project_id
            batch_id, attempt = document.batch_id, document.attempts
            stored_stamp = (document.doc_metadata or {}).get(S3_STAMP) if document.processed_sha256 == document.sha256 else None
            processed = document.processed_sha256 is not None and document.pipeline_version == PIPELINE_VERSION
        mode = ocr_mode(options.get("ocr"), self.settings)
        stamp = None
        if is_remote(source) and split_container(source) is None:
            stamp = s3_stamp(source, self.settings)  # one HEAD: an unchanged object is not downloaded again
            if options.get("skip_processed") and processed and stored_stamp == stamp:
                return Skip(None, "unchanged since it was processed (same S3 ETag and size)")
        data = read_source(source, self.settings)
        sha256 = hashlib.sha256(data).hexdigest()
        if options.get("skip_processed"):
            with self.database.read() as session:
                same = session.execute(
                    select(Document.id).where(
                        Document.project_id == project_id, Document.processed_sha256 == sha256,
                        Document.pipeline_version == PIPELINE_VERSION,
                        (Document.id == document_id) | (Document.status == DocumentStatus.DONE),
                    ).order_by((Document.id == document_id).desc(), Document.id).limit(1)
                ).scalar()  # fmt: skip
            if same is not None:
                if same == document_id:
                    return Skip(None, "unchanged since it was processed")
                return Skip(same, f"same content as document {same}")
        key = extract_key(self.settings.model_copy(update={"ocr_provider": mode.value}), sha256)
        self._queue_probe(self._priority)  # for chaining the next stages: rides with the lookup or the running mark
        lookup = self.use_cache and not options.get("force")
        cached = self.cache.extraction(key, sha256) if lookup else None
        if not (lookup and self.cache.redis is not None):
            self._send(DEFAULT_PRIORITY)  # the running mark goes now: no cache lookup carried it
        if cached or mode is OcrMode.LOCAL:
            extracted = cached.extracted if cached else extract(data, source, self.settings, self.ocr)
        else:
            remote = self.remote_ocr.extract(document_id, batch_id, attempt, data, source, mode)
            if isinstance(remote, Defer):
                return remote
            extracted = remote

        def write(session: Session) -> Written:
            document = session.get_one(Document, document_id)
            document.sha256, document.size, document.extract_key = sha256, len(data), key
            repo.save_extraction(session, document, extracted, PIPELINE_VERSION)
            if stamp is not None:
                document.doc_metadata = {**(document.doc_metadata or {}), S3_STAMP: stamp}
            if cached is not None:
                log.info("document %s: extraction from the cache (%s)", document_id, cached.source)
                return Written(outcome=AttemptOutcome.CACHED)
            return Written(after_commit=lambda: self.cache.remember_extraction(document_id, key, extracted))

        return write

    def _chunk(self, document_id: int, options: dict[str, Any]) -> Writer:
        with self.database.read() as session:
            extracted = repo.load_extracted(session, document_id)
        chunks = chunk_document(extracted, self.settings.chunk_target_chars, self.settings.chunk_max_chars)
        return lambda session: repo.save_chunks(session, document_id, chunks, extracted.text)

    def _entities(self, document_id: int, options: dict[str, Any]) -> Writer:
        with self.database.read() as session:
            extracted = repo.load_extracted(session, document_id)
            chunks = repo.load_chunks(session, document_id)
            project_id = session.get_one(Document, document_id).project_id
            batch_id = session.get_one(Document, document_id).batch_id
        provider = self.entity_provider(options.get("entities"))
        record = extracted.metadata.get(RECORD_KEY)
        if isinstance(provider, ModelEntityProvider):
            usage = ModelUsage()
            try:
                mentions = provider.run(extracted.text, record, usage=usage).mentions
            finally:
                self._spent(batch_id, usage)
        else:
            mentions = provider.extract(extracted.text, record)
        pages = [extracted.page_at(m.start) for m in mentions]
        chunk_indexes = [chunk_of(chunks, m.start) for m in mentions]

        def write(session: Session) -> None:
            repo.lock_project(session, project_id)
            if repo.save_mentions(session, document_id, mentions, pages, chunk_indexes):
                repo.bump_entity_generation(session, project_id)  # entities may have been removed

        return write

    def _resolve(self, document_id: int, options: dict[str, Any]) -> Writer:
        def write(session: Session) -> None:
            document = session.get_one(Document, document_id)
            project_id = document.project_id
            repo.lock_project(session, project_id)
            stored = repo.load_mentions(session, document_id)
            if not stored:
                return
            index, generation = self.cache.entity_index(session, project_id, {m.type for _, m in stored})
            before = {(t, k): (e.name, len(e.aliases)) for t, entities in index.items() for k, e in entities.items()}
            resolution = resolve_mentions([m for _, m in stored], index, self.settings.fuzzy_threshold)
            ids = repo.save_entities(session, project_id, resolution.entities.values())
            repo.link_mentions(
                session,
                {mention_id: ids[EntityRef(type=t, key=k)] for (mention_id, _), (t, k) in zip(stored, resolution.entity_of_mention, strict=True)},
            )
            changed: set[EntityType] = set()  # types with a new entity, a new name or a new alias
            for (entity_type, key), entity in resolution.entities.items():
                if before.get((entity_type, key)) != (entity.name, len(entity.aliases)):
                    index.setdefault(entity_type, {})[key] = entity
                    changed.add(entity_type)
            if changed:
                self.cache.entity_index_changed(session, project_id, generation, {t: index[t] for t in changed})
            people = [e for e in resolution.entities.values() if e.type in PERSON_TYPES]
            if people:  # one person per person: SAME_AS among everyone sharing these surnames, recomputed
                group = repo.people_by_surname(session, project_id, {surname_word(e.type, e.key) for e in people})
                links = link_people(entity for _, entity in group.values())
                repo.replace_links(session, project_id, RelationType.SAME_AS, [i for i, _ in group.values()], links,
                                   {ref: entity_id for ref, (entity_id, _) in group.items()})  # fmt: skip

        return write

    def _relate(self, document_id: int, options: dict[str, Any]) -> Writer:
        def write(session: Session) -> None:
            project_id = session.get_one(Document, document_id).project_id
            stored = repo.load_mentions(session, document_id)
            refs = repo.entity_refs_of_mentions(session, document_id)
            chunks = repo.load_chunks(session, document_id)
            linked = [(m, refs[mention_id]) for mention_id, m in stored if mention_id in refs]
            relationships = relate([m for m, _ in linked], [ref for _, (ref, _) in linked], chunks)
            entity_ids = {ref: entity_id for ref, entity_id in refs.values()}
            repo.save_relationships(session, project_id, document_id, relationships, entity_ids)

        return write
