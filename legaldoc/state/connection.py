"""Redis clients, one pool per URL and timeout profile per process (a forked child makes its own)."""

from __future__ import annotations

import os
import ssl
from functools import cache

import redis

TIMEOUTS = {
    False: {"socket_connect_timeout": 5, "socket_timeout": 30, "health_check_interval": 30},
    True: {"socket_connect_timeout": 2, "socket_timeout": 5, "retry_on_timeout": False},  # screens: notice a loss at once
}


CLIENT_NAME = "legaldoc"  # every connection's name (CLIENT LIST; Celery's own stay unnamed)


@cache
def _client(url: str, interactive: bool, pid: int) -> redis.Redis:
    return redis.Redis.from_url(url, client_name=CLIENT_NAME, **TIMEOUTS[interactive])


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
