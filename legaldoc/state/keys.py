"""Every Redis key legaldoc writes, in one place. All start with the configured prefix.

A Lua script that reads keys it learns inside Redis (the batch ids of an index, say) is given a
family's name for the empty id (``keys.batch("")``) and appends the id: every name is spelt here.
"""

from __future__ import annotations

from dataclasses import dataclass

from legaldoc.queues import priority_keys


@dataclass(frozen=True)
class Keys:
    """Key names under one prefix (default ``legaldoc:``)."""

    prefix: str = "legaldoc:"

    def batch(self, batch_id: str) -> str:
        """Hash: name, project, priority, status, counters, errors:{CATEGORY}, timestamps."""
        return f"{self.prefix}batch:{batch_id}"

    def batch_docs(self, batch_id: str) -> str:
        """Hash: document id -> ``version|state|stage|category``."""
        return f"{self.prefix}batch:{batch_id}:docs"

    def batch_errors(self, batch_id: str) -> str:
        """Hash: document id -> JSON {stage, category, message, attempt, at} of its final failure."""
        return f"{self.prefix}batch:{batch_id}:errors"

    @property
    def batches(self) -> str:
        """Sorted set: every batch id by creation time."""
        return f"{self.prefix}batches"

    @property
    def active_batches(self) -> str:
        """Sorted set: unfinished batch ids by creation time."""
        return f"{self.prefix}batches:active"

    def stage_metrics(self, stage: str) -> str:
        """Sorted set: ``doc|attempt|ms|outcome`` by finish time."""
        return f"{self.prefix}metrics:stage:{stage}"

    def error_metrics(self, category: str) -> str:
        """Sorted set: ``doc|stage|attempt`` by failure time."""
        return f"{self.prefix}metrics:errors:{category}"

    @property
    def recent_errors(self) -> str:
        """List (capped at 200): ``batch|doc|error JSON`` of the newest failures and retries, newest first."""
        return f"{self.prefix}errors:recent"

    @property
    def done_metrics(self) -> str:
        """Sorted set: completed document ids by finish time."""
        return f"{self.prefix}metrics:done"

    @property
    def failed_metrics(self) -> str:
        """Sorted set: ``batch|doc|category`` of documents that failed for good, by failure time;
        removed when the document leaves the failed state (recovered)."""
        return f"{self.prefix}metrics:failed"

    @property
    def counters(self) -> str:
        """Hash: the exporter's ever-growing counters (`state.metrics`): attempts, failures,
        retries, duration buckets and sums per stage, provider usage."""
        return f"{self.prefix}metrics:counters"

    @property
    def runner(self) -> str:
        """String: the `legaldoc run` a private Redis serves (`services.embedded.mark_runner`); absent
        on a shared Redis. Its batches carry the same value in ``batches.runner``."""
        return f"{self.prefix}runner"

    @property
    def workers(self) -> str:
        """Hash: worker name -> JSON heartbeat."""
        return f"{self.prefix}workers"

    def queue_lists(self, queue: str) -> list[str]:
        """Lists (broker database): one queue's messages per priority, most urgent first, as kombu
        names them under ``global_keyprefix`` (`tasks.app.create_app` gives it this prefix)."""
        return priority_keys(queue, self.prefix)

    def lock(self, name: str) -> str:
        return f"{self.prefix}lock:{name}"

    def cache(self, name: str) -> str:
        return f"{self.prefix}cache:{name}"

    def ratelimit(self, name: str) -> str:
        return f"{self.prefix}ratelimit:{name}"
