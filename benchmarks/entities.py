"""The entities stage against bare `eyecite.get_citations` on the same texts, same run (ratios of medians).

Text sets, read in place from the shared corpus and extracted once per run by the product's own
extract stage (`legaldoc.pipeline.extract.extract`, default settings):

- documents: `../shared/corpus/documents/*` (PDF, DOCX, DOC, WPD) without OCR: image-only PDFs
  (no text layer) and files the extract stage refuses are skipped and named in the output;
- dockets:   PACER docket reports, `../shared/corpus/dockets/*/*.html`;
- notices:   CM/ECF e-mails, `../shared/corpus/nef/*.txt`.

Each round times, per set, `LocalEntityProvider().extract(text, record)` (with the court record
the extract stage parsed from a docket report or notice, as the stage runs it) and bare `eyecite.get_citations(text)`
on every text of the set, text by text in alternating order (interleaved so machine noise hits both
alike), and adds them up per set; the figures are medians over the rounds, and the ratio is
entities / eyecite (with the range of the rounds' own ratios).
The entities stage runs get_citations once itself, so the ratio is at least 1. Before each text the
stage's own memo caches are emptied, so no round profits from the texts an earlier one saw.

`--save FILE` writes every mention (type, start, end, normalized, extractor, confidence, attrs) of
every text as JSON, `--check FILE` compares against such a file and exits 1 on any difference: the
proof that an optimization leaves the output byte-identical.

Usage: python benchmarks/entities.py [--rounds 7] [--json] [--save FILE | --check FILE]
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from eyecite import get_citations  # noqa: E402

from legaldoc.config import load_settings  # noqa: E402
from legaldoc.errors import LegaldocError  # noqa: E402
from legaldoc.pipeline.entities import LocalEntityProvider, base, records  # noqa: E402
from legaldoc.pipeline.extract import RECORD_KEY, extract  # noqa: E402

CORPUS = Path(__file__).resolve().parents[2] / "shared" / "corpus"
SETS = {
    "documents": lambda: sorted(p for p in (CORPUS / "documents").iterdir() if p.is_file()),
    "dockets": lambda: sorted((CORPUS / "dockets").glob("*/*.html")),
    "notices": lambda: sorted((CORPUS / "nef").glob("*.txt")),
}


def load_texts(settings) -> tuple[dict[str, list[tuple[str, str, Any]]], list[str]]:
    """{set: [(name, text, court record)]} and the files skipped (no text without OCR, or refused)."""
    texts: dict[str, list[tuple[str, str, Any]]] = {}
    skipped: list[str] = []
    for set_name, paths in SETS.items():
        texts[set_name] = []
        for path in paths():
            name = str(path.relative_to(CORPUS))
            try:
                document = extract(path.read_bytes(), str(path), settings, None)
                text, record = document.text, document.metadata.get(RECORD_KEY)
            except LegaldocError as error:
                skipped.append(f"{name} ({type(error).__name__})")
                continue
            if not text.strip():
                skipped.append(f"{name} (no text without OCR)")
                continue
            texts[set_name].append((name, text, record))
    return texts, skipped


def snapshot(texts: dict[str, list[tuple[str, str, Any]]]) -> dict[str, list[list[Any]]]:
    provider = LocalEntityProvider()
    out: dict[str, list[list[Any]]] = {}
    for items in texts.values():
        for name, text, record in items:
            out[name] = [[m.type.value, m.start, m.end, m.normalized, m.extractor, m.confidence, m.attrs]
                         for m in provider.extract(text, record)]  # fmt: skip
    return out


def compare(expected: dict[str, list[list[Any]]], found: dict[str, list[list[Any]]]) -> list[str]:
    problems = [f"{name}: missing from this run" for name in expected.keys() - found.keys()]
    problems += [f"{name}: not in the saved file" for name in found.keys() - expected.keys()]
    for name in sorted(expected.keys() & found.keys()):
        before = [json.dumps(m, sort_keys=True) for m in expected[name]]
        after = [json.dumps(m, sort_keys=True) for m in found[name]]
        if before != after:
            lost, gained = sorted(set(before) - set(after)), sorted(set(after) - set(before))
            problems.append(f"{name}: {len(before)} -> {len(after)} mentions; lost {lost[:3]} gained {gained[:3]}")
    return problems


def forget() -> None:
    """Empty the stage's own memo caches (names, patterns of a record's values), so that a round
    gains nothing from the texts an earlier round saw: only what one text reuses counts."""
    for cached in (records._words_pattern, records._ascii_lower, records._date_shown, base._name_case,
                   base.last_first_to_first_last):  # fmt: skip
        cached.cache_clear()


def timed(function, *args: Any) -> float:
    if function is not get_citations:
        forget()
    start = time.perf_counter()
    function(*args)
    return time.perf_counter() - start


def measure(texts: dict[str, list[tuple[str, str, Any]]], rounds: int) -> dict[str, dict[str, Any]]:
    provider = LocalEntityProvider()
    stage, bare = provider.extract, get_citations
    plain = {set_name: [(text, record) for _, text, record in items] for set_name, items in texts.items()}
    for items in plain.values():  # warm-up: eyecite's tokenizer, courts-db tables, regex caches
        for text, record in items:
            stage(text, record), bare(text)
    stage_times: dict[str, list[float]] = {s: [] for s in plain}
    bare_times: dict[str, list[float]] = {s: [] for s in plain}
    for round_index in range(rounds):
        for set_name, items in plain.items():
            stage_total = bare_total = 0.0
            # Interleaved text by text, the order swapped each time, so a burst of load on this
            # (shared, noisy) machine falls on both sides alike.
            for index, (text, record) in enumerate(items):
                if (index + round_index) % 2:
                    bare_total += timed(bare, text)
                    stage_total += timed(stage, text, record)
                else:
                    stage_total += timed(stage, text, record)
                    bare_total += timed(bare, text)
            stage_times[set_name].append(stage_total)
            bare_times[set_name].append(bare_total)
    report: dict[str, dict[str, Any]] = {}
    for set_name, items in plain.items():
        stage_s, bare_s = statistics.median(stage_times[set_name]), statistics.median(bare_times[set_name])
        ratios = [s / b for s, b in zip(stage_times[set_name], bare_times[set_name], strict=True)]
        report[set_name] = {
            "texts": len(items), "chars": sum(len(text) for text, _ in items), "entities_s": stage_s, "eyecite_s": bare_s,
            "ratio": stage_s / bare_s, "ratio_min": min(ratios), "ratio_max": max(ratios),
        }  # fmt: skip
    totals_stage = [sum(values) for values in zip(*stage_times.values(), strict=True)]
    totals_bare = [sum(values) for values in zip(*bare_times.values(), strict=True)]
    ratios = [s / b for s, b in zip(totals_stage, totals_bare, strict=True)]
    report["overall"] = {
        "texts": sum(r["texts"] for r in report.values()), "chars": sum(r["chars"] for r in report.values()),
        "entities_s": statistics.median(totals_stage), "eyecite_s": statistics.median(totals_bare),
        "ratio": statistics.median(totals_stage) / statistics.median(totals_bare),
        "ratio_min": min(ratios), "ratio_max": max(ratios),
    }  # fmt: skip
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    parser.add_argument("--save", type=Path, help="write every mention of every text to FILE (JSON) and stop")
    parser.add_argument("--check", type=Path, help="compare every mention with FILE (from --save) and stop")
    args = parser.parse_args()
    logging.disable(logging.WARNING)
    texts, skipped = load_texts(load_settings())
    if args.save or args.check:
        found = snapshot(texts)
        if args.save:
            args.save.write_text(json.dumps(found, sort_keys=True))
            print(f"saved {sum(map(len, found.values()))} mentions of {len(found)} texts to {args.save}")
            return
        problems = compare(json.loads(args.check.read_text()), json.loads(json.dumps(found)))
        for problem in problems:
            print(problem)
        print(f"{'DIFFERENT' if problems else 'identical'}: {sum(map(len, found.values()))} mentions of {len(found)} texts")
        sys.exit(1 if problems else 0)
    report = measure(texts, args.rounds)
    if args.json:
        print(json.dumps({"rounds": args.rounds, "sets": report, "skipped": skipped}, indent=2))
        return
    print(f"{args.rounds} interleaved rounds, medians; skipped (no OCR here): {', '.join(skipped) or 'none'}")
    print(f"{'set':<11}{'texts':>6}{'chars':>11}{'entities':>11}{'eyecite':>10}{'ratio':>8}  range")
    for set_name, r in report.items():
        print(f"{set_name:<11}{r['texts']:>6}{r['chars']:>11,}{r['entities_s'] * 1000:>9.0f}ms{r['eyecite_s'] * 1000:>8.0f}ms"
              f"{r['ratio']:>8.2f}  {r['ratio_min']:.2f}-{r['ratio_max']:.2f}")  # fmt: skip


if __name__ == "__main__":
    main()
