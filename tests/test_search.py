"""`legaldoc search`: full-text search over chunks with one syntax on SQLite FTS5 and PostgreSQL,
and entity search through resolved mentions; the index follows the chunks and is backfilled."""

from __future__ import annotations

import json
import re

import pytest
from alembic import command
from sqlalchemy import func, select

from legaldoc.errors import UsageError
from legaldoc.services.process import process_paths
from legaldoc.services.search import search_entity, search_text
from legaldoc.storage.db import _alembic, get_engine
from legaldoc.storage.search import Term, fts5_expression, parse_query
from legaldoc.storage.tables import ChunkRow, Entity, MentionRow
from tests.conftest import DOCUMENTS, NEF
from tests.test_cli import legaldoc

MDL_ORDER = (DOCUMENTS / "gov.uscourts.azd.1085839.3.0.pdf").resolve()  # 5 pages of text layer; stored resolved
INPUTS = [MDL_ORDER, DOCUMENTS / "missouri.pdf", *sorted(NEF.glob("*.txt"))[:6]]


@pytest.fixture
def indexed(settings, database):
    reports = list(process_paths(INPUTS, "acme", settings, database))
    assert all(r.status == "done" for r in reports)
    return settings, database


def test_phrases_are_found_on_their_page(indexed):
    _, database = indexed
    [hit, *_] = search_text(database, "acme", '"dear colleague"')
    assert hit.source == str(MDL_ORDER) and hit.page == 5 and hit.rank == 1
    highlighted = " ".join(re.findall(r"\*\*(.+?)\*\*", hit.snippet)).split()
    assert {"Dear", "Colleague"} <= set(highlighted)
    [hit, *_] = search_text(database, "acme", '"non-waiver order" rule')
    assert hit.source == str(MDL_ORDER) and hit.page == 4
    # Stemming, the same on both backends: "appointments" finds "Appointment(s)".
    assert any(h.source == str(MDL_ORDER) for h in search_text(database, "acme", "appointment"))


def test_boolean_queries_mean_the_same_on_both_backends(indexed):
    _, database = indexed
    with database.read() as session:
        def chunks_with(*words: str) -> set[int]:
            found = None
            for word in words:
                ids = set(session.scalars(select(ChunkRow.document_id).where(func.lower(ChunkRow.text).contains(word))))
                found = ids if found is None else found & ids
            return found or set()

        colleague, waiver = chunks_with("colleague"), chunks_with("waiver")
    either = {h.document_id for h in search_text(database, "acme", "colleague or waiver", limit=100)}
    assert either == colleague | waiver
    without = search_text(database, "acme", "court -bard", limit=100)
    assert without and all("bard" not in h.snippet.lower() for h in without)
    assert MDL_ORDER.as_posix() not in {h.source for h in without}  # every chunk of the MDL order names Bard


def test_entity_search_lists_exactly_the_documents_whose_mentions_resolve_to_it(indexed):
    _, database = indexed
    with database.read() as session:
        entity_id, name = session.execute(
            select(Entity.id, Entity.name).join(MentionRow, MentionRow.entity_id == Entity.id)
            .group_by(Entity.id, Entity.name).having(func.count(func.distinct(MentionRow.document_id)) > 1)
            .order_by(func.count().desc()).limit(1)
        ).one()  # fmt: skip
        expected = set(session.scalars(select(MentionRow.document_id).where(MentionRow.entity_id == entity_id)))
        an_alias = session.scalars(select(MentionRow.text).where(MentionRow.entity_id == entity_id)).first()
    [hit] = [h for h in search_entity(database, "acme", name) if h.entity_id == entity_id]
    assert {d.document_id for d in hit.documents} == expected and len(expected) > 1
    assert entity_id in {h.entity_id for h in search_entity(database, "acme", an_alias)}  # by a mention's text
    assert entity_id in {h.entity_id for h in search_entity(database, "acme", str(entity_id))}


def test_the_index_follows_the_chunks_and_is_backfilled(indexed):
    settings, database = indexed
    before = [(h.document_id, h.page) for h in search_text(database, "acme", "colleague", limit=100)]
    list(process_paths([MDL_ORDER], "acme", settings, database, force=True))  # chunks deleted and written again
    assert [(h.document_id, h.page) for h in search_text(database, "acme", "colleague", limit=100)] == before
    # A database created before search existed: the migration indexes the chunks it already holds.
    config = _alembic()
    with get_engine(database.url).begin() as connection:
        config.attributes["connection"] = connection
        command.downgrade(config, "0004")
    with get_engine(database.url).begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "head")
    assert [(h.document_id, h.page) for h in search_text(database, "acme", "colleague", limit=100)] == before


def test_query_syntax():
    assert parse_query('"motion to dismiss" granted or denied -moot') == [
        [Term("motion to dismiss")], [Term("granted"), Term("denied")], [Term("moot", negated=True)]]  # fmt: skip
    assert fts5_expression(parse_query('a or b -"c d"')) == '(("a" OR "b")) NOT ("c d")'
    assert fts5_expression(parse_query('NEAR(x) AND *y')) == '("NEAR x") AND ("AND") AND ("y")'  # no FTS5 syntax leaks
    for bad, words in [('"open', "unbalanced quote"), ("-moot", "no word"), ("  ", "no word"), ("!!! ???", "no word")]:
        with pytest.raises(UsageError, match=words):
            parse_query(bad)


def test_search_command(tmp_path):
    done = legaldoc("process", str(MDL_ORDER), "--project", "acme", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    found = legaldoc("search", '"dear colleague"', "--project", "acme", "--json", cwd=tmp_path)
    assert found.returncode == 0, found.stderr
    [hit] = json.loads(found.stdout)
    assert set(hit) == {"rank", "document_id", "source", "page", "snippet", "score"} and hit["page"] == 5
    table = legaldoc("search", "colleague", "--project", "acme", cwd=tmp_path)
    assert table.returncode == 0 and "azd" in table.stdout
    for arguments, words in [
        (['"open', "--project", "acme"], "unbalanced quote"),
        (["x", "--project", "nope"], "no project named 'nope'"),
        (["--project", "acme"], "give a QUERY or --entity"),
        (["--entity", "Nobody At All", "--project", "acme"], "no entity named 'Nobody At All'"),
        (["x", "--type", "WIZARD", "--project", "acme"], "unknown entity type"),
    ]:
        refused = legaldoc("search", *arguments, cwd=tmp_path)
        assert refused.returncode == 2 and words in refused.stderr and "Traceback" not in refused.stderr, refused.stderr
