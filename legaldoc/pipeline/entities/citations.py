"""Case citations, statutes and their short forms with eyecite; court rules by rule patterns."""

from __future__ import annotations

import logging
import re
from enum import StrEnum
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


def _reporter_of_law(citation: FullLawCitation) -> str:
    return str(citation.corrected_reporter() if hasattr(citation, "corrected_reporter") else citation.groups.get("reporter"))


def _law_key(citation: FullLawCitation) -> str:
    groups = citation.groups
    reporter = _reporter_of_law(citation)
    if groups.get("volume") and groups.get("page"):  # session laws: 94 Stat. 3305
        return squash(f"{groups['volume']} {reporter} {groups['page']}")
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

# Between two parallel citations of one case: a comma, and perhaps the first one's pin cite
# ("550 U.S. 544, 555, 127 S. Ct. 1955"); a year, a parenthetical or a semicolon ends the case.
_PARALLEL_GAP = re.compile(r"\s*,\s*(?:(?:at\s+)?\*?\d+(?:\s*[-\u2013\u2014]\s*\d+)?(?:\s*nn?\.\s*\d+)?\s*,\s*)?")
# "Id. § 1988": the same code as the citation before, another section of it.
_ID_SECTION = re.compile(r"\s*§+\s*([\w.\-]+(?:\([\w]+\))*)")
_PIN = re.compile(r"^(?:at\s+)?")


class CaseForm(StrEnum):
    """How a CASE mention cites its case."""

    FULL = "full"  # the first (primary) reporter citation of a full citation
    PARALLEL = "parallel"  # another reporter's citation of the same case, right after it
    SHORT = "short"  # 550 U.S. at 556
    SUPRA = "supra"  # Twombly, supra, at 555
    ID = "id"  # Id. at 556


class _Case:
    """One cited case in a document: its reporter citations, the first one primary."""

    def __init__(self, primary: FullCaseCitation) -> None:
        self.primary = primary
        self.citations: list[str] = []

    def add(self, key: str) -> None:
        if key not in self.citations:
            self.citations.append(key)


def _reporter(citation: CaseCitation) -> str:
    return str(citation.corrected_reporter() if hasattr(citation, "corrected_reporter") else citation.groups.get("reporter"))


def _is_record(citation: CaseCitation) -> bool:
    """A bare "App." is no reporter of its own (only an ambiguous variant of "Ohio App."): in briefs and
    opinions "1 App. 12" and "App. 5" cite the appendix of the record."""
    return str(citation.groups.get("reporter")) == "App."


def is_parallel(text: str, previous: FullCaseCitation, citation: FullCaseCitation) -> bool:
    """Whether `citation` is a parallel citation of `previous`: right after it with only a comma (and
    its pin cite) between, in another reporter, not naming another case or year."""
    pin_end = previous.metadata.pin_cite_span_end or 0
    if not _PARALLEL_GAP.fullmatch(text[max(previous.span()[1], pin_end) : citation.span()[0]]):
        return False
    if _reporter(previous) == _reporter(citation):
        return False  # two pages of one reporter are two cases
    for name in ("year", "plaintiff", "defendant"):
        before, after = getattr(previous.metadata, name, None), getattr(citation.metadata, name, None)
        if before and after and before != after:
            return False
    return True


def _pin(citation: object) -> str | None:
    pin = getattr(getattr(citation, "metadata", None), "pin_cite", None)
    return squash(_PIN.sub("", pin)) or None if pin else None


_OWN_CITATION = re.compile(r"\bCite\s+as:?\s*$", re.I)


def citation_mentions(sink: MentionSink) -> None:
    """Cases (full citations, their parallel citations, and short, supra and id forms resolved to
    them), statutes (with "Id. § 1988" read as another section of the code cited before), rules."""
    from eyecite import get_citations, resolve_citations
    from eyecite.models import (
        FullCaseCitation,
        FullLawCitation,
        IdCitation,
        ReferenceCitation,
        Resource,
        ShortCaseCitation,
        SupraCitation,
        UnknownCitation,
    )
    from eyecite.resolve import resolve_full_citation

    text = sink.text
    # Line breaks and tabs read as spaces, one character for one, so a citation broken across lines
    # ("571\nU.S. 49") is found and every offset still points into the text as it is.
    flat = text.translate(_FLAT)
    citations = get_citations(flat)

    # "1 App. 12" is the record's appendix, not a reporter: it cites no case (nor does an id citation of it).
    record = {id(c) for c in citations if isinstance(c, FullCaseCitation | ShortCaseCitation) and _is_record(c)}
    # "Cite as: 569 U.S. ___ (2013)" in a slip opinion's running header is the document's own citation, not one it makes.
    record |= {id(c) for c in citations
               if isinstance(c, FullCaseCitation) and _OWN_CITATION.search(flat, max(0, c.span()[0] - 24), c.span()[0])}  # fmt: skip

    # Parallel citations form one case; a case cited again in full (by any of its reporters) is the same case.
    # A citation without its page ("603 U.S. ___") names no case by itself: it is only grouped by place.
    def node(citation: FullCaseCitation) -> str:
        key = _case_key(citation)
        return key if citation.groups.get("page") else f"{key}@{citation.span()[0]}"

    parent: dict[str, str] = {}
    first: dict[str, FullCaseCitation] = {}  # each node's first full citation, in text order

    def root(key: str) -> str:
        while parent[key] != key:
            key = parent[key]
        return key

    continued: set[int] = set()  # parallel citations after the first of their run
    borrowed: set[int] = set()  # eyecite gave them the case name and year of the citation before: not theirs
    previous: object = None
    for citation in sorted(citations, key=lambda c: c.span()):
        if isinstance(citation, ReferenceCitation):
            continue  # a case name met again elsewhere, listed after its full citation
        if isinstance(citation, FullCaseCitation) and id(citation) not in record:
            key = node(citation)
            if key not in parent:
                parent[key] = key
                first[key] = citation
            if isinstance(previous, FullCaseCitation) and id(previous) not in record and is_parallel(flat, previous, citation):
                parent[root(key)] = root(node(previous))
                continued.add(id(citation))
            elif isinstance(previous, FullCaseCitation) and citation.full_span_start is not None \
                    and citation.full_span_start == previous.full_span_start:  # fmt: skip
                borrowed.add(id(citation))
        previous = citation
    grouped: dict[str, list[str]] = {}
    for key in first:  # in order of first appearance
        grouped.setdefault(root(key), []).append(key)
    cases: dict[str, _Case] = {}
    for group, keys in grouped.items():
        # the primary citation: the first one with a page, else the first one
        keys.sort(key=lambda k: "@" in k)
        case = _Case(first[keys[0]])
        for key in keys:
            case.add(key.split("@")[0])
        cases[group] = case
    case_of = {id(c): cases[root(node(c))] for c in citations if isinstance(c, FullCaseCitation) and id(c) not in record}
    resources = {id(case.primary): Resource(case.primary) for case in case_of.values()}

    def resolve_full(citation: object) -> object:
        case = case_of.get(id(citation))
        return resources[id(case.primary)] if case else resolve_full_citation(citation)  # type: ignore[arg-type]

    resolved_to: dict[int, object] = {}
    try:
        for resource, members in resolve_citations(citations, resolve_full_citation=resolve_full).items():
            for member in members:
                resolved_to[id(member)] = cast(Resource, resource).citation  # the resolver keys by Resource
    except Exception:  # resolution is a bonus; a resolver bug must not lose the citations
        resolved_to = {}

    def add_case(start: int, end: int, case: _Case, form: CaseForm, confidence: float, found: object, **attrs: object) -> None:
        primary = case.citations[0]
        sink.add(EntityType.CASE, start, end, primary, "eyecite", confidence, form=form.value, pin_cite=_pin(found),
                 parallel=[c for c in case.citations if c != primary] or None, **attrs)  # fmt: skip

    sections_taken: set[int] = set()
    for citation in citations:
        start, end = citation.span()
        full = resolved_to.get(id(citation))
        if id(citation) in record or id(full) in record:
            continue
        if isinstance(citation, FullCaseCitation):
            case = case_of[id(citation)]
            key = _case_key(citation)
            meta = citation.metadata
            form = CaseForm.FULL if key == case.citations[0] else CaseForm.PARALLEL
            own = id(citation) not in continued and id(citation) not in borrowed
            name = _case_name_span(text, citation) if own else None
            add_case(start, end, case, form, 0.95, citation, citation=key,
                     year=getattr(meta, "year", None) if id(citation) not in borrowed else None,
                     court=getattr(meta, "court", None), case_name=name[2] if name else None)  # fmt: skip
            if name:
                sink.add(EntityType.CASE_NAME, name[0], name[1], name[2], "eyecite", 0.8,
                         cited=True, citation=case.citations[0])  # fmt: skip
        elif isinstance(citation, FullLawCitation):
            sink.add(EntityType.STATUTE, start, end, _law_key(citation), "eyecite", 0.95, form="full",
                     pin_cite=getattr(citation.metadata, "pin_cite", None))  # fmt: skip
        elif isinstance(citation, ShortCaseCitation | SupraCitation | IdCitation):
            form = {ShortCaseCitation: CaseForm.SHORT, SupraCitation: CaseForm.SUPRA, IdCitation: CaseForm.ID}[type(citation)]
            section = _ID_SECTION.match(flat, end) if isinstance(citation, IdCitation) else None
            if section:  # "Id. § 1988" cites § 1988, whatever the citation before it was
                sections_taken.add(section.start(1))
                code = full if isinstance(full, FullLawCitation) and full.groups.get("section") else None
                prefix = f"{code.groups.get('title') or ''} {_reporter_of_law(code)} " if code else ""
                sink.add(EntityType.STATUTE, start, section.end(), squash(f"{prefix}§ {section.group(1)}"), "eyecite",
                         0.8 if code else 0.6, form="id")  # fmt: skip
            elif isinstance(full, FullCaseCitation):
                add_case(start, end, case_of[id(full)], form, 0.85, citation)
            elif isinstance(full, FullLawCitation):
                sink.add(EntityType.STATUTE, start, end, _law_key(full), "eyecite", 0.8, form=form.value)
            elif isinstance(citation, ShortCaseCitation):
                sink.add(EntityType.CASE, start, end, _case_key(citation), "eyecite", 0.6, form=form.value,
                         pin_cite=_pin(citation))  # fmt: skip
        elif isinstance(citation, UnknownCitation):
            section = re.match(r"§+\s*([\w.\-]+(?:\([\w]+\))*)", text[start:end])
            if section and start + section.start(1) not in sections_taken:
                section_end = start + section.end()
                sink.add(EntityType.STATUTE, start, section_end, f"§ {section.group(1)}", "eyecite", 0.6,
                         form="section")  # fmt: skip
    _rule_mentions(sink)
