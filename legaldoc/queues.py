"""Queue names, task names, stage routing and the one translation of priorities.

Users say 0-9 with 9 most urgent (or high/normal/low); kombu's Redis transport serves 0 first.
`broker_priority` is the only place that turns one into the other.
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import StrEnum

from legaldoc.models import Stage


class Queue(StrEnum):
    """Every queue a worker can consume."""

    OCR = "ocr"
    TEXT = "text"
    ENTITY = "entity"
    GRAPH = "graph"
    BATCH_HIGH = "batch.high"
    BATCH_NORMAL = "batch.normal"
    BATCH_LOW = "batch.low"
    CLEANUP = "cleanup"
    DEFAULT = "default"


STAGE_QUEUE: dict[Stage, Queue] = {
    Stage.EXTRACT: Queue.OCR,
    Stage.CHUNK: Queue.TEXT,
    Stage.ENTITIES: Queue.ENTITY,
    Stage.RESOLVE: Queue.ENTITY,
    Stage.RELATE: Queue.GRAPH,
}

# Workers serve queues in this order within one priority level: later stages first, so documents
# already started finish before new ones start (progress moves, memory in flight stays bounded).
CONSUME_ORDER: tuple[Queue, ...] = (
    Queue.BATCH_HIGH, Queue.GRAPH, Queue.ENTITY, Queue.TEXT, Queue.OCR,
    Queue.BATCH_NORMAL, Queue.BATCH_LOW, Queue.CLEANUP, Queue.DEFAULT,
)  # fmt: skip

FINALIZE_TASK = "legaldoc.finalize_batch"
TEXTRACT_POLL_TASK = "legaldoc.textract_poll"  # on the ocr queue: is a Textract job done yet?
SWEEP_TASK = "legaldoc.sweep"
RETENTION_TASK = "legaldoc.retention"

PRIORITY_NAMES: dict[str, int] = {"high": 8, "normal": 5, "low": 2}
DEFAULT_PRIORITY = PRIORITY_NAMES["normal"]
MOST_URGENT = 9
PRIORITY_STEPS = list(range(10))
QUEUE_SEP = ":"


def parse_priority(value: str | int) -> int:
    """A user priority (high/normal/low or 0-9, 9 most urgent) as an int 0-9."""
    if isinstance(value, bool):
        raise ValueError("priority must be high, normal, low or 0-9")
    if isinstance(value, int):
        number = value
    else:
        text = str(value).strip().lower()
        if text in PRIORITY_NAMES:
            return PRIORITY_NAMES[text]
        if not text.isdigit():
            raise ValueError(f"priority must be high, normal, low or 0-9, not {value!r}")
        number = int(text)
    if not 0 <= number <= MOST_URGENT:
        raise ValueError(f"priority must be between 0 and 9 (9 most urgent), not {number}")
    return number


def priority_name(priority: int) -> str:
    """high, normal or low for a user priority; also picks the batch control queue."""
    if priority >= 7:
        return "high"
    return "normal" if priority >= 4 else "low"


def broker_priority(priority: int) -> int:
    """kombu's Redis priority (0 served first) for a user priority (9 most urgent)."""
    return MOST_URGENT - priority


def batch_queue(priority: int) -> Queue:
    return Queue(f"batch.{priority_name(priority)}")


def priority_keys(queue: str, prefix: str) -> list[str]:
    """The Redis lists that hold one queue's messages, most urgent first, under an installation's
    prefix: kombu's names with ``global_keyprefix=prefix``, ``sep=QUEUE_SEP`` and these steps
    (``ocr``, ``ocr:1``, ... become ``legaldoc:ocr``, ``legaldoc:ocr:1``, ...)."""
    return [f"{prefix}{queue}" if step == 0 else f"{prefix}{queue}{QUEUE_SEP}{step}" for step in PRIORITY_STEPS]


def chainable(queues: Iterable[str]) -> frozenset[Stage]:
    """The stages a worker consuming these queues may run right after the stage before them, in the
    same task (every stage but the first whose queue it consumes)."""
    consumed = set(queues)
    return frozenset(stage for stage, queue in STAGE_QUEUE.items() if stage is not Stage.EXTRACT and queue.value in consumed)


def stage_task(stage: Stage) -> str:
    """The task name of a stage, e.g. ``legaldoc.extract``."""
    return f"legaldoc.{stage.value}"
