"""Redis clients, one pool per URL and timeout profile per process (a forked child makes its own)."""

from __future__ import annotations

import os
from functools import cache

import redis

TIMEOUTS = {
    False: {"socket_connect_timeout": 5, "socket_timeout": 30, "health_check_interval": 30},
    True: {"socket_connect_timeout": 2, "socket_timeout": 5, "retry_on_timeout": False},  # screens: notice a loss at once
}


@cache
def _client(url: str, interactive: bool, pid: int) -> redis.Redis:
    return redis.Redis.from_url(url, **TIMEOUTS[interactive])


def client(url: str, *, interactive: bool = False) -> redis.Redis:
    """This process's client of `url`; an interactive one gives up within seconds."""
    return _client(url, interactive, os.getpid())

