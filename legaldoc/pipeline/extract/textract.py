"""AWS Textract OCR: which pages go, cutting them into one PDF, the boto3 calls and their errors,
and LINE blocks back into page texts.

Pure of our storage and queues: the service (`services/textract.py`) keeps the job id in the
database, calls through the shared rate limiter and circuit breaker (`call`), and polls without
blocking a worker. The boto3 clients are made once per process and reused
(`aws_client`); they honour AWS_REGION, the credentials chain, AWS_ENDPOINT_URL and the
per-service AWS_ENDPOINT_URL_TEXTRACT / AWS_ENDPOINT_URL_S3 by themselves.
"""

from __future__ import annotations

import io
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, TypeVar

import pypdfium2 as pdfium

from legaldoc.config import Settings
from legaldoc.errors import (
    ConfigurationError,
    DataError,
    LegaldocError,
    RateLimitError,
    TransientError,
)
from legaldoc.lifecycle import RemoteJobStatus
from legaldoc.pipeline.extract.textutil import clean_text

T = TypeVar("T")

ASYNC_MAX_BYTES = 500 * 1024 * 1024
ASYNC_MAX_PAGES = 3000
SYNC_MAX_BYTES = 10 * 1024 * 1024
METHOD = "textract"


class OcrMode(StrEnum):
    """Where pages without a usable text layer are read (``ocr_provider``, manifest ``options.ocr``)."""

    LOCAL = "local"  # tesseract on this machine: nothing leaves it
    TEXTRACT = "textract"  # every page that fails the local text check goes to Textract
    AUTO = "auto"  # pages with no text layer at all go to Textract; thin ones to tesseract


def ocr_mode(option: str | None, settings: Settings) -> OcrMode:
    """The batch's OCR mode: the manifest's option, else the setting."""
    value = option or settings.ocr_provider
    try:
        return OcrMode(value)
    except ValueError:
        raise ConfigurationError(f"unknown OCR provider {value!r}",
                                 hint="use ocr: local, textract or auto") from None  # fmt: skip


# -- which pages, cut into one PDF ---------------------------------------------------------------


def plan_pdf(data: bytes, settings: Settings, mode: OcrMode) -> tuple[list[int], int]:
    """0-based indexes of the pages Textract should read: those failing the local text check
    (``textract``), or only those without any text layer (``auto``); and the page count."""
    from legaldoc.pipeline.extract.pdf import needs_ocr

    pdf = pdfium.PdfDocument(data)
    try:
        chosen = []
        for index in range(len(pdf)):
            page = pdf[index]
            try:
                textpage = page.get_textpage()
                text = clean_text(textpage.get_text_bounded())
                textpage.close()
                if not needs_ocr(page, text, settings):
                    continue
                if mode is OcrMode.TEXTRACT or (mode is OcrMode.AUTO and not any(not ch.isspace() for ch in text)):
                    chosen.append(index)
            finally:
                page.close()
        return chosen, len(pdf)
    finally:
        pdf.close()


def cut_pdf(data: bytes, pages: list[int]) -> bytes:
    """One PDF of just these pages (0-based), in order."""
    source = pdfium.PdfDocument(data)
    target = pdfium.PdfDocument.new()
    try:
        target.import_pages(source, pages)
        buffer = io.BytesIO()
        target.save(buffer)
        return buffer.getvalue()
    finally:
        target.close()
        source.close()


def check_job_limits(size: int, pages: int, source: str) -> None:
    if size > ASYNC_MAX_BYTES or pages > ASYNC_MAX_PAGES:
        raise DataError(f"{source}: {pages} pages / {size / 1e6:.0f} MB for Textract, over its limit of "
                        f"{ASYNC_MAX_PAGES} pages / {ASYNC_MAX_BYTES // 2**20} MB per job",
                        hint="split the document, or process it with ocr: local")  # fmt: skip


# -- LINE blocks back into page texts -------------------------------------------------------------


@dataclass(frozen=True)
class PageResult:
    """The text Textract read on one page of what was sent, and its mean line confidence (0-100)."""

    text: str
    confidence: float | None


def page_results(blocks: Iterable[dict[str, Any]], pages: int) -> list[PageResult]:
    """LINE blocks, in the order Textract gave them, grouped by page (1..pages) into page texts."""
    lines: dict[int, list[tuple[str, float]]] = {number: [] for number in range(1, pages + 1)}
    for block in blocks:
        if block.get("BlockType") != "LINE":
            continue
        number = int(block.get("Page", 1))
        lines.setdefault(number, []).append((str(block.get("Text", "")), float(block.get("Confidence", 0.0))))
    results = []
    for number in range(1, pages + 1):
        found = lines.get(number, [])
        confidence = round(sum(c for _, c in found) / len(found), 2) if found else None
        results.append(PageResult(clean_text("\n".join(text for text, _ in found)), confidence))
    return results


# -- boto3: one client per process, errors we can explain -----------------------------------------

_CLIENTS: dict[tuple[Any, ...], Any] = {}


def aws_session() -> Any:
    """A boto3 session in AWS_REGION when it is set (the variable every other AWS SDK reads; boto3
    itself reads only AWS_DEFAULT_REGION and the profile, which are used otherwise)."""
    import boto3

    return boto3.session.Session(region_name=os.environ.get("AWS_REGION") or None)


def aws_client(service: str, endpoint_url: str | None = None, *, retries: int | None = None) -> Any:
    """A boto3 client made once per process (and per endpoint) and reused; ``retries`` None keeps the
    SDK's standard retry mode, a number caps its attempts (1 = ours alone)."""
    variables = ("AWS_ENDPOINT_URL", f"AWS_ENDPOINT_URL_{service.upper()}", "AWS_REGION", "AWS_DEFAULT_REGION", "AWS_PROFILE")
    key = (os.getpid(), service, endpoint_url, retries, *(os.environ.get(v) for v in variables))  # settings it was made with
    found = _CLIENTS.get(key)
    if found is not None:
        return found
    try:
        from botocore.config import Config
    except ImportError:
        raise ConfigurationError(f"{service} needs boto3", hint="pip install 'legaldoc[aws]'") from None
    config = Config(retries={"mode": "standard", **({"total_max_attempts": retries} if retries else {})},
                    connect_timeout=10, read_timeout=60)  # fmt: skip
    try:
        made = aws_session().client(service, endpoint_url=endpoint_url or None, config=config)
    except Exception as exc:  # NoRegionError and friends: said with the fix
        raise translated(exc, service) from exc
    _CLIENTS[key] = made
    return made


_THROTTLED = {"ThrottlingException", "Throttling", "ProvisionedThroughputExceededException", "LimitExceededException",
              "SlowDown", "TooManyRequestsException", "RequestLimitExceeded"}  # fmt: skip
_DENIED = {"AccessDenied", "AccessDeniedException", "UnrecognizedClientException", "InvalidClientTokenId",
           "InvalidSignatureException", "SignatureDoesNotMatch", "InvalidAccessKeyId", "ExpiredToken",
           "ExpiredTokenException", "SubscriptionRequiredException", "403"}  # fmt: skip
_WRONG_REGION = {"PermanentRedirect", "AuthorizationHeaderMalformed", "IllegalLocationConstraintException", "301"}
_BAD_DOCUMENT = {"InvalidParameterException", "UnsupportedDocumentException", "BadDocumentException",
                 "DocumentTooLargeException", "InvalidImageFormatException"}  # fmt: skip
_ACCESS_FIX = ("give the workers' AWS identity textract:StartDocumentTextDetection, textract:GetDocumentTextDetection, "
               "textract:DetectDocumentText and s3:GetObject/s3:PutObject on LEGALDOC_TEXTRACT_BUCKET")  # fmt: skip


def translated(exc: BaseException, what: str) -> BaseException:
    """A botocore error as one of ours, with the fix when the fix is ours to give; else as it is."""
    if isinstance(exc, LegaldocError):
        return exc
    name = type(exc).__name__
    if name in ("NoCredentialsError", "PartialCredentialsError"):
        return ConfigurationError(f"{what}: no AWS credentials",
                                  hint="set AWS_PROFILE, or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY")  # fmt: skip
    if name == "NoRegionError":
        return ConfigurationError(f"{what}: no AWS region", hint="set AWS_REGION to the region of LEGALDOC_TEXTRACT_BUCKET")
    if name in ("EndpointConnectionError", "ConnectTimeoutError", "ReadTimeoutError", "ConnectionClosedError"):
        return TransientError(f"{what}: {exc}")
    response = getattr(exc, "response", None)
    if not isinstance(response, dict):
        return exc
    error = response.get("Error", {})
    code = str(error.get("Code", ""))
    message = str(error.get("Message", "") or code)
    status = response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    if code in _THROTTLED:
        return RateLimitError(f"{what}: Textract throttled the call ({code})",
                              hint="lower LEGALDOC_TEXTRACT_RATE_LIMIT or ask AWS for a higher quota")  # fmt: skip
    if code in _DENIED:
        return ConfigurationError(f"{what}: access denied ({code}: {message})", hint=_ACCESS_FIX)
    if code == "NoSuchBucket":
        return ConfigurationError(f"{what}: the bucket does not exist ({message})",
                                  hint="create it, or set LEGALDOC_TEXTRACT_BUCKET to one that exists")  # fmt: skip
    if code in _WRONG_REGION or code == "InvalidS3ObjectException":
        return ConfigurationError(f"{what}: {code}: {message}",
                                  hint="set AWS_REGION to the bucket's region (Textract reads only buckets of its own "
                                       "region) and check the workers may read the bucket")  # fmt: skip
    if code in _BAD_DOCUMENT:
        return DataError(f"{what}: Textract refused the document ({code}: {message})",
                         hint="check the file opens; or process it with ocr: local")  # fmt: skip
    if isinstance(status, int) and status >= 500:
        return TransientError(f"{what}: Textract answered {status} ({code or message})")
    return exc


def calling(what: str, function: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """`function(*args, **kwargs)` with its botocore errors translated."""
    try:
        return function(*args, **kwargs)
    except Exception as exc:
        raise translated(exc, what) from exc


Call = Callable[..., Any]
"""How a Textract call is made: ``call(function, *args, **kwargs)`` (the service's ProviderGuard)."""


def _direct(function: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    return function(*args, **kwargs)


class TextractClient:
    """The calls legaldoc makes to Textract and S3, each through `call` (the shared limits)."""

    def __init__(self, settings: Settings, call: Call = _direct) -> None:
        self.settings = settings
        self.call = call

    @property
    def textract(self) -> Any:
        return aws_client("textract", retries=1)  # throttling and 5xx are retried by our categories

    @property
    def s3(self) -> Any:
        return aws_client("s3", self.settings.s3_endpoint_url)

    def _guarded(self, what: str, function: Callable[..., T], **kwargs: Any) -> T:
        result: T = self.call(calling, what, function, **kwargs)
        return result

    def upload(self, bucket: str, key: str, data: bytes, content_type: str = "application/pdf") -> bool:
        """Put the object unless it is already there; True when it was uploaded."""
        where = f"s3://{bucket}/{key}"
        try:
            self.s3.head_object(Bucket=bucket, Key=key)
            return False
        except Exception as exc:
            code = str(getattr(exc, "response", {}).get("Error", {}).get("Code", ""))
            if code not in ("404", "NoSuchKey", "NotFound"):
                raise translated(exc, where) from exc
        calling(where, self.s3.put_object, Bucket=bucket, Key=key, Body=data, ContentType=content_type)
        return True

    def start(self, bucket: str, key: str, token: str) -> str:
        """Start text detection on an S3 object; the same token returns the same job."""
        reply = self._guarded(f"Textract job for s3://{bucket}/{key}", self.textract.start_document_text_detection,
                              DocumentLocation={"S3Object": {"Bucket": bucket, "Name": key}},
                              ClientRequestToken=token[:64], JobTag="legaldoc")  # fmt: skip
        return str(reply["JobId"])

    def status(self, job_id: str) -> tuple[RemoteJobStatus, str | None]:
        """The job's status (one small call) and Textract's message when it failed."""
        reply = self._guarded(f"Textract job {job_id}", self.textract.get_document_text_detection, JobId=job_id, MaxResults=1)
        return RemoteJobStatus(reply["JobStatus"]), reply.get("StatusMessage")

    def blocks(self, job_id: str) -> list[dict[str, Any]]:
        """Every block of a finished job, through NextToken."""
        blocks: list[dict[str, Any]] = []
        token: str | None = None
        while True:
            kwargs: dict[str, Any] = {"JobId": job_id, "MaxResults": 1000, **({"NextToken": token} if token else {})}
            reply = self._guarded(f"Textract job {job_id}", self.textract.get_document_text_detection, **kwargs)
            blocks.extend(reply.get("Blocks", []))
            token = reply.get("NextToken")
            if not token:
                return blocks

    def detect(self, data: bytes, source: str) -> list[dict[str, Any]]:
        """Synchronous text detection of one page image (10 MB at most)."""
        if len(data) > SYNC_MAX_BYTES:
            raise DataError(f"{source} is over Textract's 10 MB limit for one image", hint="use ocr: local")
        reply = self._guarded(f"Textract on {source}", self.textract.detect_document_text, Document={"Bytes": data})
        return list(reply.get("Blocks", []))
