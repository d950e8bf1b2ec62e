"""One round trip per stage: a stage's state change, cache writes and next message go to Redis together.

Round trips are counted by a TCP proxy between legaldoc and a real redis-server
(`benchmarks/roundtrips.py`): a turn of a connection is one round trip, whatever it carries."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import redis

from benchmarks.roundtrips import CountingProxy
from legaldoc.config import Settings
from legaldoc.manifest import load_manifest
from legaldoc.models import STAGES, Stage
from legaldoc.queues import Queue, chainable
from legaldoc.services import batches as service
from legaldoc.services.stages import CHAIN_SHARE, Chain
from legaldoc.services.wiring import Runtime
from legaldoc.state.keys import Keys
from legaldoc.state.roundtrip import RoundTrip
from legaldoc.state.scripts import Script
from tests.batchkit import nef_copies, write_manifest


def _port(url: str) -> int:
    return int(url.rsplit(":", 1)[1].split("/")[0])


def test_one_round_trip_writes_three_databases_and_survives_a_flushed_script_cache(redis_url):
    """Given commands for databases 4, 2 and 0 of one server, Then one turn of one connection runs
    them all, each in its database, and the connection is back in its own; a script the server
    lost (SCRIPT FLUSH) runs again on its own, loading itself, and nothing else runs twice; a
    refused message raises, a refused state write is handed back."""
    with CountingProxy(_port(redis_url)) as proxy:
        base = f"redis://127.0.0.1:{proxy.port}"
        state, cache, broker = (redis.Redis.from_url(f"{base}/{db}", client_name="legaldoc") for db in (4, 2, 0))
        state.ping()  # connect (and name) before counting
        redis.Redis.from_url(redis_url).script_flush()
        script = Script(state, "release_lock")  # any script: its header names its keys and arguments
        proxy.reset()
        trip = RoundTrip(state)
        replies: list[object] = []
        trip.add(cache, "SET", "k", "cache")
        trip.add(state, "SET", "k", "state")
        trip.add(broker, "LPUSH", "queue", "m1", "m2", must=True)
        script.queue(trip, {"lock": "k"}, {"token": "state"}, reply=replies.append)  # the value matches: deleted
        trip.add(cache, "GET", "k", reply=replies.append)
        assert trip.send() == []
        assert replies == [1, b"cache"]
        counts = proxy.counts()["legaldoc"]
        # the script's NOSCRIPT answer costs one more round trip: SCRIPT LOAD and EVALSHA
        assert counts.commands.get("LPUSH") == 1 and counts.commands.get("SET") == 2, counts
        assert counts.round_trips == 2 and counts.commands["EVALSHA"] == 2, counts
        direct = redis.Redis.from_url(redis_url)
        assert direct.lrange("queue", 0, -1) == [b"m2", b"m1"]
        assert redis.Redis.from_url(f"{redis_url}/2").get("k") == b"cache"
        assert redis.Redis.from_url(f"{redis_url}/4").get("k") is None  # the script deleted it
        state.set("home", "4")
        assert redis.Redis.from_url(f"{redis_url}/4").get("home") == b"4"  # the connection is in its database

        proxy.reset()  # the script is loaded now: one turn
        trip.add(state, "SET", "k", "state")
        script.queue(trip, {"lock": "k"}, {"token": "state"}, reply=replies.append)
        trip.add(broker, "LPUSH", "queue", "m3", must=True)
        trip.send()
        assert proxy.counts()["legaldoc"].round_trips == 1

        trip.add(state, "HSET", "home", "field", "value")  # WRONGTYPE: a state write refused, handed back
        trip.add(broker, "LPUSH", "queue", "m4", must=True)
        assert [type(e).__name__ for e in trip.send()] == ["ResponseError"]
        trip.add(state, "SET", "list", "x")
        trip.add(broker, "HSET", "queue", "f", "v", must=True)  # a message refused: raises
        with pytest.raises(redis.ResponseError):
            trip.send()
        assert redis.Redis.from_url(f"{redis_url}/4").get("list") == b"x"  # the others ran


def test_the_state_changes_a_round_trip_carries_go_in_one_script_call(redis_url):
    """Given two batches in the live state, When a round trip carries a stage end of each of three
    documents, a stale change and a large value written in pieces by redis-py, Then it is one turn
    and one call of the transition script, which applies the newer changes in order and ignores the
    stale one, and each change's caller hears whether its batch has no open document left. A bulk
    copy of 450 changes is 3 script calls in one round trip. A change Redis refuses stops only
    itself: the bulk copy raises naming it, a stage's round trip hands it back to be logged."""
    from legaldoc.lifecycle import Attempt, AttemptOutcome, MirrorState, Transition
    from legaldoc.state.batches import CHANGES_PER_CALL, BatchState
    from legaldoc.state.connection import client as legaldoc_client

    with CountingProxy(_port(redis_url)) as proxy:
        client = legaldoc_client(f"redis://127.0.0.1:{proxy.port}/4")
        direct = redis.Redis.from_url(f"{redis_url}/4")
        state = BatchState(client, Keys(), retention_seconds=3600)
        for batch, documents in (("b1", [1, 2]), ("b2", [3])):
            state.init_batch(batch, {"name": batch, "status": "running", "created_at": 1.0},
                             {d: (1, MirrorState.PENDING) for d in documents})  # fmt: skip
        state.apply_transitions([Transition(1, "b1", 2, MirrorState.RUNNING, Stage.EXTRACT)])  # loads the script
        proxy.reset()
        direct.config_resetstat()
        trip = RoundTrip(client)
        settled: list[str] = []
        done = Attempt(Stage.RELATE, 1, AttemptOutcome.DONE, 12)
        state.queue_transition(trip, Transition(1, "b1", 3, MirrorState.RUNNING, Stage.CHUNK,
                                                Attempt(Stage.EXTRACT, 1, AttemptOutcome.DONE, 40)), settleable=settled.append)  # fmt: skip
        state.queue_transition(trip, Transition(1, "b1", 4, MirrorState.SUCCEEDED, None, done), settleable=settled.append)
        state.queue_transition(trip, Transition(1, "b1", 2, MirrorState.RUNNING, Stage.EXTRACT), settleable=settled.append)
        state.queue_transition(trip, Transition(3, "b2", 2, MirrorState.SUCCEEDED, None, done), settleable=settled.append)
        trip.add(client, "SET", "large", "x" * 20_000)  # over redis-py's 6 kB: a piece of its own
        assert len(trip) == 5
        assert trip.send() == []
        assert proxy.counts()["legaldoc"].round_trips == 1
        assert int(direct.info("commandstats")["cmdstat_evalsha"]["calls"]) == 1
        assert settled == ["b2"]  # b1 still has document 2 pending
        assert direct.hget(Keys().batch_docs("b1"), "1") == b"4|succeeded||"
        assert direct.hmget(Keys().batch("b1"), "succeeded", "running", "pending") == [b"1", b"0", b"1"]

        many = [Transition(1000 + d, "b3", 2, MirrorState.SUCCEEDED) for d in range(450)]
        state.init_batch("b3", {"name": "b3", "status": "running", "created_at": 1.0}, {t.document_id: (1, MirrorState.PENDING) for t in many})
        proxy.reset()
        direct.config_resetstat()
        assert state.apply_transitions(many) == {"b3"}
        assert proxy.counts()["legaldoc"].round_trips == 1
        assert int(direct.info("commandstats")["cmdstat_evalsha"]["calls"]) == -(-450 // CHANGES_PER_CALL) == 3
        assert direct.hget(Keys().batch("b3"), "succeeded") == b"450"

        # one change Redis refuses (its batch's documents hash is a string) stops only itself
        direct.hset(Keys().batch("b4"), "total", 1)
        direct.set(Keys().batch_docs("b4"), "not a hash")
        changes = [Transition(2, "b1", 3, MirrorState.SUCCEEDED), Transition(7, "b4", 2, MirrorState.SUCCEEDED),
                   Transition(1000, "b3", 1, MirrorState.RUNNING)]  # fmt: skip
        with pytest.raises(redis.ResponseError, match="1 of 3 state changes refused: ERR .*WRONGTYPE"):
            state.apply_transitions(changes)
        assert direct.hget(Keys().batch_docs("b1"), "2") == b"3|succeeded||"  # the one before it applied
        assert direct.hget(Keys().batch_docs("b3"), "1000") == b"2|succeeded||"  # the one after it ran (stale: older)
        trip = RoundTrip(client)
        state.queue_transition(trip, Transition(7, "b4", 3, MirrorState.SUCCEEDED))
        state.queue_transition(trip, Transition(3, "b2", 3, MirrorState.FAILED, None, None), settleable=settled.append)
        errors = trip.send()  # in a stage's round trip: handed back to be logged, the other change applied
        assert len(errors) == 1 and "1 of 2 state changes refused" in str(errors[0]), errors
        assert direct.hget(Keys().batch_docs("b2"), "3") == b"3|failed||" and settled == ["b2", "b2"]


def _runtime_through(proxy: CountingProxy, settings: Settings) -> Runtime:
    return Runtime(settings.model_copy(update={"redis_url": f"redis://127.0.0.1:{proxy.port}"})).open_database()


@pytest.mark.any_database  # round trips to Redis are the subject
def test_each_stage_ends_in_one_round_trip(batch_settings, tmp_path: Path):
    """Given a batch of 4 court e-mails run stage by stage by the stage runner, with the result
    cache, Then every stage ends in one round trip of legaldoc's connections (its state change,
    cache writes and the next stage's message together); extraction adds one, its cache lookup,
    which carries the document's running mark; resolution adds one, its entity-index read, only
    when the document brings an entity type the index this process holds lacks (the index it read
    or wrote last, valid while the project's generation is the same). The live state ends right:
    every document succeeded, the batch finished, and every message went to its queue."""
    folder = nef_copies(tmp_path / "docs", 4)
    redis.Redis.from_url(batch_settings.redis_url).script_flush()  # as a new server: earlier tests loaded scripts
    with CountingProxy(_port(batch_settings.redis_url)) as proxy:
        rt = _runtime_through(proxy, batch_settings)
        rt.require()
        submitted = service.submit_batch(rt, load_manifest(write_manifest(tmp_path / "m.yaml", [{"glob": f"{folder}/*"}])))
        runner = rt.runner
        ids = sorted(d["id"] for d in _documents(rt, submitted.batch_id))
        trips: dict[Stage, list[int]] = {stage: [] for stage in STAGES}
        running_seen = []
        for document_id in ids:
            for stage in STAGES:
                before = proxy.counts()["legaldoc"].round_trips
                if stage is Stage.EXTRACT:
                    original = runner._extract

                    def extract(document_id: int, options: dict, original=original):  # type: ignore[no-untyped-def]
                        work = original(document_id, options)
                        docs = redis.Redis.from_url(batch_settings.redis_url_for("state")).hget(
                            Keys().batch_docs(submitted.batch_id), str(document_id))  # fmt: skip
                        running_seen.append(docs.decode().split("|")[1])
                        return work

                    runner._extract = extract  # type: ignore[method-assign]
                assert runner.execute(document_id, stage, 1).status == "done"
                runner.__dict__.pop("_extract", None)
                trips[stage].append(proxy.counts()["legaldoc"].round_trips - before)
    assert running_seen == ["running"] * len(ids)  # while extraction ran, the document showed as running
    # the first document's stages also load the scripts into the server: one round trip each, once
    assert trips[Stage.EXTRACT] == [3] + [2] * (len(ids) - 1), trips
    assert trips[Stage.CHUNK] == trips[Stage.ENTITIES] == [1] * len(ids), trips
    held: set[str] = set()
    reads = []
    for document_id in ids:
        types = _mention_types(rt, document_id)
        reads.append(int(not types <= held))
        held |= types
    assert reads[0] == 1 and 0 in reads, reads  # the later documents mostly bring no new entity type
    assert trips[Stage.RESOLVE] == [2 + reads[0]] + [1 + read for read in reads[1:]], (trips, reads)
    # the last one also queues the batch's settling: once per batch, a round trip of its own, and one
    # more when the answer to "does a monitor listen for task events?" (held 1 s) has expired
    assert trips[Stage.RELATE][:-1] == [1] * (len(ids) - 1) and trips[Stage.RELATE][-1] in (2, 3), trips
    direct = Runtime(batch_settings)
    live = direct.state.read(submitted.batch_id)
    assert live is not None and live["succeeded"] == str(len(ids)) and live["running"] == "0"
    depths = direct.broker.depths()
    assert sum(depths.values()) == len(ids) * len(STAGES) + 1, depths  # every message published (none consumed here)


def test_a_chained_document_takes_two_round_trips_and_one_more_per_index_read_or_write(batch_settings, tmp_path: Path,
                                                                                       monkeypatch):  # fmt: skip
    """Given a batch of 7 court e-mails, 4 of them each run by one `execute` of its extract message
    with a chain that allows every later stage (a worker consuming every queue), Then each one's
    five stages run in turn, each its own claim and run, in two round trips: the extraction lookup
    (with the running mark and the question "does a more urgent message wait?") and the last
    stage's end, which carries the ends of the four before it in one script call; resolution adds
    its entity-index read when the document brings a type the held index lacks (the read carries
    the ends so far), and its end goes at once when it changed the index (other processes read it).
    No stage message is published after submit; the live state ends right. The next stage's message
    is published instead, and the chain stops, when the task has less than `CHAIN_SHARE` of that
    stage's soft limit left, when its claim cannot even be taken (a database error), and when a
    message more urgent than the document waits in the worker's queues."""
    from sqlalchemy import select
    from sqlalchemy.exc import OperationalError

    from legaldoc.storage import claims
    from legaldoc.storage.tables import Project, StageRun

    folder = nef_copies(tmp_path / "docs", 7)
    redis.Redis.from_url(batch_settings.redis_url).script_flush()
    queues = frozenset(q.value for q in (Queue.OCR, Queue.TEXT, Queue.ENTITY, Queue.GRAPH))
    every = chainable(q.value for q in Queue)
    assert every == frozenset(STAGES) - {Stage.EXTRACT}

    def chain(seconds: float = 3600) -> Chain:
        return Chain(every, time.monotonic() + seconds, queues)

    with CountingProxy(_port(batch_settings.redis_url)) as proxy:
        rt = _runtime_through(proxy, batch_settings)
        rt.require()
        submitted = service.submit_batch(rt, load_manifest(write_manifest(tmp_path / "m.yaml", [{"glob": f"{folder}/*"}])))
        ids = sorted(d["id"] for d in _documents(rt, submitted.batch_id))

        def generation() -> int:
            with rt.database.read() as session:
                return int(session.scalar(select(Project.entity_generation)) or 0)

        trips, scripts, changed = [], [], []
        for document_id in ids[:4]:
            before, calls, known = proxy.counts()["legaldoc"].round_trips, proxy.counts()["legaldoc"].commands.get("EVALSHA", 0), generation()
            outcome = rt.runner.execute(document_id, Stage.EXTRACT, 1, chain=chain())
            assert [o.status for o in outcome.chained()] == ["done"] * len(STAGES), outcome
            trips.append(proxy.counts()["legaldoc"].round_trips - before)
            scripts.append(proxy.counts()["legaldoc"].commands.get("EVALSHA", 0) - calls)
            changed.append(int(generation() != known))
        # too little time left for a chunk stage of its own (the text queue's soft limit)
        short = CHAIN_SHARE * batch_settings.soft_time_limit(Queue.TEXT.value) - 1
        assert not chain(short).allows(Stage.CHUNK, batch_settings)
        assert [o.status for o in rt.runner.execute(ids[4], Stage.EXTRACT, 1, chain=chain(short)).chained()] == ["done"]
        # the chained stage's claim fails: its message goes out, the extract stage stays done
        original = claims.claim

        def refused(session, document_id, stage, *args, **kwargs):  # type: ignore[no-untyped-def]
            if stage is Stage.CHUNK:
                raise OperationalError("UPDATE documents", {}, Exception("database is locked"))
            return original(session, document_id, stage, *args, **kwargs)

        monkeypatch.setattr(claims, "claim", refused)
        assert [o.status for o in rt.runner.execute(ids[5], Stage.EXTRACT, 1, chain=chain()).chained()] == ["done"]
        monkeypatch.setattr(claims, "claim", original)
        # a more urgent message waits (priority 9; the batch is 5): no chaining
        Runtime(batch_settings).broker.publish_stage([(10**9, Stage.EXTRACT, 1)], 9)
        assert [o.status for o in rt.runner.execute(ids[6], Stage.EXTRACT, 1, chain=chain()).chained()] == ["done"]
    held: set[str] = set()
    reads = []
    for document_id in ids[:4]:
        types = _mention_types(rt, document_id)
        reads.append(int(not types <= held))
        held |= types
    print(f"\nround trips of chained documents: {trips}, script calls {scripts}, index reads {reads}, index writes {changed}")
    # the first document also loads the scripts into the server (one round trip each, once)
    assert trips[0] >= 2 + reads[0] + changed[0], (trips, reads, changed)
    assert trips[1:] == [2 + read + write for read, write in zip(reads[1:], changed[1:], strict=True)], (trips, reads, changed)
    # the running mark; the other ends (one call per round trip that carries any); the index write
    assert scripts[1:] == [2 + read + 2 * write for read, write in zip(reads[1:], changed[1:], strict=True)], scripts
    direct = Runtime(batch_settings)
    live = direct.state.read(submitted.batch_id)
    assert live is not None and live["succeeded"] == "4" and live["running"] == "3", live
    depths = direct.broker.depths()
    # submit's 7, the urgent one, and the three chunk messages the chains published instead
    assert (depths[Queue.OCR.value], depths[Queue.TEXT.value], sum(depths.values())) == (8, 3, 11), depths
    with rt.database.read() as session:
        runs = session.execute(select(StageRun.document_id, StageRun.stage, StageRun.attempt)).all()
    assert sorted((r.document_id, r.stage) for r in runs) == sorted(
        [(d, s.value) for d in ids[:4] for s in STAGES] + [(d, Stage.EXTRACT.value) for d in ids[4:]])
    assert {r.attempt for r in runs} == {1}


def _mention_types(rt: Runtime, document_id: int) -> set[str]:
    from sqlalchemy import select

    from legaldoc.storage.tables import MentionRow

    with rt.database.read() as session:
        return {str(t) for t in session.scalars(select(MentionRow.type).where(MentionRow.document_id == document_id))}


def _documents(rt: Runtime, batch_id: str) -> list[dict]:
    from sqlalchemy import select

    from legaldoc.storage.tables import BatchDocument

    with rt.database.read() as session:
        return [{"id": i} for i in session.scalars(select(BatchDocument.document_id).where(BatchDocument.batch_id == batch_id))]
