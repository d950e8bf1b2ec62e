"""Redis clients per role (broker, state, cache, ...), one pool per URL per process."""

from __future__ import annotations

import os
from functools import cache

import redis

from legaldoc.config import Settings
from legaldoc.errors import ServiceUnavailable


@cache
def _client(url: str, pid: int) -> redis.Redis:
    return redis.Redis.from_url(url, socket_connect_timeout=5, socket_timeout=30, health_check_interval=30)


@cache
def _interactive(url: str, pid: int) -> redis.Redis:
    return redis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=5, retry_on_timeout=False)


def interactive_client(settings: Settings, role: str) -> redis.Redis:
    """A client with short timeouts for screens: a lost server is noticed within seconds, and the
    next command connects again by itself."""
    return _interactive(settings.redis_url_for(role), os.getpid())


def client_for(settings: Settings, role: str) -> redis.Redis:
    """A client of the Redis database that plays `role` (broker, result, cache, ratelimit, state)."""
    return _client(settings.redis_url_for(role), os.getpid())


def describe(url: str) -> str:
    """A URL safe to print: no password."""
    if "@" in url:
        scheme, _, rest = url.partition("://")
        return f"{scheme}://***@{rest.rpartition('@')[2]}"
    return url


def ping(settings: Settings, role: str = "state") -> redis.Redis:
    """The client of `role`, after checking the server answers; ServiceUnavailable otherwise."""
    client = client_for(settings, role)
    try:
        client.ping()
    except redis.RedisError as exc:
        raise ServiceUnavailable(
            f"cannot reach Redis at {describe(settings.redis_url_for(role))}: {exc}",
            hint="start redis-server, set LEGALDOC_REDIS_URL, or use `legaldoc run` which starts its own",
        ) from None
    return client
