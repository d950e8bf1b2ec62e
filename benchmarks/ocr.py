"""OCR pages per core and word error: the tesseract CLI at 300 dpi (a process per page, as before
the in-process engine) against tesserocr kept loaded, on keyed page classes, same run.

Page classes (the corpus read in place):
- scan: the scanned slip opinion (image-pdf.pdf), keyed by the text layer of the same opinion's
  first pages (vector-pdf.pdf pages 1-2);
- scan-unkeyed: the other scans (image-pdf-2, ocr_pdf_variation, the cand filing): speed, and the
  new engine's words against the CLI's (agreement, not error);
- slip-opinion, appellate, district: text-layer pages rendered to gray images, their text layer
  the key;
- small-text: slip-opinion and appellate pages drawn at 60% of their size on a page of the same
  size (9-12 pt type becomes 5.5-7 pt), their text layer the key: the class the second reading
  at 300 dpi is for.

Word error is order-independent (a bag of words: OCR reads columns and headers in another order
than a text layer): (missing + extra words) / key words, words = lower-case [a-z0-9]+ runs.
Speed is pages per CPU-second (user + system of this process and of its children, so the CLI's
processes count): pages/s of one core, robust to other load on the machine. Wall time is shown too.
Each engine reads every page: rendering included, rounds interleaved, medians.

Variants: cli@300 (the baseline), tesserocr@200, tesserocr@300 (the engine as the product sets it
up: no inverted second reading of unsure lines), tesserocr adaptive (the product's own path,
`pipeline.extract.pdf.ocr_page`: a page whose ink lines are clearly small in the 200 dpi bitmap
goes straight to 300; any other is laid out at 200 dpi, recognized there, or at 300 when the
median text line is under ocr_small_text_px), and shipped: the adaptive path as first shipped
(tesseract's default inverted reading of lines under 0.7 confidence, no ink-line shortcut), the
before of the same run. A threshold table (from the 200 and 300 readings) shows how the
threshold was chosen.

Usage: python benchmarks/ocr.py [--rounds 1] [--per-class 8] [--json]
"""

from __future__ import annotations

import argparse
import io
import json
import os
import re
import resource
import statistics
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import pypdfium2 as pdfium

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from legaldoc.config import load_settings  # noqa: E402
from legaldoc.pipeline.extract import lines, tesseract_api  # noqa: E402
from legaldoc.pipeline.extract.ocr import RENDER_DPI_KEY, InProcessTesseract, TesseractOcr  # noqa: E402
from legaldoc.pipeline.extract.pdf import ocr_page  # noqa: E402

DOCUMENTS = Path(__file__).resolve().parents[2] / "shared" / "corpus" / "documents"

CLASSES = {
    "slip-opinion": ["vector-pdf.pdf"],
    "appellate": sorted(p.name for p in DOCUMENTS.glob("ca*.pdf")),
    "district": ["gov.uscourts.azd.1085839.3.0.pdf", "gov.uscourts.cacd.652774.40.0.pdf", "broken-mime.pdf", "missouri.pdf"],
}
UNKEYED_SCANS = ["image-pdf-2.pdf", "ocr_pdf_variation.pdf", "gov.uscourts.cand.203070.27.0.pdf"]


def words(text: str) -> Counter[str]:
    return Counter(re.findall(r"[a-z0-9]+", text.lower()))


def word_error(key: str, read: str) -> tuple[int, int]:
    """(missing + extra words, key words)."""
    k, r = words(key), words(read)
    return sum((k - r).values()) + sum((r - k).values()), sum(k.values())


@dataclass
class Page:
    cls: str
    name: str
    index: int
    key: str | None


@dataclass
class Result:
    text: dict[tuple[str, int], str] = field(default_factory=dict)
    cpu: list[float] = field(default_factory=list)
    wall: list[float] = field(default_factory=list)


def text_layer(pdf: pdfium.PdfDocument, index: int) -> str:
    textpage = pdf[index].get_textpage()
    try:
        return str(textpage.get_text_bounded())
    finally:
        textpage.close()


SHRINK = 0.6


def shrunk(source: pdfium.PdfDocument, index: int) -> pdfium.PdfDocument:
    """A one-page PDF with page ``index`` of ``source`` drawn at SHRINK of its size, centred."""
    target = pdfium.PdfDocument.new()
    width, height = source[index].get_size()
    page = target.new_page(width, height)
    drawn = source.page_as_xobject(index, target).as_pageobject()
    drawn.transform(pdfium.PdfMatrix().scale(SHRINK, SHRINK).translate(width * (1 - SHRINK) / 2, height * (1 - SHRINK) / 2))
    page.insert_obj(drawn)
    page.gen_content()
    buffer = io.BytesIO()
    target.save(buffer)
    return pdfium.PdfDocument(buffer.getvalue())


def pick_pages(per_class: int, docs: dict[str, pdfium.PdfDocument]) -> list[Page]:
    pages: list[Page] = []
    for name in ["image-pdf.pdf", "vector-pdf.pdf", *UNKEYED_SCANS, *(n for names in CLASSES.values() for n in names)]:
        docs[name] = pdfium.PdfDocument(DOCUMENTS / name)
    vector, scan = docs["vector-pdf.pdf"], docs["image-pdf.pdf"]
    pages += [Page("scan", "image-pdf.pdf", i, text_layer(vector, i)) for i in range(len(scan))]
    for name in UNKEYED_SCANS:
        pages += [Page("scan-unkeyed", name, i, None) for i in range(len(docs[name]))]
    for cls, names in CLASSES.items():
        candidates = []
        for name in names:
            pdf = docs[name]
            for i in range(len(pdf)):
                text = text_layer(pdf, i)
                if len(text.strip()) >= 400:  # a page with a real text layer to key against
                    candidates.append(Page(cls, name, i, text))
        step = max(1, len(candidates) // per_class)
        pages += candidates[::step][:per_class]
    chosen = [p for p in pages if p.cls in ("slip-opinion", "appellate")]
    for page in chosen[1::2][:per_class] if len(chosen) > per_class else chosen:
        name = f"small:{page.name}:{page.index}"
        docs[name] = shrunk(docs[page.name], page.index)
        pages.append(Page("small-text", name, 0, text_layer(docs[name], 0)))
    return pages


def cpu_now() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


SHORTCUT = lines.RUN_TO_TESSERACT
TESSERACT_DEFAULTS = {"tessedit_do_invert": "1", "invert_threshold": "0.7"}
"""Tesseract 5.5's own values of `tesseract_api.ENGINE_VARIABLES`: the shipped variant's engine."""


def as_shipped(engine: InProcessTesseract, shipped: bool) -> None:
    """The engine and the ink-line shortcut as first shipped (``shipped``), or as now."""
    made = tesseract_api._engine(engine.lang, engine.tessdata())
    for name, value in (TESSERACT_DEFAULTS if shipped else tesseract_api.ENGINE_VARIABLES).items():
        made.SetVariable(name, value)
    lines.RUN_TO_TESSERACT = 0.0 if shipped else SHORTCUT


def run_variant(variant: str, pages: list[Page], settings, docs: dict[str, pdfium.PdfDocument], log: dict) -> tuple[dict, float, float]:
    texts: dict[tuple[str, int], str] = {}
    cli = TesseractOcr(settings.tesseract_cmd, settings.tesseract_lang)
    engine = InProcessTesseract(settings.tesseract_lang, settings.tessdata_dir)
    as_shipped(engine, variant == "shipped")
    start_cpu, start_wall = cpu_now(), time.perf_counter()
    for page in pages:
        page_cpu = cpu_now()
        pdfpage = docs[page.name][page.index]
        if variant in ("adaptive", "shipped"):
            texts[(page.name, page.index)] = ocr_page(pdfpage, engine, settings, page.name, page.index + 1, 120)
            log.setdefault("cpu", {}).setdefault(variant, {})[(page.name, page.index)] = cpu_now() - page_cpu
            continue
        dpi = int(variant.split("@")[1])
        bitmap = pdfpage.render(scale=dpi / 72, grayscale=True)
        if variant.startswith("cli"):
            image = bitmap.to_pil()
            image.info[RENDER_DPI_KEY] = dpi
            texts[(page.name, page.index)] = cli.image_to_text(image, timeout=120)
        else:
            read = engine.read_pixels(bytes(bitmap.buffer), bitmap.width, bitmap.height, bitmap.stride, dpi, timeout=120)
            texts[(page.name, page.index)] = read.text
            log.setdefault((page.name, page.index), {})[dpi] = read.line_height_px
        bitmap.close()
        log.setdefault("cpu", {}).setdefault(variant, {})[(page.name, page.index)] = cpu_now() - page_cpu
    spent = cpu_now() - start_cpu, time.perf_counter() - start_wall
    as_shipped(engine, False)
    return texts, *spent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--per-class", type=int, default=8, help="text-layer pages per class (spread over the class)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    os.environ["OMP_THREAD_LIMIT"] = "1"
    settings = load_settings()
    docs: dict[str, pdfium.PdfDocument] = {}
    pages = pick_pages(args.per_class, docs)
    variants = ["cli@300", "tesserocr@200", "tesserocr@300", "shipped", "adaptive"]
    results = {v: Result() for v in variants}
    heights: dict = {}
    # Warm both: the engine's model load happens once per worker process, not per page.
    InProcessTesseract(settings.tesseract_lang, settings.tessdata_dir).image_to_text(
        docs[pages[0].name][pages[0].index].render(scale=1).to_pil(), timeout=60)
    for _ in range(args.rounds):
        for variant in variants:
            texts, cpu, wall = run_variant(variant, pages, settings, docs, heights)
            results[variant].text = texts
            results[variant].cpu.append(cpu)
            results[variant].wall.append(wall)

    def errors(variant: str, selected: list[Page]) -> float:
        wrong = total = 0
        for page in selected:
            if page.key is None:
                w, t = word_error(results["cli@300"].text[(page.name, page.index)], results[variant].text[(page.name, page.index)])
            else:
                w, t = word_error(page.key, results[variant].text[(page.name, page.index)])
            wrong, total = wrong + w, total + t
        return wrong / max(1, total)

    classes = list(dict.fromkeys(p.cls for p in pages))
    report: dict = {"pages": len(pages), "rounds": args.rounds, "load_average": os.getloadavg(),
                    "small_text_px": settings.ocr_small_text_px, "variants": {}}  # fmt: skip
    base_cpu = statistics.median(results["cli@300"].cpu)
    base_wall = statistics.median(results["cli@300"].wall)
    for variant in variants:
        cpu, wall = statistics.median(results[variant].cpu), statistics.median(results[variant].wall)
        report["variants"][variant] = {
            "pages_per_cpu_s": len(pages) / cpu, "speedup_cpu": base_cpu / cpu,
            "pages_per_wall_s": len(pages) / wall, "speedup_wall": base_wall / wall,
            "word_error": {cls: errors(variant, [p for p in pages if p.cls == cls]) for cls in classes},
            "speedup_cpu_by_round": [b / c for b, c in zip(results["cli@300"].cpu, results[variant].cpu, strict=True)],
            "speedup_cpu_by_class": {cls: sum(heights["cpu"]["cli@300"][(p.name, p.index)] for p in pages if p.cls == cls)
                                     / sum(heights["cpu"][variant][(p.name, p.index)] for p in pages if p.cls == cls)
                                     for cls in classes},
        }  # fmt: skip
    # Threshold table: adaptive outcome per threshold, from the 200 and 300 readings.
    table = []
    t200 = statistics.median(results["tesserocr@200"].cpu)
    t300 = statistics.median(results["tesserocr@300"].cpu)
    for px in (0, 20, 22, 24, 25, 26, 28, 30, 35):
        chosen = {}
        reread = 0
        for page in pages:
            line = heights.get((page.name, page.index), {}).get(200)
            small = line is not None and line < px
            reread += small
            chosen[(page.name, page.index)] = results["tesserocr@300" if small else "tesserocr@200"].text[(page.name, page.index)]
        row: dict = {"px": px, "reread_pages": reread,
                     "estimated_speedup_cpu": base_cpu / (t200 + t300 * reread / len(pages))}  # fmt: skip
        for cls in classes:
            wrong = total = 0
            for page in (p for p in pages if p.cls == cls):
                key = page.key if page.key is not None else results["cli@300"].text[(page.name, page.index)]
                w, t = word_error(key, chosen[(page.name, page.index)])
                wrong, total = wrong + w, total + t
            row[cls] = wrong / max(1, total)
        table.append(row)
    report["threshold_table"] = table
    report["line_height_at_200"] = {cls: sorted(heights[(p.name, p.index)][200] or 0 for p in pages if p.cls == cls) for cls in classes}
    if args.json:
        print(json.dumps(report, indent=2, default=str))
        return
    print(f"{len(pages)} pages ({', '.join(f'{c} {sum(p.cls == c for p in pages)}' for c in classes)}), "
          f"{args.rounds} round(s), load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")  # fmt: skip
    print(f"{'variant':15} {'pages/cpu-s':>11} {'x cli':>6} {'pages/s':>8} {'x cli':>6}  word error by class "
          "(x cli by class, cpu, last round; scan-unkeyed: words vs cli@300)")  # fmt: skip
    for variant, row in report["variants"].items():
        errs = "  ".join(f"{cls} {row['word_error'][cls] * 100:5.2f}% ({row['speedup_cpu_by_class'][cls]:.2f}x)" for cls in classes)
        print(f"{variant:15} {row['pages_per_cpu_s']:11.3f} {row['speedup_cpu']:6.2f} {row['pages_per_wall_s']:8.3f} "
              f"{row['speedup_wall']:6.2f}  {errs}")  # fmt: skip
    print("x cli (cpu) by round:", "  ".join(f"{v} {' '.join(f'{x:.2f}' for x in row['speedup_cpu_by_round'])}"
                                           for v, row in report["variants"].items()))  # fmt: skip
    print("threshold (px at 200 dpi) -> pages read at 300, x cli (cpu) if those were read twice (a bound), word error by class:")
    for row in table:
        errs = "  ".join(f"{cls} {row[cls] * 100:5.2f}%" for cls in classes)
        print(f"  {row['px']:3} {row['reread_pages']:3} {row['estimated_speedup_cpu']:5.2f}  {errs}")
    print("median line height at 200 dpi by class:", {c: statistics.median(v) for c, v in report["line_height_at_200"].items()})


if __name__ == "__main__":
    main()
