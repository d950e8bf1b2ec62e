"""Batches on real worker subprocesses over a real redis-server: counters, priority, replay, skipping."""

from __future__ import annotations

import logging
import subprocess
import time
from pathlib import Path

import pytest
import redis

from legaldoc.config import load_settings
from legaldoc.errors import WaitTimedOut
from legaldoc.services import batches as service
from legaldoc.storage import claims
from tests.batchkit import connect, nef_copies, write_manifest
from tests.conftest import DOCUMENTS, FAST_CLAIMS, SAMPLES, _free_port


@pytest.mark.any_database  # Redis counters against the database's truth: test_report and test_recover keep the PostgreSQL runs of whole batches
def test_corpus_batch_counters_equal_database(batch_settings, start_worker, tmp_path):
    """Given the whole documents/ corpus as one batch, When a real worker runs it, Then the Redis
    counters equal the database's document states and the batch summary agrees."""
    cluster = connect(batch_settings)
    manifest = write_manifest(tmp_path / "corpus.yaml", [{"glob": f"{DOCUMENTS}/*"}], name="corpus")
    submitted = cluster.submit(manifest)
    assert submitted.total == len(list(DOCUMENTS.iterdir())) == submitted.queued
    start_worker(concurrency=2)
    final = cluster.wait(submitted.batch_id)

    redis_counts, database_counts = cluster.counts(submitted.batch_id)
    assert redis_counts == database_counts
    assert final["status"] == "finished" and final["pending"] == final["running"] == 0
    assert final["succeeded"] + final["failed"] == final["total"]
    assert final["failed"] >= 1  # empty.pdf at least
    with cluster.database.read() as session:
        rows = session.execute(
            service.select(claims.Document.id, claims.Document.status, claims.Document.error_category)
            .where(claims.Document.batch_id == submitted.batch_id)
        ).all()  # fmt: skip
    live, errors = cluster.live(submitted.batch_id)
    assert len(live) == len(rows)
    expected_categories: dict[str, int] = {}
    for document_id, status, category in rows:
        assert live[document_id].state == {"done": "succeeded", "failed": "failed"}[status]
        if status == "failed":
            expected_categories[category] = expected_categories.get(category, 0) + 1
            assert errors[document_id].category == category
    assert final["errors_by_category"] == expected_categories
    empty = next(d for d in cluster.documents(submitted.batch_id) if d["source"].endswith("empty.pdf"))
    assert empty["state"] == "failed" and empty["error"]["category"] == "DATA"

    # The batch summary written by finalize_batch agrees.
    stored = cluster.stored(submitted.batch_id)
    assert stored["status"] == "finished" and stored["succeeded"] == final["succeeded"] and stored["failed"] == final["failed"]


def test_same_manifest_twice_skips_every_document(batch_settings, start_worker, tmp_path):
    """Given a manifest processed once, When it is submitted again with skip_processed, Then every
    document of the second batch ends skipped and nothing is extracted again."""
    cluster = connect(batch_settings)
    manifest = write_manifest(tmp_path / "samples.yaml", [{"glob": f"{SAMPLES}/*"}, {"path": f"{SAMPLES}/complaint.pdf"}])
    start_worker(concurrency=2)
    first = cluster.submit(manifest)
    assert first.total == 4  # the duplicate entry collapsed
    assert cluster.wait(first.batch_id)["succeeded"] == 4
    second = cluster.submit(manifest)
    final = cluster.wait(second.batch_id)
    assert (final["skipped"], final["succeeded"], final["failed"]) == (4, 0, 0)
    assert {d["state"] for d in cluster.documents(second.batch_id)} == {"skipped"}
    assert cluster.counts(second.batch_id)[0] == cluster.counts(second.batch_id)[1]
    with cluster.database.read() as session:
        runs = session.scalars(service.select(claims.Document.status)).all()
    assert set(runs) == {"done"}


def test_same_content_under_another_name_is_skipped_as_duplicate(batch_settings, start_worker, tmp_path):
    cluster = connect(batch_settings)
    folder = nef_copies(tmp_path / "docs", 2)
    (folder / "copy.txt").write_bytes((folder / sorted(p.name for p in folder.iterdir())[0]).read_bytes())
    start_worker(concurrency=1)
    first = cluster.submit(write_manifest(tmp_path / "a.yaml", [{"path": str(folder / sorted(p.name for p in folder.iterdir())[0])}]))
    cluster.wait(first.batch_id)
    second = cluster.submit(write_manifest(tmp_path / "b.yaml", [{"path": str(folder / "copy.txt")}]))
    final = cluster.wait(second.batch_id)
    assert final["skipped"] == 1
    (document,) = cluster.documents(second.batch_id)
    assert "same content as document" in document["reason"]


@pytest.mark.any_database  # priorities are queues in Redis
def test_high_priority_batch_submitted_later_finishes_first(batch_settings, start_worker, tmp_path):
    """Given a low-priority batch already queued, When a high-priority batch is submitted later and
    one worker of concurrency 1 starts, Then the high batch finishes first."""
    cluster = connect(batch_settings)
    low_docs = nef_copies(tmp_path / "low", 8)
    high_docs = nef_copies(tmp_path / "high", 3, offset=20)
    low = cluster.submit(write_manifest(tmp_path / "low.yaml", [{"glob": f"{low_docs}/*"}], name="low", priority="low"))
    high = cluster.submit(write_manifest(tmp_path / "high.yaml", [{"glob": f"{high_docs}/*"}], name="high", priority="high"))
    start_worker(concurrency=1)
    high_final = cluster.wait(high.batch_id)
    low_final = cluster.wait(low.batch_id)
    assert high_final["succeeded"] == 3 and low_final["succeeded"] == 8
    assert high_final["finished_at"] < low_final["finished_at"]
    # Finish times of every document: at most the one low document already in flight precedes the high batch.
    client = redis.Redis.from_url(batch_settings.redis_url_for("state"))
    done = {int(d): t for d, t in client.zrange(cluster.state.keys.done_metrics, 0, -1, withscores=True)}
    high_ids = set(cluster.live(high.batch_id)[0])
    low_ids = set(cluster.live(low.batch_id)[0])
    last_high = max(done[d] for d in high_ids)
    assert sum(1 for d in low_ids if done[d] < last_high) <= 1


def test_cancel_ends_pending_documents_cancelled(batch_settings, tmp_path):
    """Given a batch with no worker to run it, When it is cancelled, Then every document ends
    cancelled, the batch is cancelled in Redis and in the database, and its messages leave the queues."""
    cluster = connect(batch_settings)
    folder = nef_copies(tmp_path / "docs", 5)
    submitted = cluster.submit(write_manifest(tmp_path / "m.yaml", [{"glob": f"{folder}/*"}]))
    result = service.cancel_batch(cluster.rt, submitted.batch_id).as_json()
    assert result["cancelled"] == 5 and result["status"] == "cancelled" and result["cancelled_now"] == 5
    assert cluster.stored(submitted.batch_id)["status"] == "cancelled"
    assert cluster.counts(submitted.batch_id)[0] == cluster.counts(submitted.batch_id)[1]
    assert cluster.broker.depth("ocr") == 0  # cancel took the messages out of the queues (tests/test_scale.py)


def _redis_server(port: int, folder: Path) -> subprocess.Popen:
    process = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                                "--dir", str(folder)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    client = redis.Redis(port=port)
    for _ in range(200):
        try:
            client.ping()
            return process
        except redis.ConnectionError:
            time.sleep(0.05)
    process.kill()
    raise RuntimeError("redis-server did not start")


@pytest.mark.any_database  # a Redis outage
def test_waiting_through_a_redis_outage_logs_it_once_then_counts_it(tmp_path, database_url, caplog):
    port = _free_port()
    server = _redis_server(port, tmp_path)
    try:
        settings = load_settings(data_dir=tmp_path / ".legaldoc", database_url=database_url,
                                 redis_url=f"redis://127.0.0.1:{port}", **FAST_CLAIMS)  # fmt: skip
        cluster = connect(settings)
        manifest = write_manifest(tmp_path / "m.yaml", [{"glob": str(nef_copies(tmp_path / "in", 2)) + "/*.txt"}])
        batch_id = cluster.submit(manifest).batch_id
        heard: list[float | None] = []
        events: list[str] = []

        def on_update(summary) -> None:  # no worker runs: the batch stays pending; the test drives Redis from here
            nonlocal server
            events.append("poll")
            if len(events) == 3:
                server.terminate()
                server.wait(10)
            if len(heard) == 12:
                server = _redis_server(port, tmp_path)

        caplog.set_level(logging.WARNING, logger="legaldoc.batches")
        with pytest.raises(WaitTimedOut):
            service.wait_for_batch(cluster.rt, batch_id, timeout=5, poll=0.1, on_update=on_update, on_redis=heard.append)
    finally:
        server.terminate()
        server.wait(10)
    warnings = [record.getMessage() for record in caplog.records if record.name == "legaldoc.batches"]
    assert sum("Redis unavailable" in message for message in warnings) == 1, warnings
    assert sum("Redis is back" in message for message in warnings) == 1, warnings
    down = [seconds for seconds in heard if seconds is not None]
    assert len(down) >= 11 and down == sorted(down) and heard.count(None) == 1 and heard[-1] is None, heard
