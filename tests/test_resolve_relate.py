"""Resolution guards and relationship edges on hand-made inputs."""

from __future__ import annotations

from legaldoc.config import load_settings
from legaldoc.models import EntityRef, EntityType, Mention, RelationType
from legaldoc.pipeline.chunk import chunk_document
from legaldoc.pipeline.entities import LocalEntityProvider
from legaldoc.pipeline.extract.textutil import assemble
from legaldoc.pipeline.relate import relate
from legaldoc.pipeline.resolve import canonical_key, resolve_mentions


def mention(type_: EntityType, normalized: str) -> Mention:
    return Mention(type=type_, text=normalized, start=0, end=len(normalized), normalized=normalized, extractor="test", confidence=0.9)


def test_never_merges_john_into_johnson_or_two_dates():
    resolution = resolve_mentions(
        [mention(EntityType.PERSON, "John"), mention(EntityType.PERSON, "Johnson"),
         mention(EntityType.DATE, "2021-08-09"), mention(EntityType.DATE, "2021-08-19"),
         mention(EntityType.PERSON, "Mark Johnson"), mention(EntityType.PERSON, "Mark Johnston"),
         mention(EntityType.ORGANIZATION, "1616 27th Street Flats LLC"), mention(EntityType.ORGANIZATION, "1616 28th Street Flats LLC")],
        {},
    )  # fmt: skip
    assert len(set(resolution.entity_of_mention)) == 8


def test_merges_name_variants_with_a_reason():
    resolution = resolve_mentions(
        [mention(EntityType.ATTORNEY, "Courtney Elizabeth Lowery"), mention(EntityType.ATTORNEY, "Courtney Lowery"),
         mention(EntityType.ORGANIZATION, "Koch Industries, Inc."), mention(EntityType.ORGANIZATION, "Koch Industries Inc"),
         mention(EntityType.CASE_NAME, "TARRANT REGIONAL WATER DISTRICT v. HERRMANN"),
         mention(EntityType.CASE_NAME, "TARRANT REGIONAL WATER DIST. v. HERRMANN")],
        {},
    )  # fmt: skip
    assert len(set(resolution.entity_of_mention)) == 3
    lowery = resolution.entities[(EntityType.ATTORNEY, "courtney elizabeth lowery")]
    assert lowery.aliases["Courtney Lowery"].startswith("same first name and surname")
    tarrant = next(e for e in resolution.entities.values() if e.type is EntityType.CASE_NAME)
    assert "fuzzy match" in next(iter(tarrant.aliases.values()))


def test_canonical_keys():
    assert canonical_key(EntityType.COURT, "almd") == "almd"
    assert canonical_key(EntityType.ORGANIZATION, "The Koch Industries, Inc.") == "koch industries"
    assert canonical_key(EntityType.PERSON, "John Thomas Sparks, Sr.") == "john thomas sparks"


def test_relate_builds_typed_edges_with_evidence():
    text = ("UNITED STATES DISTRICT COURT\nMIDDLE DISTRICT OF ALABAMA\n\nCase Name: Stapler v. Automatic Food Service, Inc.\n"
            "Case Number: 3:21-cv-00437-ECM-SRW\nSigned by Judge Emily C. Marks on 8/9/2021.\n\n"
            "Jane Roe on behalf of Defendant Automatic Food Service, Inc.\njroe@firm.example\n"
            "See Bell Atl. Corp. v. Twombly, 550 U.S. 544 (2007).")  # fmt: skip
    document = assemble("text", [(text, False, "text")])
    mentions = LocalEntityProvider().extract(text)
    resolution = resolve_mentions(mentions, {})
    refs = [EntityRef(type=t, key=k) for t, k in resolution.entity_of_mention]
    edges = relate(mentions, refs, chunk_document(document))
    kinds = {(e.type, e.source.key if e.source else None, e.target.key) for e in edges}
    assert (RelationType.FILED_IN, "3:21-cv-00437", "almd") in kinds
    assert (RelationType.OPPOSES, "automatic food service", "stapler") in kinds
    assert (RelationType.PRESIDES_OVER, "emily c marks", "stapler v automatic food service inc") in kinds
    assert (RelationType.REPRESENTS, "jane roe", "automatic food service") in kinds
    assert (RelationType.CITES, None, "550 u.s. 544") in kinds
    assert any(e.type is RelationType.CO_OCCURS_WITH for e in edges)
    for edge in edges:
        assert edge.evidence and all(0 <= ev.start < ev.end <= len(text) for ev in edge.evidence)


def test_chunks_never_split_words_and_cover_pages(corpus_run):
    from legaldoc.pipeline.extract import extract
    from tests.conftest import DOCUMENTS

    settings = load_settings()
    for name in ("vector-pdf.pdf", "ca5_00516242060.pdf", "word-docx.docx"):
        document = extract((DOCUMENTS / name).read_bytes(), name, settings, None)
        chunks = chunk_document(document, 800, 2000)
        assert chunks
        for chunk in chunks:
            assert chunk.end - chunk.start <= 2000
            if chunk.start > 0:
                assert not (document.text[chunk.start - 1].isalnum() and document.text[chunk.start].isalnum())
            if chunk.end < len(document.text):
                assert not (document.text[chunk.end - 1].isalnum() and document.text[chunk.end].isalnum())
            assert 1 <= chunk.page_start <= chunk.page_end <= len(document.pages)
        assert any(c.heading for c in chunks) or name == "ca5_00516242060.pdf"
