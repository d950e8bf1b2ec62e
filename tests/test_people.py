"""One person per person: names split by nameparser, SAME_AS links between the ATTORNEY, PERSON and
JUDGE entities of one human (never between two people sharing a surname), company suffixes by
cleanco; on minimal strings, and through the real stages on a real database."""

from __future__ import annotations

from pathlib import Path

import networkx as nx
import pytest
from sqlalchemy import func, select

from legaldoc.models import CanonicalEntity, EntityRef, EntityType, Mention, RelationType, Stage
from legaldoc.pipeline.entities.base import last_first_to_first_last, normalize_person
from legaldoc.pipeline.people import link_people, parse_person, same_person
from legaldoc.pipeline.resolve import canonical_key, resolve_mentions
from legaldoc.services.export import ExportFormat, export
from legaldoc.services.process import sha256_file
from legaldoc.services.queries import entity_detail, list_entities, show_document
from legaldoc.services.stages import StageRunner
from legaldoc.storage import repository as repo
from legaldoc.storage.db import Database
from legaldoc.storage.tables import Entity, EntityLinkRow

ATTORNEY, PERSON, JUDGE = EntityType.ATTORNEY, EntityType.PERSON, EntityType.JUDGE


def entity(type_: EntityType, name: str) -> CanonicalEntity:
    return CanonicalEntity(type=type_, key=canonical_key(type_, name), name=name)


def mention(type_: EntityType, normalized: str) -> Mention:
    return Mention(type=type_, text=normalized, start=0, end=len(normalized), normalized=normalized, extractor="test", confidence=0.9)


def reason(a: str, b: str) -> str | None:
    pa, pb = parse_person(a), parse_person(b)
    return same_person(pa, pb) if pa and pb else None


@pytest.mark.parametrize(
    ("a", "b"),
    [("John A. Smith", "J. Smith"), ("John A. Smith", "John Smith"), ("J. Smith", "John Smith"),
     ("Hon. John Smith", "John Smith, Esq."), ("Smith, John A.", "John Smith"), ("John Andrew Smith", "John A. Smith"),
     ("JOHN SMITH JR.", "John Smith"), ("María José Núñez", "Maria Jose Nunez")],
)  # fmt: skip
def test_compatible_names_are_one_person(a, b):
    assert reason(a, b) and reason(b, a)


@pytest.mark.parametrize(
    ("a", "b"),
    [("John Smith", "Jane Smith"), ("Smith", "John Smith"), ("Judge Smith", "John Smith"), ("John A. Smith", "John B. Smith"),
     ("John Smith Jr.", "John Smith Sr."), ("John Smith", "John Smithson"), ("J. Smith", "K. Smith"), ("John Andrew Smith", "John Anthony Smith")],
)  # fmt: skip
def test_different_people_sharing_a_surname_are_not(a, b):
    assert reason(a, b) is None and reason(b, a) is None


def test_reasons_say_what_agreed():
    assert reason("Kimberly Geisler", "Hon. Kimberly Geisler") == "same full name"
    assert reason("J. Smith", "John Smith") == "same first initial and surname"
    assert reason("John A. Smith", "John Smith") == "same given name and surname; middle name on one side only"
    assert reason("John A. Smith", "J. Andrew Smith") == "same first initial and surname; middle names agree"


def test_the_same_human_as_attorney_person_and_judge_is_linked_once_per_pair():
    links = link_people([entity(ATTORNEY, "John A. Smith"), entity(PERSON, "John Smith"), entity(JUDGE, "Hon. John Smith"),
                         entity(PERSON, "Mary Jones")])  # fmt: skip
    pairs = {(link.source.type, link.target.type): link.reason for link in links}
    assert pairs == {
        (ATTORNEY, JUDGE): "same given name and surname; middle name on one side only",
        (ATTORNEY, PERSON): "same given name and surname; middle name on one side only",
        (JUDGE, PERSON): "same full name",
    }
    assert all(link.type is RelationType.SAME_AS for link in links)


def test_two_people_sharing_a_surname_are_never_linked():
    assert link_people([entity(ATTORNEY, "John Smith"), entity(JUDGE, "Jane Smith"), entity(PERSON, "Smith")]) == []


def test_an_initial_that_fits_two_people_links_to_nobody():
    """'J. Smith' could be John or Jane: no link from it; John and Jane still link to their own."""
    links = link_people([entity(ATTORNEY, "J. Smith"), entity(PERSON, "John Smith"), entity(PERSON, "Jane Smith"),
                         entity(JUDGE, "Jane Smith")])  # fmt: skip
    assert [(link.source, link.target) for link in links] == [
        (EntityRef(type=JUDGE, key="jane smith"), EntityRef(type=PERSON, key="jane smith"))
    ]


def test_links_do_not_depend_on_the_order_entities_come_in():
    people = [entity(ATTORNEY, "John A. Smith"), entity(PERSON, "J. Smith"), entity(JUDGE, "John Smith"), entity(PERSON, "Ann Lee")]
    assert link_people(people) == link_people(list(reversed(people)))


def test_resolve_never_joins_a_second_person_to_an_initial_the_first_already_took():
    resolution = resolve_mentions([mention(PERSON, "J. Smith"), mention(PERSON, "John Smith"), mention(PERSON, "Jane Smith")], {})
    john, jane = resolution.entity_of_mention[1], resolution.entity_of_mention[2]
    assert resolution.entity_of_mention[0] == john != jane
    # and the other order: Jane first, then the initial, then John
    resolution = resolve_mentions([mention(PERSON, "Jane Smith"), mention(PERSON, "J. Smith"), mention(PERSON, "John Smith")], {})
    assert resolution.entity_of_mention[0] == resolution.entity_of_mention[1] != resolution.entity_of_mention[2]


def test_company_suffixes_by_cleanco():
    same = {canonical_key(EntityType.ORGANIZATION, name) for name in ("Acme Inc.", "ACME, INC", "Acme Incorporated", "The Acme Corporation",
                                                                        "Acme, L.L.C.", "Acme, Inc., et al.")}  # fmt: skip
    assert same == {"acme"}
    assert canonical_key(EntityType.PARTY, "Bank of America, N.A.") == canonical_key(EntityType.PARTY, "Bank of America")
    assert canonical_key(EntityType.LAW_FIRM, "Smith & Jones, LLP") == canonical_key(EntityType.LAW_FIRM, "Smith & Jones P.C.")
    assert canonical_key(EntityType.ORGANIZATION, "Siemens AG") == canonical_key(EntityType.ORGANIZATION, "Siemens GmbH")
    # words inside a name are the name: a leading article is not a legal form, nor is 'Co' before more words
    assert canonical_key(EntityType.ORGANIZATION, "A Better Way LLC") != canonical_key(EntityType.ORGANIZATION, "Better Way LLC")
    assert canonical_key(EntityType.ORGANIZATION, "L Brands, Inc.") != canonical_key(EntityType.ORGANIZATION, "Brands Inc.")
    assert canonical_key(EntityType.ORGANIZATION, "Acme Co Holdings LLC") != canonical_key(EntityType.ORGANIZATION, "Acme Holdings LLC")
    assert canonical_key(EntityType.ORGANIZATION, "Inc.") == "inc"  # nothing but a suffix keeps its words


def test_person_normalization_by_nameparser():
    assert normalize_person("MCDONALD, JAMES") == "McDonald, James"
    assert normalize_person(last_first_to_first_last("MCDONALD, JAMES")) == "James McDonald"
    assert normalize_person("MARIA DE LA CRUZ") == "Maria de la Cruz"
    assert normalize_person("JOHN O'NEIL") == "John O'Neil"
    assert normalize_person("HERON , IV John") == "HERON IV John"  # not a name nameparser can order: tidied only
    assert last_first_to_first_last("Smith, John A., Jr.") == "John A. Smith Jr."
    assert last_first_to_first_last("Geisler, Kimberly") == "Kimberly Geisler"
    assert last_first_to_first_last("John Smith") == "John Smith"


JUDGE_ORDER = """IN THE UNITED STATES DISTRICT COURT FOR THE DISTRICT OF COLUMBIA

Before the Honorable John A. Smith, United States District Judge.

ORDER granting the motion.
"""
COUNSEL_NOTICE = """NOTICE OF APPEARANCE

Respectfully submitted,

/s/ John Smith
John Smith (Bar No. 12345)
Attorney for Defendant

Signed by Judge Jane Smith on 1/2/2024.
"""


def _run(database: Database, runner: StageRunner, project_id: int, path: Path, stages: list[Stage]) -> int:
    sha256, size = sha256_file(path)
    with database.session() as session:
        document_id = repo.register_document(session, project_id, str(path), sha256, size).id
        repo.reset_for_run(session, [document_id], batch_id=None)
    for stage in stages:
        assert runner.execute(document_id, stage, 1).status == "done"
    return document_id


def test_same_as_links_through_the_stages_are_project_wide_and_idempotent(settings, database, tmp_path):
    """Given a judge 'John A. Smith' in one document and an attorney 'John Smith' beside a judge
    'Jane Smith' in another, Then the attorney and the first judge are one person (a SAME_AS link
    with its reason, shown by `entities` and `show`), Jane is linked to nobody, and resolving the
    second document again adds no row."""
    (tmp_path / "order.txt").write_text(JUDGE_ORDER)
    (tmp_path / "notice.txt").write_text(COUNSEL_NOTICE)
    runner = StageRunner(settings, database, retries=False)
    with database.session() as session:
        project_id = repo.get_or_create_project(session, "people").id
    _run(database, runner, project_id, tmp_path / "order.txt", list(Stage))
    notice = _run(database, runner, project_id, tmp_path / "notice.txt", list(Stage))

    with database.read() as session:
        names = {e.id: (e.type, e.name) for e in session.scalars(select(Entity))}
        links = [(names[r.source_entity_id], names[r.target_entity_id], r.reason, r.type) for r in session.scalars(select(EntityLinkRow))]
    assert (JUDGE.value, "Jane Smith") in names.values() and (ATTORNEY.value, "John Smith") in names.values()
    assert links == [((ATTORNEY.value, "John Smith"), (JUDGE.value, "John A. Smith"),
                      "same given name and surname; middle name on one side only", RelationType.SAME_AS.value)]  # fmt: skip

    for _ in range(2):  # the document processed again, every stage: the same links, no new row
        with database.session() as session:
            repo.reset_for_run(session, [notice], batch_id=None)
        for stage in Stage:
            assert runner.execute(notice, stage, 1).status == "done"
    with database.read() as session:
        assert session.scalar(select(func.count()).select_from(EntityLinkRow)) == 1

    attorney = next(row for row in list_entities(database, "people", ATTORNEY.value) if row["name"] == "John Smith")
    assert [(link["type"], link["name"]) for link in attorney["same_as"]] == [(JUDGE.value, "John A. Smith")]
    judge = entity_detail(database, attorney["same_as"][0]["id"])
    assert [(link["type"], link["name"], link["reason"]) for link in judge["same_as"]] == [
        (ATTORNEY.value, "John Smith", "same given name and surname; middle name on one side only")
    ]
    shown = show_document(database, notice)["same_as"]
    assert [(row["entity"]["name"], [link["name"] for link in row["same_as"]]) for row in shown] == [("John Smith", ["John A. Smith"])]

    graphml = tmp_path / "people.graphml"  # the link is an edge of the exported graph
    export(database, "people", ExportFormat.GRAPHML, graphml)
    graph = nx.read_graphml(graphml, force_multigraph=True)
    same = [(graph.nodes[a]["label"], graph.nodes[b]["label"], data["reason"]) for a, b, data in graph.edges(data=True) if data["type"] == "SAME_AS"]
    assert same == [("John Smith", "John A. Smith", "same given name and surname; middle name on one side only")]
