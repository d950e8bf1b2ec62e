"""Documents named by s3:// URIs are fetched by the worker through boto3, here from moto's S3 server."""

from __future__ import annotations

import io
import zipfile

import boto3
import pytest

from legaldoc.services.queries import show_document
from tests.batchkit import connect, write_manifest
from tests.conftest import SAMPLES


@pytest.mark.any_database  # fetching from S3 does nothing the database kind changes
def test_s3_documents_are_fetched_by_the_worker(batch_settings, start_worker, tmp_path, s3_endpoint, monkeypatch):
    """Given a manifest of s3:// URIs (one missing, one a zip), When a worker runs it, Then the present
    one is processed like a local file, the zip's members are documents of their own, and the missing
    one fails as DATA naming its URI."""
    credentials = {"AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test", "AWS_DEFAULT_REGION": "us-east-1"}
    for name, value in credentials.items():
        monkeypatch.setenv(name, value)
    s3 = boto3.client("s3", endpoint_url=s3_endpoint)
    s3.create_bucket(Bucket="matters")
    s3.put_object(Bucket="matters", Key="acme/complaint.pdf", Body=(SAMPLES / "complaint.pdf").read_bytes())
    production = io.BytesIO()
    with zipfile.ZipFile(production, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.write(SAMPLES / "scheduling-order.docx", "vol1/order.docx")
        archive.write(SAMPLES / "ecf-notice.eml", "vol1/notice.eml")
    s3.put_object(Bucket="matters", Key="acme/production.zip", Body=production.getvalue())
    settings = batch_settings.model_copy(update={"s3_endpoint_url": s3_endpoint})
    cluster = connect(settings)
    manifest = write_manifest(tmp_path / "s3.yaml", [
        {"uri": "s3://matters/acme/complaint.pdf", "metadata": {"custodian": "J. Doe"}},
        {"uri": "s3://matters/acme/missing.pdf"},
        {"uri": "s3://matters/acme/production.zip"},
    ])  # fmt: skip
    submitted = cluster.submit(manifest)
    start_worker(concurrency=1, settings=settings)
    final = cluster.wait(submitted.batch_id)
    assert (final["succeeded"], final["failed"], final["errors_by_category"]) == (3, 1, {"DATA": 1})
    documents = {d["source"]: d for d in cluster.documents(submitted.batch_id)}
    assert {s for s in documents if "!/" in s} == {"s3://matters/acme/production.zip!/vol1/order.docx",
                                                   "s3://matters/acme/production.zip!/vol1/notice.eml"}  # fmt: skip
    assert "does not exist" in documents["s3://matters/acme/missing.pdf"]["error"]["message"]
    shown = show_document(cluster.database, next(d["document_id"] for s, d in documents.items() if s.endswith("complaint.pdf")))
    assert shown["status"] == "done" and shown["kind"] == "pdf" and shown["mentions"]
