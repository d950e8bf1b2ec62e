"""The error classifier: real exceptions of the libraries we use land in the right category, and each
category's retry policy waits and caps as docs/ARCHITECTURE.md says."""

from __future__ import annotations

import http.server
import io
import subprocess
import threading
import urllib.error
import urllib.request

import pytest

from legaldoc.errors import (
    RETRY_POLICIES,
    ConfigurationError,
    ErrorCategory,
    StageTimeout,
    categorize,
    retry_after_of,
    retry_delay,
)

C = ErrorCategory


def _raised(function) -> BaseException:
    try:
        function()
    except BaseException as exc:  # noqa: BLE001 - the point is to catch what the library raises
        return exc
    raise AssertionError("nothing was raised")


def test_pdf_and_office_libraries_failures_are_data():
    import docx
    import pypdf
    import pypdfium2 as pdfium

    assert categorize(_raised(lambda: pdfium.PdfDocument(b"%PDF-1.7 truncated"))) is C.DATA
    assert categorize(_raised(lambda: pypdf.PdfReader(io.BytesIO(b"%PDF-1.4 nothing else")))) is C.DATA
    writer = pypdf.PdfWriter()
    writer.add_blank_page(200, 200)
    writer.encrypt("secret")
    locked = io.BytesIO()
    writer.write(locked)
    reader = pypdf.PdfReader(io.BytesIO(locked.getvalue()))
    assert categorize(_raised(lambda: reader.pages[0].extract_text())) is C.DATA
    assert categorize(_raised(lambda: docx.Document(io.BytesIO(b"PK\x03\x04 not really a zip")))) is C.DATA
    assert categorize(_raised(lambda: docx.Document(io.BytesIO(b"plain text")))) is C.DATA


def test_our_extractors_wrap_library_failures_as_data(settings):
    from legaldoc.pipeline.extract import extract

    for data, name in [(b"%PDF-1.7 truncated", "broken.pdf"), (b"PK\x03\x04junk", "broken.docx"), (b"", "empty.txt")]:
        error = _raised(lambda data=data, name=name: extract(data, name, settings))
        assert categorize(error) is C.DATA, error
        assert name in str(error)


def test_missing_tesseract_is_configuration():
    from PIL import Image

    from legaldoc.pipeline.extract.ocr import TesseractOcr

    error = _raised(lambda: TesseractOcr("no-such-tesseract-binary").image_to_text(Image.new("L", (10, 10)), timeout=5))
    assert isinstance(error, ConfigurationError) and categorize(error) is C.CONFIGURATION
    assert "apt-get install tesseract-ocr" in str(error)


def test_time_and_memory_limits_are_resource():
    from billiard.exceptions import WorkerLostError
    from celery.exceptions import SoftTimeLimitExceeded, TimeLimitExceeded

    assert categorize(SoftTimeLimitExceeded()) is C.RESOURCE
    assert categorize(TimeLimitExceeded(30)) is C.RESOURCE
    assert categorize(WorkerLostError("worker exited by signal SIGKILL")) is C.RESOURCE
    assert categorize(_raised(lambda: subprocess.run(["sleep", "5"], timeout=0.05))) is C.RESOURCE
    assert categorize(StageTimeout("tesseract took too long")) is C.RESOURCE
    assert categorize(MemoryError()) is C.RESOURCE
    assert categorize(OSError(28, "No space left on device")) is C.RESOURCE


def test_connection_errors_are_transient():
    import botocore.exceptions
    import redis
    import sqlalchemy

    assert categorize(ConnectionResetError(104, "reset")) is C.TRANSIENT
    assert categorize(TimeoutError()) is C.TRANSIENT
    dead = redis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=1)
    assert categorize(_raised(dead.ping)) is C.TRANSIENT
    engine = sqlalchemy.create_engine("postgresql+psycopg://nobody@127.0.0.1:1/none", connect_args={"connect_timeout": 2})
    assert categorize(_raised(engine.connect)) is C.TRANSIENT
    assert categorize(botocore.exceptions.EndpointConnectionError(endpoint_url="http://127.0.0.1:1")) is C.TRANSIENT


class _Answer(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 - http.server's spelling
        status = int(self.path.strip("/"))
        self.send_response(status)
        if status == 429:
            self.send_header("Retry-After", "7")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *_: object) -> None:
        pass


@pytest.fixture(scope="module")
def http_peer():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Answer)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


@pytest.mark.parametrize(("status", "category"), [(429, C.RATE_LIMIT), (503, C.TRANSIENT), (500, C.TRANSIENT),
                                                  (401, C.CONFIGURATION), (403, C.CONFIGURATION), (413, C.DATA),
                                                  (404, C.PERMANENT)])  # fmt: skip
def test_http_statuses_from_a_real_server(http_peer, status, category):
    error = _raised(lambda: urllib.request.urlopen(f"{http_peer}/{status}", timeout=5))
    assert isinstance(error, urllib.error.HTTPError)
    assert categorize(error) is category
    if status == 429:
        assert retry_after_of(error) == 7.0
        assert retry_delay(C.RATE_LIMIT, 1, error) == 7.0


def test_service_error_codes():
    from botocore.exceptions import ClientError

    def client_error(code: str, status: int) -> ClientError:
        return ClientError({"Error": {"Code": code, "Message": "x"}, "ResponseMetadata": {"HTTPStatusCode": status}}, "Op")

    assert categorize(client_error("ThrottlingException", 400)) is C.RATE_LIMIT
    assert categorize(client_error("ProvisionedThroughputExceededException", 400)) is C.RATE_LIMIT
    assert categorize(client_error("AccessDeniedException", 400)) is C.CONFIGURATION
    assert categorize(client_error("UnsupportedDocumentException", 400)) is C.DATA
    assert categorize(client_error("InternalServerError", 500)) is C.TRANSIENT
    assert categorize(client_error("SomethingNew", 502)) is C.TRANSIENT

    class QuotaExhausted(Exception):  # the shape of openai's RateLimitError for an empty balance
        status_code = 429
        code = "insufficient_quota"

    assert categorize(QuotaExhausted()) is C.CONFIGURATION


def test_everything_else_is_permanent_and_data_shaped_builtins_are_data():
    assert categorize(ValueError("x")) is C.PERMANENT
    assert categorize(KeyError("x")) is C.PERMANENT
    assert categorize(UnicodeDecodeError("utf-8", b"\xff", 0, 1, "bad")) is C.DATA
    assert categorize(FileNotFoundError(2, "gone", "/x.pdf")) is C.DATA
    assert categorize(PermissionError(13, "denied")) is C.CONFIGURATION


def test_retry_policies():
    assert [c for c, p in RETRY_POLICIES.items() if p.retry] == [C.TRANSIENT, C.RATE_LIMIT, C.RESOURCE]
    assert RETRY_POLICIES[C.RATE_LIMIT].max_attempts(3) == 6
    assert RETRY_POLICIES[C.TRANSIENT].max_attempts(3) == 3
    assert RETRY_POLICIES[C.DATA].max_attempts(3) == 1
    assert retry_delay(C.TRANSIENT, 1, base=2) <= 0.5  # the first retry goes at once
    assert 2 <= retry_delay(C.TRANSIENT, 2, base=2) <= 6  # then exponential with jitter
    assert 4 <= retry_delay(C.TRANSIENT, 3, base=2) <= 12
    assert retry_delay(C.RESOURCE, 1, base=2) == 10 and retry_delay(C.RESOURCE, 2, base=2) == 20  # linear
    assert retry_delay(C.RATE_LIMIT, 1, type("E", (Exception,), {"retry_after": 9000})(), cap=600) == 600
    assert 4 <= retry_delay(C.RATE_LIMIT, 1, ValueError(), base=2) <= 6  # no Retry-After: exponential
