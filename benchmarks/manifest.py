"""How long a large manifest takes to load: YAML parsing, validation and expansion, and peak memory.

A manifest of N entries (default 100,000) is generated in a temporary folder: one in ten entries
carries metadata, one in a hundred shares the first entry's metadata through a YAML alias, and the
rest name `s3://` objects (the filesystem is left out: the figure is the loader's). `load_manifest`
runs in this process; the figures are the median of the rounds and the peak RSS growth.

Usage: python benchmarks/manifest.py [--entries 100000] [--rounds 3] [--json]
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

from legaldoc.manifest import load_manifest


def write_manifest(path: Path, entries: int) -> None:
    lines = ["name: bench", "project: bench", "priority: normal", "documents:"]
    for i in range(entries):
        lines.append(f"  - uri: s3://bucket/matter/{i // 1000:03d}/doc-{i:06d}.pdf")
        if i == 0:
            lines.append("    metadata: &common {custodian: J. Doe, matter: 2024-17}")
        elif i % 100 == 0:
            lines.append("    metadata: *common")
        elif i % 10 == 0:
            lines.append(f"    metadata: {{custodian: 'Custodian {i % 37}', bates: ACME{i:08d}, pages: {i % 300}}}")
    path.write_text("\n".join(lines) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--entries", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        manifest = Path(folder) / "bench.yaml"
        write_manifest(manifest, args.entries)
        size = manifest.stat().st_size
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        times = []
        for _ in range(args.rounds):
            started = time.perf_counter()
            loaded = load_manifest(manifest, max_mb=size / 1048576 + 1)
            times.append(time.perf_counter() - started)
            assert len(loaded.documents) == args.entries
        peak_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    figures = {"entries": args.entries, "manifest_mb": round(size / 1048576, 2), "median_s": round(statistics.median(times), 2),
               "min_s": round(min(times), 2), "peak_rss_growth_mb": round(peak_mb)}  # fmt: skip
    if args.json:
        json.dump(figures, sys.stdout)
        print()
    else:
        print(f"{args.entries:,} entries ({figures['manifest_mb']} MB): median {figures['median_s']} s "
              f"(min {figures['min_s']} s) over {args.rounds} rounds; peak RSS +{figures['peak_rss_growth_mb']} MB")  # fmt: skip


if __name__ == "__main__":
    main()
