"""This worker process's `Runtime`, built once per process (and again after a fork).

The worker's main process builds its own first, unpooled (`main_runtime`): it forks the pool
processes, so it must hold no database connection a child could inherit; it writes only when a pool
process died (`tasks.requests`)."""

from __future__ import annotations

import os

from legaldoc.config import Settings
from legaldoc.services.wiring import Runtime

_current: tuple[int, Runtime] | None = None


def runtime(settings: Settings) -> Runtime:
    """This process's runtime, created on first use."""
    global _current
    if _current is None or _current[0] != os.getpid():
        _current = (os.getpid(), Runtime(settings))
    return _current[1]


def main_runtime(settings: Settings) -> Runtime:
    """The runtime of a worker's main process: a database connection per session, none kept."""
    global _current
    if _current is None or _current[0] != os.getpid():
        _current = (os.getpid(), Runtime(settings, pooled=False))
    return _current[1]
