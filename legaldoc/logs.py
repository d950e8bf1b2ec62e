"""Logging of every legaldoc process: text or JSON lines, on stderr or in a worker's own file.

Records carry the ids of the work they are about (`log_context`: batch, document, stage, attempt,
...), never a document's text or a secret: messages name documents by id and hash prefix. A
detached worker writes its log itself, rotated by size: its main process rotates, its pool
processes follow the rename (a watched file reopens when its inode changes).
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import logging.handlers
import os
import sys
from collections.abc import Iterator
from contextvars import ContextVar
from enum import StrEnum
from pathlib import Path
from typing import Any, TextIO

from legaldoc.moments import iso

LOG_FILE_MODE = 0o640  # a log-shipper's group may read worker logs; others may not
LOG_FOLDER_MODE = 0o750


class LogFormat(StrEnum):
    TEXT = "text"
    JSON = "json"


LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")

# The fields a record may carry besides its message, in the order JSON lines and text suffixes show them.
CONTEXT_FIELDS = ("batch_id", "document_id", "stage", "attempt", "category", "duration", "worker", "task_id")

_context: ContextVar[dict[str, Any]] = ContextVar("legaldoc_log_context", default={})  # noqa: B039


@contextlib.contextmanager
def log_context(**fields: Any) -> Iterator[None]:
    """Every record logged inside carries these fields (ids only; None values are left out)."""
    token = _context.set({**_context.get(), **{k: v for k, v in fields.items() if v is not None}})
    try:
        yield
    finally:
        _context.reset(token)


def bind_log_context(**fields: Any) -> None:
    """Add fields to the current `log_context` (until that context ends)."""
    _context.set({**_context.get(), **{k: v for k, v in fields.items() if v is not None}})


class ContextFilter(logging.Filter):
    """Copies the current `log_context` onto each record (fields given by `extra=` win)."""

    def filter(self, record: logging.LogRecord) -> bool:
        for name, value in _context.get().items():
            if not hasattr(record, name):
                setattr(record, name, value)
        return True


def _fields(record: logging.LogRecord) -> dict[str, Any]:
    return {name: value for name in CONTEXT_FIELDS if (value := getattr(record, name, None)) is not None}


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, message, the context fields, and the error."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {"ts": iso(record.created), "level": record.levelname.lower(), "logger": record.name,
                                 "message": record.getMessage(), **_fields(record)}  # fmt: skip
        if record.exc_info and record.exc_info[1] is not None:
            entry["error"] = type(record.exc_info[1]).__name__
            entry["traceback"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    """`2026-12-02 21:40:01,123 WARNING legaldoc.stages: message [batch_id=... document_id=...]`."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        fields = _fields(record)
        if not fields:
            return text
        suffix = " [" + " ".join(f"{name}={value}" for name, value in fields.items()) + "]"
        head, newline, rest = text.partition("\n")  # keep a traceback below the line it belongs to
        return head + suffix + newline + rest


def _open_private(path: Path) -> io.TextIOWrapper:
    descriptor = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, LOG_FILE_MODE)
    os.fchmod(descriptor, LOG_FILE_MODE)
    return os.fdopen(descriptor, "a", encoding="utf-8")


class WorkerLogHandler(logging.handlers.WatchedFileHandler):
    """Appends to `path`; the process that created it rotates the file past `max_bytes` into
    `path.1` ... `path.N`, and every process (forked pool children included) reopens the file when
    it was renamed under it. `max_bytes` 0 never rotates."""

    def __init__(self, path: Path, max_bytes: int, backups: int) -> None:
        path.parent.mkdir(parents=True, exist_ok=True, mode=LOG_FOLDER_MODE)
        self.max_bytes = max_bytes
        self.backups = max(backups, 1)
        self.rotator = os.getpid()
        super().__init__(path, encoding="utf-8")

    def _open(self) -> io.TextIOWrapper:
        return _open_private(Path(self.baseFilename))

    def emit(self, record: logging.LogRecord) -> None:
        super().emit(record)
        self.rotate_if_needed()

    def rotate_if_needed(self) -> bool:
        """Rotate when the file is past its size (only in the process that owns rotation)."""
        if not self.max_bytes or os.getpid() != self.rotator:
            return False
        try:
            if os.stat(self.baseFilename).st_size < self.max_bytes:
                return False
        except FileNotFoundError:
            return False
        with self.lock or contextlib.nullcontext():
            base = self.baseFilename
            for number in range(self.backups - 1, 0, -1):
                with contextlib.suppress(FileNotFoundError):
                    os.replace(f"{base}.{number}", f"{base}.{number + 1}")
            with contextlib.suppress(FileNotFoundError):
                os.replace(base, f"{base}.1")
            if self.stream is not None:
                self.stream.close()
            self.stream = self._open()
            self._statstream()
        return True


_OURS = "_legaldoc_handler"


def configure(level: str | int = "WARNING", log_format: LogFormat | str = LogFormat.TEXT, *, file: Path | None = None,
              max_bytes: int = 0, backups: int = 5, stream: TextIO | None = None) -> logging.Handler:  # fmt: skip
    """Send the root logger's records at `level` and above to stderr (or `file`) in `log_format`.
    Calling it again replaces the handler it installed before; other handlers are left alone."""
    root = logging.getLogger()
    for old in list(root.handlers):
        if getattr(old, _OURS, False):
            root.removeHandler(old)
            old.close()
    handler: logging.Handler
    if file is not None:
        handler = WorkerLogHandler(file, max_bytes, backups)
    else:
        handler = logging.StreamHandler(stream or sys.stderr)
    setattr(handler, _OURS, True)
    handler.addFilter(ContextFilter())
    handler.setFormatter(JsonFormatter() if LogFormat(log_format) is LogFormat.JSON else TextFormatter())
    root.addHandler(handler)
    root.setLevel(level.upper() if isinstance(level, str) else level)
    logging.captureWarnings(True)
    return handler


def verbosity(verbose: int, quiet: bool, default: str = "WARNING") -> str:
    """The level `-v` (INFO), `-vv` (DEBUG) or `-q` (ERROR) asks for; else `default`."""
    if quiet:
        return "ERROR"
    if verbose >= 2:
        return "DEBUG"
    if verbose == 1:
        return "INFO"
    return default
