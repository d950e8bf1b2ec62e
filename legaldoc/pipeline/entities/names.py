"""Case names, parties, judges, attorneys, people, law firms and organizations, by rules.

The rules read the places legal documents name people and parties: captions, "Case Name:" fields,
e-mail subjects, notice lists ("Name  address@example.com"), signature and counsel blocks, judge
titles. They use the shape of names, never lists of particular names.
"""

from __future__ import annotations

import re

from legaldoc.models import EntityType
from legaldoc.pipeline.entities.base import (
    MentionSink,
    finditer_near,
    last_first_to_first_last,
    normalize_person,
    squash,
)

_TOKEN = r"(?:[A-Z](?:[a-z]*[A-Z])?[a-z]+(?:['’\-][A-Za-z]+)*|O['’][A-Z][a-z]+|[A-Z]\.|[A-Z]{2,}(?:['’\-][A-Z]+)*|[A-Z](?=[ \t\n,]|$))"
_SUFFIX = r"(?:[ \t]*,?[ \t]*(?:Jr\.?|Sr\.?|II|III|IV|Esq\.?)(?![\w]))?"
# The first form reads "Smith", "McDonald": written "[A-Z][a-z]*[A-Z]?[a-z]+" it matched the same, but
# split a word's lower-case run between its two quantifiers in as many ways as the word has letters,
# and a failed name of five words retried every split of every word (seconds on a docket sheet).
PERSON_NAME = rf"{_TOKEN}(?:[ \t]+{_TOKEN}){{1,4}}{_SUFFIX}"
_PERSON_FULL = re.compile(rf"^{PERSON_NAME}$")
# Notice lists of anonymized or test filings number their placeholder names ("Test User2").
_LISTED_TOKEN = _TOKEN.replace("[a-z]+(?:", "[a-z]+\\d{0,2}(?:", 1)
LISTED_NAME = rf"{_LISTED_TOKEN}(?:[ \t]+{_LISTED_TOKEN}){{1,4}}{_SUFFIX}"
_EMAIL = re.compile(r"(?<![\w.+'’-])[\w.+'’-]{1,64}@[\w-]+(?:\.[\w-]+)+")
# An address holds "@" and no whitespace: it is tried only in the word before each "@". It starts
# where its word does and its local part has at most 64 characters (RFC 5321), so a long run of
# such characters before an "@" costs one try per run, not one scan to the "@" per character.
_AT = re.compile("@")
_EMAIL_START = re.compile(r"[\w.+'’-]")

ORG_WORDS = frozenset(
    ["llc", "l.l.c.", "inc", "inc.", "corp", "corp.", "co", "co.", "company", "corporation", "ltd", "ltd.", "llp", "l.l.p.", "pllc", "p.c.", "p.a.", "n.a.", "lp", "bank", "trust", "trustee", "court", "clerk", "office", "department", "agency", "board", "commission", "united", "states", "america", "usa", "u.s.", "government", "county", "city", "state", "commonwealth", "region", "notice", "case", "document", "filing", "filer", "docket", "university", "hospital", "group", "association", "services", "service", "holdings", "partners", "foundation", "school", "district", "firm", "law", "attorney", "attorneys", "general", "chapter", "estate", "creditor", "debtor", "plaintiff", "defendant", "order", "motion", "scheduling", "complaint", "answer", "brief", "exhibit", "memorandum", "opinion", "judgment", "notice", "counsel", "street", "avenue", "suite"]
)
_NOT_NAME_START = frozenset(
    ["the", "a", "an", "this", "that", "these", "notice", "case", "document", "order", "motion", "filed", "entered", "and", "or", "of", "for", "to", "by", "on", "in", "re", "dear", "page", "date", "subject", "from", "sent", "cc", "judge", "hon", "honorable", "mr", "ms", "mrs", "dr"]
)


_LISTED_FULL = re.compile(rf"^{LISTED_NAME}$")


def _is_person_name(candidate: str, listed: bool = False) -> bool:
    candidate = squash(candidate)
    if not (_LISTED_FULL if listed else _PERSON_FULL).match(candidate):
        return False
    words = [w.strip(",.").lower() for w in candidate.split()]
    if words[0] in _NOT_NAME_START:
        return False
    return not any(word in ORG_WORDS for word in words)


_NAME_TAIL = re.compile(r",\s*(?:\d|No\.)|;|\s+and\s+DOES\b|\s+\d+\s+[A-Z][\w.]*\s*\d", re.I)


def _case_name_normalized(name: str) -> str:
    name = squash(name).strip(" ,;:")
    if name.endswith(".") and not re.search(r"\b(?:Inc|Co|Corp|Ltd|Jr|Sr|L\.L\.C|L\.P|N\.A|P\.C|P\.A|Bros|Ass'n|Dist|[A-Z])\.$", name, re.I):
        name = name[:-1]
    tail = _NAME_TAIL.search(name)
    if tail and tail.start() > 3:
        name = name[: tail.start()].strip(" ,.;:")
    name = re.sub(r",?\s+et\s+al\.?(?=\s|$|,)", "", name, flags=re.I)
    name = re.sub(r"\s+(?:vs?\.?|versus)\s+", " v. ", name, flags=re.I)
    sides = name.split(" v. ")
    sides = ["United States" if side.strip().upper() in ("USA", "U.S.A.", "U.S.") else side.strip() for side in sides]
    return " v. ".join(sides).strip(" ,")


def _add_case_name(sink: MentionSink, start: int, end: int, extractor: str, confidence: float, **attrs: object) -> None:
    """A case name of this document and the parties on each side of it."""
    raw = sink.text[start:end]
    normalized = _case_name_normalized(raw)
    if len(normalized) < 3:
        return
    sink.add(EntityType.CASE_NAME, start, end, normalized, extractor, confidence, **attrs)
    versus = re.search(r"\s+(?:vs?\.?|versus)\s+", raw, flags=re.I)
    sides = [(start, start + versus.start(), "plaintiff"), (start + versus.end(), end, "defendant")] if versus else [
        (start, end, "subject")
    ]
    for side_start, side_end, role in sides:
        side_text = sink.text[side_start:side_end]
        trimmed = re.sub(r",?\s+et\s+al\.?\s*$", "", side_text, flags=re.I)
        in_re = re.match(r"\s*In\s+re:?\s+", trimmed, flags=re.I)
        offset = in_re.end() if in_re else 0
        party = _case_name_normalized(trimmed[offset:])
        if party and party.lower() not in ("in re",):
            sink.add(EntityType.PARTY, side_start + offset, side_start + len(trimmed), party, extractor,
                     confidence * 0.95, role=role)  # fmt: skip


_CASE_NAME_FIELD = re.compile(r"Case\s+Name:[ \t]*(?:\n[ \t]*)?(?P<name>[^\n]+(?:\n(?![ \t]*(?:Case\s+Number|Filer|Document|WARNING|Docket)\b)[^\n:]+)?)", re.I)
_SUBJECT_CASE = re.compile(
    r"^Subject:.*?\b\d{1,2}:\d{2}-[a-z]{2,4}-\d{3,6}(?:-[A-Za-z]{1,5})*\s+(?P<name>[^\n]+?\bv\.?\s[^\n]+?\bet\s+al)\b",
    re.I | re.M,
)
_NAME_WORD = r"(?:[A-Z][\w'’&.\-]*|&|of|the|de|la|del|and|ex\s+rel\.?|\d+[a-z]{0,2})"
_INLINE_VERSUS = re.compile(
    rf"(?<![\w.])(?P<name>[A-Z][\w'’&.\-]*(?:,?[ \t]+{_NAME_WORD}){{0,7}}?,?\s+v\.\s+[A-Z][\w'’&.\-]*(?:,?[ \t]+{_NAME_WORD}){{0,7}})"
)
# "A v. B" holds "v." after at most 15 whitespace runs (8 words, some "ex rel."): tried only before it.
_VERSUS_WORD = re.compile(r"v\.")
_CAPITAL = re.compile("[A-Z]")
_IN_RE = re.compile(r"\b(?P<name>In\s+re:?\s+[A-Z][\w'’&.\-]*(?:,?[ \t]+(?:[A-Z][\w'’&.\-]*|of|the|and|\d{4})){0,8})")
_CAPTION_VERSUS = re.compile(r"^[ \t]*(?:v\.?|vs\.?|versus|-\s*against\s*-|against)[ \t]*$", re.I | re.M)
_ROLE = re.compile(
    r"\b(?:Plaintiffs?|Defendants?|Petitioners?|Respondents?|Appellants?|Appellees?|Debtors?|Movants?|"
    r"Plaintiffs?-Appellants?|Defendants?-Appellees?|Intervenors?|Claimants?)\b[\s,.;]*$",
    re.I,
)
_STOP_WORDS_CAPTION = re.compile(r"\b(?:COURT\b|DISTRICT OF\b|CIRCUIT\b|APPEALS\b|CASE NO|CIVIL ACTION|No\.|Docket\b)", re.I)


def case_name_mentions(sink: MentionSink) -> None:
    text = sink.text
    for match in _CASE_NAME_FIELD.finditer(text):
        name = match["name"]
        cut = re.search(r"\s{2,}|\s+Case\s+Number:", name)
        end = match.start("name") + (cut.start() if cut and cut.start() > 2 else len(name.rstrip()))
        _add_case_name(sink, match.start("name"), end, "rules", 0.95, source="case-name-field")
    for match in _SUBJECT_CASE.finditer(text):
        _add_case_name(sink, match.start("name"), match.end("name"), "rules", 0.85, source="subject")
    for match in _CAPTION_VERSUS.finditer(text[:8000]):
        _caption_around(sink, match.start(), match.end())
    for match in finditer_near(_INLINE_VERSUS, text, _VERSUS_WORD, _CAPITAL, 16, one_line=False):
        name = match["name"]
        lead = re.match(r"(?:(?:See|Cf|But|Compare|In|And|The|Also|Accord|E\.g|Under|As|Both|Whether|Citing)\.?,?\s+)+", name)
        start = match.start() + (lead.end() if lead else 0)
        end = match.end()
        tail = _NAME_TAIL.search(text, start, end)
        if tail:
            end = tail.start()
        if text[start:end].count("\n") > 1 or " v. " not in squash(text[start:end]):
            continue
        sink.add(EntityType.CASE_NAME, start, end, _case_name_normalized(text[start:end]), "rules", 0.55)
    for match in _IN_RE.finditer(text):
        sink.add(EntityType.CASE_NAME, match.start(), match.end(), _case_name_normalized(match["name"]), "rules", 0.6)


_DESCRIPTOR = re.compile(r",\s+(?!(?:Inc|LLC|L\.L\.C|Corp|Co|Ltd|N\.A|LLP|L\.P|P\.C|P\.A|Jr|Sr|II|III|IV)\b)", re.I)


def _caption_around(sink: MentionSink, v_start: int, v_end: int) -> None:
    """A caption: party lines above a lone 'v.' line, party lines below, each ending in a role word."""
    text = sink.text
    above = text[max(0, v_start - 600) : v_start].split("\n")
    below = text[v_end : v_end + 600].split("\n")

    def collect(lines: list[str]) -> list[str]:
        taken: list[str] = []
        for line in lines:
            stripped = line.strip(" \t\f")
            if not stripped or _STOP_WORDS_CAPTION.search(stripped) or len(stripped) > 90:
                if taken:
                    break
                continue
            taken.append(stripped)
            if len(taken) >= 5:
                break
        return taken

    top = list(reversed(collect(list(reversed(above)))))
    bottom = collect(below[1:] if below and not below[0].strip() else below)
    top_party = [line for line in top if not _ROLE.fullmatch(line.strip())]
    bottom_party = [line for line in bottom if not _ROLE.fullmatch(line.strip())]
    if not top_party or not bottom_party:
        return
    first = _DESCRIPTOR.split(_case_name_normalized(_ROLE.sub("", squash(" ".join(top_party)))))[0].strip(" ,")
    second = _DESCRIPTOR.split(_case_name_normalized(_ROLE.sub("", squash(" ".join(bottom_party)))))[0].strip(" ,")
    start = text.rfind(top_party[0], max(0, v_start - 600), v_start)
    second_start = text.find(bottom_party[0], v_end)
    if start < 0 or second_start < 0 or not first or not second:
        return
    sink.add(EntityType.PARTY, start, start + len(top_party[0]), first, "rules", 0.8, role="plaintiff")
    sink.add(EntityType.PARTY, second_start, second_start + len(bottom_party[0]), second, "rules", 0.8, role="defendant")
    sink.add(EntityType.CASE_NAME, start, second_start + len(bottom_party[0]), f"{first} v. {second}", "rules", 0.8,
             source="caption")  # fmt: skip


_JUDGE_PATTERNS = (
    re.compile(rf"\b(?:(?:Chief|Senior|Magistrate|Bankruptcy|District|Circuit|U\.S\.|United\s+States)\s+)*Judge[ \t]+(?P<name>{PERSON_NAME})"),
    re.compile(rf"\b(?:Hon\.|Honorable|HONORABLE|HON\.)[ \t]+(?P<name>{PERSON_NAME})"),
    re.compile(rf"(?P<name>{PERSON_NAME}),?[ \t]+(?:Chief[ \t]+|Senior[ \t]+|United[ \t]+States[ \t]+)?(?:District|Circuit|Magistrate|Bankruptcy)[ \t]+Judge\b"),
    re.compile(r"\b(?:JUSTICE|Justice|CHIEF JUSTICE|Chief Justice)[ \t]+(?P<name>[A-Z][A-Za-z'’\-]{2,})(?![\w])"),
    re.compile(r"(?<![\w])(?P<name>[A-Z]{3,}(?:[ \t][A-Z]{3,})?),[ \t]+(?:C\.[ \t]?)?J\.,"),
    # docket sheets: "Assigned to: Mary F. Walrath", "Referred to: Magistrate Judge X", "Presiding Judge: X"
    re.compile(rf"^[ \t]*(?:Assigned[ \t]+to|Referred[ \t]+to|Presiding[ \t]+Judge|Trial[ \t]+Judge)[ \t]*:[ \t]*"
               rf"(?:(?:Chief|Senior|Magistrate|Bankruptcy|Bkptcy|District|U\.S\.|Judge|Hon\.|Honorable)[ \t]+)*(?P<name>{PERSON_NAME})[ \t]*$",
               re.M),  # fmt: skip
)
_JUDGE_NOT = frozenset({"court", "district", "circuit", "the", "united", "states"})
# Words of a title or a docket phrase, never of a judge's name ("Senior United States", "Active Service From").
_TITLE_WORDS = frozenset({"senior", "chief", "united", "states", "district", "circuit", "magistrate", "bankruptcy",
                          "judge", "judges", "court", "active", "service", "from", "presiding", "assigned", "referred",
                          "honorable", "associate", "acting", "retired", "panel", "appeals", "justice", "justices"})  # fmt: skip
# "Justice" before an institution's word is a name of a thing, not a person ("Justice Act", "Justice Initiative").
_NOT_A_JUSTICE = frozenset({"act", "initiative", "department", "center", "centre", "institute", "project", "program",
                            "programs", "programme", "system", "systems", "reform", "coalition", "foundation", "fund",
                            "alliance", "league", "council", "committee", "commission", "statistics", "studies", "policy",
                            "network", "clinic", "section", "division", "office", "bureau", "courts", "delayed", "denied",
                            "served", "movement", "partnership", "review", "report", "task", "working",
                            "information", "research", "assistance", "grant", "grants", "services", "collaborative"})  # fmt: skip
_INSTITUTION_BEFORE = re.compile(r"(?:\bof|\bfor|Criminal|Juvenile|Social|Restorative|Equal|Racial|Environmental|Economic|"
                                 r"Civil|Military|Tribal|Federal|National|Youth|Community|Immigrant|Health|Data|Climate)[ \t]+$")  # fmt: skip


# Docket-text words that follow or precede a judge's name but are never part of it ("Judge Woods Order",
# "Senior Judge Coyle RE: hearing", "ORDER Adopting Magistrate Judge Findings").
_DOCUMENT_WORDS = frozenset({"order", "orders", "ordered", "adopting", "re", "findings", "minutes", "memorandum",
                             "opinion", "recommendation", "report", "notice", "motion", "hearing", "granting",
                             "denying", "entered", "signed", "filed"})  # fmt: skip
_POSSESSIVE = re.compile(r"['’]s\b")


def _judge_name_end(name: str) -> int:
    """Where a judge's name ends: before a possessive's "'s" ("Judge Kopf's Order") or a document word."""
    possessive = _POSSESSIVE.search(name)
    end = possessive.start() if possessive else len(name)
    for word in re.finditer(r"[A-Za-z]+", name[:end]):
        if word.group().lower() in _DOCUMENT_WORDS and word.start() > 0:
            return word.start()
    return end
# Pattern 2 ("NAME, District Judge") could start at any capital letter; it is tried only at the
# capitals of the few words before "Judge" (at most 10 blank runs, on one line).
_JUDGE_WORD = re.compile("Judge")


def judge_mentions(sink: MentionSink) -> None:
    for index, pattern in enumerate(_JUDGE_PATTERNS):
        matches = finditer_near(pattern, sink.text, _JUDGE_WORD, _CAPITAL, 12) if index == 2 else pattern.finditer(sink.text)
        for match in matches:
            name = match["name"][: _judge_name_end(match["name"])].rstrip(" \t,")
            if not name:
                continue
            words = name.lower().replace(".", " ").split()
            if any(word in _DOCUMENT_WORDS for word in words):
                continue
            if words[0] in _JUDGE_NOT or any(word in _TITLE_WORDS for word in words):
                continue
            if index == 3 and (words[0] in _NOT_A_JUSTICE or _INSTITUTION_BEFORE.search(sink.text, max(0, match.start() - 30), match.start())):
                continue
            start = match.start("name")
            sink.add(EntityType.JUDGE, start, start + len(name), normalize_person(name), "rules", 0.85)


_NOTICE_NAME = re.compile(
    rf"(?P<name>{LISTED_NAME})(?:[ \t]*\((?:Terminated|terminated)\))?(?:[ \t]+on[ \t]+behalf[ \t]+of[ \t]+(?P<behalf>[^\n@]{{3,160}}?))?[ \t]*\n?[ \t]*$"
)
_FILER_PAREN = re.compile(r"\((?P<name>[A-Z][\w'’\-]+,[ \t]+[A-Z][\w'’\-]+(?:[ \t]+[A-Z]\.?)?)\)")
_ENTERED_BY = re.compile(r"\b(?:entered|received|filed)\s+(?:by|from)\s+(?P<name>[A-Z][\w'’\-]+,\s+[A-Z][\w'’\-]+|" + PERSON_NAME + r")\s+(?:entered\s+)?on\b")
_SLASH_S = re.compile(rf"/s/[ \t]*(?P<name>{PERSON_NAME})")
_COUNSEL_HEADER = re.compile(
    r"^[ \t]*(?:Attorneys?|Counsel)[ \t]+for[ \t]+(?P<role>[^\n]{3,80})$|(?:ATTORNEYS?|COUNSEL)[ \t]+FOR[ \t]+(?P<role2>[A-Z][A-Z ]{3,40})",
    re.M,
)
_HONORIFIC = re.compile(rf"\b(?:Mr|Ms|Mrs|Dr|Miss)\.?[ \t]+(?P<name>{PERSON_NAME}|[A-Z][a-z]+(?:['’\-][A-Za-z]+)?)")


def _person_or_org(sink: MentionSink, start: int, end: int, person_type: EntityType, confidence: float, **attrs: object) -> None:
    name = sink.text[start:end]
    if _is_person_name(name, listed=True):
        sink.add(person_type, start, end, normalize_person(name), "rules", confidence, **attrs)
    elif len(squash(name)) > 3:
        sink.add(EntityType.ORGANIZATION, start, end, squash(name), "rules", confidence * 0.8, **attrs)


def people_mentions(sink: MentionSink) -> None:
    text = sink.text
    # Notice lists: "Name   address@example.com, other@example.com" (same line or the line above).
    previous_email_end = -1
    for email in finditer_near(_EMAIL, text, _AT, _EMAIL_START, 0):
        between = text[previous_email_end:email.start()] if previous_email_end >= 0 else ""
        last_end = previous_email_end
        previous_email_end = email.end()
        if between and re.fullmatch(r"[ \t]*[,;][ \t]*\n?[ \t]*|[,;]?\s*", between) and "\n\n" not in between:
            continue  # continuation of an address list
        line_start = text.rfind("\n", 0, email.start()) + 1
        segment_start = max(line_start, last_end)
        if not text[segment_start:email.start()].strip():  # address on its own line: name is on the line above
            segment_start = max(text.rfind("\n", 0, max(0, line_start - 1)) + 1, last_end)
        segment = text[segment_start:email.start()]
        inner = segment.lstrip(" \t,;>:\n")
        match = _NOTICE_NAME.search(inner) if inner.strip() else None
        if not match:
            continue
        offset = segment_start + (len(segment) - len(inner))
        if match.start() > 0 and inner[: match.start()].strip() and not inner[: match.start()].rstrip().endswith((",", ";")):
            continue
        behalf = match["behalf"]
        person_type = EntityType.ATTORNEY if behalf else EntityType.PERSON
        attrs = {"role": "notice-recipient"}
        if behalf:
            attrs["represents"] = squash(re.sub(r"^(?:Plaintiff|Defendant|Debtor|Creditor|Interested Party|Trustee|U\.S\. Trustee|Respondent|Petitioner|Movant)\s+", "", behalf.strip()))
        _person_or_org(sink, offset + match.start("name"), offset + match.end("name"), person_type, 0.85, **attrs)
    for match in _FILER_PAREN.finditer(text):
        name = match["name"]
        if any(word.lower().strip(",") in ORG_WORDS for word in name.split()):
            continue
        first = name.split(",", 1)[1].strip()
        if re.fullmatch(r"[A-Z]{2}|[A-Z]\.?[A-Z]\.?", first):  # "(Washington, DC)": a place, not a person
            continue
        # "(Last, First)" after a docket entry names whoever typed it in: a clerk as often as counsel
        sink.add(EntityType.PERSON, match.start("name"), match.end("name"),
                 normalize_person(last_first_to_first_last(name)), "rules", 0.6, role="filer")  # fmt: skip
    for match in _ENTERED_BY.finditer(text):
        name = match["name"]
        if _is_person_name(last_first_to_first_last(name)) and "FirstName" not in name:
            sink.add(EntityType.PERSON, match.start("name"), match.end("name"),
                     normalize_person(last_first_to_first_last(name)), "rules", 0.7, role="filer")  # fmt: skip
    for match in _SLASH_S.finditer(text):
        if _is_person_name(match["name"]):
            sink.add(EntityType.ATTORNEY, match.start("name"), match.end("name"), normalize_person(match["name"]), "rules", 0.85, role="signer")
    for match in _COUNSEL_HEADER.finditer(text):
        role = squash(match["role"] or match["role2"] or "")
        _counsel_block(sink, match.start(), match.end(), role)
    for match in _HONORIFIC.finditer(text):
        name = match["name"]
        if len(name.split()) >= 2 and _is_person_name(name):
            sink.add(EntityType.PERSON, match.start("name"), match.end("name"), normalize_person(name), "rules", 0.75)


def _counsel_block(sink: MentionSink, header_start: int, header_end: int, role: str) -> None:
    """Names in the few lines above 'Attorneys for X' (signature style) or below it (header style)."""
    text = sink.text
    above_start = max(0, header_start - 400)
    lines_above = text[above_start:header_start].split("\n")[-7:]
    position = header_start - len("\n".join(lines_above))
    candidates: list[tuple[int, str]] = []
    for line in lines_above:
        candidates.append((position, line))
        position += len(line) + 1
    position = header_end + 1
    for line in text[header_end + 1 : header_end + 400].split("\n")[:4]:
        candidates.append((position, line))
        position += len(line) + 1
    for line_start, line in candidates:
        if re.search(r"\sv\.\s", line):
            continue
        cell_start = 0
        for cell in re.split(r"(\t+| {2,}|,[ \t]+)", line):
            if cell and not cell.isspace():
                cleaned = re.sub(r"[ \t]*\((?:pro hac vice|admitted pro hac vice|Bar No\.[^)]*)\)|,?[ \t]*Esq\.?$", "", cell.strip(), flags=re.I)
                cleaned = re.sub(r"^/s/[ \t]*", "", cleaned)
                if _is_person_name(cleaned):
                    start = line_start + cell_start + cell.find(cleaned)
                    sink.add(EntityType.ATTORNEY, start, start + len(cleaned), normalize_person(cleaned), "rules", 0.75,
                             represents=role or None, role="counsel")  # fmt: skip
            cell_start += len(cell)


_FIRM = re.compile(
    r"(?P<name>(?:[A-Z][\w'’.\-]*,?[ \t]+(?:&[ \t]+)?){0,5}[A-Z][\w'’.\-]*),?[ \t]+"
    r"(?P<suffix>L\.?L\.?P\.?|P\.?L\.?L\.?C\.?|P\.C\.|P\.A\.|LPA|Law[ \t]+Firm|Law[ \t]+Group|Law[ \t]+Offices?|Attorneys[ \t]+at[ \t]+Law)(?![\w])"
    r"|(?P<office>Law[ \t]+Offices?[ \t]+of[ \t]+[A-Z][\w'’.\-]*(?:[ \t]+[A-Z][\w'’.\-]*){0,3})"
)
_ORG = re.compile(
    r"(?P<name>(?:[A-Z][\w'’.\-]*,?[ \t]+(?:&[ \t]+|of[ \t]+)?){0,6}[A-Z][\w'’.\-]*),?[ \t]+"
    r"(?P<suffix>L\.?L\.?C\.?|Inc\.?|Corp\.?|Corporation|Co\.|Company|Ltd\.?|N\.A\.|L\.P\.|LP|S\.A\.|GmbH|PLC)(?![\w])"
    r"|(?P<gov>(?:City|County|State|Commonwealth|Town|Village|Department|Office|Bureau|Board|Commission|Agency)[ \t]+of[ \t]+(?:the[ \t]+)?[A-Z][\w'’.\-]*(?:[ \t]+[A-Z][\w'’.\-]*){0,3})"
    r"|(?P<ust>(?:United[ \t]+States|U\.S\.)[ \t]+Trustee)"
)
_LEADING_NOISE = re.compile(
    r"^(?:(?:The|See|By|And|Of|For|From|To|In|On|Filed|Plaintiffs?|Defendants?|Appellants?|Appellees?|Debtors?|Creditors?|Notice|Order|Motion|Behalf|Counsel|Attorneys?|Re|RE|Case|Name|Filer|Party|Interested|Dear|Via|Respondents?|Petitioners?"
    # docket-text verbs and document words that precede a firm's name but are never part of it
    r"|Employ|Employing|Employment|Retain|Retaining|Retention|Engage|Engaging|Engagement|Substitute|Substitution|Appoint|Appointing|Withdraw|Withdrawal|Authorize|Authorizing|Approve|Approving|Compensate|Compensation|Pay|Payment|Granting|Denying|Application|Applications|Stipulation|Declaration|Affidavit|Certificate|Letter|Memorandum|Response|Reply|Objection|Opposition|Joinder|Summons|Subpoena|Statement|Proof|Against|Between|With|Amended|Supplemental|Emergency|Proposed|Interim|Final|Fees?|Expenses|Reimbursement|As|Special|Local|Co)\.?,?[ \t]+)+"
)


# Where _FIRM and _ORG can match: their suffix or leading word, at most 11 (13) blank runs after the
# match's start, on one line. The rules are tried only at the capitals just before these words.
_FIRM_WORD = re.compile(r"L\.?L\.?P|P\.?L\.?L\.?C|P\.[CA]\.|LPA|Law|Attorneys")
_ORG_WORD = re.compile(r"L\.?L\.?C|Inc|Co(?:rp|mpany|\.|unty|mmonwealth|mmission)|Ltd|N\.A\.|L\.?P|S\.A\.|GmbH|PLC|"
                       r"City|State|Town|Village|Department|Office|Bureau|Board|Agency|Trustee")  # fmt: skip


# A sentence ends inside a run of capitalized words at a word of four or more letters and a period
# ("...District Judge. See Bell Atlantic Corp."); the abbreviations names carry are not such ends.
_SENTENCE_END = re.compile(r"\b(?P<word>[A-Z][a-z]{3,})\.[ \t]+(?=[A-Z])")
_NAME_ABBREVIATIONS = frozenset({
    "Bros", "Assoc", "Assocs", "Assn", "Natl", "Intl", "Dept", "Mfrs", "Indus", "Servs", "Prods", "Props",
    "Mgmt", "Invs", "Hldgs", "Hosp", "Univ", "Tech", "Comms", "Telecomms", "Fed'n", "Grp", "Ctrs", "Corp",
    "Cnty", "Twp", "Dist", "Auth", "Admin", "Comm'n", "Ass'n", "Sec'y", "Ins", "Fin", "Chem", "Pharm",
})  # fmt: skip


def _after_sentence_end(text: str, start: int, end: int) -> int:
    """Where the name starts when a sentence ends inside the match: after the last such end."""
    cut = start
    for found in _SENTENCE_END.finditer(text, start, end):
        if found["word"] not in _NAME_ABBREVIATIONS:
            cut = found.end()
    return cut


def organization_mentions(sink: MentionSink) -> None:
    taken: list[tuple[int, int]] = []
    for pattern, default_type, word, gaps in ((_FIRM, EntityType.LAW_FIRM, _FIRM_WORD, 11),
                                              (_ORG, EntityType.ORGANIZATION, _ORG_WORD, 13)):  # fmt: skip
        for match in finditer_near(pattern, sink.text, word, _CAPITAL, gaps):
            start, end = match.span()
            if any(s < end and start < e for s, e in taken):
                continue
            if match.groupdict().get("name"):
                start = _after_sentence_end(sink.text, start, match.end("name"))
                noise = _LEADING_NOISE.match(sink.text[start : match.end("name")])
                if noise:
                    start += noise.end()
            value = squash(sink.text[start:end]).strip(" ,")
            person_first = re.match(rf"{PERSON_NAME},\s+", sink.text[start:end])
            if person_first and re.search(r"\b[A-Z]\.", person_first.group(0)):
                start += person_first.end()
                value = squash(sink.text[start:end]).strip(" ,")
            if value.endswith(".") and match.groupdict().get("gov"):
                end -= 1
                value = value[:-1]
            if len(value) < 4 or value.split()[0].lower() in ("llc", "inc", "inc.", "llp"):
                continue
            kind = default_type
            if default_type is EntityType.ORGANIZATION and re.search(r"\bLaw\b|\bLegal\b|\bAttorneys?\b", value):
                kind = EntityType.LAW_FIRM
            sink.add(kind, start, end, value, "rules", 0.75)
            taken.append((start, end))


# -- party blocks of docket sheets ------------------------------------------------------------------

_ROLE_NOUN = (r"(?:Plaintiffs?|Defendants?|Debtors?(?:[ \t]+In[ \t]+Possession)?|Trustees?|Appellants?|Appellees?|"
              r"Petitioners?|Respondents?|Movants?|Intervenors?|Claimants?|Party|Parties|Creditors?|Mediators?|Amicus[ \t]+Curiae|Amici[ \t]+Curiae|Amicus|"
              r"Amici|Garnishees?|Receivers?|Master|Objectors?|Witness|Committee|Examiner|Counter-?[ \t]?(?:Claimant|Defendant)|"
              r"Cross-?[ \t]?(?:Claimant|Defendant)|Plaintiff-Appellant|Defendant-Appellee|Plaintiff-Appellee|Defendant-Appellant)")  # fmt: skip
_PARTY_ROLE = re.compile(
    rf"^[ \t]*(?P<role>(?:[A-Z][\w.'’-]*[ \t]+){{0,3}}{_ROLE_NOUN})(?:[ \t]*\([^)\n]{{1,60}}\))?[ \t]*$", re.M | re.I
)
_REPRESENTED = re.compile(r"(?:^|[ \t])represented[ \t]+by[ \t]+(?P<name>[^\n]+?)[ \t]*$", re.M | re.I)
_BLOCK_END = re.compile(r"^[ \t]*(?:Filing[ \t]+Date|Date[ \t]+Filed|Docket[ \t]+Text|#[ \t]+Docket)\b", re.M | re.I)
_NOT_A_FIRM = re.compile(r"^(?:\d|P\.?[ \t]?O\.?[ \t]+Box|Suite|\(See|See[ \t]+above|Email|E-mail|Fax|Phone|Tel|"
                         r"LEAD[ \t]+ATTORNEY|ATTORNEY[ \t]+TO|PRO[ \t]+(?:SE|HAC)|Designation|Bar[ \t]+Status|TERMINATED)", re.I)  # fmt: skip
_ADDRESS_TAIL = re.compile(r"\b[A-Z]{2}[ \t]+\d{5}(?:-\d{4})?\b|\b\d{3}[ \t.-]\d{3}[ \t.-]\d{4}\b")
_COUNSEL_DETAIL = re.compile(
    r"\[(?:COR|NTC|On[ \t]+Brief)|Direct:|Email|E-mail|Fax|LEAD[ \t]+ATTORNEY|ATTORNEY[ \t]+TO[ \t]+BE[ \t]+NOTICED|See[ \t]+above[ \t]+for[ \t]+address|PRO[ \t]+HAC|"
    r"Designation|\b[A-Z]{2}[ \t]+\d{5}\b|\(?\d{3}\)?[ \t.-]*\d{3}[ \t.-]\d{4}", re.I)
"""What an attorney's group of lines in a party block holds (and a section heading does not): contact
details, a ZIP code, a role, a cross-reference."""
_TRAILING_PAREN = re.compile(r"[ \t]*\((?:[^()\n]{0,80})\)[ \t]*$")


def _lines(text: str, start: int, end: int) -> list[tuple[int, str]]:
    """(offset, line) of text[start:end], line by line."""
    out = []
    position = start
    for line in text[start:end].split("\n"):
        out.append((position, line))
        position += len(line) + 1
    return out


def party_block_mentions(sink: MentionSink) -> None:
    """Docket sheets' party blocks: a role line (Plaintiff, Debtor, Appellee, ...), the party's name on
    the next line, then "represented by ATTORNEY", the firm on the line below, more attorneys after
    blank lines. Only in texts that hold "represented by" (docket reports): a caption's lone
    "Plaintiff" line elsewhere is left to the caption rule."""
    text = sink.text
    if _APPELLATE_SHEET.search(text):
        _appellate_blocks(sink)
        return
    if not _REPRESENTED.search(text):
        return
    roles = list(_PARTY_ROLE.finditer(text))
    ends = [m.start() for m in roles[1:]]
    for index, role_match in enumerate(roles):
        limit = ends[index] if index < len(ends) else len(text)
        block_end = _BLOCK_END.search(text, role_match.end(), limit)
        limit = min(limit, block_end.start() if block_end else limit, role_match.end() + 6000)
        lines = [(o, line) for o, line in _lines(text, role_match.end() + 1, limit)]
        named = next(((o, line) for o, line in lines[:3] if line.strip()), None)
        if named is None or _PARTY_ROLE.match(named[1]):
            continue
        offset, line = named
        inline = _REPRESENTED.search(line)  # a table row: "NAME represented by ATTORNEY" on one line
        if inline:
            line = line[: inline.start()]
        name = _TRAILING_PAREN.sub("", line).strip().rstrip(",;")
        if len(name) < 3 or _NOT_A_FIRM.match(name) or re.search(r"\sv\.?\s", name):
            continue
        name_start = offset + line.find(name)
        role = squash(role_match["role"]).lower()
        kind = EntityType.PARTY
        sink.add(kind, name_start, name_start + len(name), squash(name), "rules", 0.9, role=role)
        _represented(sink, lines, squash(name))


def firm_line_name(line: str) -> str | None:
    """The firm or office an attorney's contact block names on its first line ("Lane Powell LLC",
    "Office of the U.S. Attorney"); None for an address, a phone line, a person's name."""
    firm = line.strip().rstrip(",;")
    if (firm and not _NOT_A_FIRM.match(firm) and not _ADDRESS_TAIL.search(firm) and not _is_person_name(firm)
            and len(firm.split()) >= 2 and firm[0].isupper()):  # fmt: skip
        return firm
    return None


def _represented(sink: MentionSink, lines: list[tuple[int, str]], party: str) -> None:
    """The attorneys of one party block and the firm line under each."""
    first = next((i for i, (_, line) in enumerate(lines) if _REPRESENTED.search(line)), None)
    if first is None:
        return
    candidates: list[tuple[int, int, str]] = []  # (line index, offset, name)
    offset, line = lines[first]
    match = _REPRESENTED.search(line)
    assert match is not None
    candidates.append((first, offset + match.start("name"), match["name"]))
    for i in range(first + 1, len(lines)):
        if not lines[i - 1][1].strip() and lines[i][1].strip():  # a group after a blank line: another attorney
            candidates.append((i, lines[i][0], lines[i][1]))
    for i, offset, raw in candidates:
        name = _TRAILING_PAREN.sub("", raw).strip().rstrip(",;")
        if not _is_person_name(name):
            continue
        group = []
        for _, line in lines[i + 1 : i + 14]:
            if not line.strip():
                break
            group.append(line)
        if i != first and not _COUNSEL_DETAIL.search("\n".join(group)):  # "Pending Counts", "Highest Offense Level"
            continue
        start = offset + raw.find(name)
        sink.add(EntityType.ATTORNEY, start, start + len(name), normalize_person(name), "rules", 0.9,
                 represents=party, role="counsel")  # fmt: skip
        if i + 1 < len(lines):
            firm_offset, firm_line = lines[i + 1]
            firm = firm_line_name(firm_line)
            if firm:
                firm_start = firm_offset + firm_line.find(firm)
                sink.add(EntityType.LAW_FIRM, firm_start, firm_start + len(firm), squash(firm.rstrip(".")) if firm.endswith("..") else squash(firm),
                         "rules", 0.85, represents=party)  # fmt: skip


_APPELLATE_SHEET = re.compile(r"Court[ \t]+of[ \t]+Appeals[ \t]+Docket[ \t]*#|^\[(?:COR|NTC)\b", re.M)
_ROLE_WITH_COUNSEL = re.compile(
    rf"^[ \t]*(?P<role>(?:[A-Z][\w.'’-]*[ \t]+){{0,3}}?{_ROLE_NOUN}(?:[ \t]*-[ \t]*[A-Z][\w-]*)?),?"
    rf"(?:[ \t]+(?P<attorney>[^\n]+?))?[ \t]*$", re.M | re.I)  # "Plaintiff - Appellee, Donna H. Kalama", "Intervenor - Pending,"
_NOT_A_PARTY_LINE = re.compile(r"^(?:v\.?|vs\.?|Terminated:.*|TERMINATED:.*|\[.*\]|\d.*|Panel.*|Date[ \t].*)$", re.I)


def _appellate_blocks(sink: MentionSink) -> None:
    """Appellate docket sheets: the party's name, then a line with its role and, often, its first
    attorney ("Petitioner Jeffrey Brian Rubin"); more attorneys in groups after blank lines, each with
    a [COR NTC ...] tag and the office or firm below it."""
    text = sink.text
    lines = _lines(text, 0, len(text))
    role_rows = [i for i, (_, line) in enumerate(lines) if _ROLE_WITH_COUNSEL.match(line)]
    for n, i in enumerate(role_rows):
        match = _ROLE_WITH_COUNSEL.match(lines[i][1])
        assert match is not None
        attorney = (match["attorney"] or "").strip()
        if attorney and not _is_person_name(_TRAILING_PAREN.sub("", attorney).strip()):
            attorney = attorney.split(",", 1)[0].strip()  # "Douglas Chin, Esquire, Attorney General"
            if not _is_person_name(attorney):
                continue  # "Respondent filed a brief": a sentence, not a party block
        j, party_line = i - 1, None
        while j >= 0 and i - j <= 4:  # the line right above, past "Terminated:" lines only
            candidate = lines[j][1].strip()
            if not candidate:
                break
            if not re.match(r"^(?:Terminated|TERMINATED):", candidate):
                party_line = j
                break
            j -= 1
        if party_line is None:
            continue
        offset, line = lines[party_line]
        name = line.strip().rstrip(",;")
        if len(name) < 3 or _NOT_A_PARTY_LINE.match(name) or _ROLE_WITH_COUNSEL.match(line) or re.search(r"\sv\.?\s", name):
            continue
        name_start = offset + line.find(name)
        party = squash(name)
        sink.add(EntityType.PARTY, name_start, name_start + len(name), party, "rules", 0.9, role=squash(match["role"]).lower())
        stop = role_rows[n + 1] - 2 if n + 1 < len(role_rows) else min(len(lines), i + 200)
        block = lines[i : max(i + 1, stop)]
        if attorney:
            block = [(lines[i][0] + match.start("attorney"), attorney), *block[1:]]
        else:
            block = block[1:]
        _appellate_attorneys(sink, block, party, first_is_attorney=bool(attorney))


def _appellate_attorneys(sink: MentionSink, block: list[tuple[int, str]], party: str, first_is_attorney: bool) -> None:
    starts = [0] if first_is_attorney else []
    starts += [k for k in range(1, len(block)) if not block[k - 1][1].strip() and block[k][1].strip()]
    for k in starts:
        offset, raw = block[k]
        name = _TRAILING_PAREN.sub("", raw).strip().rstrip(",;")
        group = []
        for _, line in block[k + 1 : k + 14]:
            if not line.strip():
                break
            group.append(line.strip())
        if not _is_person_name(name) or not _COUNSEL_DETAIL.search("\n".join(group)):
            continue
        start = offset + raw.find(name)
        sink.add(EntityType.ATTORNEY, start, start + len(name), normalize_person(name), "rules", 0.9, represents=party, role="counsel")
        firm_index = next((x for x, line in enumerate(group) if not re.match(r"^(?:\[|Direct:|Fax:|Email:|Phone:|Firm:)", line)), None)
        if firm_index is None:
            continue
        firm = group[firm_index]
        if _NOT_A_FIRM.match(firm) or _ADDRESS_TAIL.search(firm) or _is_person_name(firm) or len(firm.split()) < 2:
            continue
        position = offset
        for line_offset, line in block[k + 1 :]:
            if line.strip() == firm:
                position = line_offset + line.find(firm)
                break
        sink.add(EntityType.LAW_FIRM, position, position + len(firm), squash(firm), "rules", 0.85, represents=party)
