"""Celery remote control of running workers (pool grow/shrink, autoscale, warm shutdown), by name."""

from __future__ import annotations

import time
from typing import Any

from legaldoc.config import Settings
from legaldoc.errors import TransientError
from legaldoc.tasks.app import create_app


class WorkerControl:
    """Sends control commands to named workers over the broker and returns their replies."""

    def __init__(self, settings: Settings, timeout: float = 5.0) -> None:
        self.app = create_app(settings)
        self.timeout = timeout

    def _call(self, command: str, name: str, **arguments: Any) -> str:
        replies = self.app.control.broadcast(command, arguments=arguments, destination=[name], reply=True,
                                             timeout=self.timeout)  # fmt: skip
        for reply in replies or []:
            answer = reply.get(name)
            if answer is not None:
                if "error" in answer:
                    raise TransientError(f"worker {name} refused {command}: {answer['error']}")
                return str(answer.get("ok", ""))
        raise TransientError(f"worker {name} did not answer {command} within {self.timeout:g} s")

    def ping(self) -> list[str]:
        """The names of the workers that answer, sorted: this installation's only (its prefix)."""
        replies = self.app.control.ping(timeout=self.timeout)
        return sorted(name for reply in replies or [] for name in reply)

    def grow(self, name: str, n: int) -> str:
        return self._call("pool_grow", name, n=n)

    def shrink(self, name: str, n: int) -> str:
        """One process at a time (billiard stops early when asked for several), waiting out busy ones."""
        answer = ""
        for _ in range(n):
            deadline = time.monotonic() + self.timeout * 6
            while True:
                try:
                    answer = self._call("pool_shrink", name, n=1)
                    break
                except TransientError as error:
                    if "busy" not in str(error) or time.monotonic() > deadline:
                        raise
                    time.sleep(0.5)
        return answer

    def autoscale(self, name: str, maximum: int, minimum: int) -> str:
        return self._call("autoscale", name, max=maximum, min=minimum)

    def shutdown(self, name: str) -> None:
        """Warm shutdown: running tasks finish, then the worker exits."""
        self.app.control.broadcast("shutdown", destination=[name], reply=False)

    def close(self) -> None:
        self.app.close()
