"""Which file names legaldoc reads as documents, and which as containers of documents."""

from __future__ import annotations

DOCUMENT_SUFFIXES = frozenset(
    [
        ".pdf",
        ".docx",
        ".doc",
        ".wpd",
        ".eml",
        ".msg",
        ".txt",
        ".text",
        ".html",
        ".htm",
        ".png",
        ".jpg",
        ".jpeg",
        ".tif",
        ".tiff",
    ]
)
"""Documents in their own right (an e-mail is one, and a container of its attachments too)."""

ARCHIVE_SUFFIXES = {
    ".zip": "zip",
    ".tar": "tar", ".tar.gz": "tar", ".tgz": "tar", ".tar.bz2": "tar", ".tbz2": "tar", ".tar.xz": "tar", ".txz": "tar",
}  # fmt: skip
"""Archives: replaced by their members, like a folder."""

MAIL_SUFFIXES = {".eml": "eml", ".msg": "msg"}
"""E-mails: documents themselves, and containers of their attachments."""

SUPPORTED_SUFFIXES = DOCUMENT_SUFFIXES | frozenset(ARCHIVE_SUFFIXES)
_CONTAINERS = ARCHIVE_SUFFIXES | MAIL_SUFFIXES
_CONTAINER_ENDINGS = tuple(_CONTAINERS)


def container_kind(name: str) -> str | None:
    """ "zip", "tar", "eml" or "msg" when the name says the file holds other documents, else None."""
    lowered = name.lower()
    if not lowered.endswith(_CONTAINER_ENDINGS):  # most names: one C call
        return None
    lowered = lowered.rsplit("/", 1)[-1]
    for suffix, kind in _CONTAINERS.items():
        if lowered.endswith(suffix):
            return kind
    return None


def is_archive_name(name: str) -> bool:
    kind = container_kind(name)
    return kind in ("zip", "tar")


def is_supported_name(name: str) -> bool:
    """A file legaldoc reads: a document, an e-mail or an archive (by its name's suffix)."""
    lowered = name.lower().rsplit("/", 1)[-1]
    return container_kind(lowered) is not None or any(
        lowered.endswith(s) for s in DOCUMENT_SUFFIXES
    )
