"""Courts, normalized to courts-db ids (e.g. 'almd'), from court names in any layout and CM/ECF hosts."""

from __future__ import annotations

import re
from functools import cache

from legaldoc.models import EntityType
from legaldoc.pipeline.entities.base import MentionSink, finditer_near, squash

STATES = ["Alabama", "Alaska", "Arizona", "Arkansas", "California", "Colorado", "Connecticut", "Delaware", "Florida", "Georgia", "Hawaii", "Idaho", "Illinois", "Indiana", "Iowa", "Kansas", "Kentucky", "Louisiana", "Maine", "Maryland", "Massachusetts", "Michigan", "Minnesota", "Mississippi", "Missouri", "Montana", "Nebraska", "Nevada", "Ohio", "Oklahoma", "Oregon", "Pennsylvania", "Tennessee", "Texas", "Utah", "Vermont", "Virginia", "Washington", "Wisconsin", "Wyoming", "Guam"] + [
    "New Hampshire", "New Jersey", "New Mexico", "New York", "North Carolina", "North Dakota",
    "Rhode Island", "South Carolina", "South Dakota", "West Virginia", "District of Columbia",
    "Puerto Rico", "Virgin Islands", "Northern Mariana Islands", "Columbia",
]  # fmt: skip
_STATE_ALT = "|".join(sorted((re.escape(s).replace(r"\ ", r"\s+") for s in STATES), key=len, reverse=True))
_DIRECTIONS = {"northern": "N", "southern": "S", "eastern": "E", "western": "W", "middle": "M", "central": "C"}
_DIR_ALT = "Northern|Southern|Eastern|Western|Middle|Central"

# "United States District Court for the Middle District of Alabama", "U.S. Bankruptcy Court\nDistrict of Delaware",
# "UNITED STATES DISTRICT COURT\nNORTHERN DISTRICT OF CALIFORNIA", "U.S. District Court\nAlabama Middle District"
_FEDERAL_TRIAL = re.compile(
    rf"(?:(?:United\s+States|U\.\s?S\.)\s+)?(?P<kind>District|Bankruptcy)\s+Court\b[ \t,]*(?:\n[ \t]*){{0,2}}"
    rf"(?:(?:for|of)\s+the\s+)?(?:"
    rf"(?:(?P<dir1>{_DIR_ALT})\s+)?District\s+of\s+(?P<state1>{_STATE_ALT})"
    rf"|(?P<state2>{_STATE_ALT})\s+(?:(?P<dir2>{_DIR_ALT})\s+)?District"
    rf"|(?P<state3>{_STATE_ALT})(?=[ \t]*(?:\(|\n|$))"  # a state that is one district: "Bankruptcy Court\nAlaska (Anchorage)"
    rf")\b",
    re.I,
)
_OTHER_COURTS = re.compile(
    r"(?:(?:United\s+States|U\.\s?S\.)\s+)?Court\s+of\s+Appeals\s*(?:\n\s*)?(?:for\s+(?:the\s+)?)?"
    r"(?:(?:First|Second|Third|Fourth|Fifth|Sixth|Seventh|Eighth|Ninth|Tenth|Eleventh|Federal|D\.\s?C\.|District\s+of\s+Columbia)\s+Circuit)"
    r"|Supreme\s+Court\s+of\s+(?:the\s+)?(?:United\s+States|" + _STATE_ALT + r")"
    r"|(?:" + _STATE_ALT + r")\s+(?:Supreme\s+Court|Court\s+of\s+(?:Criminal\s+)?Appeals)"
    r"|Court\s+of\s+(?:Criminal\s+)?Appeals\s+of\s+(?:" + _STATE_ALT + r")"
    r"|(?:Superior|Circuit|Chancery|County|Family|Probate|Tax|Claims)\s+Court\s+(?:of|for)\s+(?:the\s+)?"
    r"(?:[A-Z][a-z]+\s+){0,3}(?:County|Parish|City|District|Circuit|" + _STATE_ALT + r")(?:,?\s+(?:" + _STATE_ALT + r"))?",
    re.I,
)
_JPML = re.compile(r"(?:(?:United\s+States|U\.\s?S\.)\s+)?Judicial\s+Panel\s+on\s+Multi-?district\s+Litigation", re.I)
_BAP = re.compile(
    r"(?:(?:United\s+States|U\.\s?S\.)\s+)?Bankruptcy\s+Appellate\s+Panel\s+(?:for|of)\s+(?:the\s+)?"
    r"(?P<ordinal>First|Second|Sixth|Eighth|Ninth|Tenth)\s+Circuit\b",
    re.I,
)
_CIRCUIT_NUMBERS = {"first": 1, "second": 2, "sixth": 6, "eighth": 8, "ninth": 9, "tenth": 10}
# Every _OTHER_COURTS match holds "court" after at most 4 whitespace runs (a state's name, "Supreme"),
# so it is tried only just before that word (finditer_near), not at every letter of the text.
_COURT_WORD = re.compile("court", re.I)
_LETTER = re.compile("[a-z]", re.I)
# _FEDERAL_TRIAL holds "court" after at most 3 runs ("United States District Court"); a CM/ECF host
# holds "uscourts" and no whitespace.
_HOST_WORD = re.compile("uscourts", re.I)
_HOST_START = re.compile(r"[\w-]", re.I)
_CIRCUIT_ONLY = re.compile(
    r"\b(?P<ordinal>First|Second|Third|Fourth|Fifth|Sixth|Seventh|Eighth|Ninth|Tenth|Eleventh|Federal|D\.\s?C\.)\s+Circuit\b"
)
_CIRCUIT_IDS = {
    "first": "ca1", "second": "ca2", "third": "ca3", "fourth": "ca4", "fifth": "ca5", "sixth": "ca6",
    "seventh": "ca7", "eighth": "ca8", "ninth": "ca9", "tenth": "ca10", "eleventh": "ca11",
    "federal": "cafc", "d.c.": "cadc", "d. c.": "cadc",
}  # fmt: skip
_ECF_HOST = re.compile(r"(?<![\w-])(?:[\w-]+\.)?(?P<court>[a-z]{2,6})\.uscourts\.gov\b", re.I)
_PACER_TO_COURTLISTENER = {"cofc": "uscfc", "jpml": "jpml"}


def _state_key(state: str) -> str:
    key = squash(state).lower()
    return "district of columbia" if key == "columbia" else key


@cache
def _federal_trial_table() -> dict[tuple[str, str, str], str]:
    """(kind, direction, state) -> courts-db id, built from courts-db's current federal trial courts."""
    from courts_db import courts

    direction_re = re.compile(rf"\b({_DIR_ALT})\b|\b([NSEWMC])\.\s?D\.", re.I)
    state_re = re.compile(_STATE_ALT, re.I)
    table: dict[tuple[str, str, str], tuple[bool, str]] = {}
    for court in courts:
        name = court.get("name") or ""
        if court.get("system") != "federal" or not re.search(r"(District|Bankruptcy) Court", name):
            continue
        if re.search(r"Appellate|Superior|Zone", name):
            continue
        states = state_re.findall(name)
        if not states:
            continue
        kind = "bankruptcy" if "Bankruptcy" in name else "district"
        found = direction_re.search(name.replace("District of Columbia", ""))
        direction = ""
        if found:
            direction = _DIRECTIONS[found.group(1).lower()] if found.group(1) else found.group(2).upper()
        current = any(not (date or {}).get("end") for date in court.get("dates") or [{}])
        key = (kind, direction, _state_key(max(states, key=len)))
        if key not in table or (current and not table[key][0]):
            table[key] = (current, court["id"])
    return {key: court_id for key, (_, court_id) in table.items()}


@cache
def _court_ids() -> frozenset[str]:
    from courts_db import courts

    return frozenset(court["id"] for court in courts)


@cache
def _display_names() -> dict[str, str]:
    from courts_db import courts

    return {court["id"]: court.get("citation_string") or court.get("name") or court["id"] for court in courts}


def court_display_name(court_id: str) -> str:
    """How a court is cited ('N.D. Ill.' for 'ilnd'): courts-db's citation string, else its name."""
    return _display_names().get(court_id, court_id)


@cache
def find_court_id(name: str) -> str | None:
    """courts-db's id for a court name when it names exactly one court."""
    from courts_db import find_court

    ids = find_court(name)
    return ids[0] if len(ids) == 1 else None


def court_mentions(sink: MentionSink) -> None:
    """Courts, normalized to their courts-db id, with the name they are cited by as `display_name`."""
    text = sink.text
    table = _federal_trial_table()
    taken: list[tuple[int, int]] = []
    for match in finditer_near(_FEDERAL_TRIAL, text, _COURT_WORD, _LETTER, 4, one_line=False):
        kind = match["kind"].lower()
        state = _state_key(match["state1"] or match["state2"] or match["state3"])
        direction_word = match["dir1"] or match["dir2"]
        direction = _DIRECTIONS[direction_word.lower()] if direction_word else ""
        court_id = table.get((kind, direction, state))
        if court_id is None and not direction:  # "District Court ... of Columbia" or undivided states
            court_id = table.get((kind, "", state))
        if court_id:
            sink.add(EntityType.COURT, match.start(), match.end(), court_id, "courts-db", 0.95, display_name=court_display_name(court_id))
            taken.append((match.start(), match.end()))
    ids = _court_ids()
    for match in _JPML.finditer(text):
        sink.add(EntityType.COURT, match.start(), match.end(), "jpml", "courts-db", 0.95, display_name=court_display_name("jpml"))
        taken.append((match.start(), match.end()))
    for match in _BAP.finditer(text):
        court_id = f"bap{_CIRCUIT_NUMBERS[match['ordinal'].lower()]}"
        if court_id in ids:
            sink.add(EntityType.COURT, match.start(), match.end(), court_id, "courts-db", 0.95, display_name=court_display_name(court_id))
            taken.append((match.start(), match.end()))
    for match in finditer_near(_OTHER_COURTS, text, _COURT_WORD, _LETTER, 6, one_line=False):
        if any(s <= match.start() < e for s, e in taken):
            continue
        candidate = re.sub(r"\bfor (?!the\b)", "for the ", squash(match.group(0)), flags=re.I)
        court_id = find_court_id(candidate.title() if candidate.isupper() else candidate)
        if court_id:
            sink.add(EntityType.COURT, match.start(), match.end(), court_id, "courts-db", 0.9, display_name=court_display_name(court_id))
            taken.append((match.start(), match.end()))
    for match in _CIRCUIT_ONLY.finditer(text):
        if any(s <= match.start() < e for s, e in taken):
            continue
        court_id = _CIRCUIT_IDS[squash(match["ordinal"]).lower()]
        sink.add(EntityType.COURT, match.start(), match.end(), court_id, "rules", 0.75, display_name=court_display_name(court_id))
    for match in finditer_near(_ECF_HOST, text, _HOST_WORD, _HOST_START, 0):
        code = match["court"].lower()
        court_id = _PACER_TO_COURTLISTENER.get(code, code)
        if court_id in ids:
            sink.add(EntityType.COURT, match.start("court"), match.end("court"), court_id, "ecf-host", 0.7, display_name=court_display_name(court_id))
