"""The one vocabulary: the completion rule, the Lua scripts' states spelt as the enums spell them,
their headers naming what callers pass, transitions idempotent and order-proof, and every command
keeping batches for the retention set."""

from __future__ import annotations

import json
import random
import re
from pathlib import Path

import pytest
import redis

from legaldoc.errors import ErrorCategory
from legaldoc.lifecycle import (
    Attempt,
    AttemptOutcome,
    BatchStatus,
    DocumentStatus,
    Failure,
    MirrorState,
    Transition,
    mirror_state,
    settled_status,
)
from legaldoc.models import STAGES
from legaldoc.services.monitor import Monitor
from legaldoc.state.batches import BatchState
from legaldoc.state.keys import Keys
from legaldoc.state.scripts import Script
from tests.batchkit import nef_copies, write_manifest
from tests.conftest import settings_env
from tests.test_cli import legaldoc

LUA = Path(__file__).resolve().parents[1] / "legaldoc" / "state" / "lua"
ENUMS = (MirrorState, BatchStatus, DocumentStatus)


def test_completion_rule():
    assert settled_status(BatchStatus.RUNNING, 0) is BatchStatus.FINISHED
    assert settled_status(BatchStatus.CANCELLING, 0) is BatchStatus.CANCELLED
    assert settled_status(BatchStatus.RUNNING, 3) is BatchStatus.RUNNING
    assert settled_status(BatchStatus.CANCELLING, 3) is BatchStatus.CANCELLING
    assert settled_status(BatchStatus.FINISHED, 2) is BatchStatus.RUNNING  # recovered documents reopen it
    assert settled_status(BatchStatus.CANCELLED, 0) is BatchStatus.CANCELLED
    assert mirror_state("done", "succeeded", True) is MirrorState.SUCCEEDED
    assert mirror_state("pending", None, True) is MirrorState.PENDING
    assert mirror_state("pending", None, False) is MirrorState.RUNNING  # another run holds it
    assert mirror_state("queued", None, True) is MirrorState.RUNNING


@pytest.mark.parametrize("script", sorted(LUA.glob("*.lua")), ids=lambda p: p.stem)
def test_lua_states_are_the_enums(script: Path):
    """Every state a script names is a constant declared under the marker comment, with the name and
    value of an enum member; no state appears as a bare string anywhere else in the script."""
    lines = script.read_text().splitlines()
    values = {member.value for enum in ENUMS for member in enum}
    declared: dict[str, str] = {}
    for i, line in enumerate(lines):
        if "(a test checks them against legaldoc.lifecycle)" in line:
            for follow in lines[i + 1 :]:
                match = re.match(r"local ([A-Z_, ]+) = (.+)$", follow)
                if not match:
                    break
                names = [n.strip() for n in match[1].split(",")]
                quoted = re.findall(r"'([^']*)'", match[2])
                declared.update(zip(names, quoted, strict=True))
    for name, value in declared.items():
        assert any(name in enum.__members__ and enum[name].value == value for enum in ENUMS), (name, value)
    body = [line for line in lines if not re.match(r"local [A-Z_, ]+ = '", line) and not line.lstrip().startswith("--")]
    bare = {s for line in body for s in re.findall(r"'([^']*)'", line)} & values
    assert not bare, f"{script.name} spells states as strings: {sorted(bare)}"


def test_scripts_refuse_missing_or_unknown_names(redis_url):
    script = Script(redis.Redis.from_url(redis_url), "release_lock")
    assert (script.keys, script.args) == (["lock"], ["token"])
    assert script({"lock": "legaldoc:lock:nothing"}, {"token": "t"}) == 0
    with pytest.raises(TypeError, match="expected"):
        script({"lock": "x"}, {"token": "t", "extra": 1})


def _lives(document_id: int, batch_id: str, fails_at: int | None) -> list[Transition]:
    """Every transition of one document through the stages: started, each stage done; or a retry
    then a failure for good at stage `fails_at`."""
    changes = [Transition(document_id, batch_id, 1, MirrorState.RUNNING, STAGES[0])]
    for n, stage in enumerate(STAGES):
        version = len(changes) + 1
        if n == fails_at:
            failure = Failure(ErrorCategory.TRANSIENT, "reset")
            changes.append(Transition(document_id, batch_id, version, MirrorState.RUNNING, stage,
                                      Attempt(stage, 1, AttemptOutcome.RETRY, 10, failure)))  # fmt: skip
            changes.append(Transition(document_id, batch_id, version + 1, MirrorState.FAILED, stage,
                                      Attempt(stage, 2, AttemptOutcome.FAILED, 10, failure)))  # fmt: skip
            return changes
        last = n == len(STAGES) - 1
        changes.append(Transition(document_id, batch_id, version, MirrorState.SUCCEEDED if last else MirrorState.RUNNING,
                                  None if last else STAGES[n + 1], Attempt(stage, 1, AttemptOutcome.DONE, 20 + n)))  # fmt: skip
    return changes


def _mirror(client: redis.Redis, keys: Keys, batch_id: str) -> tuple:
    return (client.hgetall(keys.batch(batch_id)), client.hgetall(keys.batch_docs(batch_id)),
            client.hgetall(keys.batch_errors(batch_id)))  # fmt: skip


def test_transitions_are_idempotent_and_order_proof(redis_url):
    """Given the transitions of 30 documents (some failing at some stage), When they are applied in
    order, then all again in a random order, Then nothing changes; and applied in a random order to
    a fresh batch they end in the same state; the last one reports the batch settleable."""
    client = redis.Redis.from_url(redis_url)
    keys = Keys("replay:")
    state = BatchState(client, keys, retention_seconds=3600)
    rng = random.Random(7)
    fields = {"name": "replay", "project": "p", "priority": 5, "status": BatchStatus.RUNNING, "created_at": 1.0}
    lives = {d: _lives(d, "", rng.choice([None, None, 1, 3])) for d in range(1, 31)}
    ends = {}
    for batch_id in ("in-order", "shuffled"):
        state.init_batch(batch_id, fields, {d: (0, MirrorState.PENDING) for d in lives})
        changes = [Transition(t.document_id, batch_id, t.version, t.state, t.stage, t.attempt)
                   for life in lives.values() for t in life]  # fmt: skip
        if batch_id == "shuffled":
            rng.shuffle(changes)
        settleable = set()
        for t in changes:
            settleable |= state.apply_transitions([t], now=100.0)
        assert settleable == {batch_id}
        ends[batch_id] = _mirror(client, keys, batch_id)
        rng.shuffle(changes)
        assert state.apply_transitions(changes, now=200.0) == set()
        assert _mirror(client, keys, batch_id) == ends[batch_id]
    live = {k.decode(): v.decode() for k, v in ends["in-order"][0].items()}
    failed = sum(1 for life in lives.values() if life[-1].state is MirrorState.FAILED)
    assert (int(live["succeeded"]), int(live["failed"]), int(live["pending"]), int(live["running"])) == (30 - failed, failed, 0, 0)
    assert ends["in-order"][1] == ends["shuffled"][1] and ends["in-order"][2].keys() == ends["shuffled"][2].keys()


def _ttl(redis_url: str, prefix: str, batch_id: str) -> int:
    return redis.Redis.from_url(redis_url).ttl(f"{prefix}batch:{batch_id}")


def test_every_command_keeps_batches_for_the_retention_setting(batch_settings, start_worker, tmp_path):
    """Given batch_retention_days of 0.01 (864 s), When batches end through `cancel`, `submit --wait`
    with a worker, and the dashboard's cancel, Then each batch's live state expires within 864 s."""
    settings = batch_settings.model_copy(update={"batch_retention_days": 0.01})
    env = settings_env(settings)
    state_url = settings.redis_url_for("state")
    retention = 864

    folder = nef_copies(tmp_path / "a", 2)
    submitted = legaldoc("submit", str(write_manifest(tmp_path / "a.yaml", [{"glob": f"{folder}/*"}], name="a")),
                         "--json", cwd=tmp_path, env=env)  # fmt: skip
    cancelled_id = json.loads(submitted.stdout)["batch_id"]
    result = legaldoc("cancel", cancelled_id, "--json", cwd=tmp_path, env=env)
    assert result.returncode == 0 and json.loads(result.stdout)["status"] == "cancelled", result.stderr
    assert 0 < _ttl(state_url, settings.redis_prefix, cancelled_id) <= retention

    folder = nef_copies(tmp_path / "b", 2, offset=5)
    manifest = write_manifest(tmp_path / "b.yaml", [{"glob": f"{folder}/*"}], name="b")
    submitted = legaldoc("submit", str(manifest), "--json", cwd=tmp_path, env=env)
    monitored_id = json.loads(submitted.stdout)["batch_id"]
    assert Monitor(settings).cancel(monitored_id).summary.status is BatchStatus.CANCELLED
    assert 0 < _ttl(state_url, settings.redis_prefix, monitored_id) <= retention

    start_worker(concurrency=1, settings=settings)
    folder = nef_copies(tmp_path / "c", 2, offset=9)
    waited = legaldoc("submit", str(write_manifest(tmp_path / "c.yaml", [{"glob": f"{folder}/*"}], name="c")),
                      "--wait", "--json", cwd=tmp_path, env=env)  # fmt: skip
    assert waited.returncode == 0, waited.stderr
    finished_id = json.loads(waited.stdout)["batch_id"]
    assert 0 < _ttl(state_url, settings.redis_prefix, finished_id) <= retention


def test_recover_with_nothing_failed_leaves_a_running_batch_running(batch_settings, tmp_path):
    """Given a batch whose documents wait for a worker, When it is recovered (nothing failed), Then
    it is still running in the database and in Redis: only settling ends a batch."""
    from legaldoc.services import recovery
    from tests.batchkit import connect

    cluster = connect(batch_settings)
    folder = nef_copies(tmp_path / "docs", 3)
    submitted = cluster.submit(write_manifest(tmp_path / "m.yaml", [{"glob": f"{folder}/*"}]))
    result = recovery.recover_batch(cluster.rt, submitted.batch_id, categories=recovery.chosen_categories(None, True))
    assert result.requeued == 0
    assert cluster.stored(submitted.batch_id)["status"] == "running"
    assert cluster.wait_until(submitted.batch_id, lambda s: True)["status"] == "running"
