"""How many SQL statements storage sends: a fixed number per document and per write, whatever the
number of mentions and entities (counted with SQLAlchemy's `before_cursor_execute` event, on SQLite
and, when LEGALDOC_TEST_POSTGRES_URL is set, PostgreSQL)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import event, select

from legaldoc.models import CanonicalEntity, EntityType
from legaldoc.services.process import process_paths
from legaldoc.storage import repository as repo
from legaldoc.storage import tables
from tests.conftest import CORPUS


@contextmanager
def counting(database) -> Iterator[list[str]]:
    """Every statement the database's engine sends while the block runs (an executemany counts once:
    it is one call to the driver), but for the BEGIN that opens each SQLite transaction."""
    sent: list[str] = []

    def count(conn, cursor, statement, parameters, context, executemany) -> None:
        if not statement.startswith("BEGIN"):
            sent.append(statement)

    event.listen(database.engine, "before_cursor_execute", count)
    try:
        yield sent
    finally:
        event.remove(database.engine, "before_cursor_execute", count)


def people(count: int, prefix: str) -> list[CanonicalEntity]:
    entities = []
    for index in range(count):
        entity = CanonicalEntity(type=EntityType.PERSON, key=f"person {count} {index}", name=f"{prefix} Person {index}")
        entity.aliases = {f"P. {index}": "same canonical key", f"Person No. {index}": "same canonical key"}
        entities.append(entity)
    return entities


def stored(database, project_id: int) -> dict[str, tuple[str, set[str]]]:
    with database.session() as session:
        rows = session.execute(select(tables.Entity.id, tables.Entity.key, tables.Entity.name)
                               .where(tables.Entity.project_id == project_id)).all()  # fmt: skip
        aliases: dict[int, set[str]] = {}
        for entity_id, alias in session.execute(select(tables.EntityAlias.entity_id, tables.EntityAlias.alias)):
            aliases.setdefault(entity_id, set()).add(alias)
    return {key: (name, aliases.get(entity_id, set())) for entity_id, key, name in rows}


def test_save_entities_sends_the_same_few_statements_for_3_or_300_entities(database):
    """Given new entities, then the same entities renamed (the old name kept as an alias, the new
    name no longer one), When they are saved, Then 300 entities cost what 3 do: one INSERT of the
    entities, one SELECT of their ids, one UPDATE and one DELETE (executemany) for the renamed, one
    INSERT of the aliases; and the rows are what one-by-one writes would leave."""
    with database.session() as session:
        project_id = repo.get_or_create_project(session, "statements").id
    counts: dict[tuple[str, int], int] = {}
    for size in (3, 300):
        with database.session() as session, counting(database) as sent:
            ids = repo.save_entities(session, project_id, people(size, "Old"))
        counts[("new", size)] = len(sent)
        assert len(ids) == size
        renamed = people(size, "New")
        for entity in renamed:
            entity.aliases[f"Old {entity.name.split(' ', 1)[1]}"] = "a shorter spelling"
        renamed[0].aliases.pop("P. 0")
        renamed[0].name = "P. 0"  # the new name was an alias: it stops being one
        with database.session() as session, counting(database) as sent:
            assert repo.save_entities(session, project_id, renamed) == ids
        counts[("renamed", size)] = len(sent)
    assert counts[("new", 3)] == counts[("new", 300)] <= 3  # INSERT, SELECT, INSERT aliases
    assert counts[("renamed", 3)] == counts[("renamed", 300)] <= 5  # + UPDATE, DELETE
    rows = stored(database, project_id)
    assert len(rows) == 303
    assert rows["person 300 0"] == ("P. 0", {"Person No. 0", "Old Person 0"})
    assert rows["person 3 2"] == ("New Person 2", {"P. 2", "Person No. 2", "Old Person 2"})
    assert rows["person 300 299"] == ("New Person 299", {"P. 299", "Person No. 299", "Old Person 299"})


DOCKET = CORPUS / "dockets" / "district" / "njd_509180.html"


def test_statements_per_document_do_not_grow_with_its_entities(settings, database, tmp_path):
    """Given a three-line memo (a handful of entities) and a docket report (hundreds of mentions),
    When both are processed (every stage) and then processed again with --force, Then the docket
    report costs no more statements than the memo, give or take the chunked lookups (100
    surnames, 500 keys a statement): writes of mentions, entities, aliases and relationships are
    executemany, not a statement per row."""
    memo = tmp_path / "memo.txt"
    memo.write_text("Signed by Judge Mark H. Cohen on 7/30/2021 in Kinder v. Koch Industries, Inc., 550 U.S. 544.")
    per_document: dict[str, int] = {}
    for force in (False, True):
        for path in (memo, DOCKET):
            with counting(database) as sent:
                [report] = list(process_paths([path], "statements", settings, database, force=force))
            assert report.status == "done"
            per_document[f"{path.name} {force}"] = len(sent)
            if path == DOCKET:
                assert len(report.mentions) > 200 and report.relationships > 200
            else:
                assert 3 <= len(report.mentions) < 15
    for force in (False, True):
        small, large = per_document[f"memo.txt {force}"], per_document[f"{DOCKET.name} {force}"]
        assert large <= small + 3, per_document
