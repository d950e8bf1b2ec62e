"""Case citations, statutes and their short forms with eyecite; court rules by rule patterns."""

from __future__ import annotations

import logging
import re
from typing import TYPE_CHECKING, cast

from legaldoc.models import EntityType
from legaldoc.pipeline.entities.base import MentionSink, squash

if TYPE_CHECKING:
    from eyecite.models import CaseCitation, FullCaseCitation, FullLawCitation

logging.getLogger("eyecite").setLevel(logging.ERROR)

_RULE = re.compile(
    r"\b(?:Fed(?:eral|\.)?\s*R(?:ules?|\.)?\s*(?:of\s+)?"
    r"(?P<set>Civ(?:il)?|Crim(?:inal)?|App(?:ellate)?|Evid(?:ence)?|Bankr(?:uptcy)?)\.?\s*"
    r"(?:P(?:roc(?:edure)?)?\.?\s*)?"
    r"|(?P<abbr>FRCP|FRCrP|FRAP|FRE|FRBP)\s*"
    r"|(?P<local>(?:Local\s+(?:Civil\s+|Criminal\s+|Bankruptcy\s+)?Rule|L\.\s?R\.|LCvR|LCrR|LBR|L\.?\s?Civ\.?\s?R\.)\s*)"
    r"|(?P<bare>(?<![\w.])Rules?\s+)"
    r")"
    r"(?P<number>\d{1,4}(?:[.\-]\d{1,3})?)(?P<sub>(?:\s?\([a-zA-Z0-9]{1,4}\))*)"
)
_RULE_SETS = {
    "civ": "Civ. P.", "civil": "Civ. P.", "crim": "Crim. P.", "criminal": "Crim. P.", "app": "App. P.",
    "appellate": "App. P.", "evid": "Evid.", "evidence": "Evid.", "bankr": "Bankr. P.", "bankruptcy": "Bankr. P.",
}  # fmt: skip
_ABBREVIATIONS = {"FRCP": "Civ. P.", "FRCRP": "Crim. P.", "FRAP": "App. P.", "FRE": "Evid.", "FRBP": "Bankr. P."}


def _rule_mentions(sink: MentionSink) -> None:
    for match in _RULE.finditer(sink.text):
        number = match["number"]
        sub = re.sub(r"\s+", "", match["sub"] or "")
        if match["set"]:
            normalized = f"Fed. R. {_RULE_SETS[match['set'].lower().rstrip('.')]} {number}{sub}"
            confidence = 0.95
        elif match["abbr"]:
            normalized = f"Fed. R. {_ABBREVIATIONS[match['abbr'].upper()]} {number}{sub}"
            confidence = 0.9
        elif match["local"]:
            normalized = f"Local Rule {number}{sub}"
            confidence = 0.85
        else:
            if not sub:  # "Rule 5" alone is too often not a court rule
                continue
            normalized = f"Rule {number}{sub}"
            confidence = 0.6
        sink.add(EntityType.RULE, match.start(), match.end(), normalized, "rules", confidence,
                 rule=number, subdivision=sub or None)  # fmt: skip


def _case_key(citation: CaseCitation) -> str:
    groups = citation.groups
    reporter = citation.corrected_reporter() if hasattr(citation, "corrected_reporter") else groups.get("reporter")
    page = groups.get("page") or "___"
    return squash(f"{groups.get('volume')} {reporter} {page}")


def _law_key(citation: FullLawCitation) -> str:
    groups = citation.groups
    reporter = citation.corrected_reporter() if hasattr(citation, "corrected_reporter") else groups.get("reporter")
    title = groups.get("title") or groups.get("chapter") or ""
    section = groups.get("section") or ""
    return squash(f"{title} {reporter} § {section}")


def _case_name_span(text: str, citation: FullCaseCitation) -> tuple[int, int, str] | None:
    """The 'Plaintiff v. Defendant' before a full case citation, when eyecite found both names."""
    meta = citation.metadata
    if not (getattr(meta, "plaintiff", None) and getattr(meta, "defendant", None)):
        return None
    start = citation.full_span_start
    end = citation.span()[0]
    if start is None or start >= end:
        return None
    window = text[start:end].rstrip(" ,\n")
    if not re.search(r"\sv\.?\s", window) or len(window) > 200:
        return None
    return start, start + len(window), squash(window)


_FLAT = {ord("\n"): " ", ord("\r"): " ", ord("\t"): " ", ord("\f"): " ", ord("\v"): " "}


def citation_mentions(sink: MentionSink) -> None:
    """Full, short, supra and id citations (resolved to their full citation), statutes, rules."""
    from eyecite import get_citations, resolve_citations
    from eyecite.models import (
        FullCaseCitation,
        FullLawCitation,
        IdCitation,
        Resource,
        ShortCaseCitation,
        SupraCitation,
        UnknownCitation,
    )

    text = sink.text
    # Line breaks and tabs read as spaces, one character for one, so a citation broken across lines
    # ("571\nU.S. 49") is found and every offset still points into the text as it is.
    citations = get_citations(text.translate(_FLAT))
    resolved_to: dict[int, object] = {}
    try:
        for resource, members in resolve_citations(citations).items():
            for member in members:
                resolved_to[id(member)] = cast(Resource, resource).citation  # default resolver keys by Resource
    except Exception:  # resolution is a bonus; a resolver bug must not lose the citations
        resolved_to = {}

    for citation in citations:
        start, end = citation.span()
        full = resolved_to.get(id(citation))
        if isinstance(citation, FullCaseCitation):
            key = _case_key(citation)
            meta = citation.metadata
            sink.add(EntityType.CASE_CITATION, start, end, key, "eyecite", 0.95, form="full",
                     year=getattr(meta, "year", None), court=getattr(meta, "court", None),
                     pin_cite=getattr(meta, "pin_cite", None))  # fmt: skip
            name = _case_name_span(text, citation)
            if name:
                sink.add(EntityType.CASE_NAME, name[0], name[1], name[2], "eyecite", 0.8,
                         cited=True, citation=key)  # fmt: skip
        elif isinstance(citation, FullLawCitation):
            sink.add(EntityType.STATUTE, start, end, _law_key(citation), "eyecite", 0.95, form="full",
                     pin_cite=getattr(citation.metadata, "pin_cite", None))  # fmt: skip
        elif isinstance(citation, ShortCaseCitation | SupraCitation | IdCitation):
            form = {ShortCaseCitation: "short", SupraCitation: "supra", IdCitation: "id"}[type(citation)]
            if isinstance(full, FullCaseCitation):
                sink.add(EntityType.CASE_CITATION, start, end, _case_key(full), "eyecite", 0.85, form=form)
            elif isinstance(full, FullLawCitation):
                sink.add(EntityType.STATUTE, start, end, _law_key(full), "eyecite", 0.8, form=form)
            elif isinstance(citation, ShortCaseCitation):
                sink.add(EntityType.CASE_CITATION, start, end, _case_key(citation), "eyecite", 0.6, form=form)
        elif isinstance(citation, UnknownCitation):
            section = re.match(r"§+\s*([\w.\-]+(?:\([\w]+\))*)", text[start:end])
            if section:
                section_end = start + section.end()
                sink.add(EntityType.STATUTE, start, section_end, f"§ {section.group(1)}", "eyecite", 0.6,
                         form="section")  # fmt: skip
    _rule_mentions(sink)
