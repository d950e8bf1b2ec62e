"""A stage attempt whose process died counts as an attempt: a poison document (one that crashes its
worker process every time) ends failed as DATA after the RESOURCE policy's attempts instead of
looping forever, a single crash is retried as the next attempt, and that attempt goes to the front
of its queue. Real redis-server, real worker subprocesses, the test-only `failing` entity provider
killing its own process (a real segfault, or SIGKILL)."""

from __future__ import annotations

import base64
import json
import subprocess
import time
from pathlib import Path

import psutil
import pytest
import redis
from sqlalchemy import func, make_url, select

from legaldoc.errors import RETRY_POLICIES, ErrorCategory
from legaldoc.lifecycle import AttemptOutcome, DocumentStatus
from legaldoc.models import Stage
from legaldoc.queues import STAGE_QUEUE, broker_priority
from legaldoc.state.broker import Message
from legaldoc.storage import claims
from legaldoc.storage import repository as repo
from legaldoc.storage.tables import Document, StageRun
from tests.batchkit import children, connect, write_manifest

POISON = "POISON-PILL"


def _texts(folder: Path, good: int, poison: int = 1) -> Path:
    """`good` small distinct legal texts and `poison` ones carrying the poison marker."""
    folder.mkdir(parents=True, exist_ok=True)
    for index in range(good + poison):
        marker = f" {POISON} {index}." if index >= good else ""
        (folder / f"{index:03d}.txt").write_text(
            f"UNITED STATES DISTRICT COURT. John Doe{index} v. Acme Holdings {index}, Inc., Case No. 1:20-cv-{index:05d}. "
            f"See Roe v. Wade, 410 U.S. {100 + index} (1973). Filed on March {index % 27 + 1}, 2021.{marker}\n"
        )
    return folder


def _poisoned(batch_settings, signal: str, failures: int):
    """The poison crashes its process `failures` times. A lease as long as production's: the pool
    notices a dead process within seconds, the sweeper should not (it counts an expired claim)."""
    return batch_settings.model_copy(update={"entity_provider": "failing", "failing_signal": signal, "claim_lease": 30.0,
                                             "failing_match": POISON, "failing_attempts": failures})  # fmt: skip


def _entity_runs(session, document_id: int) -> list:
    return session.execute(
        select(StageRun.attempt, StageRun.outcome, StageRun.error_category, StageRun.error_message)
        .where(StageRun.document_id == document_id, StageRun.stage == Stage.ENTITIES.value).order_by(StageRun.id)
    ).all()  # fmt: skip


def _no_database_connection(pid: int, settings) -> None:
    """The process holds no database connection (a pool process it forks could share it)."""
    main = psutil.Process(pid)
    url = make_url(settings.resolved_database_url)
    if url.get_backend_name() == "sqlite":
        assert not [f.path for f in main.open_files() if f.path.startswith(str(url.database))]
    else:
        assert not [c for c in main.net_connections() if c.raddr and c.raddr.port == (url.port or 5432)]


def _full_pool(worker, size: int, timeout: float = 10) -> list[int]:
    deadline = time.monotonic() + timeout
    while len(pool := children(worker.pid)) != size:
        assert time.monotonic() < deadline, f"the worker's pool has {len(pool)} processes, not {size}"
        time.sleep(0.1)
    return pool


@pytest.mark.any_database  # the crash path keeps its PostgreSQL run in test_one_sigkill_is_retried...
def test_poison_document_that_segfaults_every_time_fails_as_data(batch_settings, start_worker, tmp_path):
    """Given 50 good documents and one whose entities stage segfaults its process every time, When a
    worker runs the batch, Then the poison one fails as DATA after max attempts (each crash one
    attempt, recorded by the worker's main process with its signal), the 50 are done, no stage ran
    more than max attempts, and the worker is alive with its full pool."""
    settings = _poisoned(batch_settings, "SIGSEGV", failures=99)
    limit = RETRY_POLICIES[ErrorCategory.RESOURCE].max_attempts(settings.max_attempts)
    cluster = connect(settings)
    manifest = write_manifest(tmp_path / "m.yaml", [{"glob": f"{_texts(tmp_path / 'docs', 50)}/*"}], skip_processed=False)
    started = time.monotonic()
    submitted = cluster.submit(manifest)
    worker = start_worker(concurrency=2, settings=settings)
    final = cluster.wait(submitted.batch_id, timeout=60)
    elapsed = time.monotonic() - started
    assert (final["succeeded"], final["failed"]) == (50, 1), final
    with cluster.database.read() as session:
        poison = session.scalars(select(Document).where(Document.source.like("%050.txt"))).one()
        runs = _entity_runs(session, poison.id)
        most = session.scalar(select(func.max(StageRun.attempt)))
        per_stage = session.execute(
            select(func.count()).select_from(StageRun).group_by(StageRun.document_id, StageRun.stage)).scalars().all()  # fmt: skip
    assert (poison.status, poison.error_category, poison.error_stage, poison.attempts) == (
        DocumentStatus.FAILED, "DATA", "entities", limit)
    assert poison.error_message == (f"the entities stage killed its worker process on each of {limit} attempts "
                                    "(SIGSEGV); this document's content crashes it, so it is not retried")  # fmt: skip
    assert [(r.attempt, r.outcome) for r in runs] == [(n, AttemptOutcome.LOST) for n in range(1, limit + 1)]
    assert [r.error_category for r in runs] == ["RESOURCE"] * (limit - 1) + ["DATA"]
    assert all("signal 11 (SIGSEGV); pool process" in r.error_message for r in runs[:-1]), runs
    assert most <= limit and max(per_stage) <= limit
    calls = (settings.data_dir / "faults").iterdir()
    assert [p.stat().st_size for p in calls] == [limit]  # the poison ran exactly max attempts times
    error = cluster.live(submitted.batch_id)[1][poison.id]
    assert (error.category, error.stage, error.attempt) == ("DATA", "entities", limit)
    assert final["errors_by_category"] == {"DATA": 1}
    assert worker.process.poll() is None, "the worker died"
    _full_pool(worker, 2)
    _no_database_connection(worker.pid, settings)  # its main process recorded the crashes, then forked
    redis_counts, database_counts = cluster.counts(submitted.batch_id)
    assert redis_counts == database_counts
    print(f"\npoison (SIGSEGV every time) among 50: 51 documents, {limit} crashes, {limit} attempts of the poison's "
          f"stage, {elapsed:.1f} s")  # fmt: skip


def test_one_sigkill_is_retried_as_the_next_attempt_and_succeeds(batch_settings, start_worker, tmp_path):
    """Given a document whose entities stage is SIGKILLed on its first attempt only, When a worker runs
    it, Then that attempt is recorded lost (RESOURCE, naming the signal) and attempt 2 succeeds."""
    settings = _poisoned(batch_settings, "SIGKILL", failures=1)
    cluster = connect(settings)
    manifest = write_manifest(tmp_path / "m.yaml", [{"glob": f"{_texts(tmp_path / 'docs', 3)}/*"}], skip_processed=False)
    submitted = cluster.submit(manifest)
    worker = start_worker(concurrency=2, settings=settings)
    final = cluster.wait(submitted.batch_id, timeout=60)
    assert (final["succeeded"], final["failed"]) == (4, 0), final
    with cluster.database.read() as session:
        poison = session.scalars(select(Document).where(Document.source.like("%003.txt"))).one()
        runs = _entity_runs(session, poison.id)
    assert poison.status == DocumentStatus.DONE and poison.error_category is None
    assert [(r.attempt, r.outcome, r.error_category) for r in runs] == [
        (1, AttemptOutcome.LOST, "RESOURCE"), (2, AttemptOutcome.DONE, None)]
    assert "signal 9 (SIGKILL)" in runs[0].error_message and "on attempt 1 of 3" in runs[0].error_message
    assert [d["attempts"] for d in cluster.documents(submitted.batch_id) if d["document_id"] == poison.id] == [2]
    assert worker.process.poll() is None
    _full_pool(worker, 2)


def _dead_pid() -> int:
    process = subprocess.Popen(["true"])
    process.wait()
    return process.pid


def _hold(cluster, document_id: int, attempt: int, holder: str, lease: float = 60) -> None:
    """A worker process `holder` claimed the extract stage's attempt and started its run."""
    with cluster.database.session() as session:
        assert claims.claim(session, document_id, Stage.EXTRACT, attempt, holder, lease).outcome is AttemptOutcome.RUNNING
        repo.start_run(session, document_id, Stage.EXTRACT, attempt, holder)


def _front(cluster, priority: int) -> tuple:
    """The args of the next extract message a worker would take (the right end of its list)."""
    key = cluster.broker.keys.queue_lists(STAGE_QUEUE[Stage.EXTRACT].value)[broker_priority(priority)]
    raw = redis.Redis.from_url(cluster.settings.redis_url_for("broker")).lindex(key, -1)
    return tuple(json.loads(base64.b64decode(json.loads(raw)["body"]))[0][:3])


def test_a_claim_held_by_a_dead_process_counts_that_attempt(batch_settings, tmp_path):
    """Given an extract attempt held by a process that died (its message came back), When a message
    for it is run, Then the lost attempt is counted (next attempt queued at the front of its queue,
    ahead of other messages), and after max attempts lost that way the document fails as DATA."""
    cluster = connect(batch_settings)
    limit = RETRY_POLICIES[ErrorCategory.RESOURCE].max_attempts(batch_settings.max_attempts)
    manifest = write_manifest(tmp_path / "m.yaml", [{"glob": f"{_texts(tmp_path / 'docs', 0)}/*"}], skip_processed=False)
    submitted = cluster.submit(manifest)
    with cluster.database.read() as session:
        document_id = session.scalars(select(Document.id)).one()
    for attempt in range(1, limit + 1):
        cluster.broker.publish(Message("legaldoc.extract", (999, "extract", n), "ocr", submitted.priority) for n in range(3))
        _hold(cluster, document_id, attempt, f"{claims.HOST}:{_dead_pid()}")
        assert cluster.rt.runner.execute(document_id, Stage.EXTRACT, attempt).status is AttemptOutcome.LOST
        with cluster.database.read() as session:
            document = session.get_one(Document, document_id)
            runs = session.execute(select(StageRun.attempt, StageRun.outcome).order_by(StageRun.id)).all()
        assert [tuple(r) for r in runs] == [(n, AttemptOutcome.LOST) for n in range(1, attempt + 1)]
        if attempt < limit:
            assert (document.status, document.attempts, document.error_category) == (DocumentStatus.QUEUED, attempt + 1, "RESOURCE")
            assert "worker process died (it is gone" in document.error_message
            assert _front(cluster, submitted.priority) == (document_id, "extract", attempt + 1)
    assert (document.status, document.attempts, document.error_category) == (DocumentStatus.FAILED, limit, "DATA")
    assert f"on each of {limit} attempts (found dead)" in document.error_message
    assert cluster.counts(submitted.batch_id)[0]["failed"] == 1


def test_an_expired_lease_of_a_live_holder_counts_as_resource(batch_settings, tmp_path):
    """Given an extract attempt whose holder is alive but whose lease ran out, When a message for it
    is run, Then that attempt is counted as RESOURCE (it stopped answering), never run again as is,
    and a second run of the same message does nothing."""
    cluster = connect(batch_settings)
    manifest = write_manifest(tmp_path / "m.yaml", [{"glob": f"{_texts(tmp_path / 'docs', 0)}/*"}], skip_processed=False)
    cluster.submit(manifest)
    with cluster.database.read() as session:
        document_id = session.scalars(select(Document.id)).one()
    _hold(cluster, document_id, 1, claims.worker_identity(), lease=-1)
    assert cluster.rt.runner.execute(document_id, Stage.EXTRACT, 1).status is AttemptOutcome.LOST
    assert cluster.rt.runner.execute(document_id, Stage.EXTRACT, 1).status is AttemptOutcome.STALE
    with cluster.database.read() as session:
        document = session.get_one(Document, document_id)
    assert (document.status, document.attempts, document.error_category) == (DocumentStatus.QUEUED, 2, "RESOURCE")
    assert "stopped answering; its claim expired" in document.error_message


def test_front_publishing_puts_messages_next_in_line_in_order(redis_url, batch_settings):
    """Messages published at the front are the next ones consumed (the right end), first one first."""
    rt = connect(batch_settings).rt
    rt.broker.publish_stage([(1, Stage.EXTRACT, 1), (2, Stage.EXTRACT, 1)], 5)
    rt.broker.publish_stage([(3, Stage.EXTRACT, 2), (4, Stage.EXTRACT, 2)], 5, front=True)
    key = rt.broker.keys.queue_lists(STAGE_QUEUE[Stage.EXTRACT].value)[broker_priority(5)]
    client = redis.Redis.from_url(redis_url)
    popped = [json.loads(base64.b64decode(json.loads(client.rpop(key))["body"]))[0][0] for _ in range(4)]
    assert popped == [3, 4, 1, 2]


def test_a_crash_the_sweeper_counted_first_is_counted_once_and_still_known(batch_settings, tmp_path):
    """Given a pool process that hung past its lease (the sweeper counted the attempt) and then
    segfaulted, When its main process reports the crash, Then the attempt is not counted again but its
    run says how it ended, so after two more segfaults the document fails as DATA at max attempts."""
    from legaldoc.services.batches import sweep
    from legaldoc.services.crashes import Crash, record_crash

    cluster = connect(batch_settings)
    limit = RETRY_POLICIES[ErrorCategory.RESOURCE].max_attempts(batch_settings.max_attempts)
    manifest = write_manifest(tmp_path / "m.yaml", [{"glob": f"{_texts(tmp_path / 'docs', 0)}/*"}], skip_processed=False)
    cluster.submit(manifest)
    with cluster.database.read() as session:
        document_id = session.scalars(select(Document.id)).one()
    rt = cluster.rt
    for attempt in range(1, limit + 1):
        holder = f"{claims.HOST}:{_dead_pid()}"
        _hold(cluster, document_id, attempt, holder, lease=-1 if attempt == 1 else 60)
        if attempt == 1:
            assert sweep(rt).requeued == 1
        crash = Crash(document_id, Stage.EXTRACT, attempt, holder=holder, cause="signal 11 (SIGSEGV)", worker="w1")
        recorded = record_crash(rt.settings, rt.database, rt.state, rt.broker, crash)
        assert (recorded is None) == (attempt == 1)
    with cluster.database.read() as session:
        document = session.get_one(Document, document_id)
        runs = session.execute(select(StageRun.attempt, StageRun.traceback_digest, StageRun.error_category,
                                      StageRun.error_message).order_by(StageRun.id)).all()  # fmt: skip
    assert [tuple(r[:3]) for r in runs] == [(n, "crash:extract:SIGSEGV", "RESOURCE") for n in range(1, limit)] + [
        (limit, "crash:extract:SIGSEGV", "DATA")]
    assert "stopped answering; its claim expired" in runs[0].error_message  # the sweeper's words for attempt 1
    assert (document.status, document.attempts, document.error_category) == (DocumentStatus.FAILED, limit, "DATA")
    assert f"on each of {limit} attempts (SIGSEGV)" in document.error_message
