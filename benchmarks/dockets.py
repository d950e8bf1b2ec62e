"""`legaldoc process --force` on PACER docket reports against a bare HTML-to-text + eyecite script.

The files: every docket report of the shared corpus, `../shared/corpus/dockets/*/*.html`, read in
place. The same files, in interleaved rounds, each run in its own process (wall, user and system
seconds and peak RSS from the kernel through GNU time):

- product:  `legaldoc process --force FILES` into a SQLite database made (and filled once, before
  the rounds) for this run: every stage of every file (extract with the court record parsed by
  juriscraper, chunk, entities, resolve, relate) and every write;
- baseline: `python benchmarks/dockets.py --baseline FILES`: read each file, turn its HTML into
  text with the standard library's `html.parser` (the parser the product's HTML reader uses), and
  call `eyecite.get_citations` on the text. Nothing stored.

Both pay the interpreter's start and their imports once per round. Figures: medians over the
rounds of each side, the median of the per-round ratios product / baseline (wall and CPU), and,
from the product's own attempt log (`stage_runs.duration_ms` of the last round), where its time
goes by stage; what is left is start-up, imports, the per-document bookkeeping and the report.

`--statements` instead counts the SQL statements each stage sends per document (SQLAlchemy's
`before_cursor_execute`; an executemany counts once), processing the same files in this process into
a fresh SQLite database, first plainly and then with force.

Usage: python benchmarks/dockets.py [--rounds 5] [--json] [--statements]
(another checkout: PYTHONPATH=CHECKOUT python benchmarks/dockets.py, its own migrations on its own database)
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import statistics
import subprocess
import sys
import tempfile
from html.parser import HTMLParser
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CORPUS = REPO.parent / "shared" / "corpus"
GNU_TIME = Path("/usr/bin/time")


class _Text(HTMLParser):
    """The least HTML-to-text there is: the character data outside script and style, a line per
    block-ish tag."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.skipping = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in ("script", "style"):
            self.skipping += 1
        elif tag in ("br", "p", "div", "tr", "li", "table", "h1", "h2", "h3"):
            self.parts.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in ("script", "style") and self.skipping:
            self.skipping -= 1

    def handle_data(self, data: str) -> None:
        if not self.skipping:
            self.parts.append(data)


def baseline(files: list[str]) -> None:
    from eyecite import get_citations

    citations = 0
    for name in files:
        parser = _Text()
        parser.feed(Path(name).read_bytes().decode("utf-8", "replace"))
        parser.close()
        citations += len(get_citations("".join(parser.parts)))
    print(citations)


def measured(command: list[str], env: dict[str, str], cwd: Path) -> dict[str, float]:
    """Wall, user and system seconds and peak RSS (MB) of one command, from GNU time."""
    with tempfile.NamedTemporaryFile("r") as report:
        done = subprocess.run([str(GNU_TIME), "-o", report.name, "-f", "%e %U %S %M", *command], env=env, cwd=cwd,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, check=False)  # fmt: skip
        if done.returncode != 0:
            raise SystemExit(f"{command[:4]} failed ({done.returncode}): {done.stderr.decode()[-2000:]}")
        wall, user, system, peak_kb = report.read().split()[-4:]
    return {"wall": float(wall), "cpu": float(user) + float(system), "rss_mb": int(peak_kb) / 1024}


def stage_seconds(database: Path, after_run_id: int) -> dict[str, float]:
    with sqlite3.connect(database) as connection:
        rows = connection.execute(
            "SELECT stage, SUM(duration_ms) FROM stage_runs WHERE id > ? GROUP BY stage", (after_run_id,)
        ).fetchall()
    return {stage: (total or 0) / 1000 for stage, total in rows}


def last_run_id(database: Path) -> int:
    with sqlite3.connect(database) as connection:
        return connection.execute("SELECT COALESCE(MAX(id), 0) FROM stage_runs").fetchone()[0]


def count_statements(files: list[str]) -> dict[str, dict[str, float]]:
    """Mean statements per document by stage (and outside the stages), first run and forced run."""
    import collections
    import logging

    from sqlalchemy import event

    sys.path.insert(0, str(REPO))
    from legaldoc.config import load_settings
    from legaldoc.services import stages
    from legaldoc.services.process import process_paths
    from legaldoc.storage.db import Database

    logging.disable(logging.WARNING)
    work = Path(tempfile.mkdtemp(prefix="legaldoc-statements-bench-"))
    settings = load_settings(data_dir=work, database_url=f"sqlite:///{work / 'legaldoc.db'}")
    database = Database(settings.resolved_database_url)
    counts: collections.Counter[str] = collections.Counter()
    current = ["registration and report"]

    def count(conn, cursor, statement, parameters, context, executemany) -> None:  # type: ignore[no-untyped-def]
        if not statement.startswith("BEGIN"):
            counts[current[0]] += 1

    execute = stages.StageRunner.execute

    def attributed(self, document_id, stage, attempt, parent=None):  # type: ignore[no-untyped-def]
        current[0] = stage.value
        try:
            return execute(self, document_id, stage, attempt, parent)
        finally:
            current[0] = "registration and report"

    stages.StageRunner.execute = attributed  # type: ignore[method-assign]
    event.listen(database.engine, "before_cursor_execute", count)
    report: dict[str, dict[str, float]] = {}
    for force in (False, True):
        counts.clear()
        done = sum(r.status == "done" for r in process_paths([Path(f) for f in files], "dockets", settings, database, force=force))
        per_document = {stage: round(total / max(done, 1), 1) for stage, total in counts.items()}
        report["forced" if force else "first"] = {**per_document, "all": round(sum(counts.values()) / max(done, 1), 1)}
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    parser.add_argument("--statements", action="store_true", help="count SQL statements per document by stage instead")
    parser.add_argument("--baseline", nargs="+", metavar="FILE", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.baseline:
        baseline(args.baseline)
        return
    if args.statements:
        counted = count_statements([str(path) for path in sorted((CORPUS / "dockets").glob("*/*.html"))])
        if args.json:
            print(json.dumps(counted, indent=2))
            return
        for run, per_stage in counted.items():
            print(f"{run:<7} " + ", ".join(f"{stage} {value}" for stage, value in per_stage.items()))
        return
    if not GNU_TIME.exists():
        raise SystemExit("GNU time (/usr/bin/time) is needed: apt-get install time")
    files = [str(path) for path in sorted((CORPUS / "dockets").glob("*/*.html"))]
    work = Path(tempfile.mkdtemp(prefix="legaldoc-dockets-bench-"))
    database = work / "legaldoc.db"
    env = {**os.environ, "LEGALDOC_HOME": str(work), "LEGALDOC_DATABASE_URL": f"sqlite:///{database}"}
    env.pop("LEGALDOC_CONFIG", None)
    product = [sys.executable, "-m", "legaldoc", "process", "--project", "dockets", "--force", *files]
    bare = [sys.executable, str(Path(__file__).resolve()), "--baseline", *files]
    # Run from the scratch folder: `python -m` puts the working folder first on the import path, and
    # PYTHONPATH (to measure another checkout of legaldoc) must win over it.
    measured(product[: -len(files) - 1] + files, env, work)  # the first run: database made, every document stored
    measured(bare, env, work)  # warm the page cache and both sides' imports alike
    sides: dict[str, list[dict[str, float]]] = {"product": [], "baseline": []}
    stages: dict[str, float] = {}
    for round_index in range(args.rounds):
        order = ["product", "baseline"] if round_index % 2 == 0 else ["baseline", "product"]
        for side in order:
            before = last_run_id(database)
            sides[side].append(measured(product if side == "product" else bare, env, work))
            if side == "product":
                stages = stage_seconds(database, before)
    load = os.getloadavg()
    ratios = {key: [p[key] / b[key] for p, b in zip(sides["product"], sides["baseline"], strict=True)] for key in ("wall", "cpu")}
    report = {
        "files": len(files), "rounds": args.rounds, "load_average": [round(x, 1) for x in load],
        "product": {key: statistics.median(r[key] for r in sides["product"]) for key in ("wall", "cpu", "rss_mb")},
        "baseline": {key: statistics.median(r[key] for r in sides["baseline"]) for key in ("wall", "cpu", "rss_mb")},
        "ratio": {key: statistics.median(values) for key, values in ratios.items()},
        "ratio_range": {key: [min(values), max(values)] for key, values in ratios.items()},
        "stages_last_round_s": {stage: round(seconds, 3) for stage, seconds in sorted(stages.items())},
    }  # fmt: skip
    if args.json:
        print(json.dumps(report, indent=2))
        return
    print(f"{len(files)} docket reports, {args.rounds} interleaved rounds, medians; load average {load[0]:.1f}")
    for side in ("product", "baseline"):
        r = report[side]
        print(f"{side:<9} wall {r['wall']:6.2f} s  cpu {r['cpu']:6.2f} s  peak RSS {r['rss_mb']:5.0f} MB")
    for key in ("wall", "cpu"):
        low, high = report["ratio_range"][key]
        print(f"ratio {key:<4} {report['ratio'][key]:.2f}  ({low:.2f}-{high:.2f})")
    staged = sum(stages.values())
    print("product stages, last round: " + ", ".join(f"{s} {v:.2f} s" for s, v in sorted(stages.items()))
          + f"; outside the stages {report['product']['wall'] - staged:.2f} s")  # fmt: skip


if __name__ == "__main__":
    main()
