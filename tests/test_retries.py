"""Each error category through its retry policy on a real worker: the test-only `failing` entity
provider (selected through Settings) fails the first N attempts of every document with a chosen error."""

from __future__ import annotations

from itertools import pairwise

import pytest
from sqlalchemy import select

from legaldoc.storage.tables import Document, StageRun
from tests.batchkit import connect, nef_copies, write_manifest

DOCS = 2


def _run(batch_settings, start_worker, tmp_path, category: str, failures: int, docs: int = DOCS, **extra):
    settings = batch_settings.model_copy(update={"entity_provider": "failing", "failing_category": category,
                                                 "failing_attempts": failures, **extra})  # fmt: skip
    cluster = connect(settings)
    manifest = write_manifest(tmp_path / "m.yaml", [{"glob": f"{nef_copies(tmp_path / 'docs', docs)}/*"}])
    submitted = cluster.submit(manifest)
    start_worker(concurrency=2, settings=settings)
    final = cluster.wait(submitted.batch_id, timeout=120)
    with cluster.database.read() as session:
        documents = session.scalars(select(Document).where(Document.batch_id == submitted.batch_id)).all()
        runs = {
            d.id: session.execute(
                select(StageRun.outcome, StageRun.error_category, StageRun.started_at, StageRun.finished_at)
                .where(StageRun.document_id == d.id, StageRun.stage == "entities").order_by(StageRun.attempt)
            ).all()
            for d in documents
        }  # fmt: skip
    return cluster, submitted.batch_id, final, documents, runs


# The policy is the same on either database: a PostgreSQL twin for one retried success suffices.
ANY_DATABASE = pytest.mark.any_database


@pytest.mark.parametrize(("category", "failures", "outcome", "attempts"), [
    ("TRANSIENT", 2, "done", 3),          # retried at once, then with backoff; the third attempt answers
    pytest.param("TRANSIENT", 9, "failed", 3, marks=ANY_DATABASE),  # capped at max_attempts
    pytest.param("RATE_LIMIT", 4, "done", 5, marks=ANY_DATABASE),  # twice max_attempts for rate limits, each wait the Retry-After
    pytest.param("RESOURCE", 9, "failed", 3, marks=ANY_DATABASE),  # linear backoff, then fail
    pytest.param("CONFIGURATION", 1, "failed", 1, marks=ANY_DATABASE),  # never retried
    pytest.param("DATA", 1, "failed", 1, marks=ANY_DATABASE),
    pytest.param("PERMANENT", 1, "failed", 1, marks=ANY_DATABASE),
])  # fmt: skip
def test_category_follows_its_retry_policy(batch_settings, start_worker, tmp_path, category, failures, outcome, attempts):
    extra = {"failing_retry_after": 0.6} if category == "RATE_LIMIT" else {}
    cluster, batch_id, final, documents, runs = _run(batch_settings, start_worker, tmp_path, category, failures, **extra)
    assert len(documents) == DOCS
    expected_failed = DOCS if outcome == "failed" else 0
    assert (final["succeeded"], final["failed"]) == (DOCS - expected_failed, expected_failed), final
    for document in documents:
        outcomes = [r.outcome for r in runs[document.id]]
        assert outcomes == ["retry"] * (attempts - 1) + [outcome], outcomes
        assert {r.error_category for r in runs[document.id][:-1]} <= {category}
        if outcome == "failed":
            assert (document.status, document.error_category, document.error_stage) == ("failed", category, "entities")
            assert document.attempts == attempts and document.error_digest and "injected" in document.error_message
            error = cluster.live(batch_id)[1][document.id]
            assert (error.category, error.stage, error.attempt, error.digest) == (
                category, "entities", attempts, document.error_digest)
        else:
            assert document.status == "done" and document.error_category is None
        if category == "RATE_LIMIT":  # every retry waited at least the server's Retry-After
            gaps = [(b.started_at - a.finished_at).total_seconds() for a, b in pairwise(runs[document.id])]
            assert min(gaps) >= 0.5, gaps
    assert final["errors_by_category"] == ({category: DOCS} if expected_failed else {})
    redis_counts, database_counts = cluster.counts(batch_id)
    assert redis_counts == database_counts


@pytest.mark.any_database
def test_a_long_retry_after_is_honoured_despite_the_sweeper(batch_settings, start_worker, tmp_path):
    """F9. Given a Retry-After of ten claim leases (while the sweeper runs every half second and takes
    a document waiting two leases on an empty queue for one whose message was lost), When the entities
    stage is throttled once, Then the second attempt starts when the server asked (within 5%), not
    when the sweeper would have re-published it, and the document completes."""
    lease = 2.0
    asked = 10 * lease
    cluster, _, final, documents, runs = _run(batch_settings, start_worker, tmp_path, "RATE_LIMIT", 1, docs=1,
                                              claim_lease=lease, sweep_interval=0.5, failing_retry_after=asked)  # fmt: skip
    assert (final["succeeded"], final["failed"]) == (1, 0), final
    (document,) = documents
    first, second = runs[document.id]
    assert (first.outcome, second.outcome) == ("retry", "done")
    observed = (second.started_at - first.finished_at).total_seconds()
    error = (observed - asked) / asked * 100
    print(f"F9 figure: asked delay {asked:.1f} s, observed {observed:.2f} s, error {error:+.1f}%")
    assert abs(error) <= 5, f"the second attempt started {observed:.2f} s after the first failed, {asked:g} s asked"
    assert f"will retry in {asked:.1f} s (at " in (tmp_path / "worker-0.log").read_text()  # the log says when


def test_a_retry_after_over_retry_max_delay_is_cut_and_the_log_says_so():
    """retry_max_delay caps every wait, a server's Retry-After included: the failure's log line names
    the wait used, when it ends, and that the server asked for more."""
    from legaldoc.errors import ErrorCategory, retry_delay
    from legaldoc.pipeline.faults import injected_error
    from legaldoc.services.stages import _retrying

    throttled = injected_error("RATE_LIMIT", 1, 3600)
    assert retry_delay(ErrorCategory.RATE_LIMIT, 1, throttled, cap=600) == 600
    assert retry_delay(ErrorCategory.RATE_LIMIT, 1, injected_error("RATE_LIMIT", 1, 400), cap=600) == 400
    assert _retrying(600, 3600, 600).endswith("UTC; the server asked for 3600 s, retry_max_delay caps it)")
    assert _retrying(400, 400, 600).startswith(", will retry in 400.0 s (at ") and "caps" not in _retrying(400, 400, 600)
    assert _retrying(None, 3600, 600) == ""
