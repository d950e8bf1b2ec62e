"""Counters for the Prometheus exporter, kept in Redis by the processes that do the work.

Every stage attempt that ends adds to the `metrics:counters` hash inside the transition script
that mirrors it (same round trip, applied once: a replayed transition adds nothing):
``attempts|STAGE|OUTCOME``, ``failures|STAGE|CATEGORY`` (for good), ``retries|STAGE|CATEGORY``,
``duration_bucket|STAGE|LE`` (one histogram bucket, not cumulative) and ``duration_sum|STAGE``;
remote providers add ``usage|PROVIDER|NAME``. The fields only grow, as Prometheus counters must;
the exporter (`services.metrics`) reads them with everything else in one round trip per scrape.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import redis

from legaldoc.lifecycle import AttemptOutcome, Transition
from legaldoc.state.keys import Keys

# Upper bounds (seconds) of the stage duration histogram: from a cached chunk to a long OCR job.
DURATION_BUCKETS: tuple[float, ...] = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0,
                                       1800.0, math.inf)  # fmt: skip


def bucket_label(seconds: float) -> str:
    """The `le` of the smallest bucket holding `seconds` (``+Inf`` past the last bound)."""
    bound = DURATION_BUCKETS[bisect.bisect_left(DURATION_BUCKETS, seconds)]
    return "+Inf" if math.isinf(bound) else f"{bound:g}"


def counted(transition: Transition) -> list[str | float]:
    """The counter increments (field, amount, field, amount ...) of the attempt a transition ends."""
    attempt = transition.attempt
    if attempt is None:
        return []
    stage = attempt.stage.value
    fields: list[str | float] = [f"attempts|{stage}|{attempt.outcome.value}", 1]
    if attempt.elapsed_ms is not None:
        seconds = attempt.elapsed_ms / 1000
        fields += [f"duration_bucket|{stage}|{bucket_label(seconds)}", 1, f"duration_sum|{stage}", seconds]
    if attempt.failure is not None:
        kind = "retries" if attempt.outcome is AttemptOutcome.RETRY else "failures"
        fields += [f"{kind}|{stage}|{attempt.failure.category}", 1]
    return fields


@dataclass
class Counters:
    """The counters hash, parsed: (family, label values...) -> value."""

    values: dict[tuple[str, ...], float] = field(default_factory=dict)

    @classmethod
    def parse(cls, raw: dict[Any, Any]) -> Counters:
        values: dict[tuple[str, ...], float] = {}
        for name, value in raw.items():
            text = name.decode() if isinstance(name, bytes) else str(name)
            values[tuple(text.split("|"))] = float(value)
        return cls(values)

    def family(self, name: str) -> dict[tuple[str, ...], float]:
        """Label values -> value of one family (``attempts`` -> {(stage, outcome): n})."""
        return {key[1:]: value for key, value in self.values.items() if key[0] == name}


def read_counters(client: redis.Redis, keys: Keys) -> Counters:
    return Counters.parse(client.hgetall(keys.counters))


def add_usage_counters(pipe: Any, keys: Keys, provider: str, amounts: Iterable[tuple[str, float]]) -> None:
    """Queue the usage counters of a remote provider on a pipeline (``usage|PROVIDER|NAME``)."""
    for name, amount in amounts:
        if amount:
            pipe.hincrbyfloat(keys.counters, f"usage|{provider}|{name}", amount)
