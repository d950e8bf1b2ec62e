"""The one place that turns Settings into what the use cases talk to: the database, the Redis
clients of each role, the batch state mirror, the broker, locks, the worker registry, the
result cache and the stage runner. Commands, screens and worker processes each build one
`Runtime`; every part is made on first use, so a command that never touches Redis never connects.
"""

from __future__ import annotations

import logging
import time
from functools import cached_property
from typing import TYPE_CHECKING

import redis

from legaldoc.config import Settings, masked
from legaldoc.errors import ServiceUnavailable
from legaldoc.state.batches import BatchState
from legaldoc.state.broker import Broker
from legaldoc.state.cache import ResultCache
from legaldoc.state.connection import client, explain
from legaldoc.state.keys import Keys
from legaldoc.state.locks import Lock
from legaldoc.state.workers import WorkerRegistry
from legaldoc.storage.db import Database

if TYPE_CHECKING:
    from legaldoc.services.stages import StageRunner

log = logging.getLogger("legaldoc.runtime")


class Runtime:
    """Everything one process talks to, built once from its Settings.

    `interactive` clients time out within seconds (a screen notices a lost server at once); the
    default ones wait longer, as workers and batch commands should. A worker's main process is not
    `pooled`: it forks pool processes, so it keeps no database connection between its sessions.
    """

    def __init__(self, settings: Settings, *, interactive: bool = False, pooled: bool = True) -> None:
        self.settings = settings
        self.pooled = pooled  # False: no database connection outlives a session (a process that forks)
        self.keys = Keys(settings.redis_prefix)
        self.interactive = interactive
        self._mirror_checked: float | None = None
        self._mirror_up = False

    def client(self, role: str) -> redis.Redis:
        """The Redis client of a role: broker, result, cache, ratelimit or state."""
        return client(self.settings.redis_url_for(role), interactive=self.interactive)

    def where(self, role: str = "state") -> str:
        """The Redis of a role, safe to show (no password)."""
        return masked(self.settings.redis_url_for(role))

    @cached_property
    def database(self) -> Database:
        return Database(self.settings.resolved_database_url, pooled=self.pooled)

    @cached_property
    def state(self) -> BatchState:
        return BatchState(self.client("state"), self.keys,
                          retention_seconds=int(self.settings.batch_retention_days * 86400))  # fmt: skip

    @cached_property
    def broker(self) -> Broker:
        return Broker(self.client("broker"), self.keys, database=lambda: self.database.identity)

    @cached_property
    def lock(self) -> Lock:
        return Lock(self.client("state"), self.keys)

    @cached_property
    def registry(self) -> WorkerRegistry:
        return WorkerRegistry(self.client("state"), self.keys, purge_after=self.settings.worker_purge_after)

    @cached_property
    def cache(self) -> ResultCache:
        return ResultCache(self.client("cache"), self.keys, ttl_seconds=self.settings.cache_ttl_days * 86400,
                           compress_above=self.settings.cache_compress_above)  # fmt: skip

    @cached_property
    def runner(self) -> StageRunner:
        from legaldoc.services.stages import StageRunner

        return StageRunner(self.settings, self.database, mirror=self.state, broker=self.broker, cache=self.cache)

    def open_database(self) -> Runtime:
        """Open (and migrate) the database now, so a broken one fails before any work starts."""
        _ = self.database
        return self

    def require(self, *roles: str) -> Runtime:
        """Check that the Redis of each role answers; ServiceUnavailable naming it otherwise."""
        for role in roles or ("state", "broker"):
            try:
                self.client(role).ping()
            except redis.RedisError as exc:
                message, hint = explain(exc, self.where(role))
                raise ServiceUnavailable(message, hint=hint) from None
        return self

    @property
    def mirror(self) -> BatchState | None:
        """The live state when its Redis answers, else None: reads fall back to the database, which
        holds everything the mirror does. A Redis that did not answer is asked again 10 s later."""
        if self._mirror_checked is None or (not self._mirror_up and time.monotonic() - self._mirror_checked > 10):
            self._mirror_checked = time.monotonic()
            try:
                self._mirror_up = self.require("state") is self
            except ServiceUnavailable as error:
                log.info("%s; reading the database alone", error.message)
                self._mirror_up = False
        return self.state if self._mirror_up else None
