"""The OpenAI entity providers (``openai``, ``hybrid``) through the real openai SDK against a local
peer (tests/openai_peer.py): structured output, offsets found locally, errors by category, the
shared limits and halt, the answer cache, usage per batch, and the preflight at submit."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import yaml
from sqlalchemy import select

from legaldoc.config import Settings
from legaldoc.errors import (
    ConfigurationError,
    DataError,
    ErrorCategory,
    RateLimitError,
    TransientError,
    categorize,
)
from legaldoc.models import EntityType
from legaldoc.pipeline.entities.llm import (
    MODEL_TYPES,
    ModelAnswer,
    ModelMention,
    Piece,
    locate,
    pack,
    parse_reset,
    retry_after_headers,
)
from legaldoc.services.openai_entities import model_entity_provider
from legaldoc.services.wiring import Runtime
from legaldoc.storage.tables import BatchDocument, MentionRow
from tests.batchkit import connect
from tests.conftest import NEF, settings_env
from tests.openai_peer import INVENTED, Peer, running_peer
from tests.test_cli import legaldoc

pytestmark = pytest.mark.any_database  # the model provider does nothing the database kind changes

NEF_FILES = sorted(NEF.glob("*.txt"))


@pytest.fixture
def peer(monkeypatch: pytest.MonkeyPatch):
    with running_peer() as server:
        monkeypatch.setenv("OPENAI_BASE_URL", server.url)
        monkeypatch.setenv("OPENAI_API_KEY", "sk-test-peer")
        yield server


def _settings(batch_settings: Settings, **changes) -> Settings:
    base = {"openai_model": "peer-small", "breaker_reset_timeout": 2.0, "breaker_fail_max": 50, "openai_timeout": 2.0}
    return batch_settings.model_copy(update={**base, **changes})


def _manifest(path: Path, sources: list[Path], entities: str, *, skip_processed: bool = False) -> Path:
    data = {"project": "acme", "options": {"entities": entities, "skip_processed": skip_processed},
            "documents": [{"path": str(source)} for source in sources]}  # fmt: skip
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


# -- pure parts ---------------------------------------------------------------------------------


def test_packing_is_deterministic_covers_the_text_and_keeps_the_budget():
    text = NEF_FILES[0].read_text()
    pieces = pack(text, 200)
    assert pieces == pack(text, 200)
    assert all(text[p.start : p.start + len(p.text)] == p.text for p in pieces)
    assert all(len(p.text) <= 800 for p in pieces)
    assert "".join(p.text for p in pieces).split() == text.split()
    assert len(pack(text, 100_000)) == 1


def test_mentions_are_placed_by_exact_search_and_the_rest_dropped():
    piece = Piece(100, "Counsel Jane Roe wrote to Jane Roe's client, not Janet Roewell.")
    answer = ModelAnswer(mentions=[
        ModelMention(text="Jane Roe", type="PERSON", normalized="Jane Roe"),
        ModelMention(text="J. Roe", type="PERSON", normalized="Jane Roe"),  # not a slice: dropped
        ModelMention(text="Roe", type="PERSON", normalized="Roe"),  # only inside words other than whole: kept where whole
        ModelMention(text="Counsel", type="DATE", normalized="x"),  # a type not asked for: ignored
    ])  # fmt: skip
    mentions, dropped = locate(piece, answer, frozenset(MODEL_TYPES))
    assert dropped == 1
    for mention in mentions:
        assert piece.text[mention.start - 100 : mention.end - 100] == mention.text
    assert [(m.text, m.start) for m in mentions if m.text == "Jane Roe"] == [("Jane Roe", 108), ("Jane Roe", 126)]
    assert {m.type for m in mentions} == {EntityType.PERSON}


def test_reset_headers():
    assert parse_reset("6m0s") == 360 and parse_reset("20ms") == 0.02 and parse_reset("1.5s") == 1.5
    assert retry_after_headers({"retry-after-ms": "250"}) == 0.25
    assert retry_after_headers({"x-ratelimit-reset-requests": "2s", "x-ratelimit-reset-tokens": "6m0s"}) == 360
    assert retry_after_headers({"Retry-After": "3"}) == 3


# -- the provider through the SDK, in process -------------------------------------------------------


def _provider(settings: Settings, mode: str = "openai"):
    return model_entity_provider(settings, mode, Runtime(settings).cache)


def test_structured_output_request_and_answer(batch_settings, peer: Peer):
    settings = _settings(batch_settings)
    text = NEF_FILES[0].read_text()
    run = _provider(settings).run(text)
    request = peer.requests[0]
    assert request["response_format"]["type"] == "json_schema"
    assert request["response_format"]["json_schema"]["strict"] is True
    assert run.usage.calls == len(peer.calls) >= 1 and run.usage.tokens_in > 0
    assert run.usage.dropped == len(peer.calls)  # the invented name, once per piece
    assert run.mentions and all(text[m.start : m.end] == m.text for m in run.mentions)
    assert INVENTED not in {m.text for m in run.mentions}


@pytest.mark.parametrize(("steps", "category", "words"), [
    (["quota"], ErrorCategory.CONFIGURATION, "quota"),
    (["401"], ErrorCategory.CONFIGURATION, "OPENAI_API_KEY"),
    (["404"], ErrorCategory.CONFIGURATION, "LEGALDOC_OPENAI_MODEL"),
    (["429"], ErrorCategory.RATE_LIMIT, "rate limited"),
    (["500"], ErrorCategory.TRANSIENT, "server error"),
    (["slow"], ErrorCategory.TRANSIENT, "timeout"),
    (["malformed", "empty", "malformed"], ErrorCategory.DATA, "not the schema"),
])  # fmt: skip
def test_errors_by_category(batch_settings, peer: Peer, steps, category, words):
    peer.script.extend(steps)
    peer.default = "quota"  # anything past the script would be a call too many
    settings = _settings(batch_settings, openai_timeout=1.0)
    with pytest.raises((ConfigurationError, RateLimitError, TransientError, DataError)) as raised:
        _provider(settings).run("Jane Roe met Richard Doe.")
    assert categorize(raised.value) is category, raised.value
    assert words in str(raised.value)
    assert len(peer.calls) == len(steps)
    if category is ErrorCategory.RATE_LIMIT:
        assert raised.value.retry_after == 1.0


def test_an_invalid_answer_is_asked_again(batch_settings, peer: Peer):
    peer.script.extend(["malformed", "empty"])
    run = _provider(_settings(batch_settings)).run("Jane Roe met Richard Doe.")
    assert len(peer.calls) == 3 and run.usage.calls == 3
    assert {m.text for m in run.mentions} == {"Jane Roe", "Richard Doe"}


def test_a_configuration_failure_halts_every_later_call(batch_settings, peer: Peer):
    peer.default = "quota"
    settings = _settings(batch_settings, breaker_reset_timeout=30.0)
    first, second = _provider(settings), _provider(settings)  # two workers, one Redis
    for provider in (first, second, first):
        with pytest.raises(ConfigurationError, match="quota"):
            provider.run("Jane Roe met Richard Doe.")
    assert len(peer.calls) == 1


def test_the_cache_answers_a_second_run(batch_settings, peer: Peer):
    settings = _settings(batch_settings)
    text = NEF_FILES[1].read_text()
    first = _provider(settings).run(text)
    calls = len(peer.calls)
    second = _provider(settings).run(text)
    assert len(peer.calls) == calls and second.usage.calls == 0 and second.usage.cached == first.usage.calls
    assert second.mentions == first.mentions
    _provider(settings.model_copy(update={"openai_model": "gpt-5-mini"})).run(text)
    assert len(peer.calls) == 2 * calls  # another model: another key


# -- real workers ------------------------------------------------------------------------------------


def test_hybrid_on_court_emails_merges_model_and_rules_and_a_rerun_is_free(batch_settings, start_worker, tmp_path, peer: Peer):
    """Given corpus e-mails and `entities: hybrid`, the rules' citations, dockets, courts and dates
    and the model's people are stored together at exact offsets, a span both found is one mention
    listing both extractors, and the batch shows its calls, tokens and cost; a re-run makes no call."""
    settings = _settings(batch_settings)
    sources = NEF_FILES[:4]
    cluster = connect(settings)
    start_worker(concurrency=2, settings=settings)
    batch = cluster.submit(_manifest(tmp_path / "hybrid.yaml", sources, "hybrid"))
    final = cluster.wait(batch.batch_id)
    assert (final["succeeded"], final["failed"]) == (4, 0), final
    calls = len(peer.calls)
    assert calls >= 4
    assert final["usage"]["openai"]["calls"] == calls
    assert final["usage"]["openai"]["dropped"] == calls
    assert final["usage"]["openai"]["tokens_in"] > 0 and final["usage"]["openai"]["cost_usd"] > 0

    texts = {}
    with cluster.database.read() as session:
        from legaldoc.storage import repository as repo
        from legaldoc.storage.tables import Document

        for document in session.scalars(select(Document)):
            texts[document.id] = repo.load_extracted(session, document.id).text
        rows = session.scalars(select(MentionRow)).all()
    assert all(texts[r.document_id][r.start : r.end] == r.text for r in rows)
    extractors = [r.attrs.get("extractors", [r.extractor]) for r in rows]
    assert any(e == ["openai"] for e in extractors), "the model found names the rules did not"
    assert any("openai" in e and len(e) > 1 for e in extractors), "a span both found is one mention with both"
    types = {r.type for r in rows}
    assert {"DOCKET_NUMBER", "COURT", "DATE"} <= types
    assert INVENTED not in {r.text for r in rows}
    assert not [r for r in rows if r.type in {"DOCKET_NUMBER", "COURT", "DATE"} and "openai" in r.attrs.get("extractors", [])]

    env = settings_env(settings)
    shown = legaldoc("status", batch.batch_id, cwd=tmp_path, env=env)
    assert f"openai: {calls} calls" in shown.stdout and "tokens in" in shown.stdout, shown.stdout
    report = legaldoc("report", batch.batch_id, cwd=tmp_path, env=env)
    assert f"Remote provider openai: {calls} calls" in report.stdout
    stored = json.loads(legaldoc("report", batch.batch_id, "--format", "json", cwd=tmp_path, env=env).stdout)
    assert stored["usage"]["openai"]["calls"] == calls

    again = cluster.submit(_manifest(tmp_path / "hybrid-again.yaml", sources, "hybrid"))
    final_again = cluster.wait(again.batch_id)
    assert final_again["succeeded"] == 4
    assert len(peer.calls) == calls, "a re-run is answered by the cache"
    assert final_again["usage"]["openai"]["cached"] == calls and "calls" not in final_again["usage"]["openai"]


def test_a_429_storm_across_two_workers_never_exceeds_the_shared_limit(batch_settings, start_worker, tmp_path, peer: Peer):
    """Given two worker processes and a peer answering 429 (Retry-After: 1) to its first 8 calls,
    every document still ends done, through RATE_LIMIT retries, and the calls the peer counted never
    exceed the shared request limit in any window."""
    peer.script.extend(["429"] * 8)
    settings = _settings(batch_settings, openai_request_limit="4/4second", openai_chunk_tokens=100_000)
    cluster = connect(settings)
    start_worker(concurrency=2, settings=settings)
    start_worker(concurrency=2, settings=settings)
    batch = cluster.submit(_manifest(tmp_path / "storm.yaml", NEF_FILES[:8], "openai"))
    final = cluster.wait(batch.batch_id)
    assert (final["succeeded"], final["failed"]) == (8, 0), final
    assert peer.outcomes.count("429") == 8 and peer.outcomes.count("ok") >= 8
    # A call is let through when the window frees a slot; between that moment and its arrival at the
    # peer lie Redis round trips and HTTP (a few hundred ms for a worker's first call on a loaded
    # machine), so half a second of the window is allowed for: never more than 4 within 3.5 s
    # (unlimited, the 16 calls come in a burst).
    assert peer.max_in_window(3.5) <= 4, peer.calls
    with cluster.database.read() as session:
        from legaldoc.storage.tables import StageRun

        categories = session.scalars(select(StageRun.error_category).where(StageRun.stage == "entities")).all()
    assert "RATE_LIMIT" in categories


def test_insufficient_quota_fails_the_model_stage_as_configuration_within_two_calls(batch_settings, start_worker, tmp_path,
                                                                                   peer: Peer):  # fmt: skip
    peer.default = "quota"
    settings = _settings(batch_settings, breaker_reset_timeout=120.0)
    cluster = connect(settings)
    start_worker(concurrency=2, settings=settings)
    batch = cluster.submit(_manifest(tmp_path / "quota.yaml", NEF_FILES[:8], "hybrid"))
    final = cluster.wait(batch.batch_id)
    assert (final["succeeded"], final["failed"]) == (0, 8), final
    assert final["errors_by_category"] == {"CONFIGURATION": 8}
    assert len(peer.calls) <= 2, peer.outcomes
    with cluster.database.read() as session:
        rows = session.execute(select(BatchDocument.stage, BatchDocument.reason).where(BatchDocument.batch_id == batch.batch_id)).all()
    assert {stage for stage, _ in rows} == {"entities"}
    assert all("quota" in reason for _, reason in rows)


# -- preflight at submit ---------------------------------------------------------------------------------


def _submit(tmp_path: Path, settings: Settings, entities: str | None, env_changes: dict[str, str | None]):
    env = settings_env(settings)
    for name, value in env_changes.items():
        env[name] = value or ""  # the helper runs with this process's environment beneath: empty is unset
    data: dict = {"project": "acme", "documents": [{"path": str(NEF_FILES[0])}]}
    if entities:
        data["options"] = {"entities": entities}
    manifest = tmp_path / f"{entities or 'default'}-{time.monotonic_ns()}.yaml"
    manifest.write_text(yaml.safe_dump(data))
    return legaldoc("submit", str(manifest), cwd=tmp_path, env=env)


def test_preflight_refuses_a_model_provider_without_what_it_needs(batch_settings, tmp_path, peer: Peer):
    settings = _settings(batch_settings)
    no_key = _submit(tmp_path, settings, "hybrid", {"OPENAI_API_KEY": None})
    assert no_key.returncode == 3, no_key.stderr
    assert "OPENAI_API_KEY" in no_key.stderr and len(no_key.stderr.strip().splitlines()) == 1

    unknown = _submit(tmp_path, settings.model_copy(update={"openai_model": "gpt-nonexistent"}), "openai", {})
    assert unknown.returncode == 3 and "LEGALDOC_OPENAI_MODEL" in unknown.stderr, unknown.stderr
    assert len(unknown.stderr.strip().splitlines()) == 1

    by_settings = _submit(tmp_path, settings.model_copy(update={"entity_provider": "openai"}), None, {"OPENAI_API_KEY": None})
    assert by_settings.returncode == 3 and "OPENAI_API_KEY" in by_settings.stderr
    assert peer.calls == []


def test_a_key_with_the_local_provider_changes_nothing_and_says_nothing(batch_settings, tmp_path, peer: Peer):
    result = _submit(tmp_path, batch_settings, None, {})
    assert result.returncode == 0, result.stderr
    assert "openai" not in result.stderr.lower() and "OPENAI" not in result.stdout
    assert peer.calls == []
    batch_id = result.stdout.strip()
    status = json.loads(legaldoc("status", batch_id, "--json", cwd=tmp_path, env=settings_env(batch_settings)).stdout)
    assert "usage" not in status


def test_doctor_checks_the_model_provider_only_when_chosen(batch_settings, tmp_path, peer: Peer):
    def checks(settings: Settings) -> dict[str, dict]:
        result = legaldoc("doctor", "--json", cwd=tmp_path, env=settings_env(settings))
        return {c["name"]: c for c in json.loads(result.stdout)["checks"]}

    assert "openai" not in checks(batch_settings)
    chosen = _settings(batch_settings, entity_provider="hybrid")
    assert checks(chosen)["openai"]["verdict"] == "OK"
    unknown = checks(chosen.model_copy(update={"openai_model": "gpt-nonexistent"}))["openai"]
    assert unknown["verdict"] == "FAIL" and "LEGALDOC_OPENAI_MODEL" in unknown["fix"]
    assert peer.calls == []


def test_process_without_redis_asks_the_model_and_refuses_without_a_key(tmp_path, peer: Peer):
    """`legaldoc process` (one process, no Redis): hybrid entities through the peer; no key: exit 3."""
    env = {"LEGALDOC_REDIS_URL": "redis://127.0.0.1:1", "LEGALDOC_ENTITY_PROVIDER": "hybrid", "LEGALDOC_OPENAI_MODEL": "peer-small"}
    result = legaldoc("process", str(NEF_FILES[2]), "--json", cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.splitlines()[0])
    assert report["status"] == "done" and len(peer.calls) >= 1
    from legaldoc.config import load_settings
    from legaldoc.storage import repository as repo
    from legaldoc.storage.db import Database

    database = Database(load_settings(data_dir=tmp_path / ".legaldoc").resolved_database_url)
    with database.read() as session:
        text = repo.load_extracted(session, report["document_id"]).text
        rows = session.scalars(select(MentionRow)).all()
    assert any("openai" in r.attrs.get("extractors", []) for r in rows)
    assert all(text[r.start : r.end] == r.text for r in rows)

    refused = legaldoc("process", str(NEF_FILES[3]), cwd=tmp_path, env={**env, "OPENAI_API_KEY": ""})
    assert refused.returncode == 3 and "OPENAI_API_KEY" in refused.stderr
