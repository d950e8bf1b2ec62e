"""Docket numbers: federal 'O:YY-tt-NNNNN', bankruptcy 'YY-NNNNN', appellate 'No. YY-NNNN', normalized."""

from __future__ import annotations

import re

from legaldoc.models import EntityType
from legaldoc.pipeline.entities.base import MentionSink

_DASH = r"[-‐‑–—]"
_CASE_TYPES = "cv|cr|bk|ap|mj|mc|md|mdl|po|cb|sw|gj|ml|dp|vv|adv|misc|pt|tp|ms"
# 3:21-cv-00437-ECM-SRW, 1:17-cr-00201-ABJ-2, 2:23-ap-75, 1:20cv123
_FEDERAL = re.compile(
    rf"(?<![\w:])(?:(?P<office>\d{{1,2}}):)?(?P<year>\d{{2}}){_DASH}?(?P<type>{_CASE_TYPES}){_DASH}?(?P<number>\d{{1,6}})"
    rf"(?P<suffix>(?:{_DASH}[A-Za-z]{{1,5}}\d{{0,2}})*(?:{_DASH}\d{{1,2}})?)(?![\w])",
    re.I,
)
# 23-10253-KBO, 1-23-42603-nhl, 25-03768-JMC-13 (judge initials make these unmistakable)
_BANKRUPTCY = re.compile(
    rf"(?<![\w:/.$-])(?:(?P<office>\d){_DASH})?(?P<year>\d{{2}}){_DASH}(?P<number>\d{{5}})"
    rf"(?P<suffix>(?:{_DASH}[A-Za-z]{{2,5}}\d{{0,2}})+(?:{_DASH}\d{{1,2}})?|{_DASH}\d{{1,2}}(?=\b))?(?![\w/-])"
)  # 24-04888-7: the chapter alone after the number (kept as the suffix)
# MDL No. 2741, MDL 2804: multidistrict litigation numbers
_MDL = re.compile(r"\bMDL[ \t]*(?:No\.|Number|#)?[ \t]*(?P<number>\d{3,5})(?![\w-])")
_CUE = re.compile(
    r"(?:\bCase|\bDocket|\bNos?|\bNumber|\bAppeal|\bAction|\bBankruptcy|\bAdversary|\bAdv|\bPro|\bProceeding|"
    r"\bCause|\bIndex|\bCh(?:apter)?[- ]?\d+|\bSubject|#)[\s.:#]*$",
    re.I,
)
# No. 20-1507, No. 11–1158, Case: 21-1298, Appeal: 17-2218, No. 363A14-4, Docket #: 10-1095
_APPELLATE = re.compile(
    rf"\b(?:Nos?\.|Case|Appeal|Docket|Number)(?:\s*(?:No\.|#|:))*\s*"
    rf"(?P<number>\d{{2}}{_DASH}\d{{1,5}}|\d{{2,4}}[A-Z]{{1,2}}\d{{2}}(?:{_DASH}\d{{1,3}})?)(?![\w-])"
)


def _dash(value: str) -> str:
    return re.sub(_DASH, "-", value)


def docket_mentions(sink: MentionSink) -> None:
    text = sink.text
    taken: list[tuple[int, int]] = []

    def free(start: int, end: int) -> bool:
        return not any(s < end and start < e for s, e in taken)

    for match in _FEDERAL.finditer(text):
        office = f"{match['office']}:" if match["office"] else ""
        normalized = f"{office}{match['year']}-{match['type'].lower()}-{int(match['number']):05d}"
        sink.add(EntityType.DOCKET_NUMBER, match.start(), match.end(), normalized, "rules", 0.95,
                 kind="federal", case_type=match["type"].lower(), suffix=_dash(match["suffix"]) or None)  # fmt: skip
        taken.append(match.span())
    for match in _BANKRUPTCY.finditer(text):
        if not free(*match.span()):
            continue
        cue = _CUE.search(text[max(0, match.start() - 30) : match.start()])
        at_line_start = match.start() == 0 or text[match.start() - 1] == "\n"
        judge_suffix = bool(match["suffix"]) and re.search(r"[A-Za-z]", match["suffix"]) is not None
        if not (judge_suffix or cue or at_line_start):  # a chapter digit alone is no evidence
            continue
        office = f"{match['office']}-" if match["office"] else ""
        normalized = f"{office}{match['year']}-{match['number']}"
        confidence = 0.9 if judge_suffix or cue else 0.7
        sink.add(EntityType.DOCKET_NUMBER, match.start(), match.end(), normalized, "rules", confidence,
                 kind="bankruptcy", suffix=_dash(match["suffix"] or "") or None)  # fmt: skip
        taken.append(match.span())
    for match in _MDL.finditer(text):
        if free(*match.span()):
            sink.add(EntityType.DOCKET_NUMBER, match.start(), match.end(), f"MDL {match['number']}", "rules", 0.9, kind="mdl")
            taken.append(match.span())
    for match in _APPELLATE.finditer(text):
        start, end = match.span("number")
        if not free(start, end):
            continue
        sink.add(EntityType.DOCKET_NUMBER, start, end, _dash(match["number"]), "rules", 0.85, kind="appellate")
        taken.append((start, end))
