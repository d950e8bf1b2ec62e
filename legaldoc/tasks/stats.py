"""Counters a worker's pool processes share with its main process (forked shared memory)."""

from __future__ import annotations

import multiprocessing
from multiprocessing.sharedctypes import Synchronized

_failed: Synchronized | None = None


def create() -> None:
    """Called in the worker's main process before the pool forks."""
    global _failed
    _failed = multiprocessing.Value("q", 0)


def count_failure() -> None:
    if _failed is not None:
        with _failed.get_lock():
            _failed.value += 1


def failures() -> int:
    return int(_failed.value) if _failed is not None else 0
