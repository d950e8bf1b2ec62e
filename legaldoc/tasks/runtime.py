"""This worker process's `Runtime`, built once per process (and again after a fork)."""

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
