"""The result cache on a real redis-server and real workers: the same bytes are extracted (and OCR'd)
once across projects, entity indexes are served from Redis only while current, and the
`cache warm|stats|clear` commands do what they say, with a TTL on every key."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import redis
from sqlalchemy import select

from legaldoc.models import Stage
from legaldoc.pipeline.extract.ocr import resolved_engine
from legaldoc.services import stages as stages_module
from legaldoc.services.process import sha256_file
from legaldoc.services.stages import StageRunner
from legaldoc.services.wiring import Runtime
from legaldoc.state.keys import Keys
from legaldoc.storage import repository as repo
from legaldoc.storage.db import Database
from legaldoc.storage.tables import Document, Entity, EntityAlias, MentionRow, Page, Project
from tests.batchkit import connect, nef_copies, write_manifest
from tests.conftest import DOCUMENTS, settings_env
from tests.test_cli import legaldoc

SCAN = DOCUMENTS / "image-pdf-2.pdf"  # one scanned page: its text exists only through OCR
STAGES = list(Stage)


def _document(database: Database, project: str) -> Document:
    with database.read() as session:
        return session.scalars(select(Document).join(Project).where(Project.name == project)).one()


def _pages(database: Database, document_id: int) -> list[tuple]:
    with database.read() as session:
        return [tuple(r) for r in session.execute(
            select(Page.number, Page.start, Page.end, Page.ocr, Page.method).where(Page.document_id == document_id).order_by(Page.number)
        )]  # fmt: skip


def _stats(env: dict, cwd: Path) -> dict[str, dict]:
    result = legaldoc("cache", "stats", "--json", cwd=cwd, env=env)
    assert result.returncode == 0, result.stderr
    return {entry["namespace"]: entry for entry in json.loads(result.stdout)}


@pytest.mark.any_database  # the extraction cache lives in Redis; the database lookup has its twin in test_cached_entity_indexes...
def test_the_same_scanned_pdf_is_not_extracted_again_in_another_project(batch_settings, start_worker, tmp_path):
    """Given a scanned PDF processed in project alpha, When the same bytes (another path) arrive in
    projects beta and gamma on a worker whose tesseract does not exist, Then both are done with
    alpha's text and page map (OCR was never called: it would have failed CONFIGURATION), beta
    from Redis and gamma, after `cache clear`, from the database; the stage metric and the cache
    counters record the hits. A changed file on that worker does need OCR, and fails."""
    env = settings_env(batch_settings)
    cluster = connect(batch_settings)
    alpha = cluster.submit(write_manifest(tmp_path / "a.yaml", [{"path": str(SCAN)}], project="alpha")).batch_id
    first_worker = start_worker(concurrency=1)
    assert cluster.wait(alpha)["succeeded"] == 1
    first_worker.stop(timeout=20)
    original = _document(cluster.database, "alpha")
    assert original.ocr_pages == 1

    # Same engine (the key names it), but no language data and no CLI: this worker cannot OCR.
    blind = batch_settings.model_copy(update={"ocr_engine": resolved_engine(batch_settings), "tessdata_dir": str(tmp_path),
                                              "tesseract_cmd": str(tmp_path / "no-such-tesseract")})  # fmt: skip
    start_worker(concurrency=1, settings=blind)
    copy = tmp_path / "beta" / "copy.pdf"
    copy.parent.mkdir()
    copy.write_bytes(SCAN.read_bytes())
    beta = cluster.submit(write_manifest(tmp_path / "b.yaml", [{"path": str(copy)}], project="beta")).batch_id
    assert cluster.wait(beta)["succeeded"] == 1
    cached = _document(cluster.database, "beta")
    with cluster.database.read() as session:
        texts = [session.get(Document, d).text for d in (original.id, cached.id)]  # text is deferred
    assert texts[0] == texts[1] and len(texts[0]) > 500
    assert _pages(cluster.database, cached.id) == _pages(cluster.database, original.id)
    assert cached.extract_key == original.extract_key and cached.sha256 == original.sha256

    metrics = redis.Redis.from_url(batch_settings.redis_url_for("state")).zrange(Keys().stage_metrics("extract"), 0, -1)
    outcomes = {m.decode().split("|")[0]: m.decode().split("|")[-1] for m in metrics}
    assert outcomes == {str(original.id): "done", str(cached.id): "cached"}
    stats = _stats(env, tmp_path)["extract"]
    assert (stats["hits"], stats["database_hits"], stats["keys"]) == (1, 0, 1), stats
    assert stats["hit_rate"] == 0.5  # alpha's lookup missed, beta's hit

    cleared = legaldoc("cache", "clear", "--yes", "--json", cwd=tmp_path, env=env)
    assert cleared.returncode == 0 and json.loads(cleared.stdout)["removed"] >= 1, cleared.stderr
    gamma = cluster.submit(write_manifest(tmp_path / "c.yaml", [{"path": str(copy)}], project="gamma")).batch_id
    assert cluster.wait(gamma)["succeeded"] == 1
    assert _pages(cluster.database, _document(cluster.database, "gamma").id) == _pages(cluster.database, original.id)
    stats = _stats(env, tmp_path)["extract"]
    assert (stats["misses"], stats["database_hits"], stats["keys"]) == (1, 1, 1), stats  # and it is back in Redis

    changed = tmp_path / "delta" / "changed.pdf"
    changed.parent.mkdir()
    changed.write_bytes(SCAN.read_bytes() + b"\n% one more byte changes the content address\n")
    delta = cluster.submit(write_manifest(tmp_path / "d.yaml", [{"path": str(changed)}], project="delta")).batch_id
    status = cluster.wait(delta)
    assert status["failed"] == 1 and status["errors_by_category"] == {"CONFIGURATION": 1}, status


def _process(database: Database, settings, files: list[Path], cache, runner: StageRunner | None = None) -> StageRunner:
    runner = runner or StageRunner(settings, database, retries=False, cache=cache)
    with database.session() as session:
        project_id = repo.get_or_create_project(session, "acme").id
    for path in files:
        sha256, size = sha256_file(path)
        with database.session() as session:
            document_id = repo.register_document(session, project_id, str(path), sha256, size).id
            repo.reset_for_run(session, [document_id], batch_id=None)
        for stage in STAGES:
            assert runner.execute(document_id, stage, 1).status == "done"
    return runner


def _rename_behind(database: Database, source: Path) -> tuple[int, str]:
    """Another writer renames a court of `source`'s (longer: it stays the entity's name) and gives
    the project a new generation. Returns the entity's id and new name."""
    with database.session() as session:
        entity = session.scalars(
            select(Entity).join(MentionRow, MentionRow.entity_id == Entity.id).join(Document)
            .where(Document.source == str(source), Entity.type == "COURT")
        ).first()  # fmt: skip
        entity.name = renamed = entity.name + " (renamed by another writer)"
        repo.bump_entity_generation(session, repo.find_project(session, "acme").id)
        return entity.id, renamed


def _copy(source: Path, folder: Path) -> Path:
    folder.mkdir()
    copy = folder / source.name
    copy.write_bytes(source.read_bytes())
    return copy


def _entities(database: Database) -> set[tuple]:
    with database.read() as session:
        entities = {(e.id, e.type, e.key, e.name) for e in session.scalars(select(Entity))}
        aliases = {(a.entity_id, a.alias, a.reason) for a in session.scalars(select(EntityAlias))}
    by_id = {e[0]: e[1:] for e in entities}
    return {e[1:] for e in entities} | {(*by_id[a[0]], a[1], a[2]) for a in aliases}


def test_cached_entity_indexes_resolve_exactly_like_the_database(batch_settings, tmp_path):
    """Given the same court e-mails resolved into two databases, one reading its entity index from
    Redis and one from the database, Then the canonical entities and aliases are identical; the
    cache served most lookups; a generation changed behind the cache's back (another writer) makes
    the next lookup a miss, not a stale read."""
    files = sorted(nef_copies(tmp_path / "docs", 12).iterdir())
    cache = Runtime(batch_settings).cache
    cached_db = Database(f"sqlite:///{tmp_path / 'cached.db'}")
    plain_db = Database(f"sqlite:///{tmp_path / 'plain.db'}")
    _process(cached_db, batch_settings, files, cache)
    _process(plain_db, batch_settings, files, None)
    assert _entities(cached_db) == _entities(plain_db) and len(_entities(plain_db)) > 50
    stats = {s.namespace: s for s in cache.stats()}["entities"]
    # A lookup misses only when a document brings an entity type no earlier document had (the first
    # document included); every other lookup is served by the cache.
    seen: set[str] = set()
    introducing = 0
    with plain_db.read() as session:
        for path in files:
            types = set(session.scalars(select(MentionRow.type).join(Document).where(Document.source == str(path))))
            introducing += bool(types - seen)
            seen |= types
    assert stats.misses == introducing < len(files) / 2 and stats.hits == len(files) - introducing, stats
    assert stats.keys == 1, stats

    # Another writer renames an entity behind the cache's back and gives the project a new generation.
    entity_id, renamed = _rename_behind(cached_db, files[0])
    _process(cached_db, batch_settings, [_copy(files[0], tmp_path / "again")], cache)
    with cached_db.read() as session:
        assert session.get(Entity, entity_id).name == renamed  # a stale index would have put the old name back
    after = {s.namespace: s for s in cache.stats()}["entities"]
    assert after.misses == stats.misses + 1


@pytest.mark.any_database  # an index held in process is the same on either database
@pytest.mark.parametrize("redis_cache", [True, False], ids=["redis", "no-redis"])
def test_an_index_held_in_process_is_used_only_at_its_generation(batch_settings, tmp_path, redis_cache, monkeypatch):
    """Given one stage runner (one worker process) resolving court e-mails, with and without the
    Redis cache, Then it resolves exactly as a database-only run; When another writer changes an
    entity and the project's generation behind its back, Then the same runner's next resolution
    sees the change (the index it held is not used), and a transaction that rolled back leaves
    nothing held."""
    files = sorted(nef_copies(tmp_path / "docs", 8).iterdir())
    cache = Runtime(batch_settings).cache if redis_cache else None
    held_db = Database(f"sqlite:///{tmp_path / 'held.db'}")
    plain_db = Database(f"sqlite:///{tmp_path / 'plain.db'}")
    runner = _process(held_db, batch_settings, files[:-1], cache)
    assert runner.cache._held, "the runner holds the project's index"
    _process(plain_db, batch_settings, files[:-1], None)
    assert _entities(held_db) == _entities(plain_db)

    entity_id, renamed = _rename_behind(held_db, files[0])
    _process(held_db, batch_settings, [_copy(files[0], tmp_path / "again")], cache, runner)
    with held_db.read() as session:
        project_id = repo.find_project(session, "acme").id
        assert session.get(Entity, entity_id).name == renamed  # the held index would have put the old name back
        generation = repo.entity_generation(session, project_id)
    assert runner.cache._held[project_id][0] == generation  # it holds what it read (and wrote) now

    # a resolution that changes the index, then fails in the same transaction: its new generation
    # is never held
    changes = []
    changed = runner.cache.entity_index_changed

    def changing(*args, **kwargs):
        changes.append(args[1])
        return changed(*args, **kwargs)

    def fail(*args, **kwargs):
        raise RuntimeError("the database went away")

    with held_db.session() as session:
        document_id = repo.register_document(session, project_id, str(files[-1]), *sha256_file(files[-1])).id
        repo.reset_for_run(session, [document_id], batch_id=None)
    for stage in STAGES[:3]:
        assert runner.execute(document_id, stage, 1).status == "done"
    monkeypatch.setattr(runner.cache, "entity_index_changed", changing)
    monkeypatch.setattr(stages_module.claims, "advance", fail)
    assert runner.execute(document_id, Stage.RESOLVE, 1).status != "done"
    assert changes == [project_id]  # it did change the index, then rolled back
    with held_db.read() as session:
        assert runner.cache._held[project_id][0] == repo.entity_generation(session, project_id) == generation


@pytest.mark.any_database  # the cache lives in Redis; the PostgreSQL reads it warms from are those of the tests above
def test_cache_warm_stats_and_clear(batch_settings, tmp_path):
    """Given a project processed without Redis, When `cache warm` runs, Then its entity index and
    every extraction result are in Redis, each key with a TTL, large results by reference; `cache
    stats` counts them; `cache clear --project` removes them; mistakes are usage errors."""
    env = settings_env(batch_settings)
    folder = nef_copies(tmp_path / "docs", 5)
    (folder / "opinion.pdf").write_bytes((DOCUMENTS / "ca4_17.pdf").read_bytes())
    processed = legaldoc("process", str(folder), "--project", "acme", "--json", cwd=tmp_path, env=env)
    assert processed.returncode == 0, processed.stderr

    warm = legaldoc("cache", "warm", "--project", "acme", "--json", cwd=tmp_path, env=env)
    assert warm.returncode == 0, warm.stderr
    report = json.loads(warm.stdout)
    assert (report["documents"], report["extractions_inline"], report["extractions_by_reference"]) == (6, 6, 0)
    assert report["entities"] > 20
    client = redis.Redis.from_url(batch_settings.redis_url_for("cache"))
    keys = list(client.scan_iter(match="legaldoc:cache:*"))
    assert len(keys) == 7 and all(client.pttl(k) > 0 for k in keys)  # 6 results + 1 entity index; every key expires
    stats = _stats(env, tmp_path)
    assert (stats["extract"]["keys"], stats["entities"]["keys"]) == (6, 1)
    assert stats["extract"]["memory"] > 0

    # between the sizes of these results (about 1.9 KB for the one-page opinion, 2.9-4.8 KB for the e-mails)
    small = {**env, "LEGALDOC_CACHE_INLINE_MAX_KB": "3"}
    rewarm = json.loads(legaldoc("cache", "warm", "--project", "acme", "--json", cwd=tmp_path, env=small).stdout)
    assert rewarm["extractions_by_reference"] >= 1 and rewarm["extractions_inline"] >= 1

    cleared = legaldoc("cache", "clear", "--project", "acme", "--json", cwd=tmp_path, env=env)
    assert json.loads(cleared.stdout)["removed"] == 7
    assert _stats(env, tmp_path)["extract"]["keys"] == 0

    unknown = legaldoc("cache", "warm", "--project", "nope", cwd=tmp_path, env=env)
    assert unknown.returncode == 2 and "no project named 'nope'" in unknown.stderr and "Traceback" not in unknown.stderr
    everything = legaldoc("cache", "clear", cwd=tmp_path, env=env)
    assert everything.returncode == 2 and "--yes" in everything.stderr
