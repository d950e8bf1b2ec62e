"""Short-lived Redis locks (always with a TTL), released only by their owner."""

from __future__ import annotations

import secrets

import redis

from legaldoc.state.keys import Keys
from legaldoc.state.scripts import Script


class Lock:
    """Named locks: `acquire` is SET NX EX, `release` deletes only a lock this object holds."""

    def __init__(self, client: redis.Redis, keys: Keys) -> None:
        self.client = client
        self.keys = keys
        self.tokens: dict[str, str] = {}
        self._release = Script(client, "release_lock")

    def acquire(self, name: str, ttl: float) -> bool:
        token = secrets.token_hex(8)
        if self.client.set(self.keys.lock(name), token, nx=True, px=int(ttl * 1000)):
            self.tokens[name] = token
            return True
        return False

    def release(self, name: str) -> None:
        token = self.tokens.pop(name, None)
        if token:
            self._release({"lock": self.keys.lock(name)}, {"token": token})
