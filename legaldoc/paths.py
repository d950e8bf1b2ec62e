"""Document sources as text: file names that are not UTF-8, and members of archives and e-mails.

A source is the one string that names a document everywhere (database, messages, Redis, screens):

- a local absolute path, `/matters/acme/complaint.pdf`;
- a remote object, `s3://bucket/key.pdf`;
- a member of a container, `/matters/acme/production.zip!/vol1/exhibit-3.pdf`, nested as deep as the
  limits allow (`outer.zip!/inner.tar.gz!/a.pdf`, `notice.eml!/order.pdf`).

File names on Linux are bytes. A name that is not valid UTF-8 cannot be stored in SQLite, PostgreSQL
or Redis as Python hands it over (lone surrogates), so its bad bytes are written as `\\xNN` escapes:
the same text is shown to the user and turned back into the exact bytes when the file is opened.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

MEMBER_SEPARATOR = "!/"
"""Between a container and the member inside it: `production.zip!/vol1/a.pdf`."""

_ESCAPED_BYTE = re.compile(rb"\\x([89a-fA-F][0-9a-fA-F])")


def source_text(name: str | os.PathLike[str]) -> str:
    """`name` as text every store accepts: bytes of the name that are not UTF-8 become `\\xNN`."""
    text = os.fspath(name)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        try:
            raw = os.fsencode(text)  # surrogate-escaped bytes back to the bytes on disk
        except UnicodeEncodeError:
            return text.encode("utf-8", "backslashreplace").decode("ascii", "strict")
        return raw.decode("utf-8", "backslashreplace")
    return text


def source_path(text: str) -> Path:
    """The local path a source's text names, with `\\xNN` escapes turned back into the name's bytes."""
    path = Path(text)
    if "\\x" not in text or path.exists():
        return path
    raw = _ESCAPED_BYTE.sub(lambda match: bytes([int(match.group(1), 16)]), text.encode("utf-8"))
    return Path(os.fsdecode(raw))


def is_remote(source: str) -> bool:
    return source.startswith("s3://")


def is_remote_listing(source: str) -> bool:
    """An S3 prefix (``s3://bucket/matter/``) or glob (``s3://bucket/matter/**/*.pdf``): many objects,
    listed at submit."""
    return is_remote(source) and (source.endswith("/") or any(ch in source for ch in "*?["))


def split_container(source: str, exists: bool | None = None) -> tuple[str, str] | None:
    """(container, member path) when `source` names a member of a container, else None.

    A local file whose own name holds `!/` (a folder called `drafts!`) is a file, not a member:
    the first prefix that is an existing file (or any remote object) is the container.
    """
    if MEMBER_SEPARATOR not in source:
        return None
    if not is_remote(source) and (exists if exists is not None else source_path(source).is_file()):
        return None
    start = 0
    while (index := source.find(MEMBER_SEPARATOR, start)) != -1:
        container = source[:index]
        if is_remote(container) or source_path(container).is_file():
            return container, source[index + len(MEMBER_SEPARATOR) :]
        start = index + 1
    return None


def member_source(container: str, member: str) -> str:
    return f"{container}{MEMBER_SEPARATOR}{member}"


def display_name(source: str) -> str:
    """The last part of a source: a file name, or a member's name inside its container."""
    return source.rsplit(MEMBER_SEPARATOR, 1)[-1].rsplit("/", 1)[-1]
