"""Every call to a remote provider goes through a `ProviderGuard`: the provider's shared rate limit
first, then its shared circuit breaker. Both live in Redis, so all workers on all machines see the
same budget and the same open circuit.

A call that cannot get a slot within `rate_limit_max_wait` fails as RATE_LIMIT (retried after the
window frees up); a call to an open circuit fails as TRANSIENT without reaching the provider
(retried once the circuit lets a trial call through). Only failures that say the service is in
trouble (TRANSIENT, RATE_LIMIT) count towards opening the circuit; a bad document does not.

A provider may also have a shared token limit (`token_limit`), taken by the `tokens` a call
says it will spend. A CONFIGURATION failure (a refused key, no quota, an unknown model) *halts*
the provider's `scope` (its endpoint, key and model) for `breaker_reset_timeout` seconds: every
call of every worker fails at once with the same message, without reaching the provider.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TypeVar

from legaldoc.config import Settings
from legaldoc.errors import (
    CircuitOpen,
    ConfigurationError,
    ErrorCategory,
    RateLimitError,
    categorize,
)
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

    def __init__(self, name: str, settings: Settings, *, limit: str | None = None, token_limit: str | None = None,
                 scope: str = "") -> None:  # fmt: skip
        redis_client = client(settings.redis_url_for("ratelimit"))
        keys = Keys(settings.redis_prefix)
        self.name = name
        self.limit = limit or settings.provider_rate_limit
        self.token_limit = token_limit
        self.max_wait = settings.rate_limit_max_wait
        self.redis = redis_client
        self.halt_key = keys.ratelimit(f"halt:{name}:{scope}")
        self.halt_seconds = settings.breaker_reset_timeout
        self.limiter = SharedRateLimiter(redis_client, keys)
        self.breaker = shared_breaker(redis_client, keys, name, fail_max=settings.breaker_fail_max,
                                      reset_timeout=settings.breaker_reset_timeout, exclude=[_not_service_trouble])  # fmt: skip

    def call(self, function: Callable[..., T], *args: object, tokens: int = 0, **kwargs: object) -> T:
        self.check_halted()
        self._acquire(self.name, self.limit, 1)
        if tokens and self.token_limit:
            self._acquire(f"{self.name}:tokens", self.token_limit, tokens)
        try:
            return self.breaker.call(function, *args, **kwargs)
        except CircuitBreakerError:
            remaining = seconds_until_closed(self.breaker)
            raise CircuitOpen(
                f"{self.name} failed {self.breaker.fail_max} times in a row; its circuit is open for {remaining:.0f}s more",
                retry_after=remaining, hint="calls resume by themselves; check the provider's status page",
            ) from None
        except Exception as exc:
            if categorize(exc) is ErrorCategory.CONFIGURATION:
                self.halt(str(exc))
            raise

    def _acquire(self, name: str, limit: str, cost: int) -> None:
        waited = self.limiter.acquire(name, limit, max_wait=self.max_wait, cost=cost)
        if waited is None:
            window = self.limiter.window(name, limit)
            raise RateLimitError(
                f"{self.name}: the shared rate limit of {limit} stayed used up for {self.max_wait:.0f}s",
                retry_after=max(0.0, window.reset_at - time.time()),
                hint="lower worker concurrency or raise the provider's limit setting if the provider allows",
            )
        if waited > 1:
            log.info("%s: waited %.1fs for the shared rate limit %s", self.name, waited, limit)

    def halt(self, message: str) -> None:
        """Stop every worker's calls to this provider's scope for a while, with this message."""
        try:
            self.redis.set(self.halt_key, message.encode(), px=max(1000, int(self.halt_seconds * 1000)))
        except Exception:
            log.warning("%s: could not record the halt in Redis", self.name, exc_info=True)

    def check_halted(self) -> None:
        """Raise the CONFIGURATION error that halted this scope, if one did and it has not expired."""
        try:
            message = self.redis.get(self.halt_key)
        except Exception:
            log.debug("%s: halt flag unavailable", self.name, exc_info=True)
            return
        if message is not None:
            text = message.decode() if isinstance(message, bytes) else str(message)
            raise ConfigurationError(f"{text} [{self.name} calls stopped: an earlier call got this answer]",
                                     hint=None)  # fmt: skip

    @property
    def state(self) -> str:
        return self.breaker.current_state
