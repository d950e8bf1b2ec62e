"""Prometheus metrics of an installation, read from Redis at each scrape.

Why Redis and not prometheus_client's multiprocess mode: workers run on many hosts and their pool
processes come and go (max tasks per child, autoscale); their durations and failures are already
written to Redis once per stage (inside the transition script), so one exporter anywhere sees the
whole installation, and a restarted worker loses nothing. `legaldoc metrics serve` (or a worker
with `metrics_port`) answers `/metrics`; labels are of low cardinality: queue, priority, stage,
outcome, category, provider, worker name; never a document or batch id.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from legaldoc.lifecycle import MirrorState
from legaldoc.queues import PRIORITY_STEPS, Queue, broker_priority
from legaldoc.services.wiring import Runtime
from legaldoc.state.metrics import DURATION_BUCKETS, bucket_label, read_counters

BREAKERS = ("openai", "textract", "s3")  # the remote providers' shared circuit breakers
BREAKER_STATES = ("closed", "open", "half-open")


class LegaldocCollector(Collector):
    """Everything an operator graphs, in a few round trips to Redis per scrape."""

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily("legaldoc_redis_up", "1 when the exporter could read Redis at this scrape")
        try:
            families = list(self._families())
        except Exception:  # Redis down: say so, and nothing else
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        yield from families

    def _families(self) -> Iterator[Metric]:
        yield from self._queues()
        yield from self._workers()
        yield from self._batches()
        yield from self._counters()
        yield from self._cache()
        yield from self._breakers()

    def _queues(self) -> Iterator[Metric]:
        rt, now = self.rt, time.time()
        queues = [q.value for q in Queue]
        pipe = rt.broker.client.pipeline(transaction=False)
        for queue in queues:
            for key in rt.broker.keys.queue_lists(queue):
                pipe.llen(key)
        lengths = pipe.execute()
        depth = GaugeMetricFamily("legaldoc_queue_messages", "Messages waiting, per queue and user priority (9 most urgent)",
                                  labels=["queue", "priority"])  # fmt: skip
        for index, queue in enumerate(queues):
            for step in PRIORITY_STEPS:
                user_priority = next(p for p in range(10) if broker_priority(p) == step)
                depth.add_metric([queue, str(user_priority)], lengths[index * len(PRIORITY_STEPS) + step])
        yield depth
        age = GaugeMetricFamily("legaldoc_queue_oldest_message_age_seconds",
                                "Age of the oldest waiting message of a queue (0 when empty)", labels=["queue"])  # fmt: skip
        for queue, (_, oldest) in rt.broker.queue_stats(queues).items():
            age.add_metric([queue], max(0.0, now - oldest) if oldest else 0.0)
        yield age

    def _workers(self) -> Iterator[Metric]:
        workers = [w for w in self.rt.registry.workers(purge=False) if w.online()]
        online = GaugeMetricFamily("legaldoc_workers_online", "Workers whose heartbeat is fresh")
        online.add_metric([], len(workers))
        yield online
        consumers = GaugeMetricFamily("legaldoc_queue_consumer_processes", "Worker processes serving a queue",
                                      labels=["queue"])  # fmt: skip
        for queue in Queue:
            consumers.add_metric([queue.value], sum(w.concurrency for w in workers if queue.value in w.queues))
        yield consumers
        rss = GaugeMetricFamily("legaldoc_worker_resident_memory_bytes", "Resident memory of a worker and its pool",
                                labels=["worker"])  # fmt: skip
        active = GaugeMetricFamily("legaldoc_worker_active_tasks", "Tasks a worker is running", labels=["worker"])
        for worker in workers:
            rss.add_metric([worker.name], worker.rss or 0)
            active.add_metric([worker.name], worker.active)
        yield rss
        yield active

    def _batches(self) -> Iterator[Metric]:
        state = self.rt.state
        ids = [i.decode() if isinstance(i, bytes) else str(i) for i in state.client.zrange(state.keys.active_batches, 0, -1)]
        batches = [b for b in state.read_many(ids) if b]
        running = GaugeMetricFamily("legaldoc_batches_unfinished", "Batches not finished, by status", labels=["status"])
        statuses: dict[str, int] = {}
        for batch in batches:
            statuses[batch.get("status", "")] = statuses.get(batch.get("status", ""), 0) + 1
        for status, count in sorted(statuses.items()):
            running.add_metric([status], count)
        yield running
        documents = GaugeMetricFamily("legaldoc_batch_documents", "Documents of unfinished batches, by state",
                                      labels=["state"])  # fmt: skip
        for mirror_state in MirrorState:
            documents.add_metric([mirror_state.value], sum(int(b.get(mirror_state.value, 0) or 0) for b in batches))
        yield documents

    def _counters(self) -> Iterator[Metric]:
        counters = read_counters(self.rt.state.client, self.rt.state.keys)
        attempts = CounterMetricFamily("legaldoc_stage_attempts", "Stage attempts that ended, by outcome",
                                       labels=["stage", "outcome"])  # fmt: skip
        for (stage, outcome), value in sorted(counters.family("attempts").items()):
            attempts.add_metric([stage, outcome], value)
        yield attempts
        for name, help_text in (("failures", "Documents failed for good at a stage, by category"),
                                ("retries", "Stage attempts that failed and were retried, by category")):  # fmt: skip
            family = CounterMetricFamily(f"legaldoc_stage_{name}", help_text, labels=["stage", "category"])
            for (stage, category), value in sorted(counters.family(name).items()):
                family.add_metric([stage, category], value)
            yield family
        buckets = counters.family("duration_bucket")
        sums = counters.family("duration_sum")
        histogram = HistogramMetricFamily("legaldoc_stage_duration_seconds", "Seconds a stage attempt took",
                                          labels=["stage"])  # fmt: skip
        for stage in sorted({key[0] for key in buckets} | {key[0] for key in sums}):
            cumulative, total = [], 0.0
            for bound in DURATION_BUCKETS:
                label = bucket_label(bound)
                total += buckets.get((stage, label), 0.0)
                cumulative.append(("+Inf" if math.isinf(bound) else f"{bound:g}", total))
            histogram.add_metric([stage], cumulative, sum_value=sums.get((stage,), 0.0))
        yield histogram
        usage = CounterMetricFamily("legaldoc_provider_usage", "What remote providers were sent or answered "
                                    "(pages, jobs, calls, tokens)", labels=["provider", "unit"])  # fmt: skip
        cost = CounterMetricFamily("legaldoc_provider_cost_dollars", "Estimated cost of remote providers in US dollars",
                                   labels=["provider"])  # fmt: skip
        for (provider, unit), value in sorted(counters.family("usage").items()):
            if unit == "cost_usd":
                cost.add_metric([provider], value)
            else:
                usage.add_metric([provider, unit], value)
        yield usage
        yield cost

    def _cache(self) -> Iterator[Metric]:
        cache = self.rt.cache
        raw = {(k.decode() if isinstance(k, bytes) else k): int(v) for k, v in cache.client.hgetall(cache.stats_key).items()}
        lookups = GaugeMetricFamily("legaldoc_cache_lookups", "Result cache lookups since its counters last expired",
                                    labels=["namespace", "result"])  # fmt: skip
        ratio = GaugeMetricFamily("legaldoc_cache_hit_ratio", "Lookups answered without recomputing",
                                  labels=["namespace"])  # fmt: skip
        for namespace in sorted({k.split(":", 1)[0] for k in raw}):
            hits, misses = raw.get(f"{namespace}:hits", 0), raw.get(f"{namespace}:misses", 0)
            database_hits = raw.get(f"{namespace}:database_hits", 0)
            for result, value in (("hit", hits), ("miss", misses), ("database_hit", database_hits)):
                lookups.add_metric([namespace, result], value)
            if hits + misses:
                ratio.add_metric([namespace], min(1.0, (hits + database_hits) / (hits + misses)))
        yield lookups
        yield ratio

    def _breakers(self) -> Iterator[Metric]:
        client = self.rt.client("ratelimit")
        keys = self.rt.state.keys
        pipe = client.pipeline(transaction=False)
        for name in BREAKERS:
            pipe.get(f"{keys.ratelimit(f'breaker:{name}')}:pybreaker:state")
        family = GaugeMetricFamily("legaldoc_circuit_breaker_state", "1 for the state a provider's shared circuit "
                                   "breaker is in", labels=["provider", "state"])  # fmt: skip
        for name, raw in zip(BREAKERS, pipe.execute(), strict=True):
            current = raw.decode() if isinstance(raw, bytes) else (raw or "closed")
            for state in BREAKER_STATES:
                family.add_metric([name, state], 1.0 if state == current else 0.0)
        yield family


def registry_for(rt: Runtime) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(LegaldocCollector(rt))
    return registry


def exposition(rt: Runtime) -> bytes:
    """The metrics as Prometheus's text format, once."""
    from prometheus_client import generate_latest

    return generate_latest(registry_for(rt))


def serve(rt: Runtime, host: str, port: int) -> Any:
    """Answer `/metrics` on host:port from a daemon thread; returns (server, thread)."""
    return start_http_server(port, addr=host, registry=registry_for(rt))
