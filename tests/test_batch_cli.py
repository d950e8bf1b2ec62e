"""The batch commands as a user runs them: run, submit --wait, status, cancel; exit codes and JSON."""

from __future__ import annotations

import json
import shutil

import pytest

from tests.batchkit import nef_copies, write_manifest
from tests.conftest import DOCUMENTS, REPO, settings_env
from tests.test_cli import legaldoc

STATUS_KEYS = {"batch_id", "name", "project", "priority", "status", "total", "succeeded", "failed", "skipped",
               "cancelled", "errors_by_category"}  # fmt: skip


def test_run_sample_manifest_from_a_fresh_folder(tmp_path):
    """`legaldoc run manifests/sample.yaml` with its own Redis and worker: exit 0, then a summary
    equal to `status BATCH --json`; nothing it started is left running."""
    work = tmp_path / "checkout"
    shutil.copytree(REPO / "manifests", work / "manifests")
    shutil.copytree(REPO / "samples", work / "samples")
    env = {"LEGALDOC_REDIS_URL": "redis://127.0.0.1:1"}  # proves run never touches a shared Redis
    result = legaldoc("run", "manifests/sample.yaml", "--json", cwd=work, env=env)
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert set(summary) >= STATUS_KEYS
    assert (summary["status"], summary["total"], summary["succeeded"], summary["failed"]) == ("finished", 4, 4, 0)
    assert summary["errors_by_category"] == {}
    status = legaldoc("status", summary["batch_id"], "--json", cwd=work, env=env)
    assert status.returncode == 0
    assert {k: v for k, v in json.loads(status.stdout).items() if k in STATUS_KEYS} == {k: summary[k] for k in STATUS_KEYS}
    assert not list((tmp_path / ".legaldoc" / "run").glob("*.sock"))

    again = legaldoc("run", "manifests/sample.yaml", cwd=work, env=env)
    assert again.returncode == 0, again.stderr
    assert "4 skipped" in again.stdout and "Traceback" not in again.stderr


@pytest.mark.any_database  # exit codes and output; the database is incidental
def test_submit_wait_status_and_exit_codes(batch_settings, start_worker, tmp_path):
    env = settings_env(batch_settings)
    folder = nef_copies(tmp_path / "docs", 3)
    shutil.copyfile(DOCUMENTS / "empty.pdf", folder / "empty.pdf")
    manifest = write_manifest(tmp_path / "nightly.yaml", [{"glob": f"{folder}/*"}], name="nightly", priority=7)

    # Nothing consumes the queues yet: --wait times out with exit 4, and the same name is locked.
    timed_out = legaldoc("submit", str(manifest), "--wait", "--timeout", "1s", cwd=tmp_path, env=env)
    assert timed_out.returncode == 4, timed_out.stderr
    assert "did not finish" in timed_out.stderr and "Traceback" not in timed_out.stderr
    busy = legaldoc("submit", str(manifest), cwd=tmp_path, env=env)
    assert busy.returncode == 5 and "still running" in busy.stderr

    listed = json.loads(legaldoc("status", "--json", cwd=tmp_path, env=env).stdout)
    assert len(listed) == 1 and listed[0]["name"] == "nightly" and listed[0]["priority"] == 7
    assert listed[0]["pending"] == 4 and listed[0]["status"] == "running"

    start_worker(concurrency=2)
    first_id = listed[0]["batch_id"]
    waited = legaldoc("status", first_id, "--json", cwd=tmp_path, env=env)
    assert waited.returncode == 0
    # A second submit after the first finishes: --wait exits 1 because empty.pdf fails again.
    from tests.batchkit import connect

    connect(batch_settings).wait(first_id)
    second = legaldoc("submit", str(manifest), "--wait", "--json", cwd=tmp_path, env=env)
    assert second.returncode == 1, second.stderr
    final = json.loads(second.stdout)
    assert (final["skipped"], final["failed"], final["errors_by_category"]) == (3, 1, {"DATA": 1})

    docs = json.loads(legaldoc("status", final["batch_id"], "--docs", "--json", cwd=tmp_path, env=env).stdout)
    failed = [d for d in docs["documents"] if d["state"] == "failed"]
    assert len(failed) == 1 and failed[0]["error"]["category"] == "DATA" and "empty" in failed[0]["error"]["message"]
    text = legaldoc("status", final["batch_id"], "--docs", cwd=tmp_path, env=env)
    assert "DATA in extract" in text.stdout and "empty.pdf" in text.stdout


def test_cancel_command(batch_settings, tmp_path):
    env = settings_env(batch_settings)
    folder = nef_copies(tmp_path / "docs", 4)
    manifest = write_manifest(tmp_path / "m.yaml", [{"glob": f"{folder}/*"}])
    submitted = json.loads(legaldoc("submit", str(manifest), "--json", cwd=tmp_path, env=env).stdout)
    assert submitted["queued"] == 4
    cancelled = legaldoc("cancel", submitted["batch_id"], "--json", cwd=tmp_path, env=env)
    assert cancelled.returncode == 0, cancelled.stderr
    result = json.loads(cancelled.stdout)
    assert (result["status"], result["cancelled"]) == ("cancelled", 4)
    again = legaldoc("cancel", submitted["batch_id"], cwd=tmp_path, env=env)
    assert again.returncode == 0 and "already cancelled" in again.stderr
    unknown = legaldoc("status", "no-such-batch", cwd=tmp_path, env=env)
    assert unknown.returncode == 2 and "no batch" in unknown.stderr


@pytest.mark.any_database  # refused before any row is written
def test_bad_manifests_name_the_line_and_field(tmp_path, batch_settings):
    env = settings_env(batch_settings)
    bad = tmp_path / "bad.yaml"
    bad.write_text("project: acme\npriority: urgent\ndocuments:\n  - path: a.pdf\n    glob: '*.pdf'\n")
    result = legaldoc("submit", str(bad), cwd=tmp_path, env=env)
    assert result.returncode == 2
    assert "bad.yaml:2: priority" in result.stderr and "high, normal, low or 0-9" in result.stderr
    assert "bad.yaml:4: documents[0]" in result.stderr and "exactly one of" in result.stderr
    bad.write_text("project: acme\ndocuments: [ {path: missing.pdf} ]\n")
    missing = legaldoc("submit", str(bad), cwd=tmp_path, env=env)
    assert missing.returncode == 2 and "missing.pdf" in missing.stderr and "does not exist" in missing.stderr
    bad.write_text("project: [unclosed\n")
    broken = legaldoc("run", str(bad), cwd=tmp_path, env=env)
    assert broken.returncode == 2 and "not valid YAML" in broken.stderr
    assert "Traceback" not in result.stderr + missing.stderr + broken.stderr
    down = legaldoc("submit", str(REPO / "manifests" / "sample.yaml"), "--redis-url", "redis://127.0.0.1:1", cwd=tmp_path, env=env)
    assert down.returncode == 3 and "cannot reach Redis" in down.stderr
