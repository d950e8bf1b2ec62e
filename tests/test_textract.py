"""Textract OCR through boto3 against local protocol peers: moto's S3 server and a small Textract of
our own (`tests/textract_peer.py`), with real workers, Redis and SQLite."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import boto3
import pypdfium2 as pdfium
import pytest
import yaml
from botocore.exceptions import ClientError, NoCredentialsError
from sqlalchemy import select

from legaldoc.errors import ErrorCategory, categorize
from legaldoc.pipeline.extract.textract import page_results, translated
from legaldoc.storage import repository as repo
from legaldoc.storage.tables import Document, StageRun, TextractJob
from tests.batchkit import connect
from tests.conftest import DOCUMENTS, _free_port, settings_env
from tests.test_cli import legaldoc
from tests.textract_peer import TextractPeer, page_texts, text_layer_chars

BUCKET = "ocr-pages"


@pytest.fixture
def aws(monkeypatch, s3_endpoint):
    """AWS settings for the SDK: test credentials, a region, S3 at moto and Textract at our peer."""
    peer = TextractPeer(s3_endpoint)
    url = peer.start()
    for name, value in {"AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test", "AWS_REGION": "us-east-1",
                        "AWS_ENDPOINT_URL_S3": s3_endpoint, "AWS_ENDPOINT_URL_TEXTRACT": url}.items():  # fmt: skip
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    boto3.client("s3", endpoint_url=s3_endpoint).create_bucket(Bucket=BUCKET)
    yield peer
    peer.stop()


def mixed_pdf(path: Path) -> Path:
    """Four pages: text, scan, scan, text (corpus pages, assembled in the test's folder)."""
    target = pdfium.PdfDocument.new()
    vector, scanned = pdfium.PdfDocument(DOCUMENTS / "vector-pdf.pdf"), pdfium.PdfDocument(DOCUMENTS / "image-pdf.pdf")
    target.import_pages(vector, [0])
    target.import_pages(scanned, [0, 1])
    target.import_pages(vector, [1])
    target.save(path)
    return path


def manifest(path: Path, sources: list[Path], ocr: str = "textract") -> Path:
    data = {"project": "acme", "options": {"ocr": ocr, "skip_processed": False},
            "documents": [{"path": str(s)} for s in sources]}  # fmt: skip
    path.write_text(yaml.safe_dump(data))
    return path


def textract_settings(batch_settings, **changes):
    return batch_settings.model_copy(update={"textract_bucket": BUCKET, "textract_poll_interval": 0.3, **changes})


@pytest.mark.any_database  # the provider and its job table do nothing the database kind changes
def test_scanned_pages_get_their_text_from_textract(aws, batch_settings, start_worker, tmp_path):
    """Given a PDF of two text pages around two scanned ones and `ocr: textract`, When a worker runs
    it, Then only the scanned pages were uploaded (one PDF, under its sha256), their text is the
    peer's, placed in the page map with Textract's confidence, and the text pages kept their layer."""
    settings = textract_settings(batch_settings)
    cluster = connect(settings)
    submitted = cluster.submit(manifest(tmp_path / "m.yaml", [mixed_pdf(tmp_path / "mixed.pdf")]))
    start_worker(concurrency=1, settings=settings)
    final = cluster.wait(submitted.batch_id, timeout=300)
    assert (final["succeeded"], final["failed"]) == (1, 0), final
    assert len(aws.received) == 1
    bucket, key, sent = aws.received[0]
    assert text_layer_chars(sent) == [0, 0]  # the two scans, nothing else
    with cluster.database.read() as session:
        document_id = session.scalars(select(Document.id)).one()
        extracted = repo.load_extracted(session, document_id)
        job = session.scalars(select(TextractJob)).one()
    assert (bucket, key) == (BUCKET, f"legaldoc/textract/{job.sha256}") and len(aws.starts) == 1
    assert [p.method for p in extracted.pages] == ["text-layer", "textract", "textract", "text-layer"]
    expected = [" ".join(t.split()) for t in page_texts(sent)]
    for page, text in zip(extracted.pages[1:3], expected, strict=True):
        assert " ".join(extracted.text[page.start : page.end].split()) == text and len(text) > 200
    assert extracted.metadata["textract"] == {"job_id": job.job_id, "pages": [2, 3]}
    assert extracted.metadata["ocr_confidence"] == {"2": 97.5, "3": 97.5}
    assert (job.pages, job.status, job.batch_id) == ([1, 2], "SUCCEEDED", submitted.batch_id)
    assert aws.calls["GetDocumentTextDetection"] > 2  # polled, then every result page through NextToken
    status = legaldoc("status", submitted.batch_id, "--json", cwd=tmp_path, env=settings_env(settings))
    assert json.loads(status.stdout)["textract"] == {"jobs": 1, "pages": 2, "estimated_cost_usd": 0.003}
    # the live usage the dashboard's batch screen shows, as the pages were sent
    assert json.loads(status.stdout)["usage"]["textract"] == {"cost_usd": 0.003, "jobs": 1, "pages": 2}
    report = legaldoc("report", submitted.batch_id, "--format", "md", cwd=tmp_path, env=settings_env(settings))
    assert "Pages sent to AWS Textract: 2 in 1 jobs, estimated cost $0.00" in report.stdout, report.stderr


@pytest.mark.any_database  # the job row is plain ORM; crash handling has its PostgreSQL runs in test_crashes
def test_a_killed_worker_resumes_the_same_job(aws, batch_settings, start_worker, tmp_path):
    """Given a Textract job running for a scanned PDF, When its worker is SIGKILLed and another starts,
    Then the document finishes from the same job: the peer saw one Start."""
    aws.job_seconds = 8.0
    settings = textract_settings(batch_settings)
    cluster = connect(settings)
    submitted = cluster.submit(manifest(tmp_path / "m.yaml", [DOCUMENTS / "image-pdf.pdf"]))
    first = start_worker(concurrency=1, settings=settings)
    deadline = time.monotonic() + 60
    while True:
        with cluster.database.read() as session:
            if session.scalars(select(TextractJob)).first() is not None:
                break
        assert time.monotonic() < deadline, first.log_tail()
        time.sleep(0.1)
    os.killpg(first.pid, signal.SIGKILL)
    start_worker(concurrency=1, settings=settings)
    final = cluster.wait(submitted.batch_id, timeout=300)
    assert (final["succeeded"], final["failed"]) == (1, 0), final
    assert len(aws.received) == 1 and aws.calls["StartDocumentTextDetection"] == 1
    with cluster.database.read() as session:
        job = session.scalars(select(TextractJob)).one()
        extracted = repo.load_extracted(session, job.document_id)
    assert job.job_id == aws.starts[0] and [p.method for p in extracted.pages] == ["textract", "textract"]


@pytest.mark.any_database
def test_throttling_is_retried_then_done(aws, batch_settings, start_worker, tmp_path):
    """Given Textract throttling the first two Starts, When the batch runs, Then the stage is retried
    as RATE_LIMIT and the document is done from one job."""
    aws.fail("StartDocumentTextDetection", "ThrottlingException", times=2)
    settings = textract_settings(batch_settings)
    cluster = connect(settings)
    submitted = cluster.submit(manifest(tmp_path / "m.yaml", [DOCUMENTS / "image-pdf-2.pdf"]))
    start_worker(concurrency=1, settings=settings)
    final = cluster.wait(submitted.batch_id, timeout=300)
    assert (final["succeeded"], final["failed"]) == (1, 0), final
    assert aws.calls["StartDocumentTextDetection"] == 3 and len(aws.received) == 1
    with cluster.database.read() as session:
        runs = session.execute(select(StageRun.attempt, StageRun.outcome, StageRun.error_category)
                               .where(StageRun.stage == "extract").order_by(StageRun.id)).all()  # fmt: skip
    assert [tuple(r) for r in runs[:2]] == [(1, "retry", "RATE_LIMIT"), (2, "retry", "RATE_LIMIT")], runs


@pytest.mark.any_database
def test_access_denied_fails_as_configuration_at_once(aws, batch_settings, start_worker, tmp_path):
    """Given Textract denying access, When the batch runs, Then the document fails as CONFIGURATION
    after one call, with the permissions to grant."""
    aws.fail("StartDocumentTextDetection", "AccessDeniedException", times=50)
    settings = textract_settings(batch_settings)
    cluster = connect(settings)
    submitted = cluster.submit(manifest(tmp_path / "m.yaml", [DOCUMENTS / "image-pdf-2.pdf"]))
    start_worker(concurrency=1, settings=settings)
    final = cluster.wait(submitted.batch_id, timeout=120)
    assert (final["failed"], final["errors_by_category"]) == (1, {"CONFIGURATION": 1}), final
    assert aws.calls["StartDocumentTextDetection"] == 1
    (document,) = cluster.documents(submitted.batch_id)
    assert "access denied" in document["error"]["message"] and "textract:StartDocumentTextDetection" in document["error"]["message"]


def _client_error(code: str, status: int = 400) -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": code}, "ResponseMetadata": {"HTTPStatusCode": status}}, "Op")


@pytest.mark.parametrize(("error", "category"), [
    (_client_error("ThrottlingException"), ErrorCategory.RATE_LIMIT),
    (_client_error("ProvisionedThroughputExceededException"), ErrorCategory.RATE_LIMIT),
    (_client_error("LimitExceededException"), ErrorCategory.RATE_LIMIT),
    (_client_error("AccessDeniedException"), ErrorCategory.CONFIGURATION),
    (_client_error("AccessDenied", 403), ErrorCategory.CONFIGURATION),
    (_client_error("NoSuchBucket", 404), ErrorCategory.CONFIGURATION),
    (_client_error("PermanentRedirect", 301), ErrorCategory.CONFIGURATION),
    (_client_error("InvalidS3ObjectException"), ErrorCategory.CONFIGURATION),
    (NoCredentialsError(), ErrorCategory.CONFIGURATION),
    (_client_error("InvalidParameterException"), ErrorCategory.DATA),
    (_client_error("UnsupportedDocumentException"), ErrorCategory.DATA),
    (_client_error("BadDocumentException"), ErrorCategory.DATA),
    (_client_error("InternalServerError", 500), ErrorCategory.TRANSIENT),
    (_client_error("ServiceUnavailable", 503), ErrorCategory.TRANSIENT),
])  # fmt: skip
def test_textract_errors_are_classified_with_their_fix(error, category):
    mine = translated(error, "Textract job")
    assert categorize(mine) is category
    if category is ErrorCategory.CONFIGURATION:
        assert getattr(mine, "hint", None)


def test_lines_are_grouped_per_page_in_order():
    blocks = [{"BlockType": "PAGE", "Page": 1}, {"BlockType": "LINE", "Page": 2, "Text": "b1", "Confidence": 90},
              {"BlockType": "LINE", "Page": 1, "Text": "a1", "Confidence": 80},
              {"BlockType": "WORD", "Page": 1, "Text": "a1"},
              {"BlockType": "LINE", "Page": 1, "Text": "a2", "Confidence": 100}]  # fmt: skip
    first, second, third = page_results(blocks, 3)
    assert (first.text, first.confidence) == ("a1\na2", 90.0)
    assert (second.text, second.confidence) == ("b1", 90.0)
    assert (third.text, third.confidence) == ("", None)


NO_AWS = {"AWS_SHARED_CREDENTIALS_FILE": "/nonexistent", "AWS_CONFIG_FILE": "/nonexistent", "AWS_EC2_METADATA_DISABLED": "true"}


def _submit(tmp_path: Path, redis_url: str, ocr: str | None, env: dict[str, str]):
    path = tmp_path / "m.yaml"
    options = {"ocr": ocr} if ocr else {}
    path.write_text(yaml.safe_dump({"project": "acme", "options": options,
                                    "documents": [{"path": str(DOCUMENTS / "image-pdf-2.pdf")}]}))  # fmt: skip
    clean = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    return legaldoc("submit", str(path), cwd=tmp_path, env={**clean, "LEGALDOC_REDIS_URL": redis_url, **env})


@pytest.mark.parametrize(("ocr", "env", "says"), [
    (None, {"LEGALDOC_OCR_PROVIDER": "textract", **NO_AWS}, "LEGALDOC_TEXTRACT_BUCKET"),
    ("textract", {"LEGALDOC_TEXTRACT_BUCKET": "b", **NO_AWS}, "AWS_ACCESS_KEY_ID"),
    ("auto", {"LEGALDOC_TEXTRACT_BUCKET": "b", **NO_AWS, "AWS_ACCESS_KEY_ID": "k", "AWS_SECRET_ACCESS_KEY": "s"},
     "AWS_REGION"),
    ("textract", {"LEGALDOC_TEXTRACT_BUCKET": "b", **NO_AWS, "AWS_PROFILE": "nosuch"}, "AWS_PROFILE"),
])  # fmt: skip
def test_textract_without_what_it_needs_is_refused_at_submit(tmp_path, redis_url, ocr, env, says):
    """Given Textract selected (setting or manifest) without a bucket, credentials or a region, When
    the batch is submitted, Then submit exits 3 with one line naming the fix, and nothing is queued."""
    result = _submit(tmp_path, redis_url, ocr, env)
    assert result.returncode == 3, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and says in lines[0], result.stderr
    assert "Traceback" not in result.stderr and "validation error" not in result.stderr


def test_aws_keys_with_local_ocr_change_nothing(tmp_path, redis_url):
    """Given AWS keys in the environment and OCR left local, When a batch is submitted, Then it is
    accepted and nothing mentions Textract: no document leaves the machine unless asked."""
    result = _submit(tmp_path, redis_url, None, {**NO_AWS, "AWS_ACCESS_KEY_ID": "k", "AWS_SECRET_ACCESS_KEY": "s",
                                                 "AWS_REGION": "us-east-1"})  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "textract" not in (result.stdout + result.stderr).lower()


@pytest.mark.any_database
def test_s3_prefixes_and_globs_are_listed_at_submit(aws, batch_settings, tmp_path, s3_endpoint):
    """Given objects under a prefix (more than one listing page), When a manifest names the prefix
    and a ** glob, Then submit lists them in bulk: every document object once, others left out."""
    s3 = boto3.client("s3", endpoint_url=s3_endpoint)
    s3.create_bucket(Bucket="matters")
    keys = [f"acme/vol{i % 3}/doc-{i:04d}.pdf" for i in range(1005)] + ["acme/notes.bin", "acme/vol1/", "other/x.pdf"]
    for key in keys:
        s3.put_object(Bucket="matters", Key=key, Body=b"%PDF-1.4 stub")
    cluster = connect(batch_settings)
    path = tmp_path / "s3.yaml"
    path.write_text(yaml.safe_dump({"project": "acme", "documents": [
        {"uri": "s3://matters/acme/"}, {"glob": "s3://matters/acme/vol1/**/*.pdf"}, {"glob": "s3://matters/*/x.pdf"}]}))
    submitted = cluster.submit(path)
    sources = {d["source"] for d in cluster.documents(submitted.batch_id)}
    assert len(sources) == submitted.total == 1006
    assert "s3://matters/other/x.pdf" in sources and "s3://matters/acme/vol2/doc-0005.pdf" in sources
    assert submitted.not_documents == ["s3://matters/acme/notes.bin"]


@pytest.mark.any_database
def test_a_one_page_image_is_read_synchronously(aws, batch_settings, start_worker, tmp_path):
    """Given a one-page PNG and `ocr: textract`, When a worker runs it, Then DetectDocumentText reads it
    (no upload, no job) and its page is counted in the batch's pages sent."""
    pdf = pdfium.PdfDocument(DOCUMENTS / "image-pdf-2.pdf")
    image = tmp_path / "scan.png"
    pdf[0].render(scale=150 / 72, grayscale=True).to_pil().save(image)
    settings = textract_settings(batch_settings)
    cluster = connect(settings)
    submitted = cluster.submit(manifest(tmp_path / "m.yaml", [image]))
    start_worker(concurrency=1, settings=settings)
    final = cluster.wait(submitted.batch_id, timeout=300)
    assert (final["succeeded"], final["failed"]) == (1, 0), final
    assert aws.calls["DetectDocumentText"] == 1 and not aws.received and not aws.calls["StartDocumentTextDetection"]
    with cluster.database.read() as session:
        extracted = repo.load_extracted(session, session.scalars(select(Document.id)).one())
        job = session.scalars(select(TextractJob)).one()
    assert [p.method for p in extracted.pages] == ["textract"] and len(extracted.text) > 200
    assert (job.job_id, job.pages, job.batch_id) == ("sync", [0], submitted.batch_id)


@pytest.mark.any_database
def test_a_job_past_its_deadline_fails_as_resource_at_the_last_attempt(aws, batch_settings, start_worker, tmp_path):
    """Given a job that never ends, When its deadline passes at the last attempt, Then the document
    fails as RESOURCE naming the job, and polling went on without holding the worker."""
    aws.job_seconds = 3600
    settings = textract_settings(batch_settings, textract_job_timeout=3.0, max_attempts=1)
    cluster = connect(settings)
    submitted = cluster.submit(manifest(tmp_path / "m.yaml", [DOCUMENTS / "image-pdf-2.pdf"]))
    start_worker(concurrency=1, settings=settings)
    final = cluster.wait(submitted.batch_id, timeout=120)
    assert (final["failed"], final["errors_by_category"]) == (1, {"RESOURCE": 1}), final
    (document,) = cluster.documents(submitted.batch_id)
    assert "still runs after 3s" in document["error"]["message"] and aws.calls["StartDocumentTextDetection"] == 1
    assert aws.calls["GetDocumentTextDetection"] >= 2


@pytest.mark.any_database
def test_unchanged_s3_objects_are_skipped_by_etag(aws, batch_settings, start_worker, tmp_path, s3_endpoint):
    """Given an S3 document processed once, When the same prefix is submitted again, Then it is skipped
    by its ETag and size (not downloaded); once the object changes it is processed again."""
    s3 = boto3.client("s3", endpoint_url=s3_endpoint)
    s3.create_bucket(Bucket="matters")
    s3.put_object(Bucket="matters", Key="acme/notice.txt", Body=b"Notice of appearance of counsel for the plaintiff.\n")
    cluster = connect(batch_settings)
    path = tmp_path / "s3.yaml"
    path.write_text(yaml.safe_dump({"project": "acme", "name": "nightly", "documents": [{"uri": "s3://matters/acme/"}]}))
    start_worker(concurrency=1, settings=batch_settings)
    first = cluster.wait(cluster.submit(path).batch_id)
    assert first["succeeded"] == 1, first
    again = cluster.submit(path)
    assert cluster.wait(again.batch_id)["skipped"] == 1
    (row,) = cluster.documents(again.batch_id)
    assert "same S3 ETag and size" in row["reason"]
    s3.put_object(Bucket="matters", Key="acme/notice.txt", Body=b"Amended notice of appearance of counsel.\n")
    changed = cluster.wait(cluster.submit(path).batch_id)
    assert (changed["succeeded"], changed["skipped"]) == (1, 0), changed


def test_process_waits_for_the_job_in_place(aws, tmp_path):
    """Given `legaldoc process` (no Redis, no workers) with Textract selected, When it reads a scan,
    Then it waits for the job itself and prints the document done with its pages read by Textract."""
    env = {"LEGALDOC_OCR_PROVIDER": "textract", "LEGALDOC_TEXTRACT_BUCKET": BUCKET, "LEGALDOC_TEXTRACT_POLL_INTERVAL": "0.3",
           "LEGALDOC_REDIS_URL": f"redis://127.0.0.1:{_free_port()}"}  # fmt: skip
    result = legaldoc("process", str(DOCUMENTS / "image-pdf.pdf"), "--json", cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stderr
    (line,) = [json.loads(line) for line in result.stdout.splitlines()]
    assert (line["status"], line["pages"], line["ocr_pages"]) == ("done", 2, 2)
    assert aws.calls["StartDocumentTextDetection"] == 1


@pytest.mark.any_database
def test_an_s3_scan_needing_no_cut_is_read_in_place(aws, batch_settings, start_worker, tmp_path, s3_endpoint):
    """Given a scanned PDF in S3 whose every page needs OCR, When it runs with `ocr: auto`, Then Textract
    reads the object where it is: nothing is uploaded."""
    s3 = boto3.client("s3", endpoint_url=s3_endpoint)
    s3.create_bucket(Bucket="matters")
    s3.put_object(Bucket="matters", Key="acme/scan.pdf", Body=(DOCUMENTS / "image-pdf.pdf").read_bytes())
    settings = textract_settings(batch_settings)
    cluster = connect(settings)
    path = tmp_path / "m.yaml"
    path.write_text(yaml.safe_dump({"project": "acme", "options": {"ocr": "auto"}, "documents": [{"uri": "s3://matters/acme/scan.pdf"}]}))
    submitted = cluster.submit(path)
    start_worker(concurrency=1, settings=settings)
    final = cluster.wait(submitted.batch_id, timeout=300)
    assert (final["succeeded"], final["failed"]) == (1, 0), final
    assert [(bucket, key) for bucket, key, _ in aws.received] == [("matters", "acme/scan.pdf")]
    assert s3.list_objects_v2(Bucket=BUCKET).get("KeyCount", 0) == 0


@pytest.mark.any_database
def test_more_pages_than_one_job_takes_go_as_several_jobs(aws, batch_settings, start_worker, tmp_path):
    """Given a job size of one page and a PDF with two scanned pages, When a worker reads it with
    Textract, Then the pages go as two jobs, one after the other, and both pages get their text."""
    settings = textract_settings(batch_settings, textract_pages_per_job=1)
    cluster = connect(settings)
    submitted = cluster.submit(manifest(tmp_path / "m.yaml", [mixed_pdf(tmp_path / "mixed.pdf")]))
    start_worker(concurrency=1, settings=settings)
    final = cluster.wait(submitted.batch_id, timeout=300)
    assert (final["succeeded"], final["failed"]) == (1, 0), final
    assert len(aws.starts) == 2 and len(aws.received) == 2
    assert [text_layer_chars(sent) for _, _, sent in aws.received] == [[0], [0]]  # one scanned page each
    with cluster.database.read() as session:
        extracted = repo.load_extracted(session, session.scalars(select(Document.id)).one())
        rows = session.scalars(select(TextractJob).order_by(TextractJob.id)).all()
    assert [row.pages for row in rows] == [[1], [2]] and all(row.status == "SUCCEEDED" for row in rows)
    assert [p.method for p in extracted.pages] == ["text-layer", "textract", "textract", "text-layer"]
    assert extracted.metadata["textract"] == {"job_ids": aws.starts, "pages": [2, 3]}
    for page in extracted.pages[1:3]:
        assert len(extracted.text[page.start : page.end].strip()) > 200


def test_the_usage_line_of_pages_sent():
    from legaldoc.services.summary import usage_line

    assert usage_line("textract", {"pages": 27, "jobs": 3, "cost_usd": 0.0405}) == "textract: 27 pages in 3 jobs, about $0.0405"
