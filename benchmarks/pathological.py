"""Pathological text through `legaldoc process`: 2 MB of one repeated case-name line, every stage
under the same soft time limit a worker's task has (here 20 s per queue, soft 15 s: `Settings.soft_time_limit`). Prints how the
document ended (done, or RESOURCE naming the time limit) and the wall time; the bound is five
stages each cut at its soft limit, plus start-up and writes. A long run, so it lives here, not in
the test suite (`tests/test_stage_time_limits.py` checks the mechanism with a 1 s limit).

Usage: python benchmarks/pathological.py [--limit 20] [--json]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from legaldoc.config import load_settings  # noqa: E402
from tests.conftest import settings_env  # noqa: E402

LINE = "Smith v. Jones\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--limit", type=float, default=20.0, help="time limit of every queue, seconds")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        tmp = Path(folder)
        path = tmp / "smith-v-jones.txt"
        path.write_text(LINE * (2_000_000 // len(LINE)))
        limits = {name: args.limit for name in ("text_time_limit", "entity_time_limit", "graph_time_limit", "ocr_time_limit")}
        settings = load_settings(data_dir=tmp / ".legaldoc", **limits)
        soft = settings.soft_time_limit("entity")
        env = settings_env(settings)
        started = time.monotonic()
        result = subprocess.run([sys.executable, "-m", "legaldoc", "process", str(path), "--json"], cwd=tmp, env=env,
                                capture_output=True, text=True, timeout=600)  # fmt: skip
        elapsed = time.monotonic() - started
    (report,) = [json.loads(line) for line in result.stdout.splitlines()]
    figures = {"status": report["status"], "error": report.get("error"), "seconds": round(elapsed, 1),
               "bound_seconds": 5 * soft + 30, "traceback": "Traceback" in result.stderr}  # fmt: skip
    if args.json:
        print(json.dumps(figures))
    else:
        print(f"2 MB repeated line, {args.limit:g} s limits: {figures['status']} in {elapsed:.1f} s "
              f"(bound {figures['bound_seconds']:.0f} s){'; TRACEBACK on stderr' if figures['traceback'] else ''}")


if __name__ == "__main__":
    main()
