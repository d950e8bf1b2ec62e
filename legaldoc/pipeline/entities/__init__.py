"""The entities stage: legal entities with exact offsets, normalized values and confidences."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

from legaldoc.config import Settings
from legaldoc.errors import ConfigurationError
from legaldoc.models import Mention
from legaldoc.pipeline.entities.base import MentionSink, Spans
from legaldoc.pipeline.entities.citations import citation_mentions
from legaldoc.pipeline.entities.courts import court_mentions, find_court_id
from legaldoc.pipeline.entities.dates_money import date_mentions, money_mentions
from legaldoc.pipeline.entities.dockets import docket_mentions
from legaldoc.pipeline.entities.names import (
    case_name_mentions,
    judge_mentions,
    organization_mentions,
    party_block_mentions,
    people_mentions,
)
from legaldoc.pipeline.entities.records import record_mentions

__all__ = ["EntityProvider", "LocalEntityProvider", "entity_provider_from_settings", "deduplicate"]


class EntityProvider(Protocol):
    """Finds entity mentions in a document's text."""

    name: str

    def extract(self, text: str, record: Mapping[str, Any] | None = None) -> list[Mention]:
        """Mentions in `text`; `record` is the document's court record (a parsed PACER docket
        report or notice) when extraction found one."""
        ...


def deduplicate(mentions: list[Mention]) -> list[Mention]:
    """One mention per (type, span); among overlapping mentions of one type keep the surest, then longest."""
    ranked = sorted(mentions, key=lambda m: (-m.confidence, -(m.end - m.start), m.start))
    kept: list[Mention] = []
    spans_by_type: dict[str, Spans] = {}
    for mention in ranked:
        spans = spans_by_type.setdefault(mention.type, Spans())
        if spans.overlaps(mention.start, mention.end):
            continue
        spans.add(mention.start, mention.end)
        kept.append(mention)
    return sorted(kept, key=lambda m: (m.start, m.end, m.type))


class LocalEntityProvider:
    """eyecite + reporters-db for citations and statutes, courts-db for courts, rules for the rest."""

    name = "local"

    def extract(self, text: str, record: Mapping[str, Any] | None = None) -> list[Mention]:
        sink = MentionSink(text)
        if record:
            record_mentions(sink, record)
        citation_mentions(sink)
        court_mentions(sink)
        docket_mentions(sink)
        if not (record and record.get("parties")):  # the record's party blocks replace the rule's reading
            party_block_mentions(sink)
        case_name_mentions(sink)
        judge_mentions(sink)
        people_mentions(sink)
        organization_mentions(sink)
        date_mentions(sink)
        money_mentions(sink)
        return deduplicate(sink.mentions)


WARM_UP_TEXT = (
    "UNITED STATES DISTRICT COURT FOR THE NORTHERN DISTRICT OF ILLINOIS\n"
    "JOHN SMITH, Plaintiff, v. ACME WIDGETS, INC., Defendant.\nCase No. 1:20-cv-01234\n"
    "Before the Honorable Jane Q. Doe, United States District Judge. See Bell Atlantic Corp. v. "
    "Twombly, 550 U.S. 544, 556 (2007); 42 U.S.C. \u00a7 1983. Filed January 5, 2021. Damages of "
    "$1,250,000.00 are sought. Counsel: Mary Roe, Roe & Lee LLP.\n"
)
"""A made-up caption exercising every rule (never a document's text)."""


def warm_up() -> None:
    """Build what the local rules build on first use (eyecite's and courts-db's regular
    expressions, the court tables): a worker does it once before forking its pool processes, which
    then share it instead of each spending a second or more of CPU on its first document."""
    LocalEntityProvider().extract(WARM_UP_TEXT)
    find_court_id("Supreme Court of Ohio")  # courts-db compiles all its court-name expressions at its first search


def entity_provider_from_settings(settings: Settings) -> EntityProvider:
    if settings.entity_provider == "local":
        return LocalEntityProvider()
    if settings.entity_provider == "failing":
        from legaldoc.pipeline.faults import FailingEntityProvider

        return FailingEntityProvider(LocalEntityProvider(), settings.failing_category, settings.failing_attempts,
                                     settings.failing_retry_after, settings.data_dir / "faults",
                                     match=settings.failing_match, signal=settings.failing_signal)  # fmt: skip
    raise ConfigurationError(f"unknown entity provider {settings.entity_provider!r}")
