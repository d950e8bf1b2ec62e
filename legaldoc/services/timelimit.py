"""Stage time limits for stages run in this process (`legaldoc process`): the soft limit a worker's
task has, enforced with SIGALRM in the main thread, failing the stage as RESOURCE like a worker's."""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

from legaldoc.config import Settings, time_limit_setting
from legaldoc.errors import StageTimeout
from legaldoc.models import Stage
from legaldoc.queues import STAGE_QUEUE


class StageTimeLimitExceeded(StageTimeout):
    """Raised in a stage of `legaldoc process` that ran past the soft time limit of its queue."""


def can_limit() -> bool:
    """Time limits need SIGALRM, and are armed only from the main thread (signals run there)."""
    return hasattr(signal, "setitimer") and threading.current_thread() is threading.main_thread()


@contextmanager
def stage_time_limit(settings: Settings, stage: Stage, source: str | None) -> Iterator[None]:
    """Run the block under the stage's soft time limit; past it, StageTimeLimitExceeded is raised in
    the block (a long regex, a long loop: Python code is interrupted between its steps)."""
    if not can_limit():
        yield
        return
    queue = STAGE_QUEUE[stage].value
    seconds = settings.soft_time_limit(queue)
    setting = time_limit_setting(queue)

    def expired(signum: int, frame: FrameType | None) -> None:
        raise StageTimeLimitExceeded(
            f"{source or 'the document'}: the {stage.value} stage ran past its time limit of {seconds:.0f}s",
            hint=f"raise LEGALDOC_{setting.upper()} (the limit is 90% of it), or split the document",
        )

    previous = signal.signal(signal.SIGALRM, expired)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
