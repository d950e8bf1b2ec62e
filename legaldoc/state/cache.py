"""The result cache in Redis: content-addressed extraction results and per-project entity indexes.

Every value carries a one-byte header: ``z`` for zlib-compressed (values above `compress_above`
bytes), ``r`` for raw. Every key has a TTL, refreshed when it is read, so what is used stays and
what is not expires. Hits and misses per namespace are counted in the ``cache:stats`` hash; a
stage's reads count them in the round trip that ends the stage (`state.roundtrip`).

Entity indexes are one hash per project: ``gen`` (the project's entity generation in the
database when the hash was written) and one field per entity type. A reader uses the hash only
when ``gen`` equals the database's generation, read in the same transaction that holds the
project's lock, so a stale index is never used; writers replace or update it under that lock.
"""

from __future__ import annotations

import logging
import zlib
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass

import redis

from legaldoc.state.keys import Keys
from legaldoc.state.roundtrip import RoundTrip
from legaldoc.state.scripts import Script

log = logging.getLogger("legaldoc.cache")

EXTRACT = "extract"
ENTITIES = "entities"
MODEL = "model"  # answers of a language model by (text sha256, model, prompt version)
NAMESPACES = (EXTRACT, ENTITIES, MODEL)

def _sent(trip: RoundTrip) -> None:
    """Send a round trip for a read: the other commands it carries (state changes, cache writes)
    that Redis refused are logged, as the stage's own end logs them (the database has them)."""
    for error in trip.send():
        log.warning("Redis refused a state or cache write: %s", error)


def _str(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def encode(value: bytes, compress_above: int) -> bytes:
    if len(value) > compress_above:
        packed = zlib.compress(value, 6)
        if len(packed) < len(value):
            return b"z" + packed
    return b"r" + value


def decode(value: bytes) -> bytes:
    if value[:1] == b"z":
        return zlib.decompress(value[1:])
    if value[:1] == b"r":
        return value[1:]
    raise ValueError("unknown cache value header")


@dataclass(frozen=True)
class NamespaceStats:
    namespace: str
    hits: int
    misses: int
    database_hits: int
    keys: int
    memory: int

    @property
    def hit_rate(self) -> float | None:
        """Lookups answered without recomputing: from Redis, or from the database after a Redis miss."""
        total = self.hits + self.misses
        return min(1.0, (self.hits + self.database_hits) / total) if total else None

    def as_json(self) -> dict[str, object]:
        return asdict(self) | {"hit_rate": None if self.hit_rate is None else round(self.hit_rate, 4)}


class ResultCache:
    """Reads and writes the cache database of Redis."""

    def __init__(self, client: redis.Redis, keys: Keys, *, ttl_seconds: float, compress_above: int = 1024) -> None:
        self.client = client
        self.keys = keys
        self.ttl_ms = max(1000, int(ttl_seconds * 1000))
        self.compress_above = compress_above
        self._get = Script(client, "cache_get")
        self._put_index = Script(client, "cache_put_index")

    # -- key names --------------------------------------------------------------------------------

    @property
    def stats_key(self) -> str:
        return self.keys.cache("stats")

    def extract_key(self, extract_key: str) -> str:
        return self.keys.cache(f"{EXTRACT}:{extract_key}")

    def index_key(self, project_id: int) -> str:
        return self.keys.cache(f"{ENTITIES}:{project_id}")

    # -- extraction results -----------------------------------------------------------------------

    def get_extraction(self, extract_key: str, trip: RoundTrip | None = None) -> bytes | None:
        """The entry (its TTL refreshed), read in `trip` with whatever it carries (sent now), else
        on its own; the hit or miss is counted in the trip's next round trip."""
        own = trip is None
        trip = RoundTrip(self.client) if trip is None else trip
        name, found = self.extract_key(extract_key), list[bytes | None]()
        trip.add(self.client, "GET", name, reply=found.append)
        trip.add(self.client, "PEXPIRE", name, self.ttl_ms)
        _sent(trip)
        value = found[0] if found else None
        self.count(trip, EXTRACT, hits=int(value is not None), misses=int(value is None))
        if own:
            trip.send()
        return decode(value) if value is not None else None

    def count(self, trip: RoundTrip, namespace: str, **counts: int) -> None:
        """Add to the ``cache:stats`` counters in `trip`."""
        for name, count in counts.items():
            if count:
                trip.add(self.client, "HINCRBY", self.stats_key, f"{namespace}:{name}", count)
        trip.add(self.client, "PEXPIRE", self.stats_key, self.ttl_ms)

    def put_extractions(self, values: Mapping[str, bytes], trip: RoundTrip | None = None) -> None:
        """Store extraction results by their extract key, in `trip` or in one round trip now."""
        if not values:
            return
        own = trip is None
        trip = RoundTrip(self.client) if trip is None else trip
        for extract_key, value in values.items():
            trip.add(self.client, "SET", self.extract_key(extract_key), encode(value, self.compress_above), "PX", self.ttl_ms)
        if own:
            trip.send()

    def record(self, namespace: str, trip: RoundTrip | None = None, **counts: int) -> None:
        """Add to counters kept outside the reads (``database_hits``: a Redis miss the database
        answered), in `trip` or now."""
        own = trip is None
        trip = RoundTrip(self.client) if trip is None else trip
        self.count(trip, namespace, **counts)
        if own:
            trip.send()

    def forget_extractions(self, extract_keys: Iterable[str]) -> int:
        names = [self.extract_key(k) for k in extract_keys]
        removed = 0
        for offset in range(0, len(names), 1000):
            removed += self.client.unlink(*names[offset : offset + 1000])
        return removed

    # -- model answers ----------------------------------------------------------------------------

    def model_key(self, key: str) -> str:
        return self.keys.cache(f"{MODEL}:{key}")

    def get_answer(self, key: str) -> bytes | None:
        value = self._get({"entry": self.model_key(key), "stats": self.stats_key},
                          {"ttl_ms": self.ttl_ms, "namespace": MODEL})  # fmt: skip
        return decode(value) if value is not None else None

    def put_answer(self, key: str, value: bytes) -> None:
        self.client.set(self.model_key(key), encode(value, self.compress_above), px=self.ttl_ms)

    # -- entity indexes ---------------------------------------------------------------------------

    def get_index(self, project_id: int, generation: int, types: Iterable[str], trip: RoundTrip | None = None) -> dict[str, bytes]:
        """The cached index blobs of these types, for the project at this generation; {} on a miss
        of any of them (the caller then reads those from the database). One HMGET (and the TTL's
        refresh) now; the hit or miss is counted in the trip's next round trip."""
        wanted = sorted(set(types))
        own = trip is None
        trip = RoundTrip(self.client) if trip is None else trip
        name, found = self.index_key(project_id), list[list[bytes | None]]()
        trip.add(self.client, "HMGET", name, "gen", *wanted, reply=found.append)
        trip.add(self.client, "PEXPIRE", name, self.ttl_ms)
        _sent(trip)
        held, *values = found[0] if found else [None]
        hit = held is not None and _str(held) == str(generation) and all(v is not None for v in values)
        self.count(trip, ENTITIES, hits=int(hit), misses=int(not hit))
        if own:
            trip.send()
        return {t: decode(v) for t, v in zip(wanted, values, strict=True) if v is not None} if hit else {}

    def put_index(self, project_id: int, base_generation: int | None, generation: int,
                  blobs: Mapping[str, bytes], *, replace: bool = False, trip: RoundTrip | None = None) -> None:  # fmt: skip
        """Write these type blobs at `generation`; other types stay only if
        the hash was at `base_generation` (the generation the writer read them at) and `replace` is
        false. In `trip`, else now."""
        fields: list[str | bytes] = []
        for entity_type, blob in sorted(blobs.items()):
            fields += [entity_type, encode(blob, self.compress_above)]
        keys = {"index": self.index_key(project_id)}
        args = {"ttl_ms": self.ttl_ms, "base_generation": "" if base_generation is None else str(base_generation),
                "generation": str(generation), "replace": "1" if replace else "0", "fields": fields}  # fmt: skip
        if trip is None:
            self._put_index(keys, args)
        else:
            self._put_index.queue(trip, keys, args)

    def forget_index(self, project_id: int) -> int:
        return self.client.unlink(self.index_key(project_id))

    # -- reports ----------------------------------------------------------------------------------

    def _scan(self, namespace: str) -> Iterable[bytes]:
        return self.client.scan_iter(match=self.keys.cache(f"{namespace}:*"), count=1000)

    def stats(self, *, memory: bool = True) -> list[NamespaceStats]:
        """Hits and misses (since the counters last expired), keys and bytes per namespace.
        Walks the keys with SCAN: an operator command, not for a dashboard's refresh loop."""
        counters = {_str(k): int(v) for k, v in self.client.hgetall(self.stats_key).items()}
        found: list[NamespaceStats] = []
        for namespace in NAMESPACES:
            names = list(self._scan(namespace))
            used = 0
            if memory and names:
                for offset in range(0, len(names), 500):
                    pipe = self.client.pipeline(transaction=False)
                    for name in names[offset : offset + 500]:
                        pipe.memory_usage(name, samples=0)
                    used += sum(v or 0 for v in pipe.execute())
            found.append(NamespaceStats(namespace, counters.get(f"{namespace}:hits", 0),
                                        counters.get(f"{namespace}:misses", 0),
                                        counters.get(f"{namespace}:database_hits", 0), len(names), used))  # fmt: skip
        return found

    def clear(self) -> int:
        """Remove every cache key, the counters included."""
        removed = 0
        for namespace in (*NAMESPACES, "stats"):
            names = list(self._scan(namespace)) if namespace != "stats" else [self.stats_key.encode()]
            for offset in range(0, len(names), 1000):
                removed += self.client.unlink(*names[offset : offset + 1000])
        return removed
