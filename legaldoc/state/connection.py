"""Redis clients, one pool per URL and timeout profile per process (a forked child makes its own)."""

from __future__ import annotations

import os
import ssl
from functools import cache
from typing import Any

import redis

TIMEOUTS = {
    False: {"socket_connect_timeout": 5, "socket_timeout": 30, "health_check_interval": 30},
    True: {"socket_connect_timeout": 2, "socket_timeout": 5, "retry_on_timeout": False},  # screens: notice a loss at once
}


CLIENT_NAME = "legaldoc"  # every connection's name (CLIENT LIST; Celery's own stay unnamed)


@cache
def _one_write(base: type[redis.connection.AbstractConnection]) -> type[redis.connection.AbstractConnection]:
    """`base` (plain, TLS or unix socket) sending each command or pipeline in one write: redis-py
    writes a pipeline in pieces (every value over 6 kB on its own), and the server may answer the
    first pieces before the rest arrives; one buffer is one system call and goes out together."""

    class OneWrite(base):  # type: ignore[valid-type,misc]
        def send_packed_command(self, command: Any, check_health: bool = True) -> None:
            if isinstance(command, list) and len(command) > 1:
                command = [b"".join(command)]
            super().send_packed_command(command, check_health)

    OneWrite.__name__ = OneWrite.__qualname__ = f"OneWrite{base.__name__}"
    return OneWrite


@cache
def _client(url: str, interactive: bool, pid: int) -> redis.Redis:
    client = redis.Redis.from_url(url, client_name=CLIENT_NAME, **TIMEOUTS[interactive])
    pool = client.connection_pool
    pool.connection_class = _one_write(pool.connection_class)  # before its first connection
    return client


def client(url: str, *, interactive: bool = False) -> redis.Redis:
    """This process's client of `url`; an interactive one gives up within seconds."""
    return _client(url, interactive, os.getpid())



SECURITY_DOC = "README, Security"


def explain(error: redis.RedisError, where: str) -> tuple[str, str]:
    """What went wrong talking to the Redis at `where` (already masked), and what to do: a TLS
    handshake refused, a user or password refused, a command or key the user may not use, or no
    answer at all. Never quotes the URL's password (redis-py's messages hold none)."""
    text = str(error)
    cause = error.__cause__ or error.__context__
    if isinstance(cause, ssl.SSLError) or "SSL" in text or "certificate" in text.lower():
        return (f"TLS with Redis at {where} failed: {text}",
                f"check ssl_ca_certs (the CA that signed the server's certificate) in the rediss:// URL; see {SECURITY_DOC}")  # fmt: skip
    if isinstance(error, redis.exceptions.AuthenticationError | redis.exceptions.AuthorizationError) or "WRONGPASS" in text or "NOAUTH" in text:
        return (f"Redis at {where} refused the user or password: {text}",
                f"check the user and password in the Redis URL (redis://USER:PASSWORD@HOST); see {SECURITY_DOC}")  # fmt: skip
    if isinstance(error, redis.exceptions.NoPermissionError):
        return (f"Redis at {where} refused a command to this user: {text}",
                f"grant the user the ACL in {SECURITY_DOC} (the dashboard's user only reads)")  # fmt: skip
    return (f"cannot reach Redis at {where}: {text}",
            "start redis-server, set LEGALDOC_REDIS_URL, or use `legaldoc run` which starts its own")  # fmt: skip
