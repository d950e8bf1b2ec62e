"""Shared rate limits and circuit breakers on a real redis-server, seen from separate processes:
what one process spends or trips, another process sees."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time

import pytest
import redis

from legaldoc.errors import (
    CircuitOpen,
    DataError,
    ErrorCategory,
    RateLimitError,
    categorize,
    retry_delay,
)
from legaldoc.services.guard import ProviderGuard
from legaldoc.state.limits import seconds_until_closed
from tests.conftest import REPO, settings_env

# Runs in a fresh interpreter: its own connection pool, its own pybreaker and limits objects.
_SCRIPT = textwrap.dedent("""
    import json, sys
    from legaldoc.config import load_settings
    from legaldoc.errors import categorize
    from legaldoc.services.guard import ProviderGuard

    action, count = sys.argv[1], int(sys.argv[2])
    guard = ProviderGuard("remote", load_settings())
    calls, outcomes = [], []

    def work():
        calls.append(1)
        if action == "fail":
            raise ConnectionResetError(104, "Connection reset by peer")
        return "ok"

    for _ in range(count):
        if action == "hit":
            outcomes.append(guard.limiter.hit("remote", guard.limit))
            continue
        try:
            outcomes.append(guard.call(work))
        except Exception as exc:
            outcomes.append(categorize(exc).value + ":" + type(exc).__name__)
    print(json.dumps({"outcomes": outcomes, "calls": len(calls), "state": guard.state}))
""")


def _in_another_process(settings, action: str, count: int) -> dict:
    result = subprocess.run([sys.executable, "-c", _SCRIPT, action, str(count)], capture_output=True, text=True,
                            env=settings_env(settings), cwd=REPO, timeout=60)  # fmt: skip
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


@pytest.fixture
def limit_settings(batch_settings):
    return batch_settings.model_copy(update={"provider_rate_limit": "5/minute", "rate_limit_max_wait": 0.3,
                                             "breaker_fail_max": 3, "breaker_reset_timeout": 1.0})  # fmt: skip


@pytest.mark.any_database  # the limiter lives in Redis
def test_the_rate_limit_is_shared_by_every_process(limit_settings):
    """Given a limit of 5 calls a minute, When two processes take 4 calls each, Then 5 succeed in
    all; a further call, whose slot frees up later than rate_limit_max_wait, fails at once as
    RATE_LIMIT with a Retry-After that the retry policy honours; a slot that frees up within the
    wait is waited for. Every key has a TTL."""
    first = _in_another_process(limit_settings, "hit", 4)["outcomes"]
    second = _in_another_process(limit_settings, "hit", 4)["outcomes"]
    assert first == [True] * 4 and second == [True, False, False, False]

    guard = ProviderGuard("remote", limit_settings)
    started = time.monotonic()
    with pytest.raises(RateLimitError) as caught:
        guard.call(lambda: "never")
    assert time.monotonic() - started < 0.5  # no point in waiting for a slot a minute away
    assert categorize(caught.value) is ErrorCategory.RATE_LIMIT and "5/minute" in str(caught.value)
    assert 1 < caught.value.retry_after <= 60
    assert retry_delay(ErrorCategory.RATE_LIMIT, 1, caught.value) == caught.value.retry_after
    assert ProviderGuard("other", limit_settings).call(lambda: "ok") == "ok"  # limits are per provider

    quick = ProviderGuard("quick", limit_settings.model_copy(update={"provider_rate_limit": "2/second", "rate_limit_max_wait": 3}))
    assert [quick.limiter.hit("quick", "2/second") for _ in range(3)] == [True, True, False]
    waited = quick.limiter.acquire("quick", "2/second", max_wait=3)
    assert waited is not None and waited > 0

    client = redis.Redis.from_url(limit_settings.redis_url_for("ratelimit"))
    keys = list(client.scan_iter(match="legaldoc:ratelimit:*"))
    assert keys and all(client.pttl(k) > 0 for k in keys)


@pytest.mark.any_database  # the breaker lives in Redis
def test_the_circuit_breaker_is_shared_by_every_process(limit_settings):
    """Given 3 connection resets in another process, When this process calls the provider, Then
    the circuit is open: the call fails TRANSIENT without reaching the provider, with a wait the
    retry policy honours; failures of bad documents never open it; after the reset timeout one
    trial call goes through and closes it for everyone."""
    # pybreaker stores when the circuit opened in whole seconds, so it stays open between
    # reset_timeout - 1 and reset_timeout seconds: 5 leaves room for the checks below.
    settings = limit_settings.model_copy(update={"provider_rate_limit": "1000/second", "breaker_reset_timeout": 5.0})
    tripped = _in_another_process(settings, "fail", 3)
    assert tripped["outcomes"] == ["TRANSIENT:ConnectionResetError"] * 3 and tripped["state"] == "open"

    guard = ProviderGuard("remote", settings)
    reached = []
    with pytest.raises(CircuitOpen) as caught:
        guard.call(lambda: reached.append(1))
    assert not reached and categorize(caught.value) is ErrorCategory.TRANSIENT
    assert 0 < caught.value.retry_after <= 5.0
    assert retry_delay(ErrorCategory.TRANSIENT, 1, caught.value, base=0.01) >= caught.value.retry_after
    blocked = _in_another_process(settings, "ok", 1)
    assert blocked == {"outcomes": ["TRANSIENT:CircuitOpen"], "calls": 0, "state": "open"}

    time.sleep(seconds_until_closed(guard.breaker) + 0.2)
    assert guard.call(lambda: "ok") == "ok" and guard.state == "closed"
    assert _in_another_process(settings, "ok", 1)["outcomes"] == ["ok"]

    def bad_document():
        raise DataError("page 3 is not an image")

    for _ in range(5):
        with pytest.raises(DataError):
            guard.call(bad_document)
    assert guard.state == "closed"

    client = redis.Redis.from_url(settings.redis_url_for("ratelimit"))
    keys = list(client.scan_iter(match="legaldoc:ratelimit:breaker:*"))
    assert len(keys) == 4 and all(client.pttl(k) > 0 for k in keys)
