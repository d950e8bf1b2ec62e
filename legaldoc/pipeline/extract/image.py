"""PNG, JPEG and TIFF: every frame is a page, read by OCR."""

from __future__ import annotations

import io
import warnings

from PIL import Image, ImageSequence, UnidentifiedImageError

from legaldoc.config import Settings
from legaldoc.errors import ConfigurationError, DataError, DocumentTooLarge
from legaldoc.models import ExtractedDocument
from legaldoc.pipeline.extract.ocr import OcrProvider
from legaldoc.pipeline.extract.textutil import Deadline, assemble, clean_text


def open_bounded(data: bytes, max_pixels: int) -> Image.Image:
    """The image decoded, refused before decoding when its header claims more than ``max_pixels``
    (PIL's decompression-bomb limit, set explicitly: a warning above it is an error too)."""
    Image.MAX_IMAGE_PIXELS = max_pixels
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        image = Image.open(io.BytesIO(data))
        _check_frame(image, max_pixels, 1)
        image.load()
    return image


def _check_frame(frame: Image.Image, max_pixels: int, number: int) -> None:
    if frame.width * frame.height > max_pixels:
        raise Image.DecompressionBombError(
            f"frame {number} is {frame.width} x {frame.height} pixels, over the limit of {max_pixels}")  # fmt: skip


def extract_image(
    data: bytes, source: str, settings: Settings, ocr: OcrProvider | None, deadline: Deadline
) -> ExtractedDocument:
    if ocr is None:
        raise ConfigurationError(f"{source} is an image and needs OCR, but no OCR provider is set")
    try:
        image = open_bounded(data, settings.ocr_max_pixels)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise DocumentTooLarge(
            f"{source} is an image too large to decode safely ({exc})",
            hint="raise LEGALDOC_OCR_MAX_PIXELS, or scale the image down (300 dpi is plenty for OCR)",
        ) from exc
    except (UnidentifiedImageError, OSError) as exc:
        raise DataError(f"{source} is not a readable image ({exc})", hint="re-export it as PNG, TIFF or PDF") from exc
    pages = []
    for number, frame in enumerate(ImageSequence.Iterator(image), start=1):
        if number > settings.max_pages:
            raise DocumentTooLarge(f"{source} has more than {settings.max_pages} frames")
        deadline.check()
        try:
            _check_frame(frame, settings.ocr_max_pixels, number)  # a later frame's header may claim more
        except Image.DecompressionBombError as exc:
            raise DocumentTooLarge(f"{source} is an image too large to decode safely ({exc})",
                                   hint="raise LEGALDOC_OCR_MAX_PIXELS, or scale the image down") from exc  # fmt: skip
        timeout = max(1.0, min(settings.ocr_page_timeout, deadline.remaining()))
        pages.append((clean_text(ocr.image_to_text(frame.copy(), timeout=timeout)), True, ocr.name))
    return assemble("image", pages, {"format": image.format, "frames": len(pages)})
