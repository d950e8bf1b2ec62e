"""A batch keeps its own record: `status OLD --docs` and `report OLD` say what happened in that
batch, whatever later batches do to the same files; reports render as JSON, Markdown and HTML."""

from __future__ import annotations

import json
import shutil

from legaldoc.services import batches as service
from tests.batchkit import connect, write_manifest
from tests.conftest import DOCUMENTS, NEF, settings_env
from tests.test_cli import legaldoc


def test_old_batches_keep_their_record_when_a_later_batch_fails_the_same_files_differently(batch_settings, start_worker, tmp_path):
    folder = tmp_path / "matter"
    folder.mkdir()
    shutil.copyfile(NEF / "almd_1.txt", folder / "notice.txt")
    shutil.copyfile(DOCUMENTS / "ca4_17.pdf", folder / "order.pdf")
    (folder / "broken.pdf").write_bytes(b"%PDF-1.7\n" + b"\x00garbage" * 50)
    cluster = connect(batch_settings)
    manifest = write_manifest(tmp_path / "m.yaml", [{"glob": f"{folder}/*"}], name="nightly")
    start_worker(concurrency=2)
    first = cluster.submit(manifest)
    assert cluster.wait(first.batch_id)["failed"] == 1
    env = settings_env(batch_settings)

    def record(batch_id: str) -> tuple[list[dict], dict, str]:
        docs = legaldoc("status", batch_id, "--docs", "--json", cwd=tmp_path, env=env)
        report = legaldoc("report", batch_id, "--format", "json", cwd=tmp_path, env=env)
        markdown = legaldoc("report", batch_id, cwd=tmp_path, env=env)
        assert docs.returncode == report.returncode == markdown.returncode == 0, docs.stderr + report.stderr
        return json.loads(docs.stdout)["documents"], json.loads(report.stdout), markdown.stdout

    before = record(first.batch_id)
    documents, report, markdown = before
    failed = [d for d in documents if d["state"] == "failed"]
    assert len(failed) == 1 and failed[0]["error"]["category"] == "DATA" and failed[0]["source"].endswith("broken.pdf")
    assert report["counts"] == {"total": 3, "succeeded": 2, "failed": 1, "skipped": 0, "cancelled": 0, "unfinished": 0}
    assert report["failed_documents"][0]["source"].endswith("broken.pdf") and report["failure_groups"][0]["advice"]
    assert report["entities"] > 0 and report["new_entities_total"] > 0 and report["relationships"] > 0
    assert "| 3 | 2 | 1 | 0 | 0 |" in markdown and "broken.pdf" in markdown

    # The next night every file is different and fails differently (or again for another reason).
    (folder / "notice.txt").write_bytes(b"\x00\x01\x02 binary now" * 10)
    (folder / "order.pdf").write_bytes(b"")
    (folder / "broken.pdf").write_bytes(b"PK\x03\x04 not a zip either")
    second = cluster.submit(manifest)
    assert cluster.wait(second.batch_id)["failed"] == 3
    assert record(first.batch_id) == before
    later, _, _ = record(second.batch_id)
    assert {d["error"]["message"] for d in later} != {d.get("error", {}).get("message") for d in documents}


def test_report_formats_and_failed_documents_in_json(batch_settings, start_worker, tmp_path):
    folder = tmp_path / "docs"
    folder.mkdir()
    shutil.copyfile(NEF / "almd_1.txt", folder / "a.txt")
    shutil.copyfile(DOCUMENTS / "empty.pdf", folder / "empty.pdf")
    env = settings_env(batch_settings)
    start_worker(concurrency=1)
    manifest = write_manifest(tmp_path / "m.yaml", [{"glob": f"{folder}/*"}])
    waited = legaldoc("submit", str(manifest), "--wait", "--json", cwd=tmp_path, env=env)
    assert waited.returncode == 1, waited.stderr
    summary = json.loads(waited.stdout)
    [failed] = summary["failed_documents"]
    assert set(failed) == {"document_id", "source", "category", "stage", "message"} and failed["source"].endswith("empty.pdf")

    page = tmp_path / "report.html"
    written = legaldoc("report", summary["batch_id"], "--format", "html", "--out", str(page), cwd=tmp_path, env=env)
    assert written.returncode == 0, written.stderr
    html = page.read_text()
    assert html.startswith("<!doctype html>") and "empty.pdf" in html and 'class="bar"' in html
    assert "http://" not in html.replace("http://www.w3.org", "") and "<script" not in html  # self-contained
    again = legaldoc("report", summary["batch_id"], "--format", "html", "--out", str(page), cwd=tmp_path, env=env)
    assert again.returncode == 2 and "exists" in again.stderr
    missing = legaldoc("report", "no-such-batch", cwd=tmp_path, env=env)
    assert missing.returncode == 2 and "no batch no-such-batch" in missing.stderr and "Traceback" not in missing.stderr
    assert service.report(connect(batch_settings).rt, summary["batch_id"])["counts"]["failed"] == 1
