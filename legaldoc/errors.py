"""One error tree; every error carries a category that decides its retry policy."""

from __future__ import annotations

from enum import StrEnum


class ErrorCategory(StrEnum):
    """How a failure is retried (see DESIGN.md, Errors)."""

    TRANSIENT = "TRANSIENT"
    RATE_LIMIT = "RATE_LIMIT"
    RESOURCE = "RESOURCE"
    CONFIGURATION = "CONFIGURATION"
    DATA = "DATA"
    PERMANENT = "PERMANENT"

    @property
    def retryable(self) -> bool:
        return self in (ErrorCategory.TRANSIENT, ErrorCategory.RATE_LIMIT, ErrorCategory.RESOURCE)


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


class ServiceUnavailable(LegaldocError):
    """Raised when the database or Redis cannot be reached."""

    category = ErrorCategory.TRANSIENT


_REGISTERED: dict[type[BaseException], ErrorCategory] = {}


def register_category(exc_type: type[BaseException], category: ErrorCategory) -> None:
    """Teach `categorize` an exception of an outer layer (a Celery time limit, a driver error)."""
    _REGISTERED[exc_type] = category


def categorize(exc: BaseException) -> ErrorCategory:
    """Map any exception to one of the six categories."""
    if isinstance(exc, LegaldocError):
        return exc.category
    for exc_type, category in _REGISTERED.items():
        if isinstance(exc, exc_type):
            return category
    if isinstance(exc, MemoryError):
        return ErrorCategory.RESOURCE
    if isinstance(exc, TimeoutError | ConnectionError):
        return ErrorCategory.TRANSIENT
    if isinstance(exc, FileNotFoundError | IsADirectoryError | UnicodeError):
        return ErrorCategory.DATA
    if isinstance(exc, PermissionError):
        return ErrorCategory.CONFIGURATION
    return ErrorCategory.PERMANENT


def retry_delay(category: ErrorCategory, attempt: int, exc: BaseException | None = None, base: float = 2.0) -> float:
    """Seconds to wait before attempt `attempt + 1`: exponential with jitter for TRANSIENT, the
    server's Retry-After (or exponential) for RATE_LIMIT, linear for RESOURCE."""
    import random

    if category is ErrorCategory.RATE_LIMIT:
        retry_after = getattr(exc, "retry_after", None)
        if retry_after:
            return float(retry_after)
        return base * 2**attempt * random.uniform(1.0, 1.5)
    if category is ErrorCategory.RESOURCE:
        return base * 5 * attempt
    if attempt <= 1:
        return random.uniform(0, base / 4)
    return base * 2 ** (attempt - 1) * random.uniform(0.5, 1.5)
