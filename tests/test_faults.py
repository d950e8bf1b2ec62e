"""Killed workers: a batch survives SIGKILL of a pool process or of the whole worker, with no duplicate rows."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from legaldoc.config import load_settings
from legaldoc.services.process import process_paths
from legaldoc.storage.db import Database
from legaldoc.storage.tables import StageRun
from tests.batchkit import children as _children
from tests.batchkit import connect, nef_copies, output_row_counts, write_manifest

DOCUMENT_COUNT = 100  # the full-size runs (300 documents, many kills) are benchmarks/faults.py


@pytest.fixture(scope="module")
def clean_counts(tmp_path_factory) -> tuple[Path, dict[str, int]]:
    """The documents processed in-process into a fresh database: the row counts to match."""
    folder = nef_copies(tmp_path_factory.mktemp("fault-docs"), DOCUMENT_COUNT)
    data_dir = tmp_path_factory.mktemp("clean") / ".legaldoc"
    settings = load_settings(data_dir=data_dir)
    database = Database(settings.resolved_database_url)
    reports = list(process_paths([folder], "acme", settings, database))
    assert {r.status for r in reports} == {"done"}
    return folder, output_row_counts(database)


def _run_with_kill(batch_settings, start_worker, tmp_path, clean_counts, kill) -> None:
    folder, expected = clean_counts
    cluster = connect(batch_settings)
    manifest = write_manifest(tmp_path / "fault.yaml", [{"glob": f"{folder}/*"}], skip_processed=False)
    submitted = cluster.submit(manifest)
    worker = start_worker(concurrency=2)
    cluster.wait_until(submitted.batch_id, lambda s: s["succeeded"] >= 20)
    replacement = kill(worker)
    if replacement:
        start_worker(concurrency=2)
    final = cluster.wait(submitted.batch_id, timeout=240)
    assert (final["succeeded"], final["failed"]) == (DOCUMENT_COUNT, 0), final
    assert output_row_counts(cluster.database) == expected
    redis_counts, database_counts = cluster.counts(submitted.batch_id)
    assert redis_counts == database_counts
    return cluster


@pytest.mark.any_database  # what is killed is processes; claims on PostgreSQL are test_crashes' and the storage tests'
def test_sigkill_of_a_pool_process_mid_batch(batch_settings, start_worker, tmp_path, clean_counts):
    """Given a 100-document batch part way, When a worker's pool process is SIGKILLed, Then its task is
    redelivered, its dead claim is taken over, and every document ends done with a clean run's rows."""

    def kill_child(worker) -> bool:
        children = _children(worker.pid)
        assert children, "the worker has no pool processes"
        os.kill(children[0], signal.SIGKILL)
        return False

    cluster = _run_with_kill(batch_settings, start_worker, tmp_path, clean_counts, kill_child)
    with cluster.database.read() as session:
        outcomes = set(session.scalars(StageRun.__table__.select().with_only_columns(StageRun.outcome)).all())
    assert outcomes <= {"done", "retry", "lost"}


@pytest.mark.any_database  # what is killed is processes; claims on PostgreSQL are test_crashes' and the storage tests'
def test_sigkill_of_the_whole_worker_mid_batch(batch_settings, start_worker, tmp_path, clean_counts):
    """Given a 100-document batch part way, When the whole worker is SIGKILLed and a new one starts,
    Then expired claims are re-queued by the sweeper and lost messages re-published: every document
    ends done, with a clean run's rows."""

    def kill_all(worker) -> bool:
        os.killpg(worker.pid, signal.SIGKILL)
        worker.process.wait()
        return True

    _run_with_kill(batch_settings, start_worker, tmp_path, clean_counts, kill_all)
