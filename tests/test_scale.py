"""Large batches stay cheap: manifest expansion without a resolve() per file (same documents, same
order as before), `status --docs` one page at a time, `cancel` taking its messages out of the queues."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from legaldoc import manifest as manifest_module
from legaldoc.errors import UsageError
from legaldoc.manifest import load_manifest
from legaldoc.models import STAGES
from legaldoc.paths import source_text
from legaldoc.queues import STAGE_QUEUE, broker_priority
from legaldoc.services import batches as service
from legaldoc.state.broker import Broker
from legaldoc.state.purge import drop_stage_messages
from tests.batchkit import connect, nef_copies, write_manifest
from tests.conftest import settings_env
from tests.test_cli import legaldoc


def _old_expansion(pattern: str) -> list[str]:
    """What manifest globs expanded to before: every match resolved, sorted as Paths, files whose
    resolved name is not hidden."""
    matches = sorted(Path(p).resolve() for p in manifest_module.bounded_glob(pattern, 100_000))
    return [source_text(p) for p in matches if p.is_file() and not p.name.startswith(".")]


def _tree(root: Path) -> None:
    for name in ["a/b/x.txt", "a-b/c.txt", "a.b/d.txt", "a/.hidden.txt", "a/b-c.txt", "a/b/.dot/y.txt", "z/.real.txt",
                 "z/target.txt", "ab/c.txt", "a/b c.txt", "A/q.txt", "a/é.txt", "outside/o.txt"]:  # fmt: skip
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(name)
    (root / "a" / "to-hidden.txt").symlink_to(root / "z" / ".real.txt")  # resolves to a hidden name: left out
    (root / "a" / "to-target.txt").symlink_to(root / "z" / "target.txt")  # the same file twice: once
    (root / "a" / "broken.txt").symlink_to(root / "nowhere.txt")
    (root / "a" / "linked").symlink_to(root / "outside")
    (root / "a" / "up").symlink_to(root / "a")
    (root / "a" / "dir.txt").mkdir()
    os.mkfifo(root / "a" / "fifo.txt")


@pytest.mark.parametrize("pattern", ["**/*.txt", "a/*", "a/**", "*/*.txt", "a/linked/*", "a/up/b/*", "a/.*", "a/b/../*.txt",
                                     "**/.*/*.txt", "[aA]*/*.txt"])  # fmt: skip
def test_glob_expansion_is_what_resolving_each_match_gave(tmp_path, pattern):
    root = tmp_path / "root"
    _tree(root)
    manifest = tmp_path / "m.yaml"
    manifest.write_text(f"project: p\ndocuments:\n  - glob: {json.dumps(pattern)}\n")
    expected = list(dict.fromkeys(_old_expansion(str(tmp_path / pattern))))
    if not expected:
        with pytest.raises(UsageError, match="matches no files"):
            load_manifest(manifest)
        return
    assert [d.source for d in load_manifest(manifest).documents] == expected
    assert [d.source for d in load_manifest(manifest, roots=[tmp_path.resolve()]).documents] == expected


def test_path_entries_resolve_links_and_dotdot_as_before(tmp_path):
    root = tmp_path / "root"
    _tree(root)
    (tmp_path / "via").symlink_to(root / "a")
    entries = ["root/a/b/x.txt", "root/a/b/../b-c.txt", "via/to-target.txt", "./root/a/./b c.txt", "via/up/up/é.txt",
               str(root / "a" / "linked" / "o.txt"), "root/a/to-hidden.txt"]  # fmt: skip
    manifest = tmp_path / "m.yaml"
    manifest.write_text("project: p\ndocuments:\n" + "".join(f"  - path: {json.dumps(e)}\n" for e in entries))
    expected = list(dict.fromkeys(source_text((tmp_path / e).resolve()) for e in entries))
    assert [d.source for d in load_manifest(manifest).documents] == expected
    for missing in ["root/a/broken.txt", "root/a/dir.txt", "root/a/nothing.txt"]:
        manifest.write_text(f"project: p\ndocuments:\n  - path: {json.dumps(missing)}\n")
        with pytest.raises(UsageError, match="does not exist"):
            load_manifest(manifest)


def test_path_order_is_part_by_part(tmp_path):
    """`a/b` comes before `a-b` (as Paths sort), though '-' sorts before '/' in a string."""
    for name in ["a-b/1.txt", "a/b/2.txt", "a.b/3.txt", "a/4.txt"]:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("x")
    manifest = tmp_path / "m.yaml"
    manifest.write_text("project: p\ndocuments:\n  - glob: '**/*.txt'\n")
    names = [Path(d.source).relative_to(tmp_path.resolve()).as_posix() for d in load_manifest(manifest).documents]
    assert names == ["a/4.txt", "a/b/2.txt", "a-b/1.txt", "a.b/3.txt"]


def test_status_docs_pages_by_limit_offset_and_cursor(batch_settings, tmp_path):
    cluster = connect(batch_settings)
    folder = nef_copies(tmp_path / "docs", 7)
    submitted = cluster.submit(write_manifest(tmp_path / "m.yaml", [{"glob": f"{folder}/*"}]))
    env = settings_env(batch_settings)
    every = [d["document_id"] for d in cluster.documents(submitted.batch_id)]
    assert len(every) == 7 and every == sorted(every)

    page = legaldoc("status", submitted.batch_id, "--docs", "--limit", "3", "--offset", "2", "--json", cwd=tmp_path, env=env)
    assert page.returncode == 0, page.stderr
    shown = json.loads(page.stdout)
    assert [d["document_id"] for d in shown["documents"]] == every[2:5]
    assert shown["total"] == 7 and shown["documents_page"]["next_offset"] == 5 and shown["documents_page"]["next_after"] == every[4]
    last = legaldoc("status", submitted.batch_id, "--docs", "--limit", "3", "--after", str(every[4]), "--json", cwd=tmp_path, env=env)
    tail = json.loads(last.stdout)
    assert [d["document_id"] for d in tail["documents"]] == every[5:]
    assert tail["documents_page"]["next_offset"] is None and tail["documents_page"]["next_after"] is None

    text = legaldoc("status", submitted.batch_id, "--docs", "--limit", "2", cwd=tmp_path, env=env)
    assert text.returncode == 0, text.stderr
    rows = [line.split()[0] for line in text.stdout.splitlines() if line.split() and line.split()[0].isdigit()]
    assert rows == [str(i) for i in every[:2]]
    assert "next page: --offset 2" in text.stderr and f"--after {every[1]}" in text.stderr

    whole = legaldoc("status", submitted.batch_id, "--docs", "--limit", "0", "--json", cwd=tmp_path, env=env)
    assert [d["document_id"] for d in json.loads(whole.stdout)["documents"]] == every
    # The service's cursor reader pages on its own and gives the same rows.
    assert [d.document_id for d in service.iter_batch_documents(cluster.rt, submitted.batch_id, page=2)] == every
    assert [d.document_id for d in service.iter_batch_documents(cluster.rt, submitted.batch_id, page=2, offset=1, limit=4)] == every[1:5]


def _queued(broker: Broker, priority: int) -> dict[str, list[bytes]]:
    lists = {broker.keys.queue_lists(STAGE_QUEUE[s].value)[broker_priority(priority)] for s in STAGES}
    return {key: broker.client.lrange(key, 0, -1) for key in sorted(lists)}


@pytest.mark.any_database  # the queues in Redis are the subject
def test_cancel_takes_its_messages_out_and_other_batches_run(batch_settings, start_worker, tmp_path):
    cluster = connect(batch_settings)
    kept = cluster.submit(write_manifest(tmp_path / "keep.yaml", [{"glob": f"{nef_copies(tmp_path / 'keep', 3)}/*"}],
                                         project="keep"))  # fmt: skip
    before = _queued(cluster.broker, kept.priority)
    doomed = cluster.submit(write_manifest(tmp_path / "doomed.yaml", [{"glob": f"{nef_copies(tmp_path / 'doomed', 6, 3)}/*"}]))
    late = cluster.submit(write_manifest(tmp_path / "late.yaml", [{"glob": f"{nef_copies(tmp_path / 'late', 2, 9)}/*"}],
                                         project="late"))  # fmt: skip
    assert sum(map(len, _queued(cluster.broker, kept.priority).values())) == 11

    result = service.cancel_batch(cluster.rt, doomed.batch_id)
    assert result.cancelled_now == 6
    after = _queued(cluster.broker, kept.priority)
    doomed_ids = {d["document_id"] for d in cluster.documents(doomed.batch_id)}
    assert not [m for messages in after.values() for m in messages if any(f'"argsrepr": "({i},' in m.decode() for i in doomed_ids)]
    late_ids = {d["document_id"] for d in cluster.documents(late.batch_id)}
    for key, messages in after.items():  # the others, in their order: the late batch's newest on the left
        late_part = [m for m in messages if any(f'"argsrepr": "({i},' in m.decode() for i in late_ids)]
        assert messages == late_part + before[key]

    start_worker(concurrency=1)
    assert cluster.wait(kept.batch_id)["succeeded"] == 3
    assert cluster.wait(late.batch_id)["succeeded"] == 2
    assert cluster.stored(doomed.batch_id)["cancelled"] == 6


@pytest.mark.any_database  # the queues in Redis are the subject
def test_dropping_keeps_messages_of_another_database_and_other_documents(batch_settings):
    """Two installations sharing a Redis number documents alike: only this database's messages go."""
    cluster = connect(batch_settings)
    ours = cluster.broker
    theirs = Broker(ours.client, ours.keys, database=lambda: "another-database")
    ours.publish_stage([(1, STAGES[0], 1), (2, STAGES[0], 1), (3, STAGES[0], 2)], 5)
    theirs.publish_stage([(1, STAGES[0], 1), (2, STAGES[0], 1)], 5)
    ours.publish_stage([(2, STAGES[1], 1), (4, STAGES[0], 1)], 5)
    key = ours.keys.queue_lists(STAGE_QUEUE[STAGES[0]].value)[broker_priority(5)]
    first = ours.client.lrange(key, 0, -1)
    other_lists = [ours.keys.queue_lists(STAGE_QUEUE[STAGES[1]].value)[broker_priority(5)]]
    lists = list(dict.fromkeys([key, *other_lists]))
    dropped = drop_stage_messages(ours.client, lists, [1, 2, 3, *range(1000, 21_000)], cluster.database.identity)  # past Lua's unpack limit
    assert dropped == 4  # 1, 2 and 3 here, and 2's next stage (its own list, or the same one)
    left = ours.client.lrange(key, 0, -1)
    who = [(m.decode().split('"argsrepr": "(')[1].split(",")[0], "another-database" in m.decode()) for m in left]
    assert who == [("4", False), ("2", True), ("1", True)]
    assert left == [m for m in first if m in left]  # order kept
    assert drop_stage_messages(ours.client, lists, [99], cluster.database.identity) == 0


@pytest.mark.any_database  # the queues in Redis are the subject
def test_too_many_waiting_messages_are_left_alone(batch_settings, monkeypatch):
    """Past MAX_MESSAGES the script would hold Redis for seconds: nothing is removed, and it says so."""
    from legaldoc.state import purge

    cluster = connect(batch_settings)
    cluster.broker.publish_stage([(i, STAGES[0], 1) for i in range(1, 6)], 5)
    key = cluster.broker.keys.queue_lists(STAGE_QUEUE[STAGES[0]].value)[broker_priority(5)]
    monkeypatch.setattr(purge, "MAX_MESSAGES", 4)
    with pytest.raises(purge.TooManyMessages, match="5 messages wait"):
        drop_stage_messages(cluster.broker.client, [key], [1, 2], cluster.database.identity)
    assert cluster.broker.client.llen(key) == 5
    monkeypatch.setattr(purge, "MAX_MESSAGES", 5)
    assert drop_stage_messages(cluster.broker.client, [key], [1, 2], cluster.database.identity) == 2
