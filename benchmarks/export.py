"""What `legaldoc export` costs over the bare minimum, and how fast search answers, on a big project.

A synthetic project of --documents documents (default 100,000) is written straight into a fresh
SQLite database through its migrations (so the FTS index and its triggers are real): per document
~1,200 characters of court-like text, 2 chunks, 2 pages, 6 mentions resolved to 20,000 canonical
entities (with 5,000 aliases) and 3 relationships with evidence.

Then, in interleaved rounds, each in its own process (time and peak RSS from the OS, `wait4`):

- export:   `legaldoc export --format csv|jsonl` (the product: service, SQLAlchemy, snapshot, rename);
- baseline: the same rows, read with the bare sqlite3 cursor by the same SQL, written to the same
  files by `csv.writer` / `json.dumps` (for jsonl the same per-document merge of four ordered streams).

Figures: median seconds and peak RSS of each, and the median of the per-round ratios.
Search: p50/p95 latency of `search_text` over a fixed list of word, phrase, or and -not queries.

Usage: python benchmarks/export.py [--documents 100000] [--rounds 3] [--formats csv,jsonl] [--json]
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import random
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from legaldoc.config import load_settings  # noqa: E402
from legaldoc.services.search import search_text  # noqa: E402
from legaldoc.storage import exports as rows  # noqa: E402
from legaldoc.storage.db import Database  # noqa: E402

_WORDS = """court motion dismiss plaintiff defendant order judgment summary appeal district circuit counsel hearing
trial evidence discovery deposition exhibit claim contract breach damages injunction jurisdiction venue statute
rule filing docket clerk judge magistrate settlement stipulation objection memorandum brief reply opposition
granted denied moot sanctions subpoena witness"""
WORDS = _WORDS.split()
TYPES = ("COURT", "JUDGE", "PARTY", "ORGANIZATION", "PERSON", "CASE", "STATUTE", "DOCKET_NUMBER")
QUERIES = ['"motion to dismiss"', "summary judgment", "sanctions or subpoena", "deposition -witness", '"granted in part"',
           "injunction venue", "breach", '"the court"', "magistrate or clerk -docket", "stipulation settlement"]  # fmt: skip


def generate(path: Path, documents: int, seed: int = 7) -> None:
    """The synthetic project, through the real schema (migrations, FTS triggers)."""
    Database(f"sqlite:///{path}").engine.dispose()
    rng = random.Random(seed)
    db = sqlite3.connect(path)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=OFF")
    now = "2026-12-01 02:00:00.000000"
    db.execute("INSERT INTO projects (id, name, entity_generation, created_at) VALUES (1, 'synthetic', 0, ?)", (now,))
    entities = 20_000
    db.executemany("INSERT INTO entities (id, project_id, type, key, name, created_at) VALUES (?, 1, ?, ?, ?, ?)",
                   [(i, TYPES[i % len(TYPES)], f"key-{i}", f"Entity {i} {rng.choice(WORDS).title()}", now)
                    for i in range(1, entities + 1)])  # fmt: skip
    db.executemany("INSERT INTO entity_aliases (entity_id, alias, reason) VALUES (?, ?, ?)",
                   [(i, f"ENTITY {i}", "same canonical key") for i in range(1, 5001)])  # fmt: skip
    mention_id = relationship_id = 0
    for first in range(1, documents + 1, 5000):
        docs, pages, chunks, mentions, relations = [], [], [], [], []
        for d in range(first, min(first + 5000, documents + 1)):
            text = " ".join(rng.choice(WORDS) for _ in range(170))[:1200]
            half = len(text) // 2
            docs.append((d, f"/matters/synthetic/{d // 1000:03d}/filing-{d}.pdf", f"{d:064x}", "pdf", len(text) * 3, 2, 0, "done",
                         0, 0, text, "{}", now, now))  # fmt: skip
            pages += [(d, 1, 0, half, 0, "text-layer"), (d, 2, half, len(text), 0, "text-layer")]
            chunks += [(d, 0, 0, half, 1, 1, "body", None, text[:half]), (d, 1, half, len(text), 2, 2, "body", None, text[half:])]
            for m in range(6):
                mention_id += 1
                start = m * 190 + rng.randrange(0, 150)  # six spans that never collide
                entity = rng.randrange(1, entities + 1)
                mentions.append((mention_id, d, 0 if start < half else 1, TYPES[entity % len(TYPES)], text[start : start + 14],
                                 f"key-{entity}", start, start + 14, 1 if start < half else 2, "rules", 0.9, "{}", entity))  # fmt: skip
            for _ in range(3):
                relationship_id += 1
                relations.append((relationship_id, 1, d, "CO_OCCURS_WITH", rng.randrange(1, entities + 1),
                                  rng.randrange(1, entities + 1), 1.0, json.dumps([{"chunk_index": 0, "start": 10, "end": 40}])))  # fmt: skip
        db.executemany("INSERT INTO documents (id, project_id, source, sha256, kind, size, pages, ocr_pages, status, attempts,"
                       " version, text, metadata, created_at, updated_at) VALUES (?, 1, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", docs)  # fmt: skip
        db.executemany('INSERT INTO pages (document_id, number, start, "end", ocr, method) VALUES (?, ?, ?, ?, ?, ?)', pages)
        db.executemany('INSERT INTO chunks (document_id, idx, start, "end", page_start, page_end, kind, heading, text)'
                       " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", chunks)  # fmt: skip
        db.executemany('INSERT INTO mentions (id, document_id, chunk_idx, type, text, normalized, start, "end", page,'
                       " extractor, confidence, attrs, entity_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", mentions)  # fmt: skip
        db.executemany("INSERT INTO relationships (id, project_id, document_id, type, source_entity_id, target_entity_id,"
                       " weight, evidence) VALUES (?, ?, ?, ?, ?, ?, ?, ?)", relations)  # fmt: skip
        db.commit()
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db.close()


# -- the baseline: bare sqlite3, the same SQL, the same files ------------------------------------


def _sql(query) -> str:
    from sqlalchemy.dialects import sqlite

    return str(query.compile(dialect=sqlite.dialect(), compile_kwargs={"literal_binds": True}))


def baseline(path: Path, fmt: str, out: Path) -> None:
    scope = rows.Scope(project_id=1)
    db = sqlite3.connect(path)
    db.execute("BEGIN")
    if fmt == "csv":
        out.mkdir()
        columns = {"documents": rows.DOCUMENT_COLUMNS, "mentions": (*rows.MENTION_COLUMNS, "context"), "entities": rows.ENTITY_COLUMNS,
                   "aliases": rows.ALIAS_COLUMNS, "relationships": rows.RELATIONSHIP_COLUMNS}  # fmt: skip
        queries = {"documents": rows.documents, "mentions": rows.mentions, "entities": rows.entities, "aliases": rows.aliases,
                   "relationships": rows.relationships}  # fmt: skip
        texts = db.cursor()
        for table, query in queries.items():
            with (out / f"{table}.csv").open("w", newline="", encoding="utf-8") as handle:
                writer = csv.writer(handle)
                writer.writerow(columns[table])
                current, text = -1, ""
                for row in db.execute(_sql(query(scope))):
                    if table == "mentions":
                        if row[1] != current:
                            current, text = row[1], texts.execute("SELECT text FROM documents WHERE id = ?", (row[1],)).fetchone()[0]
                        row = (*row, " ".join(text[max(0, row[6] - 80) : row[7] + 80].split()))
                    writer.writerow(row)
        return
    streams = [db.cursor().execute(_sql(q(scope))) for q in (rows.mentions, rows.document_entities, rows.relationships, rows.chunk_counts)]
    keys = (1, 0, 2, 0)
    heads = [next(s, None) for s in streams]

    def take(i: int, doc: int) -> list:
        taken = []
        while heads[i] is not None and heads[i][keys[i]] <= doc:
            if heads[i][keys[i]] == doc:
                taken.append(heads[i])
            heads[i] = next(streams[i], None)
        return taken

    with out.open("w", encoding="utf-8") as handle:
        for d in db.execute(_sql(rows.documents(scope))):
            mentions, entities, relations, chunks = (take(i, d[0]) for i in range(4))
            handle.write(json.dumps({
                "document_id": d[0], "source": d[1], "status": d[2], "error": None, "pages": d[4], "ocr_pages": d[5],
                "chunks": chunks[0][1] if chunks else 0,
                "mentions": [{"type": m[3], "text": m[4], "start": m[6], "end": m[7], "page": m[2], "normalized": m[5],
                              "entity_id": m[8]} for m in mentions],
                "entities": len(entities), "relationships": len(relations), "kind": d[3], "size": d[6], "sha256": d[7],
                "batch_id": d[8], "metadata": json.loads(d[14] or "{}"), "created_at": d[12], "updated_at": d[13],
                "canonical_entities": [{"id": e[1], "type": e[2], "key": e[3], "name": e[4]} for e in entities],
                "relationship_edges": [{"id": r[0], "type": r[1], "source_entity_id": r[3], "target_entity_id": r[4],
                                        "weight": r[5], "evidence": json.loads(r[6])} for r in relations],
            }, ensure_ascii=False) + "\n")  # fmt: skip


# -- measuring -------------------------------------------------------------------------------------


GNU_TIME = Path("/usr/bin/time")


def measured(command: list[str], env: dict[str, str]) -> tuple[float, float]:
    """Wall seconds and peak RSS (MB) of one command, from the kernel's accounting. Through GNU
    time when it is there: a child forked from this (large) process would otherwise carry this
    process's resident size into its own peak until it execs."""
    with tempfile.NamedTemporaryFile("r") as report:
        wrapped = [str(GNU_TIME), "-o", report.name, "-f", "%e %M", *command] if GNU_TIME.exists() else command
        started = time.perf_counter()
        process = subprocess.Popen(wrapped, env=env, stdout=subprocess.DEVNULL)
        _, status, usage = os.wait4(process.pid, 0)
        elapsed = time.perf_counter() - started
        if os.waitstatus_to_exitcode(status) != 0:
            raise SystemExit(f"{command} failed")
        if GNU_TIME.exists():
            seconds, peak_kb = report.read().split()[-2:]
            return float(seconds), int(peak_kb) / 1024
    return elapsed, usage.ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--documents", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--formats", default="csv,jsonl")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--baseline", nargs=3, metavar=("DB", "FORMAT", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.baseline:
        baseline(Path(args.baseline[0]), args.baseline[1], Path(args.baseline[2]))
        return
    work = Path(tempfile.mkdtemp(prefix="legaldoc-export-bench-"))
    database = work / "legaldoc.db"
    started = time.perf_counter()
    generate(database, args.documents)
    print(f"generated {args.documents:,} documents in {time.perf_counter() - started:.0f} s ({database.stat().st_size / 1e6:.0f} MB)",
          file=sys.stderr)  # fmt: skip
    env = {**os.environ, "LEGALDOC_DATABASE_URL": f"sqlite:///{database}", "LEGALDOC_HOME": str(work / "home")}
    legaldoc = [sys.executable, "-m", "legaldoc"]
    figures: dict[str, dict[str, float]] = {}
    for fmt in args.formats.split(","):
        product, bare, ratios = [], [], []
        for round_ in range(args.rounds):
            a_out, b_out = work / f"a-{fmt}-{round_}", work / f"b-{fmt}-{round_}"
            a = measured([*legaldoc, "export", "--project", "synthetic", "--format", fmt, "--out", str(a_out)], env)
            b = measured([sys.executable, __file__, "--baseline", str(database), fmt, str(b_out)], env)
            product.append(a)
            bare.append(b)
            ratios.append(a[0] / b[0])
        figures[fmt] = {"export_s": statistics.median(p[0] for p in product), "export_peak_rss_mb": max(p[1] for p in product),
                        "baseline_s": statistics.median(b[0] for b in bare), "baseline_peak_rss_mb": max(b[1] for b in bare),
                        "ratio": statistics.median(ratios), "ratio_min": min(ratios), "ratio_max": max(ratios)}  # fmt: skip
    settings = load_settings(database_url=f"sqlite:///{database}", data_dir=work / "home")
    db = Database(settings.resolved_database_url)
    latencies = []
    for _ in range(5):
        for query in QUERIES:
            t0 = time.perf_counter()
            search_text(db, "synthetic", query, limit=20)
            latencies.append((time.perf_counter() - t0) * 1000)
    latencies.sort()
    figures["search"] = {"queries": len(latencies), "p50_ms": latencies[len(latencies) // 2],
                         "p95_ms": latencies[int(len(latencies) * 0.95) - 1]}  # fmt: skip
    if args.json:
        print(json.dumps(figures, indent=2))
        return
    for fmt, f in figures.items():
        if fmt == "search":
            print(f"search: {f['queries']} queries over {args.documents:,} documents, p50 {f['p50_ms']:.1f} ms, p95 {f['p95_ms']:.1f} ms")
        else:
            print(f"{fmt}: export {f['export_s']:.1f} s ({f['export_peak_rss_mb']:.0f} MB peak) vs baseline {f['baseline_s']:.1f} s "
                  f"({f['baseline_peak_rss_mb']:.0f} MB peak): ratio {f['ratio']:.2f} ({f['ratio_min']:.2f}-{f['ratio_max']:.2f})")  # fmt: skip


if __name__ == "__main__":
    main()
