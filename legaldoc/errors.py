"""One error tree; every error carries a category that decides its retry policy."""

from __future__ import annotations

import errno
import random
import struct
import zlib
from dataclasses import dataclass
from enum import StrEnum


class ErrorCategory(StrEnum):
    """How a failure is retried: `RETRY_POLICIES` below."""

    TRANSIENT = "TRANSIENT"
    RATE_LIMIT = "RATE_LIMIT"
    RESOURCE = "RESOURCE"
    CONFIGURATION = "CONFIGURATION"
    DATA = "DATA"
    PERMANENT = "PERMANENT"


class LegaldocError(Exception):
    """Raised for every failure legaldoc knows how to explain."""

    category: ErrorCategory = ErrorCategory.PERMANENT

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message} ({self.hint})" if self.hint else self.message


class TransientError(LegaldocError):
    """Raised when a dependency failed in a way that may pass on its own (reset, timeout, 5xx)."""

    category = ErrorCategory.TRANSIENT


class CircuitOpen(TransientError):
    """Raised instead of calling a provider whose shared circuit breaker is open."""

    def __init__(self, message: str, *, retry_after: float | None = None, hint: str | None = None):
        super().__init__(message, hint=hint)
        self.retry_after = retry_after


class RateLimitError(LegaldocError):
    """Raised when a provider says to slow down (429, throttling)."""

    category = ErrorCategory.RATE_LIMIT

    def __init__(self, message: str, *, retry_after: float | None = None, hint: str | None = None):
        super().__init__(message, hint=hint)
        self.retry_after = retry_after


class ResourceError(LegaldocError):
    """Raised when a document exceeded a time, memory or size budget of the worker."""

    category = ErrorCategory.RESOURCE


class ConfigurationError(LegaldocError):
    """Raised when the installation or settings are wrong (missing tesseract, bad credentials)."""

    category = ErrorCategory.CONFIGURATION


class PreflightError(ConfigurationError):
    """Raised at submit when a selected remote provider lacks what it needs (a bucket, credentials,
    a key): the batch is refused before any document runs, with the fix (exit 3, like doctor)."""


class DataError(LegaldocError):
    """Raised when a document itself cannot be processed (corrupt, encrypted, empty, unsupported)."""

    category = ErrorCategory.DATA


class DocumentTooLarge(DataError):
    """Raised when a document exceeds the configured size or page limits."""


class UnsupportedFormat(DataError):
    """Raised when no extractor handles a document's format."""


class PermanentError(LegaldocError):
    """Raised for failures that will not pass by retrying and fit no other category."""

    category = ErrorCategory.PERMANENT


class StageTimeout(ResourceError):
    """Raised when one document took longer than its time limit in a stage."""


class UsageError(LegaldocError):
    """Raised when the command line or a manifest is wrong; never tied to a document."""

    category = ErrorCategory.CONFIGURATION


class ManifestError(UsageError):
    """Raised when a manifest names something it may not, e.g. a file outside ``documents_root``."""


class ServiceUnavailable(LegaldocError):
    """Raised when the database or Redis cannot be reached."""

    category = ErrorCategory.TRANSIENT


class ProviderNotReady(ServiceUnavailable):
    """Raised at submit when a remote provider is chosen without what it needs (a key, a model the
    endpoint knows): the batch is refused before any document runs (exit 3)."""

    category = ErrorCategory.CONFIGURATION


class NoSuchBatch(UsageError):
    """Raised when a batch id is unknown."""


class BatchBusy(LegaldocError):
    """Raised when a batch of the same manifest, or a recover of the same batch, is still running."""

    category = ErrorCategory.CONFIGURATION


class WaitTimedOut(LegaldocError):
    """Raised when a batch did not finish within the time given to wait for it."""

    category = ErrorCategory.RESOURCE


class ClaimLost(LegaldocError):
    """Raised when a stage finished after its claim was taken over; its writes are rolled back."""

    category = ErrorCategory.TRANSIENT


_REGISTERED: dict[type[BaseException], ErrorCategory] = {}


def register_category(exc_type: type[BaseException], category: ErrorCategory) -> None:
    """Teach `categorize` an exception of an outer layer (a Celery time limit, a driver error)."""
    _REGISTERED[exc_type] = category


# Exceptions of libraries the pure layers may not import, known by class name (anywhere in the MRO).
_BY_NAME: dict[str, ErrorCategory] = {
    # documents that cannot be read: pypdfium2, pypdf, python-docx, zip, XML, Pillow
    **dict.fromkeys(("PdfiumError", "PdfReadError", "PdfStreamError", "FileNotDecryptedError",
                     "WrongPasswordError", "EmptyFileError", "PackageNotFoundError", "InvalidXmlError",
                     "XMLSyntaxError", "BadZipFile", "LargeZipFile", "UnidentifiedImageError",
                     "DecompressionBombError"), ErrorCategory.DATA),
    # worker budgets: Celery, billiard, subprocess
    **dict.fromkeys(("SoftTimeLimitExceeded", "TimeLimitExceeded", "WorkerLostError", "TimeoutExpired"), ErrorCategory.RESOURCE),
    # networks and services: redis, SQLAlchemy drivers, httpx/requests/urllib3, openai, botocore
    **dict.fromkeys(("BusyLoadingError", "OperationalError", "DisconnectionError", "InterfaceError",
                     "APIConnectionError", "APITimeoutError", "InternalServerError", "ConnectError",
                     "ConnectTimeout", "ReadTimeout", "ReadTimeoutError", "RemoteProtocolError",
                     "ProtocolError", "EndpointConnectionError", "ConnectionClosedError",
                     "IncompleteReadError", "CircuitBreakerError"), ErrorCategory.TRANSIENT),
    **dict.fromkeys(("NoCredentialsError", "PartialCredentialsError", "NoRegionError", "AuthenticationError",
                     "PermissionDeniedError"), ErrorCategory.CONFIGURATION),
}  # fmt: skip

# Error codes of AWS services (botocore ClientError) and of JSON APIs.
_CODES: dict[str, ErrorCategory] = {
    **dict.fromkeys(("Throttling", "ThrottlingException", "ThrottledException", "TooManyRequestsException",
                     "ProvisionedThroughputExceededException", "RequestLimitExceeded", "SlowDown",
                     "LimitExceededException", "rate_limit_exceeded"), ErrorCategory.RATE_LIMIT),
    **dict.fromkeys(("AccessDenied", "AccessDeniedException", "UnrecognizedClientException", "InvalidClientTokenId",
                     "InvalidSignatureException", "SignatureDoesNotMatch", "ExpiredToken", "ExpiredTokenException",
                     "InvalidAccessKeyId", "insufficient_quota", "invalid_api_key", "model_not_found",
                     "SubscriptionRequiredException"), ErrorCategory.CONFIGURATION),
    **dict.fromkeys(("InternalError", "InternalFailure", "InternalServerError", "ServiceUnavailable",
                     "ServiceUnavailableException", "RequestTimeout", "RequestTimeoutException"), ErrorCategory.TRANSIENT),
    **dict.fromkeys(("BadDocumentException", "UnsupportedDocumentException", "DocumentTooLargeException",
                     "InvalidS3ObjectException", "NoSuchKey", "InvalidImageFormatException",
                     "context_length_exceeded"), ErrorCategory.DATA),
}  # fmt: skip


def _status_code(exc: BaseException) -> int | None:
    """The HTTP status an exception carries (httpx, requests, openai, urllib, botocore), if any."""
    for candidate in (exc, getattr(exc, "response", None)):
        if candidate is None:
            continue
        for attribute in ("status_code", "status", "code"):
            if attribute == "code" and not hasattr(candidate, "headers"):
                continue  # only urllib's HTTPError keeps its status in `code`
            value = getattr(candidate, attribute, None)
            if isinstance(value, int) and 100 <= value <= 599:
                return value
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        status = response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        if isinstance(status, int):
            return status
    return None


def _error_code(exc: BaseException) -> str | None:
    """A service's own error code: botocore's ``Error.Code``, or an API's ``code``/``type`` string."""
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        code = response.get("Error", {}).get("Code")
        if code:
            return str(code)
    for attribute in ("code", "type"):
        value = getattr(exc, attribute, None)
        if isinstance(value, str) and value:
            return value
    body = getattr(exc, "body", None)
    if isinstance(body, dict):
        inner = body.get("error", body)
        if isinstance(inner, dict) and isinstance(inner.get("code"), str):
            return inner["code"]
    return None


def _by_status(status: int) -> ErrorCategory:
    if status == 429:
        return ErrorCategory.RATE_LIMIT
    if status in (408, 425) or status >= 500:
        return ErrorCategory.TRANSIENT
    if status in (401, 402, 403, 407):
        return ErrorCategory.CONFIGURATION
    if status in (413, 415, 422):
        return ErrorCategory.DATA
    return ErrorCategory.PERMANENT


def categorize(exc: BaseException) -> ErrorCategory:
    """Map any exception to one of the six categories.

    Our own errors carry theirs; then types registered by outer layers; then a service's error code
    and HTTP status; then well-known exception names of libraries we may not import here; last the
    builtin families. Whatever is left is PERMANENT.
    """
    if isinstance(exc, LegaldocError):
        return exc.category
    for exc_type, category in _REGISTERED.items():
        if isinstance(exc, exc_type):
            return category
    code = _error_code(exc)
    if code in _CODES:
        return _CODES[code]
    status = _status_code(exc)
    if status is not None:
        return _by_status(status)
    for klass in type(exc).__mro__:
        if klass.__name__ in _BY_NAME:
            return _BY_NAME[klass.__name__]
    if isinstance(exc, MemoryError):
        return ErrorCategory.RESOURCE
    if isinstance(exc, OSError) and exc.errno in (errno.ENOMEM, errno.ENOSPC, errno.EMFILE, errno.ENFILE):
        return ErrorCategory.RESOURCE
    if isinstance(exc, TimeoutError | ConnectionError | EOFError) or type(exc).__name__ in ("ConnectionError", "TimeoutError"):
        return ErrorCategory.TRANSIENT
    if isinstance(exc, FileNotFoundError | IsADirectoryError | UnicodeError | zlib.error | struct.error):
        return ErrorCategory.DATA
    if isinstance(exc, PermissionError):
        return ErrorCategory.CONFIGURATION
    return ErrorCategory.PERMANENT


def retry_after_of(exc: BaseException | None) -> float | None:
    """Seconds the server asked us to wait (``retry_after``, or a Retry-After header), if it said."""
    if exc is None:
        return None
    value = getattr(exc, "retry_after", None)
    if value is None:
        for holder in (exc, getattr(exc, "response", None)):
            headers = getattr(holder, "headers", None)
            if headers is not None and hasattr(headers, "get"):
                value = headers.get("Retry-After") or headers.get("retry-after")
                if value is not None:
                    break
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except (TypeError, ValueError):
        from email.utils import parsedate_to_datetime

        try:
            moment = parsedate_to_datetime(str(value))
        except (TypeError, ValueError):
            return None
        import time

        return max(0.0, moment.timestamp() - time.time())


@dataclass(frozen=True)
class RetryPolicy:
    """How one category is retried: whether at all, how many attempts in all, how long to wait."""

    retry: bool
    backoff: str  # exponential | retry-after | linear | none
    attempts_factor: int = 1  # multiplies Settings.max_attempts

    def max_attempts(self, configured: int) -> int:
        return configured * self.attempts_factor if self.retry else 1


RETRY_POLICIES: dict[ErrorCategory, RetryPolicy] = {
    ErrorCategory.TRANSIENT: RetryPolicy(True, "exponential"),
    ErrorCategory.RATE_LIMIT: RetryPolicy(True, "retry-after", attempts_factor=2),  # limits pass with time
    ErrorCategory.RESOURCE: RetryPolicy(True, "linear"),
    ErrorCategory.CONFIGURATION: RetryPolicy(False, "none"),
    ErrorCategory.DATA: RetryPolicy(False, "none"),
    ErrorCategory.PERMANENT: RetryPolicy(False, "none"),
}

ADVICE: dict[ErrorCategory, str] = {
    ErrorCategory.TRANSIENT: "a dependency failed for a moment (connection, timeout, 5xx); `legaldoc recover` re-runs them",
    ErrorCategory.RATE_LIMIT: "a provider throttled us; lower the shared rate limit or concurrency, then `legaldoc recover`",
    ErrorCategory.RESOURCE: "time or memory limits were hit; raise the queue's time limit or worker_max_memory_mb, "
                            "or give the ocr queue more machines, then `legaldoc recover`",
    ErrorCategory.CONFIGURATION: "fix the installation or settings the message names (tesseract, credentials, quota), "
                                 "then `legaldoc recover BATCH --category CONFIGURATION`",
    ErrorCategory.DATA: "the files themselves are bad (corrupt, encrypted, empty, unsupported); fix or replace them, "
                        "then `legaldoc recover BATCH --category DATA`",
    ErrorCategory.PERMANENT: "an unexpected error: report it with the message; after a fix, `legaldoc recover` re-runs them",
}  # fmt: skip


def retry_delay(category: ErrorCategory, attempt: int, exc: BaseException | None = None, base: float = 2.0,
                cap: float = 600.0) -> float:  # fmt: skip
    """Seconds to wait before attempt `attempt + 1`: exponential with jitter for TRANSIENT (the first
    retry at once, never before an open circuit closes), the server's Retry-After (else exponential) for RATE_LIMIT, linear for RESOURCE."""
    policy = RETRY_POLICIES[category]
    if policy.backoff == "retry-after":
        retry_after = retry_after_of(exc)
        delay = retry_after if retry_after is not None else base * 2**attempt * random.uniform(1.0, 1.5)
    elif policy.backoff == "linear":
        delay = base * 5 * attempt
    elif policy.backoff == "exponential":
        delay = random.uniform(0, base / 4) if attempt <= 1 else base * 2 ** (attempt - 1) * random.uniform(0.5, 1.5)
        delay = max(delay, retry_after_of(exc) or 0.0)  # an open circuit says when it lets a call through
    else:
        delay = 0.0
    return min(delay, cap)
