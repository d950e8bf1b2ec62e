"""The case-level citation graph: parallel citations of one case are one CASE entity, short forms are
its mentions, documents CITE it, and a project lists its most cited cases; courts show their names."""

from __future__ import annotations

import json
from collections.abc import Sequence

from sqlalchemy import select

from legaldoc.models import CanonicalEntity, EntityRef, EntityType, Mention, RelationType
from legaldoc.pipeline.chunk import chunk_document
from legaldoc.pipeline.entities import LocalEntityProvider
from legaldoc.pipeline.extract.textutil import assemble
from legaldoc.pipeline.relate import relate
from legaldoc.pipeline.resolve import PARALLEL_CITATION, Resolution, resolve_mentions
from legaldoc.services.queries import cited_cases
from legaldoc.storage.tables import MentionRow
from tests.test_cli import legaldoc

TWOMBLY = "Bell Atlantic Corp. v. Twombly, 550 U.S. 544, 555, 127 S. Ct. 1955, 167 L. Ed. 2d 929 (2007)."


def extract(text: str) -> list[Mention]:
    mentions = LocalEntityProvider().extract(text)
    for m in mentions:
        assert text[m.start : m.end] == m.text, m
    return mentions


def cases(text: str) -> list[Mention]:
    return [m for m in extract(text) if m.type is EntityType.CASE]


def resolve(*documents: str, index: dict[EntityType, dict[str, CanonicalEntity]] | None = None) -> list[Resolution]:
    """Resolve documents one after another into one project, as the resolve stage does."""
    known: dict[EntityType, dict[str, CanonicalEntity]] = index if index is not None else {}
    resolutions = []
    for text in documents:
        resolution = resolve_mentions(extract(text), known)
        for (entity_type, key), entity in resolution.entities.items():
            known.setdefault(entity_type, {})[key] = entity
        resolutions.append(resolution)
    return resolutions


def case_entities(resolutions: Sequence[Resolution]) -> dict[str, CanonicalEntity]:
    return {key: e for r in resolutions for (t, key), e in r.entities.items() if t is EntityType.CASE}


def test_parallel_citations_are_one_case_with_the_other_reporters_as_aliases():
    found = cases(TWOMBLY)
    assert [(m.text, m.attrs["form"]) for m in found] == [
        ("550 U.S. 544", "full"), ("127 S. Ct. 1955", "parallel"), ("167 L. Ed. 2d 929", "parallel")]  # fmt: skip
    assert {m.normalized for m in found} == {"550 U.S. 544"}
    assert found[0].attrs["pin_cite"] == "555" and found[0].attrs["case_name"] == "Bell Atlantic Corp. v. Twombly"
    [twombly] = case_entities(resolve(TWOMBLY)).values()
    assert twombly.name == "550 U.S. 544"
    assert twombly.aliases == {"127 S. Ct. 1955": PARALLEL_CITATION, "167 L. Ed. 2d 929": PARALLEL_CITATION}


def test_cases_back_to_back_are_never_merged():
    for text in [
        "See Smith v. Jones, 550 U.S. 544 (2007); Roe v. Wade, 410 U.S. 113 (1973).",
        "See Smith v. Jones, 550 U.S. 544 (2007), 410 U.S. 113 (1973).",  # a year ends the first case
        "See 550 U.S. 544, 410 U.S. 113.",  # one reporter twice: two cases
    ]:
        found = cases(text)
        assert [m.normalized for m in found] == ["550 U.S. 544", "410 U.S. 113"], text
        assert all(m.attrs["form"] == "full" and "parallel" not in m.attrs for m in found), text
        entities = case_entities(resolve(text))
        assert len(entities) == 2 and not any(e.aliases for e in entities.values()), text
    second = cases("See Smith v. Jones, 550 U.S. 544 (2007), 410 U.S. 113 (1973).")[1]
    assert "case_name" not in second.attrs and second.attrs.get("year") != "2007"  # not borrowed from the case before


def test_short_supra_and_id_forms_are_mentions_of_the_case_with_their_pin_cites():
    text = TWOMBLY + " Id. at 556. Twombly, 550 U.S. at 570. See Twombly, supra, at 558. Later, 127 S. Ct. at 1966."
    found = cases(text)
    assert {m.normalized for m in found} == {"550 U.S. 544"}
    forms = {(m.text, m.attrs["form"], m.attrs.get("pin_cite")) for m in found}
    assert {("Id. at 556", "id", "556"), ("550 U.S. at 570", "short", "570"), ("supra, at 558", "supra", "558"),
            ("127 S. Ct. at 1966", "short", "1966")} <= forms  # fmt: skip
    assert len(case_entities(resolve(text))) == 1
    # a supra naming no case cited before, and an id after nothing, cite no case
    assert cases("As Smith, supra, at 5, held. Id. at 7.") == []


def test_id_with_a_section_cites_that_section_not_the_one_before():
    text = "Under 42 U.S.C. § 1983 a claim lies. Id. § 1988 allows fees. Id. at 3."
    statutes = [(m.text, m.normalized) for m in extract(text) if m.type is EntityType.STATUTE]
    assert ("42 U.S.C. § 1983", "42 U.S.C. § 1983") in statutes
    assert ("Id. § 1988", "42 U.S.C. § 1988") in statutes
    assert [normalized for _, normalized in statutes].count("42 U.S.C. § 1983") == 1
    # without a section, Id. is the statute before
    plain = [m for m in extract("Under 42 U.S.C. § 1983 a claim lies. Id. It is old.") if m.type is EntityType.STATUTE]
    assert [(m.text, m.normalized) for m in plain] == [("42 U.S.C. § 1983", "42 U.S.C. § 1983"), ("Id.", "42 U.S.C. § 1983")]


def test_the_record_appendix_is_no_case_and_session_laws_keep_their_page():
    assert cases("The Compact, §2.10, 1 App. 12. See also 2 App. 336-382. Id., at 25.") == []
    assert [m.normalized for m in cases("See Smith v. Jones, 1 Ohio App. 12 (1913).")] == ["1 Ohio App. 12"]
    statutes = {m.normalized for m in extract("The Compact, 94 Stat. 3305, and the Act, 86 Stat. 198.") if m.type is EntityType.STATUTE}
    assert statutes == {"94 Stat. 3305", "86 Stat. 198"}


def test_a_citation_without_its_page_is_never_the_key_of_a_case():
    text = "Loper Bright Enterprises v. Raimondo, 603 U.S. ___, 144 S. Ct. 2244 (2024). Smith v. Doe, 603 U.S. ___ (2024)."
    found = cases(text)
    assert [m.normalized for m in found] == ["144 S. Ct. 2244", "144 S. Ct. 2244", "603 U.S. ___"]
    assert found[0].attrs["case_name"] == "Loper Bright Enterprises v. Raimondo"
    entities = case_entities(resolve(text, "Roe v. Doe, 603 U.S. ___, 145 S. Ct. 10 (2024)."))
    assert len(entities) == 3  # the blank page joins nothing across documents


def test_a_case_cited_by_different_reporters_in_different_documents_is_one_case_in_any_order():
    documents = [
        "As 127 S. Ct. 1955 holds.",
        TWOMBLY,
        "See 167 L. Ed. 2d 929, 940.",
        "Compare Roe v. Wade, 410 U.S. 113 (1973).",
    ]
    for order in (documents, documents[::-1], documents[1:] + documents[:1]):
        resolutions = resolve(*order)
        entities = case_entities(resolutions)
        assert len(entities) == 2, order
        twombly = next(e for e in entities.values() if e.key != "410 u.s. 113")
        assert {twombly.name, *twombly.aliases} == {"550 U.S. 544", "127 S. Ct. 1955", "167 L. Ed. 2d 929"}, order
        assert set(twombly.aliases.values()) == {PARALLEL_CITATION}
        targets = {key for r in resolutions for t, key in r.entity_of_mention if t is EntityType.CASE}
        assert targets == set(entities), order


def test_documents_cite_the_case_once_per_citation_and_never_its_reporters_alone():
    text = TWOMBLY + " Id. at 556."
    mentions = extract(text)
    [resolution] = resolve(text)
    refs = [EntityRef(type=t, key=k) for t, k in resolution.entity_of_mention]
    edges = relate(mentions, refs, chunk_document(assemble("text", [(text, False, "text")])))
    cites = [e for e in edges if e.type is RelationType.CITES and e.target.type is EntityType.CASE]
    assert [(e.source, e.target.key, e.weight) for e in cites] == [(None, "550 u.s. 544", 4.0)]


def test_courts_are_named_as_cited_and_keep_their_id():
    text = "UNITED STATES DISTRICT COURT\nNORTHERN DISTRICT OF ILLINOIS\n\nAffirmed by the Ninth Circuit."
    courts = [m for m in extract(text) if m.type is EntityType.COURT]
    assert [(m.normalized, m.attrs["display_name"]) for m in courts] == [("ilnd", "N.D. Ill."), ("ca9", "9th Cir.")]
    [resolution] = resolve(text)
    named = {key: e.name for (t, key), e in resolution.entities.items() if t is EntityType.COURT}
    assert named == {"ilnd": "N.D. Ill.", "ca9": "9th Cir."}
    # an entity stored under its id by an earlier version takes the name, the id stays its key
    older = {EntityType.COURT: {"ilnd": CanonicalEntity(type=EntityType.COURT, key="ilnd", name="ilnd")}}
    [again] = resolve(text, index=older)
    assert again.entities[(EntityType.COURT, "ilnd")].name == "N.D. Ill."


def test_entities_type_case_lists_the_most_cited_cases(tmp_path):
    (tmp_path / "brief.txt").write_text(TWOMBLY + " Id. at 556. See Roe v. Wade, 410 U.S. 113 (1973). Twombly, supra, at 570.\n")
    (tmp_path / "reply.txt").write_text("As 127 S. Ct. 1955, 1966, holds, and 127 S. Ct. at 1970.\n")
    assert legaldoc("process", "brief.txt", "reply.txt", "--project", "p", cwd=tmp_path).returncode == 0
    listed = legaldoc("entities", "--type", "case", "--project", "p", "--json", cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr
    twombly, roe = json.loads(listed.stdout)
    assert (twombly["type"], twombly["name"], twombly["case_name"], twombly["year"]) == (
        "CASE", "550 U.S. 544", "Bell Atlantic Corp. v. Twombly", "2007")  # fmt: skip
    assert (twombly["documents"], twombly["mentions"]) == (2, 7)
    assert twombly["forms"] == {"full": 2, "parallel": 2, "id": 1, "supra": 1, "short": 1}
    assert twombly["pin_cites"] == ["555", "556", "570", "1966", "1970"]
    assert {a["alias"]: a["reason"] for a in twombly["aliases"]} == {
        "127 S. Ct. 1955": PARALLEL_CITATION, "167 L. Ed. 2d 929": PARALLEL_CITATION}  # fmt: skip
    assert (roe["name"], roe["documents"], roe["mentions"], roe["aliases"]) == ("410 U.S. 113", 1, 1, [])
    table = legaldoc("entities", "--type", "CASE", "--project", "p", cwd=tmp_path)
    assert table.returncode == 0 and "Bell Atlantic Corp. v. Twombly" in table.stdout and "127 S. Ct. 1955" in table.stdout
    shown = legaldoc("entities", "127 S. Ct. 1955", "--project", "p", "--json", cwd=tmp_path)
    assert json.loads(shown.stdout)["id"] == twombly["id"]  # found by a parallel citation
    helped = legaldoc("entities", "--help", cwd=tmp_path)
    assert helped.returncode == 0 and "CASE" in helped.stdout


def test_vector_pdf_short_forms_count_as_mentions_of_their_cases(corpus_run):
    _, database, reports = corpus_run
    document_id = reports["vector-pdf.pdf"].document_id
    with database.read() as session:
        rows = session.execute(
            select(MentionRow.start, MentionRow.normalized, MentionRow.attrs, MentionRow.entity_id)
            .where(MentionRow.document_id == document_id, MentionRow.type == EntityType.CASE.value).order_by(MentionRow.start)
        ).all()  # fmt: skip
    assert rows and not any(" App. " in f" {normalized} " for _, normalized, _, _ in rows)  # the record is no case
    short = [(start, normalized, entity) for start, normalized, attrs, entity in rows if attrs["form"] in ("short", "supra", "id")]
    assert short
    for start, normalized, entity in short:  # each one's case was cited in full before it
        assert any(s < start and n == normalized and e == entity and a["form"] == "full" for s, n, a, e in rows), normalized
    cited = {case.id: case for case in cited_cases(database, "corpus")}
    for entity in {entity for _, _, entity in short}:
        case = cited[entity]
        assert case.mentions == sum(case.forms.values()) and set(case.forms) - {"full", "parallel"}
        assert case.mentions >= sum(1 for _, _, _, e in rows if e == entity)


def test_the_migration_turns_stored_case_citations_into_cases(tmp_path, settings, database):
    from alembic import command

    from legaldoc.services.process import process_paths
    from legaldoc.storage.db import _alembic, get_engine
    from legaldoc.storage.tables import Entity

    (tmp_path / "brief.txt").write_text(TWOMBLY + "\n")
    list(process_paths([tmp_path / "brief.txt"], "p", settings, database))

    def types() -> set[tuple[str, str]]:
        with database.read() as session:
            return {("mention", t) for t in session.scalars(select(MentionRow.type))} | {
                ("entity", t) for t in session.scalars(select(Entity.type))}  # fmt: skip

    assert {("mention", "CASE"), ("entity", "CASE")} <= types()
    config = _alembic()
    for target, step in (("0006", command.downgrade), ("head", command.upgrade)):
        with get_engine(database.url).begin() as connection:
            config.attributes["connection"] = connection
            step(config, target)
        found = types()
        assert {t for _, t in found} & {"CASE", "CASE_CITATION"} == ({"CASE_CITATION"} if target == "0006" else {"CASE"})
    assert [case.aliases for case in cited_cases(database, "p")] == [
        [{"alias": "127 S. Ct. 1955", "reason": PARALLEL_CITATION}, {"alias": "167 L. Ed. 2d 929", "reason": PARALLEL_CITATION}]]  # fmt: skip


def test_a_slip_opinions_own_citation_is_not_a_case_it_cites():
    from legaldoc.models import EntityType
    from legaldoc.pipeline.entities import LocalEntityProvider

    text = "Cite as: 569 U.S. ___ (2013)\nOpinion of the Court\nSee Virginia v. Maryland, 540 U.S. 56, 66 (2003)."
    cases = [m.normalized for m in LocalEntityProvider().extract(text) if m.type is EntityType.CASE]
    assert cases == ["540 U.S. 56"]
