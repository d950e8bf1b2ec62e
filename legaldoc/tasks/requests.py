"""The Celery request of legaldoc's stage tasks: a pool process that died running a stage counts as
an attempt of that stage.

Celery reports a pool process that died (a segfault, SIGKILL by the OOM killer) as WorkerLostError
in the worker's main process; with `task_reject_on_worker_lost` it would put the message back at
the end of its queue, to run the same attempt again: a document that crashes its process every
time would loop forever, killing workers. Here the main process records the lost attempt first
(`services.crashes.record_crash`: the next attempt at the front of its queue, or the document failed
for good) and acks the message. When that cannot be recorded (the database does not answer, the
stage had already moved on), Celery's own handling stands: the message goes back and the claim-time
rule counts the attempt when it comes round again.
"""

from __future__ import annotations

import logging
from typing import Any

from billiard.einfo import ExceptionWithTraceback
from celery.exceptions import WorkerLostError
from celery.worker.request import Request

from legaldoc.config import Settings
from legaldoc.models import Stage
from legaldoc.services.crashes import Crash, cause_of, holder_of, record_task_crash
from legaldoc.tasks import stats
from legaldoc.tasks.runtime import main_runtime

log = logging.getLogger("legaldoc.worker")


class StageRequest(Request):
    def on_failure(self, exc_info: Any, send_failed_event: bool = True, return_ok: bool = False) -> Any:
        exc = exc_info.exception
        if isinstance(exc, ExceptionWithTraceback):
            exc = exc.exc
        if isinstance(exc, WorkerLostError) and not self.acknowledged:
            try:
                recorded = self._record_crash(str(exc))
            except Exception:  # never let the worker's main process fail: Celery requeues as before
                log.warning("could not record the crash of task %s", self.id, exc_info=True)
                recorded = False
            if recorded:
                stats.count_failure()
                self.acknowledge()  # Celery's reject(requeue=True) below does nothing for an acked message
        return super().on_failure(exc_info, send_failed_event=send_failed_event, return_ok=return_ok)

    def _record_crash(self, text: str) -> bool:
        document_id, stage, attempt, *stamp = self.args
        settings: Settings = self.task.app.legaldoc_settings
        rt = main_runtime(settings)
        if stamp and stamp[0] != rt.database.identity:
            return False  # another database's message: it ran nothing here
        holder = holder_of(self.worker_pid) if self.worker_pid else None
        crash = Crash(int(document_id), Stage(stage), int(attempt), holder=holder, cause=cause_of(text),
                      worker=self.hostname)  # fmt: skip
        return record_task_crash(settings, rt.database, rt.mirror, rt.broker, crash) is not None
