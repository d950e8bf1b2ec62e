"""Counters and flags a worker's pool processes share with its main process (forked shared memory)."""

from __future__ import annotations

import multiprocessing
from multiprocessing.sharedctypes import Synchronized

_failed: Synchronized | None = None
_chained: Synchronized | None = None
_task_events: Synchronized | None = None


def create(*, task_events: bool) -> None:
    """Called in the worker's main process before the pool forks."""
    global _failed, _chained, _task_events
    _failed = multiprocessing.Value("q", 0)
    _chained = multiprocessing.Value("q", 0)
    _task_events = multiprocessing.Value("b", int(task_events))


def count_failure() -> None:
    if _failed is not None:
        with _failed.get_lock():
            _failed.value += 1


def failures() -> int:
    return int(_failed.value) if _failed is not None else 0


def count_chained(stages: int) -> None:
    """Stages a task ran after its own (`services.stages.Chain`): each counts as one more processed."""
    if _chained is not None and stages:
        with _chained.get_lock():
            _chained.value += stages


def chained() -> int:
    return int(_chained.value) if _chained is not None else 0


def set_task_events(on: bool) -> None:
    """The main process says whether it sends Celery's task events now (a monitor may turn them on
    or off with the `enable_events` and `disable_events` control commands)."""
    if _task_events is not None:
        _task_events.value = int(on)


def task_events() -> bool:
    """Whether this worker sends Celery's task events (True outside a worker: nothing is known)."""
    return bool(_task_events.value) if _task_events is not None else True
