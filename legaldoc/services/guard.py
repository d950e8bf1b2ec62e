"""Every call to a remote provider goes through a `ProviderGuard`: the provider's shared rate limit
first, then its shared circuit breaker. Both live in Redis, so all workers on all machines see the
same budget and the same open circuit.

A call that cannot get a slot within `rate_limit_max_wait` fails as RATE_LIMIT (retried after the
window frees up); a call to an open circuit fails as TRANSIENT without reaching the provider
(retried once the circuit lets a trial call through). Only failures that say the service is in
trouble (TRANSIENT, RATE_LIMIT) count towards opening the circuit; a bad document does not.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TypeVar

from legaldoc.config import Settings
from legaldoc.errors import CircuitOpen, ErrorCategory, RateLimitError, categorize
from legaldoc.state.connection import client
from legaldoc.state.keys import Keys
from legaldoc.state.limits import (
    CircuitBreakerError,
    SharedRateLimiter,
    seconds_until_closed,
    shared_breaker,
)

T = TypeVar("T")
log = logging.getLogger("legaldoc.guard")

TRIPPING = frozenset({ErrorCategory.TRANSIENT, ErrorCategory.RATE_LIMIT})


def _not_service_trouble(exc: BaseException) -> bool:
    return categorize(exc) not in TRIPPING


class ProviderGuard:
    """The shared rate limit and circuit breaker of one remote provider (``textract``, ``openai``)."""

    def __init__(self, name: str, settings: Settings, *, limit: str | None = None) -> None:
        redis_client = client(settings.redis_url_for("ratelimit"))
        keys = Keys(settings.redis_prefix)
        self.name = name
        self.limit = limit or settings.provider_rate_limit
        self.max_wait = settings.rate_limit_max_wait
        self.limiter = SharedRateLimiter(redis_client, keys)
        self.breaker = shared_breaker(redis_client, keys, name, fail_max=settings.breaker_fail_max,
                                      reset_timeout=settings.breaker_reset_timeout, exclude=[_not_service_trouble])  # fmt: skip

    def call(self, function: Callable[..., T], *args: object, **kwargs: object) -> T:
        waited = self.limiter.acquire(self.name, self.limit, max_wait=self.max_wait)
        if waited is None:
            window = self.limiter.window(self.name, self.limit)
            raise RateLimitError(
                f"{self.name}: the shared rate limit of {self.limit} stayed used up for {self.max_wait:.0f}s",
                retry_after=max(0.0, window.reset_at - time.time()),
                hint="lower worker concurrency or raise LEGALDOC_PROVIDER_RATE_LIMIT if the provider allows",
            )
        if waited > 1:
            log.info("%s: waited %.1fs for the shared rate limit", self.name, waited)
        try:
            return self.breaker.call(function, *args, **kwargs)
        except CircuitBreakerError:
            remaining = seconds_until_closed(self.breaker)
            raise CircuitOpen(
                f"{self.name} failed {self.breaker.fail_max} times in a row; its circuit is open for {remaining:.0f}s more",
                retry_after=remaining, hint="calls resume by themselves; check the provider's status page",
            ) from None

    @property
    def state(self) -> str:
        return self.breaker.current_state
