"""Entity quality on the shared corpus's answer keys: recall (and precision where a key lists every
true value) per field, so every change to the rules shows its effect.

Inputs, read in place:

- `../shared/corpus/nef/*.txt` with `*.json` keys: CM/ECF notices (court_id, dockets with
  docket_number and case_name, email_recipients);
- `../shared/corpus/dockets/{district,bankruptcy,appellate}/*.html` with `*.json` keys: PACER
  docket reports (docket_number, court_id, case_name, assigned_to_str / referred_to_str, panel,
  parties with name, type and attorneys with name and contact).

Each document goes through the product's own extract stage and the local entity provider. Text is
compared folded: lower case, punctuation dropped, whitespace collapsed.

Matching rules (a key value is found when ...):

- docket number: a DOCKET_NUMBER mention's normalized value equals the key's, or the key is that
  value followed by a judge-initials suffix (`3:16-cv-00021` finds `3:16-cv-00021-TMB`), or the reverse;
- court: a COURT mention's normalized value is the key's court_id;
- case name: a CASE_NAME mention's text equals the key's case name (exact span), folded; "case name
  (normalized)": its normalized value does (docket sheets print "USA v. Beale et al" where the key,
  like juriscraper, says "United States v. Beale");
- judge: a JUDGE mention's folded normalized value equals the key's name or one of them ends with
  the other's "first-initial surname" form (the key's titles such as "Judge" are dropped);
- party: a PARTY, PERSON or ORGANIZATION mention's folded normalized value equals the party's
  name folded (person or organization by whether the key name has a company word: Inc, LLC, Corp,
  Company, Bank, ..., or "United States"/"State of");
- attorney: an ATTORNEY (or PERSON) mention equals the attorney's name folded, trailing descriptors
  the keys keep ("Benjamin G. Shatz, Attorney", "Robert D. Fram, Esquire") dropped on both sides;
- law firm: a LAW_FIRM mention equals the first line of the attorney's contact (folded), when that
  line has a firm word (LLP, LLC, P.C., Law, & ...);
- recipient (notices): a PERSON/ATTORNEY/JUDGE mention equals the recipient's name, or ends with it.

Precision, for fields whose keys list every true value in the document (attorneys, judges and
parties on docket reports): matched mentions of the type / all mentions of the type.

Usage: python benchmarks/quality.py [--json] [--rules-only]
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from legaldoc.config import load_settings  # noqa: E402
from legaldoc.models import Mention  # noqa: E402
from legaldoc.pipeline.entities import LocalEntityProvider  # noqa: E402
from legaldoc.pipeline.extract import RECORD_KEY, extract  # noqa: E402

CORPUS = Path(__file__).resolve().parents[2] / "shared" / "corpus"
COMPANY = re.compile(r"\b(inc|llc|l\.l\.c|corp|corporation|company|co|ltd|lp|llp|bank|association|trust|"
                     r"insurance|group|holdings|partners|services|university|county|city|state of|united states|"
                     r"department|district|authority|commission|board|agency|office|n\.a|fund|foundation)\b", re.I)  # fmt: skip
FIRM = re.compile(r"\b(llp|llc|l\.l\.c|p\.c|pc|p\.a|pllc|law|attorneys?|&|associates|group|offices?)\b", re.I)


def fold(text: str | None) -> str:
    return " ".join(re.sub(r"[^\w\s]", " ", (text or "").lower()).split())


_DESCRIPTORS = {"attorney", "attorneys", "esquire", "esq", "general", "counsel", "jr", "sr", "ii", "iii"}


def person_key(name: str | None) -> str:
    """A person's name folded, without the descriptors a key or a listing adds after it."""
    words = fold(name).split()
    while len(words) > 2 and words[-1] in _DESCRIPTORS:
        words.pop()
    return " ".join(words)


class Tally:
    def __init__(self) -> None:
        self.found: dict[str, list[int]] = defaultdict(lambda: [0, 0])
        self.precise: dict[str, list[int]] = defaultdict(lambda: [0, 0])

    def recall(self, field: str, hit: bool) -> None:
        self.found[field][0] += hit
        self.found[field][1] += 1

    def precision(self, field: str, good: int, total: int) -> None:
        self.precise[field][0] += good
        self.precise[field][1] += total

    def report(self) -> dict[str, dict[str, float | int]]:
        out: dict[str, dict[str, float | int]] = {}
        for field, (hits, total) in sorted(self.found.items()):
            out[field] = {"recall": hits / total if total else 0.0, "found": hits, "keys": total}
        for field, (good, total) in sorted(self.precise.items()):
            out.setdefault(field, {}).update({"precision": good / total if total else 1.0, "matched": good, "mentions": total})
        return out


USE_RECORDS = True
"""False with --rules-only: court records ignored, the rules alone (as without juriscraper)."""


def _mentions(path: Path, settings) -> tuple[str, list[Mention]]:
    document = extract(path.read_bytes(), str(path), settings)
    record = document.metadata.get(RECORD_KEY) if USE_RECORDS else None
    return document.text, LocalEntityProvider().extract(document.text, record)


def _of(mentions: list[Mention], *types: str) -> list[Mention]:
    return [m for m in mentions if m.type.value in types]


def _docket_match(found: str, key: str) -> bool:
    a, b = fold(found).replace(" ", ""), fold(key).replace(" ", "")
    return bool(a) and (a == b or b.startswith(a) and len(b) > len(a) or a.startswith(b) and len(a) > len(b))


def _initial_surname(name: str) -> str:
    parts = fold(re.sub(r"\b(judge|magistrate|chief|district|bankruptcy|senior|us|u s|united states|hon|honorable)\b", " ",
                        name, flags=re.I)).split()  # fmt: skip
    return f"{parts[0][0]} {parts[-1]}" if len(parts) >= 2 else " ".join(parts)


def _judge_match(found: str, key: str) -> bool:
    a, b = fold(found), fold(re.sub(r"\b(Judge|Magistrate|Chief|Bankruptcy|District|Senior)\b", " ", key))
    return bool(a and b) and (a == b or _initial_surname(a) == _initial_surname(b))


def score_nef(tally: Tally, settings) -> None:
    for key_path in sorted((CORPUS / "nef").glob("*.json")):
        key = json.loads(key_path.read_text())
        if "court_id" not in key:
            continue
        _, mentions = _mentions(key_path.with_suffix(".txt"), settings)
        dockets = [m.normalized for m in _of(mentions, "DOCKET_NUMBER")]
        cases = {fold(m.text) for m in _of(mentions, "CASE_NAME")} | {fold(m.normalized) for m in _of(mentions, "CASE_NAME")}
        people = [fold(m.normalized) for m in _of(mentions, "PERSON", "ATTORNEY", "JUDGE")]
        for docket in key["dockets"]:
            tally.recall("notice docket number", any(_docket_match(d, docket["docket_number"]) for d in dockets))
            tally.recall("notice case name", fold(docket["case_name"]) in cases)
        tally.recall("notice court", key["court_id"] in {m.normalized for m in _of(mentions, "COURT")})
        for recipient in key.get("email_recipients", []):
            if recipient["name"].strip():
                wanted = fold(recipient["name"])
                tally.recall("notice recipient", any(p == wanted or p.endswith(" " + wanted) for p in people))


def score_dockets(tally: Tally, settings, kind: str) -> None:
    for key_path in sorted((CORPUS / "dockets" / kind).glob("*.json")):
        key = json.loads(key_path.read_text())
        html = key_path.with_suffix(".html")
        if not html.exists():
            continue
        _, mentions = _mentions(html, settings)
        if key.get("docket_number"):
            tally.recall(f"{kind} docket number", any(_docket_match(m.normalized, key["docket_number"]) for m in _of(mentions, "DOCKET_NUMBER")))
        if key.get("court_id"):
            tally.recall(f"{kind} court", key["court_id"] in {m.normalized for m in _of(mentions, "COURT")})
        if key.get("case_name"):
            tally.recall(f"{kind} case name", fold(key["case_name"]) in {fold(m.text) for m in _of(mentions, "CASE_NAME")})
            tally.recall(f"{kind} case name (normalized)",
                         fold(key["case_name"]) in {fold(m.normalized) for m in _of(mentions, "CASE_NAME")})
        judges = [j for j in (key.get("assigned_to_str"), key.get("referred_to_str")) if j]
        judges += [p if isinstance(p, str) else p.get("name", "") for p in key.get("panel") or []]
        found_judges = [m.normalized for m in _of(mentions, "JUDGE")]
        for judge in judges:
            tally.recall(f"{kind} judge", any(_judge_match(f, judge) for f in found_judges))
        parties = key.get("parties") or []
        party_names = [p["name"] for p in parties if p.get("name")]
        found_parties = {fold(m.normalized) for m in _of(mentions, "PARTY", "PERSON", "ORGANIZATION")}
        for name in party_names:
            kind_of = "organization" if COMPANY.search(name) else "person"
            tally.recall(f"{kind} party ({kind_of})", fold(name) in found_parties)
        attorneys = {person_key(a["name"]) for p in parties for a in p.get("attorneys") or [] if a.get("name")}
        found_attorneys = [person_key(m.normalized) for m in _of(mentions, "ATTORNEY")]
        people = set(found_attorneys) | {person_key(m.normalized) for m in _of(mentions, "PERSON")}
        for attorney in attorneys:
            tally.recall(f"{kind} attorney", attorney in people)
        if parties:
            tally.precision(f"{kind} attorney", sum(a in attorneys for a in found_attorneys), len(found_attorneys))
            if judges:
                tally.precision(f"{kind} judge", sum(any(_judge_match(f, j) for j in judges) for f in found_judges), len(found_judges))
        firms = set()
        for party in parties:
            for attorney in party.get("attorneys") or []:
                first = (attorney.get("contact") or "").strip().splitlines()[:1]
                if first and FIRM.search(first[0]):
                    firms.add(fold(first[0]))
        found_firms = {fold(m.normalized) for m in _of(mentions, "LAW_FIRM")} | {fold(m.text) for m in _of(mentions, "LAW_FIRM")}
        for firm in firms:
            tally.recall(f"{kind} law firm", firm in found_firms)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--rules-only", action="store_true",
                        help="ignore the court records juriscraper parses: the rules alone, as on pages it cannot read")
    args = parser.parse_args()
    global USE_RECORDS
    USE_RECORDS = not args.rules_only
    settings = load_settings()
    tally = Tally()
    score_nef(tally, settings)
    for kind in ("district", "bankruptcy", "appellate"):
        score_dockets(tally, settings, kind)
    report = tally.report()
    if args.json:
        print(json.dumps(report, indent=2))
        return
    print(f"{'field':<34}{'recall':>16}{'precision':>18}")
    for field, figures in report.items():
        recall = f"{figures['recall']:.1%} ({figures['found']}/{figures['keys']})" if "recall" in figures else "-"
        precision = f"{figures['precision']:.1%} ({figures['matched']}/{figures['mentions']})" if "precision" in figures else "-"
        print(f"{field:<34}{recall:>16}{precision:>18}")


if __name__ == "__main__":
    main()
