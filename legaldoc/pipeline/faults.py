"""A test-only entity provider that fails the first N attempts of each document with a chosen error.

Selected with ``LEGALDOC_ENTITY_PROVIDER=failing``; it drives every error category through its retry
policy on real workers. With ``failing_signal`` it kills its own process instead (SIGKILL, or a real
segfault), and with ``failing_match`` only texts containing that string fail: a poison document. Attempts are counted per document text in files under the data folder, so
every process and every machine sharing that folder agrees on the count.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import signal as signals
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from legaldoc.errors import ConfigurationError, DataError
from legaldoc.models import Mention
from legaldoc.pipeline.entities import EntityProvider


class InjectedHttpError(Exception):
    """What an HTTP client raises for an error status: a status code and the response headers."""

    def __init__(self, message: str, status_code: int, headers: dict[str, str]) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.headers = headers


def injected_error(category: str, count: int, retry_after: float) -> BaseException:
    """An exception of the kind a real dependency raises for `category` (plain types on purpose, so
    the classifier, not the provider, decides the category)."""
    text = f"injected {category} failure, attempt {count}"
    if category == "TRANSIENT":
        return ConnectionResetError(104, f"{text}: connection reset by peer")
    if category == "RATE_LIMIT":
        return InjectedHttpError(f"{text}: 429 Too Many Requests", 429, {"Retry-After": f"{retry_after:g}"})
    if category == "RESOURCE":
        return MemoryError(f"{text}: out of memory")
    if category == "CONFIGURATION":
        return ConfigurationError(f"{text}: no API key configured", hint="set the provider's credentials")
    if category == "DATA":
        return DataError(f"{text}: the document cannot be read")
    return ValueError(f"{text}: unexpected value")


class FailingEntityProvider:
    """Fails the first `failures` calls per document text, then answers like `inner`."""

    name = "failing"

    def __init__(self, inner: EntityProvider, category: str, failures: int, retry_after: float, folder: Path, *,
                 match: str | None = None, signal: str | None = None) -> None:  # fmt: skip
        self.inner = inner
        self.category = category
        self.failures = failures
        self.retry_after = retry_after
        self.folder = folder
        self.match = match
        self.signal = signal

    def calls(self, text: str) -> int:
        """Count this call for the text and return the count (an O_APPEND byte per call)."""
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self.folder / hashlib.sha256(text.encode()).hexdigest()[:24]
        descriptor = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(descriptor, b"x")
        finally:
            os.close(descriptor)
        return path.stat().st_size

    def extract(self, text: str, record: Mapping[str, Any] | None = None) -> list[Mention]:
        if self.match is not None and self.match not in text:
            return self.inner.extract(text, record)
        count = self.calls(text)  # counted before a crash, so the next process sees it
        if count <= self.failures:
            if self.signal is not None:
                crash(self.signal)
            raise injected_error(self.category, count, self.retry_after)
        return self.inner.extract(text, record)


def crash(signal: str) -> None:
    """Kill this process as a crashing native library or the OOM killer would: no Python cleanup runs."""
    if signal == "SIGSEGV":
        ctypes.string_at(0)  # a real segfault: a read of address 0
    os.kill(os.getpid(), getattr(signals, signal))
