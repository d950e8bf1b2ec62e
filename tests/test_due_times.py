"""Delayed retries have a due time (``documents.due_at``): the sweeper counts a document's wait for its
message from it, and a message that arrives before it runs nothing but is published again for the rest
of the wait. SQLite, and PostgreSQL when LEGALDOC_TEST_POSTGRES_URL is set. (The end-to-end case, a
long Retry-After on a real worker while the sweeper runs, is in test_retries.py.)"""

from __future__ import annotations

import base64
import json
from datetime import datetime, timedelta

from sqlalchemy import update

from legaldoc.errors import ErrorCategory
from legaldoc.lifecycle import WAITING, Attempt, AttemptOutcome, DocumentStatus, Failure
from legaldoc.models import Stage
from legaldoc.moments import iso
from legaldoc.services import batches as service
from legaldoc.storage import claims
from legaldoc.storage import repository as repo
from legaldoc.storage.tables import Batch, Document, Project, StageRun
from tests.batchkit import connect, nef_copies, write_manifest
from tests.conftest import settings_env
from tests.test_cli import legaldoc

DELAY = 100.0
WORKER = "test-host:1"


def _throttled(session, document_id: int, stage: Stage, attempt: int, delay: float | None = DELAY):
    """Claim (stage, attempt) as WORKER and fail it as RATE_LIMIT, the next attempt due `delay` s later."""
    assert claims.claim(session, document_id, stage, attempt, WORKER, 30).outcome is AttemptOutcome.RUNNING
    failure = Failure(ErrorCategory.RATE_LIMIT, "429 Too Many Requests")
    transition = claims.fail(session, document_id, Attempt(stage, attempt, AttemptOutcome.RETRY, 5, failure), WORKER,
                             delay=delay)  # fmt: skip
    assert transition is not None
    return session.get_one(Document, document_id)


def _document(database, batch: str | None = None) -> int:
    with database.session() as session:
        project = Project(name="due")
        session.add(project)
        session.flush()
        if batch:
            session.add(Batch(id=batch, name=batch, lock_name=batch, project_id=project.id, priority=5))
            session.flush()
        document = Document(project_id=project.id, source="/docs/a.txt", status=DocumentStatus.QUEUED,
                            stage=Stage.ENTITIES, attempts=1, batch_id=batch)  # fmt: skip
        session.add(document)
        session.flush()
        return document.id


def test_a_delayed_retry_is_due_at_its_delay_and_waits_from_then(database):
    """Given an attempt failed with a 100 s delay, Then the document is due 100 s after the failure; the
    lost-message query does not take it before its due time (the old rule took it two leases after the
    failure) and takes it once the moment it is asked about is past the due time."""
    document_id = _document(database)
    with database.session() as session:
        document = _throttled(session, document_id, Stage.ENTITIES, 1)
        failed_at, due_at = document.updated_at, document.due_at
    assert due_at is not None and abs((due_at - failed_at).total_seconds() - DELAY) < 0.01
    assert (document.status, document.attempts) == (DocumentStatus.QUEUED, 2)
    stages = [Stage.ENTITIES.value]
    with database.read() as session:
        assert claims.waiting_since(session, failed_at + timedelta(seconds=10), stages) == []
        assert claims.waiting_since(session, due_at - timedelta(seconds=1), stages) == []
        assert [d.id for d in claims.waiting_since(session, due_at + timedelta(seconds=1), stages)] == [document_id]
    with database.session() as session:  # no delay: no due time, the wait counts from the failure
        session.execute(update(Document).where(Document.id == document_id).values(due_at=claims.now_utc()))
        _throttled(session, document_id, Stage.ENTITIES, 2, delay=None)
    with database.read() as session:
        document = session.get_one(Document, document_id)
        assert document.due_at is None
        assert [d.id for d in claims.waiting_since(session, document.updated_at + timedelta(seconds=1), stages)] == [document_id]


def test_a_message_before_the_due_time_claims_nothing(database):
    """Given a retry due in 100 s, When its message comes now, Then the claim is EARLY with the due time
    and the row is untouched; within the tolerance of the due time it runs, and the claim clears it."""
    document_id = _document(database)
    with database.session() as session:
        before = _throttled(session, document_id, Stage.ENTITIES, 1)
        version, due_at = before.version, before.due_at
    with database.session() as session:
        early = claims.claim(session, document_id, Stage.ENTITIES, 2, "other:2", 30)
    assert (early.outcome, early.due_at, early.transition) == (AttemptOutcome.EARLY, due_at, None)
    with database.read() as session:
        row = session.get_one(Document, document_id)
        assert (row.status, row.version, row.claimed_by, row.due_at) == (DocumentStatus.QUEUED, version, None, due_at)
    with database.session() as session:  # 0.3 s before it is due: within the tolerance, it runs
        almost = claims.now_utc() + timedelta(seconds=claims.EARLY_TOLERANCE * 0.6)
        session.execute(update(Document).where(Document.id == document_id).values(due_at=almost))
    with database.session() as session:
        assert claims.claim(session, document_id, Stage.ENTITIES, 2, "other:2", 30).outcome is AttemptOutcome.RUNNING
    with database.read() as session:
        assert session.get_one(Document, document_id).due_at is None


def test_a_cancel_or_a_new_run_clears_the_due_time(database):
    """Every transition but a delayed retry leaves no due time: a cancelled document has none, nor one
    put back at its first stage for a new run."""
    document_id = _document(database, batch="b-due")
    for clear in (lambda s: claims.cancel(s, "b-due", WAITING), lambda s: repo.reset_for_run(s, [document_id], batch_id="b-due")):
        with database.session() as session:
            session.execute(update(Document).where(Document.id == document_id)
                            .values(status=DocumentStatus.QUEUED, stage=Stage.ENTITIES, attempts=1))  # fmt: skip
            assert _throttled(session, document_id, Stage.ENTITIES, 1).due_at is not None
            clear(session)
        with database.read() as session:
            assert session.get_one(Document, document_id).due_at is None


# -- with Redis: the runner and the sweeper ---------------------------------------------------------


def _waiting_retry(batch_settings, tmp_path):
    """A one-document batch (no worker) whose extract attempt 1 failed with a 100 s delay; the queue is
    empty, as it is while a worker holds the delayed message."""
    cluster = connect(batch_settings)
    manifest = write_manifest(tmp_path / "m.yaml", [{"glob": f"{nef_copies(tmp_path / 'docs', 1)}/*"}])
    submitted = cluster.submit(manifest)
    with cluster.database.session() as session:
        (document_id,) = session.scalars(service.select(Document.id).where(Document.batch_id == submitted.batch_id))
        document = _throttled(session, document_id, Stage.EXTRACT, 1)
    cluster.broker.client.delete(*cluster.broker.keys.queue_lists("ocr"))
    cluster.batch_id = submitted.batch_id
    return cluster, document_id, document.due_at


def _queued(cluster, queue: str) -> list[tuple[list, str | None]]:
    """(args, eta) of every message in a queue."""
    messages = [json.loads(m) for key in cluster.broker.keys.queue_lists(queue) for m in cluster.broker.client.lrange(key, 0, -1)]
    return [(json.loads(base64.b64decode(m["body"]))[0], m["headers"]["eta"]) for m in messages]


def test_an_early_message_runs_nothing_and_is_published_again_for_the_rest(batch_settings, tmp_path):
    """Given a retry due in 100 s, When a stray message for it reaches a worker now, Then the stage does
    not run (no stage_runs row, the document still waits at attempt 2), and the attempt's message is in
    the queue again with the due time as its ETA."""
    cluster, document_id, due_at = _waiting_retry(batch_settings, tmp_path)
    assert cluster.rt.runner.execute(document_id, Stage.EXTRACT, 2).status is AttemptOutcome.EARLY
    with cluster.database.read() as session:
        document = session.get_one(Document, document_id)
        assert (document.status, document.attempts, document.due_at) == (DocumentStatus.QUEUED, 2, due_at)
        assert session.scalars(service.select(StageRun.attempt).where(StageRun.document_id == document_id)).all() == []
    ((args, eta),) = _queued(cluster, "ocr")
    assert args[:3] == [document_id, "extract", 2]
    assert eta is not None and abs((datetime.fromisoformat(eta) - due_at).total_seconds()) < 1


def test_the_sweeper_takes_a_delayed_retry_for_lost_only_two_leases_past_its_due_time(batch_settings, tmp_path):
    """Given a retry due in 100 s and an empty queue, When the sweeper runs two leases after the failure
    (the moment it used to re-publish), Then it leaves the document alone; when the due time is more than
    two leases past, Then it re-publishes the attempt."""
    cluster, document_id, due_at = _waiting_retry(batch_settings, tmp_path)
    lease = batch_settings.claim_lease

    def waited(failed: float, due: float | None = None) -> None:
        """The failure `failed` s ago, due `due` s ago (negative: ahead)."""
        now = claims.now_utc()
        with cluster.database.session() as session:
            session.execute(update(Document).where(Document.id == document_id)
                            .values(updated_at=now - timedelta(seconds=failed),
                                    due_at=due_at if due is None else now - timedelta(seconds=due)))  # fmt: skip

    waited(3 * lease)  # the failure three leases ago, the due time still ahead
    assert service.sweep(cluster.rt).republished == 0
    waited(4 * lease, 2 * lease - 1)  # due just under two leases ago: not yet lost
    assert service.sweep(cluster.rt).republished == 0 and _queued(cluster, "ocr") == []
    waited(4 * lease, 2 * lease + 1)
    assert service.sweep(cluster.rt).republished == 1
    ((args, eta),) = _queued(cluster, "ocr")
    assert args[:3] == [document_id, "extract", 2] and eta is None


def test_status_docs_shows_when_a_waiting_retry_is_due(batch_settings, tmp_path):
    """Given a retry due in 100 s, Then `status --docs` says when (the stored due time) and why, and
    its --json has the moment as `retry_at`."""
    cluster, document_id, due_at = _waiting_retry(batch_settings, tmp_path)
    (row,) = cluster.documents(cluster.batch_id)
    assert (row["document_id"], row["state"], row["retry_at"]) == (document_id, "running", iso(due_at))
    shown = legaldoc("status", cluster.batch_id, "--docs", cwd=tmp_path, env=settings_env(batch_settings))
    assert shown.returncode == 0, shown.stderr
    assert f"retry at {due_at:%H:%M:%S} UTC after RATE_LIMIT" in shown.stdout, shown.stdout
