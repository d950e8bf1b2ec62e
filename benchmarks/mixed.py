"""End to end on a mixed set with OCR: documents per hour of `legaldoc run` for this code against
the code before the in-process OCR engine, and `run`'s overhead against two bare `legaldoc process`
halves running side by side, all in the same run (interleaved rounds, medians of ratios).

The set (built here from the shared corpus, read in place; written to a temporary folder):
every document of corpus/documents 3 times (20 PDFs, the DOCX, DOC and WordPerfect files: 69),
then CM/ECF e-mails and docket pages alternately up to 150 documents: 477 pages, 27 of them OCR'd
(`--composition` counts them from `legaldoc process --json`). Each copy gets a distinct byte
(a PDF comment after %%EOF, a zip comment, a trailing byte), so no copy is a cache hit of another.

Variants: `new` is this checkout; `old` is `--baseline-ref` (default: the commit before the OCR
engine) unpacked with `git archive` into the temporary folder and run with the same Python
environment (PYTHONPATH first), so the comparison is code against code on the same packages.
Whole commands are timed (start-up, database, every stage): wall clocks, and for the two `process`
halves the CPU seconds of the commands and everything they waited for (soffice, tesseract), which
other load on the machine disturbs less than the wall clock (the workers of `run` are not waited
for by it in a way that counts their CPU, so `run` has wall clocks only).

Usage: python benchmarks/mixed.py [--rounds 2] [--baseline-ref fde378c] [--only new|old] [--keep]
       python benchmarks/mixed.py --composition   # build the set and print what is in it
"""

from __future__ import annotations

import argparse
import io
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CORPUS = ROOT.parent / "shared" / "corpus"
BASELINE_REF = "fde378c"  # main before the in-process OCR engine
TOTAL = 150


def _distinct(name: str, data: bytes, copy: int) -> bytes:
    if name.endswith(".docx"):
        source = zipfile.ZipFile(io.BytesIO(data))
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as target:
            for item in source.infolist():
                target.writestr(item, source.read(item.filename))
            target.comment = f"copy {copy}".encode()
        return buffer.getvalue()
    if name.endswith(".pdf"):
        return data + f"\n%copy {copy}\n".encode()
    return data + b"\n" * copy


def build_set(folder: Path) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    files: list[Path] = []

    def put(source: Path, copy: int) -> None:
        target = folder / f"{copy}-{source.parent.name}-{source.name}"
        target.write_bytes(_distinct(source.name, source.read_bytes(), copy) if copy else source.read_bytes())
        files.append(target)

    documents = sorted(p for p in (CORPUS / "documents").iterdir() if p.stat().st_size > 0)
    for copy in range(3):
        for source in documents:
            put(source, copy)
    texts = sorted((CORPUS / "nef").glob("*.txt"))
    dockets = sorted((CORPUS / "dockets").glob("*/*.html"))
    mixed = [item for pair in zip(texts, dockets, strict=False) for item in pair]
    for source in mixed[: TOTAL - len(files)]:
        put(source, 0)
    return files


def write_manifest(path: Path, folder: Path, name: str) -> Path:
    path.write_text(f"name: {name}\nproject: mixed\noptions: {{skip_processed: false}}\ndocuments:\n  - glob: '{folder}/*'\n")
    return path


def unpack(ref: str, target: Path) -> Path:
    target.mkdir(parents=True)
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", ref, "legaldoc"], capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(target)], input=archive, check=True)
    return target


NEUTRAL_CWD = Path(tempfile.gettempdir())  # no `legaldoc` folder here: the workers `run` starts import `source`'s code


def env_for(source: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LEGALDOC_")}
    env["PYTHONPATH"] = str(source)
    return env


def legaldoc(source: Path, *args: str) -> list[str]:
    # -P: no working folder on sys.path, else a run from the repository imports its legaldoc, not `source`'s
    return [sys.executable, "-P", "-c", "from legaldoc.cli.main import run; run()", *args]


def children_cpu() -> float:
    """CPU seconds of the commands run so far and everything they waited for (workers, soffice, tesseract)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def timed_run(source: Path, manifest: Path, data_dir: Path) -> tuple[float, dict]:
    started = time.perf_counter()
    result = subprocess.run(legaldoc(source, "run", str(manifest), "-c", "2", "--json", "--data-dir", str(data_dir)),
                            capture_output=True, text=True, env=env_for(source), timeout=3600, cwd=NEUTRAL_CWD)  # fmt: skip
    elapsed = time.perf_counter() - started
    if result.returncode not in (0, 1):
        raise SystemExit(f"legaldoc run failed ({result.returncode}): {result.stderr[-2000:]}")
    summary = json.loads(result.stdout[result.stdout.index("{"):]) if "{" in result.stdout else {}
    return elapsed, summary


def timed_halves(source: Path, files: list[Path], data_dir: Path) -> tuple[float, list[dict]]:
    halves = [files[0::2], files[1::2]]
    started = time.perf_counter()
    running = [subprocess.Popen(legaldoc(source, "process", *map(str, half), "--json", "--data-dir", str(data_dir)),
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env_for(source),
                                cwd=NEUTRAL_CWD)  # fmt: skip
               for half in halves]  # fmt: skip
    outputs = [p.communicate(timeout=3600) for p in running]
    elapsed = time.perf_counter() - started
    rows = []
    for out, _ in outputs:
        for line in out.splitlines():
            if line.startswith("{"):
                rows.append(json.loads(line))
    return elapsed, rows


def composition(rows: list[dict]) -> dict:
    kinds: dict[str, int] = {}
    for row in rows:
        suffix = Path(str(row.get("path", row.get("source", "")))).suffix.lower() or "?"
        kinds[suffix] = kinds.get(suffix, 0) + 1
    return {
        "documents": len(rows), "pages": sum(int(r.get("pages") or 0) for r in rows),
        "ocr_pages": sum(int(r.get("ocr_pages") or 0) for r in rows),
        "done": sum(1 for r in rows if r.get("status") == "done"), "by_suffix": kinds,
    }  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--baseline-ref", default=BASELINE_REF)
    parser.add_argument("--only", choices=["new", "old"])
    parser.add_argument("--composition", action="store_true")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="legaldoc-mixed-"))
    try:
        files = build_set(work / "set")
        sources = {"new": ROOT}
        if args.only != "new" and not args.composition:
            sources["old"] = unpack(args.baseline_ref, work / "old")
        if args.only:
            sources = {args.only: sources[args.only]}
        if args.composition:
            _, rows = timed_halves(ROOT, files, work / "composition")
            print(json.dumps(composition(rows), indent=2))
            return
        manifest = write_manifest(work / "mixed.yaml", work / "set", "mixed")
        runs: dict[str, list[float]] = {v: [] for v in sources}
        halves: dict[str, list[float]] = {v: [] for v in sources}
        cpu: dict[str, list[float]] = {v: [] for v in sources}
        succeeded: dict[str, list[object]] = {v: [] for v in sources}
        shape: dict = {}
        for round_index in range(args.rounds):
            for variant, source in sources.items():  # interleaved: machine noise hits both alike
                before = children_cpu()
                seconds, rows = timed_halves(source, files, work / f"{variant}-halves-{round_index}")
                cpu[variant].append(children_cpu() - before)
                halves[variant].append(seconds)
                shape[variant] = composition(rows)
                seconds, summary = timed_run(source, manifest, work / f"{variant}-run-{round_index}")
                succeeded[variant].append(summary.get("succeeded"))
                runs[variant].append(seconds)
                print(f"round {round_index + 1} {variant}: halves {halves[variant][-1]:.1f} s, run {seconds:.1f} s, "
                      f"halves CPU {cpu[variant][-1]:.1f} s, run: {succeeded[variant][-1]} done (load average {os.getloadavg()[0]:.1f})", file=sys.stderr)  # fmt: skip
        report: dict = {"documents": len(files), "rounds": args.rounds, "load_average": os.getloadavg(),
                        "composition": shape, "variants": {}}  # fmt: skip
        for variant in sources:
            run_s, halves_s = statistics.median(runs[variant]), statistics.median(halves[variant])
            report["variants"][variant] = {
                "halves_cpu_s": statistics.median(cpu[variant]), "run_s": run_s, "run_succeeded": succeeded[variant], "halves_s": halves_s, "docs_per_hour": len(files) * 3600 / run_s,
                "overhead_run_vs_halves": statistics.median(r / h for r, h in zip(runs[variant], halves[variant], strict=True)),
            }  # fmt: skip
        if "old" in sources and "new" in sources:
            report["new_vs_old_docs_per_hour"] = statistics.median(o / n for o, n in zip(runs["old"], runs["new"], strict=True))
            report["new_vs_old_halves_cpu"] = statistics.median(o / n for o, n in zip(cpu["old"], cpu["new"], strict=True))
            report["new_vs_old_halves"] = statistics.median(o / n for o, n in zip(halves["old"], halves["new"], strict=True))
        print(json.dumps(report, indent=2))
    finally:
        if args.keep:
            print(f"kept {work}", file=sys.stderr)
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
