"""Dates (normalized to ISO 8601) and money (amount and currency)."""

from __future__ import annotations

import re
from datetime import date
from decimal import Decimal, InvalidOperation

from legaldoc.models import EntityType
from legaldoc.pipeline.entities.base import MentionSink, Spans, finditer_near

_MONTHS = {
    "jan": 1, "feb": 2, "mar": 3, "apr": 4, "may": 5, "jun": 6, "jul": 7, "aug": 8, "sep": 9, "sept": 9,
    "oct": 10, "nov": 11, "dec": 12,
}  # fmt: skip
_MONTH_NAME = (
    r"(?P<month>Jan(?:uary|\.)?|Feb(?:ruary|\.)?|Mar(?:ch|\.)?|Apr(?:il|\.)?|May|June?|July?|Aug(?:ust|\.)?|"
    r"Sep(?:t(?:ember|\.)?|\.)?|Oct(?:ober|\.)?|Nov(?:ember|\.)?|Dec(?:ember|\.)?)"
)
_DATE_PATTERNS = (
    re.compile(rf"\b{_MONTH_NAME}\s+(?P<day>\d{{1,2}})(?:st|nd|rd|th)?,?\s+(?P<year>(?:1[89]|20)\d{{2}})\b", re.I),
    re.compile(rf"\b(?P<day>\d{{1,2}})(?:st|nd|rd|th)?\s+(?:day\s+of\s+)?{_MONTH_NAME},?\s+(?P<year>(?:1[89]|20)\d{{2}})\b", re.I),
    re.compile(r"(?<![\w/.-])(?P<mon>\d{1,2})/(?P<day>\d{1,2})/(?P<year>(?:19|20)\d{2})(?![\w/])"),
    re.compile(r"(?<![\w/.-])(?P<year>(?:19|20)\d{2})-(?P<mon>\d{2})-(?P<day>\d{2})(?![\w-])"),
    re.compile(r"(?<![\w/.-])(?P<year>(?:19|20)\d{2})/(?P<mon>\d{1,2})/(?P<day>\d{1,2})(?![\w/])"),  # 2024/02/29
    re.compile(r"(?<![\w/.:-])(?P<mon>\d{1,2})-(?P<day>\d{1,2})-(?P<year>(?:19|20)\d{2})(?![\w-])"),  # 04-27-2026
    re.compile(r"(?<![\w/.-])(?P<mon>\d{1,2})/(?P<day>\d{1,2})/(?P<yy>\d{2})(?![\w/])"),  # 10/30/15 (docket entries)
)
_CENTURY_PIVOT = 69
"""Two-digit years as POSIX reads them: 69-99 are 19xx, 00-68 are 20xx."""
_MONEY = re.compile(
    r"(?:(?P<symbol>\$|US\$|USD\s?|€|EUR\s?|£|GBP\s?)\s?(?P<amount>\d{1,3}(?:,\d{3})+(?:\.\d{1,2})?|\d+(?:\.\d{1,2})?)"
    r"(?:\s?(?P<scale>million|billion|thousand|[MB]n?)\b)?)"
    r"|(?P<amount2>\d{1,3}(?:,\d{3})+(?:\.\d{2})?|\d+(?:\.\d{2})?)\s(?P<word>dollars|U\.S\. dollars|euros)\b",
    re.I,
)
# Every _MONEY match holds its symbol, or its currency word after at most 2 whitespace runs
# ("1,000 U.S. dollars"): it is tried only just before them.
_MONEY_WORD = re.compile(r"\$|€|£|USD|EUR|GBP|dollars|euros", re.I)
_MONEY_START = re.compile(r"[$€£\w]", re.I)
_CURRENCY = {"$": "USD", "us$": "USD", "usd": "USD", "€": "EUR", "eur": "EUR", "£": "GBP", "gbp": "GBP",
             "dollars": "USD", "u.s. dollars": "USD", "euros": "EUR"}  # fmt: skip
_SCALE = {"thousand": 1000, "million": 10**6, "m": 10**6, "mn": 10**6, "billion": 10**9, "b": 10**9, "bn": 10**9}


def date_mentions(sink: MentionSink) -> None:
    taken = Spans()
    for pattern in _DATE_PATTERNS:
        for match in pattern.finditer(sink.text):
            if taken.overlaps(*match.span()):
                continue
            groups = match.groupdict()
            if groups.get("mon"):
                month = int(groups["mon"])
            else:
                month = _MONTHS[groups["month"].lower()[:3]]
            if groups.get("yy"):
                year = int(groups["yy"]) + (1900 if int(groups["yy"]) >= _CENTURY_PIVOT else 2000)
            else:
                year = int(groups["year"])
            try:
                value = date(year, month, int(groups["day"]))
            except ValueError:
                continue
            sink.add(EntityType.DATE, match.start(), match.end(), value.isoformat(), "rules", 0.9)
            taken.add(*match.span())


def money_mentions(sink: MentionSink) -> None:
    for match in finditer_near(_MONEY, sink.text, _MONEY_WORD, _MONEY_START, 2, one_line=False):
        raw_amount = match["amount"] or match["amount2"]
        currency = _CURRENCY[(match["symbol"] or match["word"] or "$").strip().lower()]
        try:
            amount = Decimal(raw_amount.replace(",", ""))
        except InvalidOperation:
            continue
        if match["scale"]:
            amount *= _SCALE[match["scale"].lower()]
        normalized = f"{amount:.2f} {currency}"
        sink.add(EntityType.MONEY, match.start(), match.end(), normalized, "rules", 0.9,
                 amount=str(amount.quantize(Decimal('0.01'))), currency=currency)  # fmt: skip
