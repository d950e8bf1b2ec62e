"""Pydantic models that cross layers: what the pipeline stages take and return."""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from legaldoc.errors import ErrorCategory


class Stage(StrEnum):
    """Pipeline stages, in order."""

    EXTRACT = "extract"
    CHUNK = "chunk"
    ENTITIES = "entities"
    RESOLVE = "resolve"
    RELATE = "relate"


STAGES: tuple[Stage, ...] = tuple(Stage)


class EntityType(StrEnum):
    """Kinds of legal entity a mention can be."""

    CASE = "CASE"
    STATUTE = "STATUTE"
    RULE = "RULE"
    COURT = "COURT"
    JUDGE = "JUDGE"
    PARTY = "PARTY"
    CASE_NAME = "CASE_NAME"
    DOCKET_NUMBER = "DOCKET_NUMBER"
    ATTORNEY = "ATTORNEY"
    PERSON = "PERSON"
    ORGANIZATION = "ORGANIZATION"
    LAW_FIRM = "LAW_FIRM"
    DATE = "DATE"
    MONEY = "MONEY"


PERSON_TYPES = frozenset({EntityType.PERSON, EntityType.ATTORNEY, EntityType.JUDGE})


class RelationType(StrEnum):
    """Kinds of edge in the relationship graph."""

    MENTIONS = "MENTIONS"
    CITES = "CITES"
    OPPOSES = "OPPOSES"
    REPRESENTS = "REPRESENTS"
    PRESIDES_OVER = "PRESIDES_OVER"
    FILED_IN = "FILED_IN"
    CO_OCCURS_WITH = "CO_OCCURS_WITH"
    SAME_AS = "SAME_AS"
    """Project-wide, not per document: two person entities of different types are one human."""


class Frozen(BaseModel):
    model_config = ConfigDict(frozen=True)


class PageText(Frozen):
    """One page of a document's text, placed inside the whole document text."""

    number: int = Field(description="1-based page number")
    start: int
    end: int
    ocr: bool = False
    method: str = Field(description="how the text was obtained: text-layer, tesseract, docx, ...")


class ExtractedDocument(Frozen):
    """The text of a document, page by page, with what the extractor learnt about it."""

    kind: str = Field(description="pdf, docx, email, html, text, image, doc, wpd")
    text: str
    pages: tuple[PageText, ...]
    metadata: dict[str, Any] = Field(default_factory=dict)

    @property
    def ocr_pages(self) -> int:
        return sum(1 for page in self.pages if page.ocr)

    def page_at(self, offset: int) -> int:
        """The 1-based page holding a character offset."""
        for page in self.pages:
            if offset < page.end or page is self.pages[-1]:
                return page.number
        return 1


class Chunk(Frozen):
    """A contiguous slice of the document text that keeps legal structure together."""

    index: int
    start: int
    end: int
    page_start: int
    page_end: int
    kind: str = Field(default="body", description="caption, heading, section, body, signature")
    heading: str | None = None


class Mention(Frozen):
    """One occurrence of an entity in the document text; text == document.text[start:end]."""

    type: EntityType
    text: str
    start: int
    end: int
    normalized: str
    extractor: str
    confidence: float = Field(ge=0.0, le=1.0)
    attrs: dict[str, Any] = Field(default_factory=dict)


class CanonicalEntity(BaseModel):
    """A project-wide entity that mentions resolve to."""

    type: EntityType
    key: str = Field(description="canonical key, unique per (project, type)")
    name: str
    aliases: dict[str, str] = Field(
        default_factory=dict, description="alias text -> reason it was merged"
    )


class EntityRef(Frozen):
    type: EntityType
    key: str


class Evidence(Frozen):
    chunk_index: int
    start: int
    end: int


class Relationship(BaseModel):
    """A typed edge between two canonical entities (or a document), with evidence."""

    type: RelationType
    source: EntityRef | None = Field(description="None stands for the document itself")
    target: EntityRef
    weight: float = 1.0
    evidence: list[Evidence] = Field(default_factory=list)


class EntityLink(Frozen):
    """A project-wide edge between two canonical entities that needs no document: SAME_AS, with why."""

    type: RelationType
    source: EntityRef
    target: EntityRef
    reason: str


class StageError(BaseModel):
    """A classified failure of one stage for one document."""

    category: ErrorCategory
    stage: Stage
    message: str
