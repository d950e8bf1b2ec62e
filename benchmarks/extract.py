"""Pages per second of the extract stage against a bare pypdfium2 loop over the same PDFs, same run.

The bare loop opens each PDF and reads every page's text layer, nothing else. The extract stage adds
sniffing, limits, text clean-up, the OCR decision per page and page assembly. OCR itself is reported
separately (it renders at 300 dpi and runs tesseract, so it is not comparable to a text-layer read).

Usage: python benchmarks/extract.py [--rounds 7] [--corpus ../shared/corpus/documents]
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import pypdfium2 as pdfium

from legaldoc.config import load_settings
from legaldoc.errors import DataError
from legaldoc.pipeline.extract import extract, ocr_provider_from_settings

DEFAULT_CORPUS = Path(__file__).resolve().parents[2] / "shared" / "corpus" / "documents"


def bare_loop(blobs: list[bytes]) -> int:
    pages = 0
    for data in blobs:
        pdf = pdfium.PdfDocument(data)
        for index in range(len(pdf)):
            page = pdf[index]
            textpage = page.get_textpage()
            textpage.get_text_bounded()
            textpage.close()
            page.close()
            pages += 1
        pdf.close()
    return pages


def extract_stage(blobs: list[tuple[str, bytes]], settings, ocr) -> int:
    return sum(len(extract(data, name, settings, ocr).pages) for name, data in blobs)


def timed(function, *args) -> tuple[float, int]:
    start = time.perf_counter()
    pages = function(*args)
    return time.perf_counter() - start, pages


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS)
    args = parser.parse_args()
    settings = load_settings()
    everything = [(p.name, p.read_bytes()) for p in sorted(args.corpus.glob("*.pdf")) if p.stat().st_size > 0]
    # Scanned PDFs have no text layer to compare: they are measured in the OCR line below.
    named: list[tuple[str, bytes]] = []
    for name, data in everything:
        try:
            extract(data, name, settings, None)
            named.append((name, data))
        except DataError:
            pass
    blobs = [data for _, data in named]

    bare_times, stage_times = [], []
    for _ in range(args.rounds):  # interleaved so machine noise hits both alike
        seconds, bare_pages = timed(bare_loop, blobs)
        bare_times.append(seconds)
        seconds, stage_pages = timed(extract_stage, named, settings, None)
        stage_times.append(seconds)
    assert bare_pages == stage_pages
    bare_rate = bare_pages / statistics.median(bare_times)
    stage_rate = stage_pages / statistics.median(stage_times)
    print(f"text-layer PDFs: {len(named)} files, {bare_pages} pages, {args.rounds} rounds (medians)")
    print(f"bare pypdfium2 text loop : {bare_rate:8.1f} pages/s")
    print(f"extract stage (no OCR)   : {stage_rate:8.1f} pages/s")
    print(f"ratio extract/bare       : {stage_rate / bare_rate:8.2f}")

    ocr = ocr_provider_from_settings(settings)
    start = time.perf_counter()
    documents = [extract(data, name, settings, ocr) for name, data in everything]
    seconds = time.perf_counter() - start
    pages = sum(len(d.pages) for d in documents)
    ocr_pages = sum(d.ocr_pages for d in documents)
    print(f"extract stage with OCR   : {pages / seconds:8.1f} pages/s over all {len(everything)} PDFs "
          f"({ocr_pages} of {pages} pages OCR'd, one round, {seconds / max(ocr_pages, 1):.2f} s per OCR'd page)")

if __name__ == "__main__":
    main()
