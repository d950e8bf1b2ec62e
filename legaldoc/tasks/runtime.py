"""What a worker process needs to run tasks, built once per process (and again after a fork)."""

from __future__ import annotations

import os
from dataclasses import dataclass

from legaldoc.config import Settings
from legaldoc.services.caching import result_cache
from legaldoc.services.stages import StageRunner
from legaldoc.state.batches import BatchState
from legaldoc.state.broker import Broker
from legaldoc.state.connection import client_for
from legaldoc.state.keys import Keys
from legaldoc.storage.db import Database


@dataclass
class Runtime:
    database: Database
    state: BatchState
    broker: Broker
    runner: StageRunner


_current: tuple[int, Runtime] | None = None


def build_runtime(settings: Settings) -> Runtime:
    database = Database(settings.resolved_database_url)
    keys = Keys(settings.redis_prefix)
    state = BatchState(client_for(settings, "state"), keys, retention_seconds=int(settings.batch_retention_days * 86400))
    broker = Broker(client_for(settings, "broker"))
    runner = StageRunner(settings, database, mirror=state, broker=broker, cache=result_cache(settings))
    return Runtime(database, state, broker, runner)


def runtime(settings: Settings) -> Runtime:
    """This process's runtime, created on first use."""
    global _current
    if _current is None or _current[0] != os.getpid():
        _current = (os.getpid(), build_runtime(settings))
    return _current[1]
