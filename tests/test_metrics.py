"""Prometheus metrics: counters written by real workers in the transition script, read by the
exporter at each scrape (`legaldoc metrics show|serve`), with conventional names and labels of low
cardinality."""

from __future__ import annotations

import re
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from legaldoc.errors import ErrorCategory
from legaldoc.lifecycle import Attempt, AttemptOutcome, Failure, MirrorState, Transition
from legaldoc.models import Stage
from legaldoc.state.metrics import bucket_label, read_counters
from tests.batchkit import connect, write_manifest
from tests.conftest import _free_port, settings_env

DOCS = 3


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}  # fmt: skip


def test_bucket_labels():
    assert [bucket_label(x) for x in (0.0, 0.05, 0.051, 7, 1800, 1e6)] == ["0.05", "0.05", "0.1", "10", "1800", "+Inf"]


@pytest.mark.any_database
def test_a_replayed_transition_counts_once(batch_settings):
    cluster = connect(batch_settings)
    cluster.state.init_batch("b", {"name": "b", "created_at": time.time(), "status": "running"}, {1: (1, MirrorState.PENDING)})
    failure = Failure(ErrorCategory.TRANSIENT, "reset", None, "a.pdf")
    retry = Transition(1, "b", 2, MirrorState.RUNNING, Stage.EXTRACT, Attempt(Stage.EXTRACT, 1, AttemptOutcome.RETRY, 1200, failure))
    for _ in range(3):
        cluster.state.apply_transitions([retry])
    counters = read_counters(cluster.state.client, cluster.state.keys)
    assert counters.family("attempts") == {("extract", "retry"): 1.0}
    assert counters.family("retries") == {("extract", "TRANSIENT"): 1.0}
    assert counters.family("duration_bucket") == {("extract", "2.5"): 1.0}


def _scrape(port: int, server: subprocess.Popen) -> str:
    deadline = time.monotonic() + 60
    while True:
        try:
            return urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
        except OSError:
            assert server.poll() is None and time.monotonic() < deadline, server.stderr.read() if server.stderr else ""
            time.sleep(0.3)


@pytest.mark.any_database
def test_metrics_serve_during_a_batch_with_failures(batch_settings, start_worker, tmp_path):
    """`legaldoc metrics serve` scraped while a batch runs and after it: one document fails for good
    after two retries, the others are done; every family is there with the values the batch earns."""
    settings = batch_settings.model_copy(update={"entity_provider": "failing", "failing_category": "TRANSIENT",
                                                 "failing_attempts": 9, "failing_match": "under seal",
                                                 "claim_lease": 30.0})  # fmt: skip
    folder = tmp_path / "docs"
    folder.mkdir()
    for index in range(DOCS):
        sealed = " The exhibit was filed under seal." if index == 0 else ""
        (folder / f"{index}.txt").write_text(f"Order {index}. See Marbury v. Madison, 5 U.S. 137 (1803).{sealed}\n")
    cluster = connect(settings)
    port = _free_port()
    server = subprocess.Popen([sys.executable, "-m", "legaldoc", "metrics", "serve", "--port", str(port)],
                              env=settings_env(settings), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    try:
        before = _samples(_scrape(port, server))
        assert before[("legaldoc_redis_up", ())] == 1 and before[("legaldoc_workers_online", ())] == 0
        submitted = cluster.submit(write_manifest(tmp_path / "m.yaml", [{"glob": f"{folder}/*"}]))
        queued = _samples(_scrape(port, server))
        assert queued[("legaldoc_queue_messages", (("priority", "5"), ("queue", "ocr")))] == DOCS
        assert queued[("legaldoc_batch_documents", (("state", "pending"),))] == DOCS
        start_worker(concurrency=2, settings=settings)
        final = cluster.wait(submitted.batch_id, timeout=120)
        assert (final["succeeded"], final["failed"]) == (DOCS - 1, 1), final
        text = _scrape(port, server)
    finally:
        server.terminate()
        server.wait(10)
    samples = _samples(text)
    for stage in ("extract", "chunk"):
        assert samples[("legaldoc_stage_attempts_total", (("outcome", "done"), ("stage", stage)))] == DOCS, stage
        assert samples[("legaldoc_stage_duration_seconds_count", (("stage", stage),))] == DOCS
        assert samples[("legaldoc_stage_duration_seconds_bucket", (("le", "+Inf"), ("stage", stage)))] == DOCS
    assert samples[("legaldoc_stage_attempts_total", (("outcome", "done"), ("stage", "relate")))] == DOCS - 1
    assert samples[("legaldoc_stage_retries_total", (("category", "TRANSIENT"), ("stage", "entities")))] == 2
    assert samples[("legaldoc_stage_failures_total", (("category", "TRANSIENT"), ("stage", "entities")))] == 1
    assert samples[("legaldoc_stage_duration_seconds_sum", (("stage", "extract"),))] > 0
    assert samples[("legaldoc_workers_online", ())] == 1
    assert samples[("legaldoc_queue_consumer_processes", (("queue", "ocr"),))] == 2
    assert samples[("legaldoc_worker_resident_memory_bytes", (("worker", next(
        dict(k[1])["worker"] for k in samples if k[0] == "legaldoc_worker_resident_memory_bytes")),))] > 10_000_000  # fmt: skip
    assert samples[("legaldoc_queue_messages", (("priority", "5"), ("queue", "ocr")))] == 0
    assert ("legaldoc_circuit_breaker_state", (("provider", "openai"), ("state", "closed"))) in samples
    assert any(name == "legaldoc_cache_lookups" for name, _ in samples)
    assert submitted.batch_id not in text  # no batch or document ids in labels
    dashboard = (Path(__file__).parent.parent / "docs" / "grafana-dashboard.json").read_text()
    graphed = set(re.findall(r"legaldoc_[a-z_]+", dashboard))
    suffixes = {"counter": ["_total"], "histogram": ["_bucket", "_count", "_sum"], "gauge": [""]}
    exported = {f.name + suffix for f in text_string_to_metric_families(text) for suffix in suffixes.get(f.type, [""])}
    assert graphed and graphed <= exported, graphed - exported
