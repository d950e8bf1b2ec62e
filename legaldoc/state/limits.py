"""Rate limits and circuit breakers whose state lives in Redis, shared by every worker everywhere.

The rate limiter is the `limits` library's moving window over its Redis storage; the circuit
breaker is `pybreaker` over its Redis storage, with a TTL added to every key it writes (the
library sets none). Both live in the ``ratelimit`` database under ``{prefix}ratelimit:``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pybreaker
import redis
from limits import parse
from limits.storage import RedisStorage
from limits.strategies import MovingWindowRateLimiter

from legaldoc.state.keys import Keys


@dataclass(frozen=True)
class Window:
    """Where a limit stands: calls left in the window, and when the next one frees up."""

    remaining: int
    reset_at: float


class SharedRateLimiter:
    """`hit(name, limit)` takes one call of a limit such as ``"20/second"`` or ``"500/minute"``."""

    def __init__(self, client: redis.Redis, keys: Keys) -> None:
        storage = RedisStorage("redis://", connection_pool=client.connection_pool, key_prefix=keys.ratelimit("limits"))
        self.limiter = MovingWindowRateLimiter(storage)

    def hit(self, name: str, limit: str) -> bool:
        return self.limiter.hit(parse(limit), name)

    def window(self, name: str, limit: str) -> Window:
        stats = self.limiter.get_window_stats(parse(limit), name)
        return Window(stats.remaining, stats.reset_time)

    def acquire(self, name: str, limit: str, *, max_wait: float, cost: int = 1) -> float | None:
        """Take one call (or `cost` units, such as tokens; at most the whole limit), waiting up to
        `max_wait` seconds for the window to free them; the seconds waited, or None when the wait
        would be longer (the caller gives up with a RATE_LIMIT)."""
        item = parse(limit)
        cost = max(1, min(cost, item.amount))
        started = time.monotonic()
        while not self.limiter.hit(item, name, cost=cost):
            reset_at = self.limiter.get_window_stats(item, name).reset_time
            pause = max(0.005, reset_at - time.time())
            if time.monotonic() - started + pause > max_wait:
                return None
            time.sleep(min(pause, 1.0))
        return time.monotonic() - started

    def clear(self, name: str, limit: str) -> None:
        self.limiter.clear(parse(limit), name)


class _ExpiringRedisStorage(pybreaker.CircuitRedisStorage):
    """pybreaker's Redis storage with every key given a TTL whenever it is written."""

    FIELDS = ("state", "fail_counter", "success_counter", "opened_at")

    def __init__(self, client: redis.Redis, namespace: str, ttl: float) -> None:
        self._ttl_ms = max(1000, int(ttl * 1000))
        super().__init__(pybreaker.STATE_CLOSED, client, namespace=namespace)

    def _expire(self) -> None:
        try:
            pipe = self._redis.pipeline(transaction=False)
            for field in self.FIELDS:
                pipe.pexpire(self._namespace(field), self._ttl_ms)
            pipe.execute()
        except redis.RedisError:
            self.logger.warning("could not set the TTL of circuit breaker keys")


def _then_expire(write: Callable[..., None]) -> Callable[..., None]:
    def expiring(storage: _ExpiringRedisStorage, *args: Any) -> None:
        write(storage, *args)
        storage._expire()  # noqa: SLF001

    return expiring


# Every method and property setter by which pybreaker writes its keys, followed by a TTL.
_BASE = vars(pybreaker.CircuitRedisStorage)
for _name in ("_initialize_redis_state", "increment_counter", "reset_counter", "increment_success_counter",
              "reset_success_counter"):  # fmt: skip
    setattr(_ExpiringRedisStorage, _name, _then_expire(_BASE[_name]))
for _name in ("state", "opened_at"):
    setattr(_ExpiringRedisStorage, _name, _BASE[_name].setter(_then_expire(_BASE[_name].fset)))

CircuitBreakerError = pybreaker.CircuitBreakerError


def shared_breaker(client: redis.Redis, keys: Keys, name: str, *, fail_max: int, reset_timeout: float,
                   exclude: list | None = None) -> pybreaker.CircuitBreaker:  # fmt: skip
    """A circuit breaker named `name` whose state every process sharing this Redis sees: after
    `fail_max` failures in a row it opens for `reset_timeout` seconds, then lets one call through.
    The call that opens it raises its own error, not CircuitBreakerError."""
    storage = _ExpiringRedisStorage(client, keys.ratelimit(f"breaker:{name}"), ttl=max(3600.0, reset_timeout * 10))
    return pybreaker.CircuitBreaker(fail_max=fail_max, reset_timeout=reset_timeout, state_storage=storage,
                                    name=name, exclude=exclude or [], throw_new_error_on_trip=False)  # fmt: skip


def seconds_until_closed(breaker: pybreaker.CircuitBreaker) -> float:
    """How long an open breaker stays open (0 when it is not open)."""
    opened_at = breaker._state_storage.opened_at  # noqa: SLF001 (pybreaker exposes no public accessor)
    if breaker.current_state != pybreaker.STATE_OPEN or opened_at is None:
        return 0.0
    return max(0.0, (opened_at - datetime.now(UTC)).total_seconds() + breaker.reset_timeout)
