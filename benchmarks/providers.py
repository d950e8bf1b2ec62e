"""Remote providers: what they would be sent, and what it would cost.

Textract: the pages of every PDF of the corpus that `ocr: auto` and `ocr: textract` send (the same
page choice the extract stage makes, `pipeline.extract.textract.plan_pdf`), out of all pages, with
the estimated cost at `textract_price_per_page`. Nothing is sent anywhere: the choice is local.

Usage: python benchmarks/providers.py [--corpus ../shared/corpus/documents] [--json]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from legaldoc.config import load_settings
from legaldoc.pipeline.extract.textract import OcrMode, plan_pdf

DEFAULT_CORPUS = Path(__file__).resolve().parents[2] / "shared" / "corpus" / "documents"


def textract_pages(corpus: Path) -> dict[str, Any]:
    """Pages sent to Textract per mode over the corpus's PDFs, with the files they come from."""
    settings = load_settings()
    total = 0
    sent = {OcrMode.AUTO: 0, OcrMode.TEXTRACT: 0}
    files: dict[str, dict[str, int]] = {}
    unreadable = []
    for path in sorted(corpus.glob("*.pdf")):
        data = path.read_bytes()
        try:
            counts = {mode: plan_pdf(data, settings, mode) for mode in sent}
        except Exception:  # noqa: BLE001 - a broken PDF fails as DATA in the pipeline; here it is only counted
            unreadable.append(path.name)
            continue
        pages = counts[OcrMode.AUTO][1]
        total += pages
        for mode, (chosen, _) in counts.items():
            sent[mode] += len(chosen)
        if any(chosen for chosen, _ in counts.values()):
            files[path.name] = {"pages": pages, **{mode.value: len(chosen) for mode, (chosen, _) in counts.items()}}
    price = settings.textract_price_per_page
    return {"pages": total, "unreadable": unreadable,
            "sent": {mode.value: n for mode, n in sent.items()},
            "estimated_cost_usd": {mode.value: round(n * price, 4) for mode, n in sent.items()},
            "price_per_page": price, "files_with_pages_sent": files}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS)
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args()
    figures = textract_pages(args.corpus)
    if args.json:
        print(json.dumps(figures, indent=2))
        return
    print(f"Textract over {args.corpus}: {figures['pages']} PDF pages")
    for mode, count in figures["sent"].items():
        print(f"  ocr: {mode:<8} sends {count} pages, estimated ${figures['estimated_cost_usd'][mode]:.4f}")
    for name, row in figures["files_with_pages_sent"].items():
        print(f"    {name}: {row}")
    if figures["unreadable"]:
        print(f"  unreadable (DATA in the pipeline): {', '.join(figures['unreadable'])}")


if __name__ == "__main__":
    main()
