"""The Celery app, built from Settings by `create_app` (nothing happens at import).

Queues, routing, priorities and time limits: docs/ARCHITECTURE.md. Tasks are thin: ids in, one
service call, no pipeline logic. Messages are JSON only; results are not stored (state lives in the
database and its Redis mirror), so the result backend only serves tools that expect one.
"""

from __future__ import annotations

import time
from dataclasses import asdict
from urllib.parse import parse_qsl, urlsplit

from celery import Celery, Task, signals
from celery.exceptions import Retry, SoftTimeLimitExceeded, TimeLimitExceeded, WorkerLostError
from kombu import Queue as KombuQueue

from legaldoc.config import Settings, redis_tls
from legaldoc.errors import ErrorCategory, register_category
from legaldoc.lifecycle import FAILURES, AttemptOutcome
from legaldoc.models import STAGES, Stage
from legaldoc.queues import (
    CONSUME_ORDER,
    DEFAULT_PRIORITY,
    FINALIZE_TASK,
    PRIORITY_NAMES,
    PRIORITY_STEPS,
    QUEUE_SEP,
    RETENTION_TASK,
    STAGE_QUEUE,
    SWEEP_TASK,
    TEXTRACT_POLL_TASK,
    Queue,
    batch_queue,
    broker_priority,
    chainable,
    stage_task,
)
from legaldoc.services import batches, textract
from legaldoc.services.stages import Chain, StageOutcome
from legaldoc.state.broker import Lineage
from legaldoc.tasks import stats
from legaldoc.tasks.runtime import runtime

RAN = frozenset({AttemptOutcome.DONE, AttemptOutcome.SKIPPED, AttemptOutcome.CACHED, AttemptOutcome.WAITING,
                 AttemptOutcome.CANCELLED, *FAILURES})  # a stage attempt that ran (not a stale or duplicate message)  # fmt: skip

register_category(SoftTimeLimitExceeded, ErrorCategory.RESOURCE)
register_category(TimeLimitExceeded, ErrorCategory.RESOURCE)
register_category(WorkerLostError, ErrorCategory.RESOURCE)


class StageFailed(Exception):
    """A stage attempt failed, everything recorded: raised last so Celery's own tools see the task as
    FAILURE (failed for good) or, inside a `Retry`, RETRY. It is in the stage tasks' ``throws``, so
    the worker logs it on one line, without a traceback."""

    def __init__(self, category: str, message: str) -> None:
        super().__init__(category, message)  # the args rebuild it from a pickle (pool process -> worker)
        self.category, self.message = category, message

    def __str__(self) -> str:
        return f"{self.category}: {self.message}"


def celery_state(outcome: StageOutcome) -> str:
    """The task's return value, or the exception that gives it Celery's FAILURE or RETRY state. Our
    broker has already published the next attempt, so a bare `Retry` (not `task.retry()`): Celery's
    tracer marks the task RETRY and the worker sends ``task-retried``, publishing nothing itself."""
    if outcome.status not in FAILURES:
        return outcome.status.value
    error = StageFailed(outcome.error.category.value, outcome.error.message) if outcome.error else StageFailed("", "")
    if outcome.status is AttemptOutcome.RETRY:
        raise Retry(exc=error, when=round(outcome.retry_in or 0, 3))
    raise error


def kombu_url(url: str) -> str:
    """kombu's and Celery's spelling of a Redis URL (unix sockets become ``redis+socket://``)."""
    parts = urlsplit(url)
    if parts.scheme != "unix":
        return url
    db = dict(parse_qsl(parts.query)).get("db", "0")
    return f"redis+socket://{parts.path}?virtual_host={db}"


def visibility_timeout(settings: Settings) -> int:
    """Above every hard time limit, so the broker never redelivers a task that is still running."""
    return int(max(settings.time_limit(q.value) for q in Queue) * 1.25 + 60)


def create_app(settings: Settings) -> Celery:
    """A Celery app for these settings, with every legaldoc task registered."""
    app = Celery("legaldoc", set_as_current=False)
    # global_keyprefix: every key and pub/sub channel kombu uses (queue lists, bindings, unacked,
    # remote control and events) is under the installation's prefix, as `Keys.queue_lists` names them.
    transport = {"priority_steps": PRIORITY_STEPS, "sep": QUEUE_SEP, "queue_order_strategy": "priority",
                 "visibility_timeout": visibility_timeout(settings), "global_keyprefix": settings.redis_prefix}  # fmt: skip
    app.conf.update(
        broker_url=kombu_url(settings.redis_url_for("broker")),
        result_backend=kombu_url(settings.redis_url_for("result")),
        broker_transport_options=transport,
        result_backend_transport_options={"visibility_timeout": visibility_timeout(settings),
                                          "global_keyprefix": settings.redis_prefix},
        broker_use_ssl=redis_tls(settings.redis_url_for("broker")),
        redis_backend_use_ssl=redis_tls(settings.redis_url_for("result")),
        broker_connection_retry_on_startup=True,
        task_serializer="json",
        result_serializer="json",
        event_serializer="json",
        accept_content=["json"],
        result_accept_content=["json"],
        task_ignore_result=True,
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_queues=[KombuQueue(q.value, routing_key=q.value) for q in CONSUME_ORDER],
        task_default_queue=Queue.DEFAULT.value,
        task_default_priority=broker_priority(PRIORITY_NAMES["normal"]),
        task_routes={stage_task(s): {"queue": STAGE_QUEUE[s].value} for s in STAGES},
        worker_send_task_events=settings.worker_task_events,
        task_send_sent_event=settings.worker_task_events,
        worker_max_tasks_per_child=settings.worker_max_tasks_per_child,
        worker_max_memory_per_child=settings.worker_max_memory_mb * 1024,
        worker_hijack_root_logger=False,
        worker_soft_shutdown_timeout=settings.worker_shutdown_timeout,
        worker_enable_soft_shutdown_on_idle=True,
    )
    app.legaldoc_settings = settings
    _register(app, settings)
    return app


def _limits(settings: Settings, queue: str) -> dict[str, float]:
    return {"time_limit": settings.time_limit(queue), "soft_time_limit": settings.soft_time_limit(queue)}


def _register(app: Celery, settings: Settings) -> None:
    for stage in STAGES:
        _register_stage(app, settings, stage)

    @app.task(name=FINALIZE_TASK, queue=batch_queue(DEFAULT_PRIORITY).value, **_limits(settings, "control"))
    def finalize_batch(batch_id: str) -> str:
        return batches.finalize_batch(runtime(settings), batch_id).status.value

    @app.task(name=TEXTRACT_POLL_TASK, queue=Queue.OCR.value, **_limits(settings, "control"))
    def textract_poll(document_id: int, attempt: int, number: int, database: str | None = None) -> str:
        rt = runtime(settings)
        if database and database != rt.database.identity:
            return "foreign"
        return textract.poll(settings, rt.database, rt.broker, document_id, attempt, number).value

    @app.task(name=SWEEP_TASK, queue=Queue.CLEANUP.value, **_limits(settings, "control"))
    def sweep() -> dict[str, int]:
        return asdict(batches.sweep(runtime(settings)))

    @app.task(name=RETENTION_TASK, queue=Queue.CLEANUP.value, **_limits(settings, "control"))
    def retention() -> int:
        return batches.retention(runtime(settings))


def chain(app: Celery, settings: Settings, queue: str) -> Chain | None:
    """The next stages a stage task may run itself: in a worker (`legaldoc_queues`, the queues it
    consumes, set by its main process) with ``worker_chain_stages`` on, while it sends no task
    events: a monitor that has them on (Flower turns them on) sees every stage as its own task."""
    queues = getattr(app, "legaldoc_queues", None)
    if not queues or not settings.worker_chain_stages or stats.task_events():
        return None
    stages = chainable(queues)
    if not stages:  # e.g. a worker of the ocr queue alone: nothing to chain, nothing to ask Redis
        return None
    stage_queues = frozenset(q.value for q in STAGE_QUEUE.values()) & queues
    return Chain(stages, time.monotonic() + settings.soft_time_limit(queue), stage_queues)


def _register_stage(app: Celery, settings: Settings, stage: Stage) -> None:
    queue = STAGE_QUEUE[stage].value

    def run_stage(task: Task, document_id: int, stage_name: str, attempt: int, database: str | None = None) -> str:
        rt = runtime(settings)
        if database and database != rt.database.identity:
            return batches.refuse_foreign(rt, document_id, Stage(stage_name), database).value
        request = task.request
        parent = Lineage(request.id, request.root_id or request.id) if request.id else None
        outcome = rt.runner.execute(document_id, Stage(stage_name), attempt, parent, chain(app, settings, queue))
        ended = outcome.chained()
        stats.count_chained(sum(1 for each in ended[1:] if each.status in RAN))
        for each in ended:
            if each.status in FAILURES:
                stats.count_failure()
        return celery_state(outcome)  # the task's own stage; a chained one's failure has its own retry message

    run_stage.__name__ = run_stage.__qualname__ = f"run_{stage.value}"
    app.task(name=stage_task(stage), queue=queue, bind=True, throws=(StageFailed,),
             Request="legaldoc.tasks.requests:StageRequest", **_limits(settings, queue))(run_stage)  # fmt: skip


@signals.worker_process_init.connect
def _fresh_connections_after_fork(**_: object) -> None:
    """A forked pool process builds its own engines (the parent never opens the database)."""
    from legaldoc.storage.db import get_engine

    get_engine.cache_clear()
