"""The rule extractors' fast paths find exactly what the plain scans found: finditer_near against
finditer on random texts made of the words each rule reads, Spans against a scan of every span, and
the name token against the form it replaced."""

from __future__ import annotations

import random
import re

import pytest

from legaldoc.pipeline.entities import courts, dates_money, names
from legaldoc.pipeline.entities.base import Spans, finditer_near

_BLANKS = [" ", " ", "  ", "\t", "\n", "\n\n"]
_JUDGE = ["John", "Smith", "X" + "y" * 90, "McDonald", "O'Brien", "A.", "B", "JONES", "Jr.", "III", ",", "Judge",
          "District", "Magistrate", "Chief", "United", "States", "the", "by", ".", "x", ", District Judge",
          "Magistrate Judge", "Mary F. Walrath", "A B C D E F"]  # fmt: skip
_COURTS = ["United", "States", "U.S.", "U. S.", "Court", "court", "COURT", "of", "Appeals", "for", "the", "First",
           "Circuit", "Supreme", "New", "York", "Texas", "Superior", "County", "Criminal", "Northern", "Mariana",
           "Islands", "x", "District", "Columbia", "Court of Appeals", "Supreme Court of the United States",
           "Texas Court of Criminal Appeals", "Bankruptcy Court", "District Court", "Middle District of", "Alabama",
           "District Court for the Middle District of Alabama", "U.S. Bankruptcy Court\nDistrict of Delaware"]  # fmt: skip
_ORGS = ["Smith", "Jones", "&", "of", "the", "LLP", "L.L.P.", "PLLC", "P.C.", "P.A.", "LPA", "Law Firm", "Law Group",
         "Law Offices of", "Attorneys at Law", "Law", "LLC", "L.L.C.", "Inc.", "Corp.", "Corporation", "Co.", "Company",
         "Ltd", "N.A.", "L.P.", "LP", "S.A.", "GmbH", "PLC", "City of", "County of the", "State", "Department of",
         "United States Trustee", "U.S. Trustee", "Trustee", "Q" + "w" * 70, "O'Neil", "x", ",", "Court", "Board of"]  # fmt: skip
_MAIL = ["john", "J.Doe", "a+b", "O'x", "@", "@", "x.com", ".", "-", "_", "uscourts", ".uscourts.gov", "almd",
         "ecf.almd", "gov", "<", ">", ",", "é", "1"]  # fmt: skip
_MONEY = ["$", "US$", "USD", "usd", "€", "EUR", "£", "GBP", "1", "12", "1,000", "1,000,000", ".5", ".00", "dollars",
          "U.S. dollars", "euros", "DOLLARS", "million", "M", "bn", "x"]  # fmt: skip
_VERSUS = ["Smith", "Jones", "v.", "v", "vs.", "&", "of", "the", "ex rel.", "ex\nrel", "U.S.", "Inc.", ",", "1st",
           "See", "Co.", "a", "In re"]  # fmt: skip

CASES = {
    "judge title": (names._JUDGE_PATTERNS[2], names._JUDGE_WORD, names._CAPITAL, 12, True, _JUDGE),
    "other courts": (courts._OTHER_COURTS, courts._COURT_WORD, courts._LETTER, 6, False, _COURTS),
    "federal trial courts": (courts._FEDERAL_TRIAL, courts._COURT_WORD, courts._LETTER, 4, False, _COURTS),
    "ecf hosts": (courts._ECF_HOST, courts._HOST_WORD, courts._HOST_START, 0, True, _MAIL),
    "law firms": (names._FIRM, names._FIRM_WORD, names._CAPITAL, 11, True, _ORGS),
    "organizations": (names._ORG, names._ORG_WORD, names._CAPITAL, 13, True, _ORGS),
    "e-mail": (names._EMAIL, names._AT, names._EMAIL_START, 0, True, _MAIL),
    "money": (dates_money._MONEY, dates_money._MONEY_WORD, dates_money._MONEY_START, 2, False, _MONEY),
    "inline versus": (names._INLINE_VERSUS, names._VERSUS_WORD, names._CAPITAL, 16, False, _VERSUS),
}


def _texts(words: list[str], count: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    texts = []
    for _ in range(count):
        parts: list[str] = []
        for _ in range(rng.randint(1, 40)):
            parts.append(rng.choice(words))
            if rng.random() < 0.6:
                parts.append(rng.choice(_BLANKS))
        texts.append("".join(parts))
    return texts


@pytest.mark.parametrize("case", sorted(CASES))
def test_finditer_near_finds_what_finditer_finds(case):
    pattern, anchor, starts, gaps, one_line, words = CASES[case]
    found = 0
    for text in _texts(words, 3000, seed=len(case)):
        expected = [(m.span(), m.groupdict()) for m in pattern.finditer(text)]
        assert [(m.span(), m.groupdict()) for m in finditer_near(pattern, text, anchor, starts, gaps, one_line)] == expected, text
        found += len(expected)
    assert found > 50  # the texts do exercise the rule


def test_spans_overlap_as_a_scan_of_every_span_says():
    rng = random.Random(7)
    for _ in range(3000):
        spans, kept = Spans(), []
        for _ in range(rng.randint(1, 30)):
            start = rng.randint(0, 40)
            end = start + rng.choice([0, 1, 2, 3, 5, 8])
            expected = any(s < end and start < e for s, e in kept)
            assert spans.overlaps(start, end) is expected
            if not expected:
                kept.append((start, end))
                spans.add(start, end)


def test_name_token_matches_what_its_former_spelling_matched():
    former = names._TOKEN.replace("[A-Z](?:[a-z]*[A-Z])?[a-z]+", "[A-Z][a-z]*[A-Z]?[a-z]+", 1)
    assert former != names._TOKEN

    def rules(token: str) -> list[re.Pattern[str]]:
        listed = token.replace("[a-z]+(?:", "[a-z]+\\d{0,2}(?:", 1)
        person = rf"{token}(?:[ \t]+{token}){{1,4}}{names._SUFFIX}"
        listed_name = rf"{listed}(?:[ \t]+{listed}){{1,4}}{names._SUFFIX}"
        return [re.compile(p) for p in (rf"^{person}$", rf"^{listed_name}$", rf"Judge[ \t]+(?P<n>{person})",
                                         rf"(?P<n>{person}),?[ \t]+(?:District|Magistrate)[ \t]+Judge\b",
                                         rf"(?P<n>{listed_name})[ \t]*\n?[ \t]*$", rf"{person},\s+")]  # fmt: skip

    words = ["A", "B", "I", "J", "O", "a", "b", "c", "r", " ", "\t", ",", ".", "'", "-", "\n", "1", "Jr", "II", "Judge",
             "District", "McDonald", "Esq"]  # fmt: skip
    rng = random.Random(3)
    for old, new in zip(rules(former), rules(names._TOKEN), strict=True):
        for _ in range(3000):
            text = "".join(rng.choice(words) for _ in range(rng.randint(1, 25)))
            assert [m.span() for m in new.finditer(text)] == [m.span() for m in old.finditer(text)], text
