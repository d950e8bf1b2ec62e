"""`legaldoc recover` on real workers: failed documents resume at the stage that failed, recover is
idempotent alone and concurrently, analysis explains the failures, stuck claims are re-queued."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select, update

from legaldoc.storage.tables import BatchDocument, Document, StageRun
from tests.batchkit import connect, nef_copies, output_row_counts, write_manifest
from tests.conftest import DOCUMENTS, settings_env
from tests.test_cli import legaldoc

GOOD = 4


def _all_counts(database) -> dict[str, int]:
    with database.read() as session:
        extra = {t.__tablename__: session.scalar(select(func.count()).select_from(t)) for t in (StageRun, BatchDocument)}
    return output_row_counts(database) | extra


def test_recover_resumes_at_the_failed_stage_and_is_idempotent(batch_settings, start_worker, tmp_path):
    """Given a batch whose documents exhausted their TRANSIENT retries at the entities stage (and one
    DATA failure), When recover runs twice at once, Then each document is re-queued once, resumes at
    entities (no earlier stage runs again) and ends done; a later recover enqueues nothing and leaves
    identical rows; DATA is recovered only when asked for, even after Redis lost the batch."""
    settings = batch_settings.model_copy(update={"entity_provider": "failing", "failing_category": "TRANSIENT",
                                                 "failing_attempts": batch_settings.max_attempts})  # fmt: skip
    env = settings_env(settings)
    folder = nef_copies(tmp_path / "docs", GOOD)
    (folder / "empty.pdf").write_bytes((DOCUMENTS / "empty.pdf").read_bytes())
    cluster = connect(settings)
    batch_id = cluster.submit(write_manifest(tmp_path / "m.yaml", [{"glob": f"{folder}/*"}])).batch_id
    start_worker(concurrency=2, settings=settings)
    first = cluster.wait(batch_id, timeout=120)
    assert (first["succeeded"], first["failed"]) == (0, GOOD + 1), first
    assert first["errors_by_category"] == {"DATA": 1, "TRANSIENT": GOOD}

    analysis = json.loads(legaldoc("recover", batch_id, "--analyze", "--json", cwd=tmp_path, env=env).stdout)
    assert analysis["by_category_stage"] == {"DATA": {"extract": 1}, "TRANSIENT": {"entities": GOOD}}
    assert analysis["recoverable_by_default"] == GOOD and set(analysis["advice"]) == {"DATA", "TRANSIENT"}
    top = analysis["common_messages"][0]
    assert (top["count"], top["category"], top["stage"]) == (GOOD, "TRANSIENT", "entities")  # one cause, one line
    readable = legaldoc("recover", batch_id, "--analyze", cwd=tmp_path, env=env)
    assert "what to do" in readable.stdout and "Traceback" not in readable.stderr

    before = _all_counts(cluster.database)
    dry = json.loads(legaldoc("recover", batch_id, "--dry-run", "--json", cwd=tmp_path, env=env).stdout)
    assert (dry["would_requeue"], dry["requeued"], dry["left_failed"]) == (GOOD, 0, {"DATA": 1})
    assert _all_counts(cluster.database) == before
    with cluster.database.read() as session:
        last_run = session.scalar(select(func.max(StageRun.id)))

    command = [sys.executable, "-m", "legaldoc", "recover", batch_id, "--json"]
    both = [subprocess.Popen(command, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            for _ in range(2)]  # fmt: skip
    reports = [json.loads(p.communicate(timeout=120)[0]) for p in both]
    assert sorted(r["requeued"] for r in reports) == [0, GOOD]
    assert all(r["left_failed"] == {"DATA": 1} for r in reports)
    assert next(r for r in reports if r["requeued"])["by_stage"] == {"entities": GOOD}

    second = cluster.wait(batch_id, timeout=120)
    assert (second["succeeded"], second["failed"], second["errors_by_category"]) == (GOOD, 1, {"DATA": 1}), second
    with cluster.database.read() as session:
        rerun = session.execute(select(StageRun.stage, StageRun.outcome).where(StageRun.id > last_run)).all()
    assert {stage for stage, _ in rerun} == {"entities", "resolve", "relate"}  # resumed, not restarted
    assert sorted(rerun).count(("entities", "done")) == GOOD and {o for _, o in rerun} == {"done"}
    assert cluster.counts(batch_id)[0] == cluster.counts(batch_id)[1]

    settled = _all_counts(cluster.database)
    again = legaldoc("recover", batch_id, "--json", cwd=tmp_path, env=env)
    assert again.returncode == 0 and json.loads(again.stdout)["requeued"] == 0
    assert _all_counts(cluster.database) == settled

    # Redis loses the batch; recovering DATA rebuilds it from the database, and empty.pdf fails again.
    for key in cluster.state.client.scan_iter(match=f"*batch:{batch_id}*"):
        cluster.state.client.delete(key)
    data = json.loads(legaldoc("recover", batch_id, "--category", "data", "--json", cwd=tmp_path, env=env).stdout)
    assert (data["requeued"], data["by_stage"]) == (1, {"extract": 1})
    third = cluster.wait(batch_id, timeout=120)
    assert (third["succeeded"], third["failed"], third["status"]) == (GOOD, 1, "finished"), third
    assert cluster.counts(batch_id)[0] == cluster.counts(batch_id)[1]


def test_recover_stuck_requeues_expired_claims(batch_settings, start_worker, tmp_path):
    """Given a document whose worker on another machine died mid-stage (its lease expired), When
    `recover --stuck` runs, Then it is queued again with the next attempt and a worker finishes it."""
    env = settings_env(batch_settings)
    cluster = connect(batch_settings)
    batch_id = cluster.submit(write_manifest(tmp_path / "m.yaml", [{"glob": f"{nef_copies(tmp_path / 'd', 1)}/*"}])).batch_id
    with cluster.database.session() as session:
        session.execute(update(Document).values(status="running", claimed_by="elsewhere:4242",
                                                lease_expires_at=datetime.now(UTC) - timedelta(seconds=5)))  # fmt: skip
    cluster.broker.client.delete(*cluster.broker.keys.queue_lists("ocr"))  # its message went with the worker
    assert cluster.broker.depth("ocr") == 0
    dry = json.loads(legaldoc("recover", "--stuck", "--dry-run", "--json", cwd=tmp_path, env=env).stdout)
    assert [d["held_by"] for d in dry["documents"]] == ["elsewhere:4242"]
    done = json.loads(legaldoc("recover", "--stuck", "--json", cwd=tmp_path, env=env).stdout)
    assert [(d["stage"], d["attempts"], d["batch_id"]) for d in done["documents"]] == [("extract", 2, batch_id)]
    assert json.loads(legaldoc("recover", "--stuck", "--json", cwd=tmp_path, env=env).stdout)["requeued"] == 0
    start_worker(concurrency=1)
    assert cluster.wait(batch_id, timeout=120)["succeeded"] == 1


@pytest.mark.any_database  # usage errors are refused before the database is asked anything that differs
def test_recover_usage_errors(batch_settings, tmp_path):
    env = settings_env(batch_settings)
    for args, text in [(["recover"], "name a batch"), (["recover", "nope"], "no batch nope"),
                       (["recover", "x", "--stuck"], "--stuck covers every batch"),
                       (["recover", "nope", "--category", "SOMETIMES"], "unknown category")]:  # fmt: skip
        result = legaldoc(*args, cwd=tmp_path, env=env)
        assert result.returncode == 2 and text in result.stderr and "Traceback" not in result.stderr, result.stderr


def test_the_sweeper_rebuilds_a_live_state_redis_lost(batch_settings, tmp_path):
    """Given a running batch whose live state Redis lost (a restart with nothing on disk), When the
    sweeper runs, Then the batch's counters are back from the database; a batch Redis still holds is
    left alone."""
    from legaldoc.services.batches import sweep

    cluster = connect(batch_settings)
    lost = cluster.submit(write_manifest(tmp_path / "a.yaml", [{"glob": f"{nef_copies(tmp_path / 'a', 3)}/*"}], name="a"))
    kept = cluster.submit(write_manifest(tmp_path / "b.yaml", [{"glob": f"{nef_copies(tmp_path / 'b', 2, 3)}/*"}], name="b"))
    keys = cluster.state.keys
    cluster.state.client.delete(keys.batch(lost.batch_id), keys.batch_docs(lost.batch_id))
    assert cluster.state.read(lost.batch_id) is None
    assert sweep(cluster.rt).rebuilt == 1
    live, stored = cluster.counts(lost.batch_id)
    assert live == stored and live["pending"] == 3, (live, stored)
    assert len(cluster.live(lost.batch_id)[0]) == 3
    assert cluster.counts(kept.batch_id)[0]["pending"] == 2
    assert sweep(cluster.rt).rebuilt == 0
