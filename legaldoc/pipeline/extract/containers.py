"""Containers of documents: zip and tar archives, and e-mails with attachments (.eml, .msg).

An archive is replaced by its members, like a folder; an e-mail is a document itself and its
attachments are documents too. Each member is named by a source `container!/member` (see
`legaldoc.paths`) and is read from the container when its document is extracted, so nothing is
unpacked to disk and no member name can point outside its archive.

Limits make hostile archives DATA failures with a clear message instead of a full disk or a worker
that never returns: members per container, total uncompressed size (declared sizes are summed
before anything is inflated, so a zip bomb is refused without inflating it), bytes read per member
(capped while reading, whatever the archive declares), and nesting depth. An archive whose member
names are absolute or climb out with `..` (zip slip) is refused whole.
"""

from __future__ import annotations

import contextlib
import io
import lzma
import mimetypes
import tarfile
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import Message, MIMEPart
from pathlib import PurePosixPath
from typing import IO, Any, BinaryIO, Protocol

from legaldoc.errors import ConfigurationError, DataError, DocumentTooLarge
from legaldoc.paths import MEMBER_SEPARATOR, member_source, source_text
from legaldoc.pipeline.extract.formats import container_kind, is_supported_name


@dataclass(frozen=True)
class ContainerLimits:
    max_members: int = 10_000
    max_total_bytes: int = 2048 * 1024 * 1024
    max_member_bytes: int = 200 * 1024 * 1024
    max_depth: int = 3


@dataclass(frozen=True)
class Entry:
    """One file inside a container, before it is read."""

    name: str  # as it appears in the member's source: text, bad bytes escaped
    size: int  # uncompressed, as the container declares it


@dataclass
class Expansion:
    """The documents a source turns into: its members (and itself, for an e-mail)."""

    sources: list[str]
    skipped: list[str] = field(default_factory=list)  # members not read: unsupported formats, links
    problems: list[str] = field(
        default_factory=list
    )  # containers left whole because they failed to list


class _Reader(Protocol):
    def entries(self, stream: BinaryIO, source: str) -> Iterator[Entry]: ...

    def read(self, stream: BinaryIO, source: str, name: str, limit: int) -> bytes: ...


def _unsafe(name: str) -> bool:
    parts = PurePosixPath(name.replace("\\", "/")).parts
    return name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":") or ".." in parts


def _too_large(source: str, name: str, size: int, limit: int) -> DocumentTooLarge:
    return DocumentTooLarge(f"{member_source(source, name)} is {size / 1e6:.0f} MB uncompressed, over the "
                            f"{limit / 1048576:.0f} MB limit", hint="raise LEGALDOC_MAX_FILE_MB or split the file")  # fmt: skip


def _read_capped(handle: IO[bytes], source: str, name: str, limit: int) -> bytes:
    data = handle.read(limit + 1)
    if len(data) > limit:
        raise _too_large(source, name, len(data), limit)
    return data


class _Zip:
    """One zip archive, its central directory read once."""

    _ERRORS = (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, ValueError, zlib.error, NotImplementedError, OSError)

    def __init__(self) -> None:
        self._archive: zipfile.ZipFile | None = None
        self._infos: dict[str, zipfile.ZipInfo] = {}

    def _open(self, stream: BinaryIO, source: str) -> zipfile.ZipFile:
        if self._archive is None:
            try:
                self._archive = zipfile.ZipFile(stream)
            except self._ERRORS as exc:
                raise DataError(f"{source} is not a readable zip archive ({exc})", hint="re-create the archive") from None
            self._infos = {source_text(i.filename): i for i in self._archive.infolist() if not i.is_dir()}
        return self._archive

    def entries(self, stream: BinaryIO, source: str) -> Iterator[Entry]:
        self._open(stream, source)
        for name, info in self._infos.items():
            yield Entry(name, info.file_size)

    def read(self, stream: BinaryIO, source: str, name: str, limit: int) -> bytes:
        archive = self._open(stream, source)
        info = self._infos.get(name)
        if info is None:
            raise KeyError(name)
        if info.file_size > limit:
            raise _too_large(source, name, info.file_size, limit)
        try:
            with archive.open(info) as handle:
                return _read_capped(handle, source, name, limit)
        except RuntimeError as exc:  # encrypted members
            raise DataError(f"{member_source(source, name)} cannot be read: {exc}",
                            hint="extract it with its password and submit the files") from None  # fmt: skip
        except self._ERRORS as exc:
            raise DataError(f"{member_source(source, name)} is damaged inside its archive ({exc})",
                            hint="re-create the archive") from None  # fmt: skip


class _Tar:
    """One tar archive (plain or compressed), its headers read once, in order."""

    _ERRORS = (tarfile.TarError, EOFError, OSError, zlib.error, lzma.LZMAError, ValueError)

    def __init__(self) -> None:
        self._archive: tarfile.TarFile | None = None
        self._infos: dict[str, tarfile.TarInfo] = {}

    def entries(self, stream: BinaryIO, source: str) -> Iterator[Entry]:
        if self._archive is None:
            stream.seek(0)
            try:
                self._archive = tarfile.open(fileobj=stream, mode="r:*")  # noqa: SIM115 - the caller owns the stream
                for info in self._archive:  # headers one by one: a limit stops a hostile one early
                    name = source_text(info.name)
                    if info.isfile():
                        self._infos[name] = info
                        yield Entry(name, info.size)
                    elif not info.isdir():  # links and devices are not documents; say so
                        yield Entry(name, -1)
            except self._ERRORS as exc:
                raise DataError(f"{source} is not a readable tar archive ({exc})", hint="re-create the archive") from None
            return
        for name, info in self._infos.items():
            yield Entry(name, info.size)

    def read(self, stream: BinaryIO, source: str, name: str, limit: int) -> bytes:
        if self._archive is None:
            for _ in self.entries(stream, source):
                pass
        assert self._archive is not None, "entries() opened the archive"
        info = self._infos.get(name)
        if info is None:
            raise KeyError(name)
        if info.size > limit:
            raise _too_large(source, name, info.size, limit)
        try:
            handle = self._archive.extractfile(info)
            assert handle is not None, "extractfile returns a file for regular members"
            return _read_capped(handle, source, name, limit)
        except self._ERRORS as exc:
            raise DataError(f"{member_source(source, name)} is damaged inside its archive ({exc})",
                            hint="re-create the archive") from None  # fmt: skip


def _attachment_name(filename: str | None, content_type: str, index: int, taken: set[str]) -> str:
    name = (filename or "").replace("/", "_").replace("\\", "_").strip() or f"attachment-{index}"
    if "." not in name.rsplit("/", 1)[-1]:
        name += mimetypes.guess_extension(content_type) or ""
    stem, dot, suffix = name.rpartition(".")
    unique, n = name, 2
    while unique.lower() in taken:
        unique = f"{stem} ({n}).{suffix}" if dot else f"{name} ({n})"
        n += 1
    taken.add(unique.lower())
    return unique


class _Mail:
    """An e-mail's attachments as members, decoded once; each kind of e-mail says how to find them."""

    def __init__(self) -> None:
        self._items: dict[str, bytes] | None = None

    def _attachments(self, stream: BinaryIO, source: str) -> Iterator[tuple[str, bytes]]:
        raise NotImplementedError

    def _decoded(self, stream: BinaryIO, source: str) -> dict[str, bytes]:
        if self._items is None:
            self._items = {source_text(name): data for name, data in self._attachments(stream, source)}
        return self._items

    def entries(self, stream: BinaryIO, source: str) -> Iterator[Entry]:
        for name, data in self._decoded(stream, source).items():
            yield Entry(name, len(data))

    def read(self, stream: BinaryIO, source: str, name: str, limit: int) -> bytes:
        data = self._decoded(stream, source).get(name)
        if data is None:
            raise KeyError(name)
        if len(data) > limit:
            raise _too_large(source, name, len(data), limit)
        return data


class _Eml(_Mail):
    """RFC 822 e-mail: attachments, and forwarded messages (message/rfc822) as `.eml` members."""

    def _attachments(self, stream: BinaryIO, source: str) -> Iterator[tuple[str, bytes]]:
        stream.seek(0)
        try:
            message = message_from_bytes(stream.read(), policy=policy.default)
        except (LookupError, ValueError, TypeError) as exc:
            raise DataError(f"{source} is an e-mail that cannot be decoded ({exc})") from None
        taken: set[str] = set()
        for index, part in enumerate(_attachment_parts(message), start=1):
            content_type = part.get_content_type()
            if content_type == "message/rfc822":
                name = _attachment_name(part.get_filename() or f"forwarded-{index}.eml", content_type, index, taken)
                inner = part.get_payload(0)
                data = inner.as_bytes() if isinstance(inner, Message) else str(inner).encode()
                yield (name if name.lower().endswith(".eml") else name + ".eml"), data
            else:
                payload = part.get_payload(decode=True)
                yield _attachment_name(part.get_filename(), content_type, index, taken), payload if isinstance(payload, bytes) else b""


def _attachment_parts(message: MIMEPart) -> Iterator[MIMEPart]:
    """Parts that are attachments, wherever they sit in the MIME tree (not forwarded messages' own)."""
    for part in message.iter_parts() if message.is_multipart() else ():
        if part.get_content_type() == "message/rfc822":
            yield part
        elif part.is_multipart():
            yield from _attachment_parts(part)
        elif part.get_content_disposition() == "attachment" or (
            part.get_filename() and part.get_content_maintype() not in ("text", "multipart")
        ):
            yield part


def open_msg(data: bytes, source: str) -> Any:
    """An Outlook .msg opened by extract-msg (an optional dependency)."""
    try:
        import extract_msg
    except ImportError:
        raise ConfigurationError(f"{source} is an Outlook .msg file and extract-msg is not installed",
                                 hint="pip install 'legaldoc[msg]'") from None  # fmt: skip
    try:
        return extract_msg.openMsg(data, delayAttachments=False)
    except Exception as exc:  # extract-msg raises many kinds for a damaged file; all mean the same
        raise DataError(f"{source} is not a readable Outlook .msg file ({type(exc).__name__}: {exc})",
                        hint="re-export it from Outlook, or save it as .eml") from None  # fmt: skip


class _Msg(_Mail):
    """Outlook .msg: file attachments, and attached messages as `.msg` members."""

    def _attachments(self, stream: BinaryIO, source: str) -> Iterator[tuple[str, bytes]]:
        stream.seek(0)
        message = open_msg(stream.read(), source)
        with contextlib.closing(message):
            taken: set[str] = set()
            for index, attachment in enumerate(message.attachments, start=1):
                data = attachment.data
                if data is None or getattr(attachment, "hidden", False):
                    continue
                filename = attachment.longFilename or attachment.shortFilename or attachment.displayName
                if isinstance(data, bytes):
                    content_type = attachment.mimetype or "application/octet-stream"
                    yield _attachment_name(filename, content_type, index, taken), data
                elif hasattr(data, "exportBytes"):  # an embedded message
                    stem = (filename or f"attached-{index}").removesuffix(".msg")
                    yield _attachment_name(stem + ".msg", "application/vnd.ms-outlook", index, taken), data.exportBytes()


_READERS: dict[str, type[_Reader]] = {"zip": _Zip, "tar": _Tar, "eml": _Eml, "msg": _Msg}


def _reader(kind: str) -> _Reader:
    """A reader for one container: it keeps what it has parsed, so read it through one reader."""
    return _READERS[kind]()


def _hidden(name: str) -> bool:
    parts = name.replace("\\", "/").split("/")
    return any(part.startswith(".") for part in parts) or parts[0] == "__MACOSX"


_ATTACHMENT_MARKERS = (b"attachment", b"filename=", b"name=", b"message/rfc822")


def may_have_attachments(data: bytes) -> bool:
    """False when an RFC 822 e-mail surely has no attachment (a cheap look before parsing it)."""
    lowered = data.lower()
    return any(marker in lowered for marker in _ATTACHMENT_MARKERS)


def list_entries(
    stream: BinaryIO, source: str, limits: ContainerLimits, kind: str | None = None, reader: _Reader | None = None
) -> tuple[list[Entry], list[str]]:
    """The documents directly inside a container, and the names it skipped; DataError for a hostile one."""
    kind = kind or container_kind(source)
    if kind is None:
        raise DataError(f"{source} is not an archive or e-mail legaldoc opens")
    documents: list[Entry] = []
    skipped: list[str] = []
    total = 0
    reader = reader or _reader(kind)
    for count, entry in enumerate(reader.entries(stream, source), start=1):
        if _unsafe(entry.name):
            raise DataError(f"{source} holds a member named {entry.name!r} that points outside the archive",
                            hint="this is how zip-slip attacks look; ask the sender for a clean archive")  # fmt: skip
        total += max(entry.size, 0)
        if count > limits.max_members:
            raise DataError(f"{source} holds more than {limits.max_members:,} files",
                            hint="split the archive or raise LEGALDOC_ARCHIVE_MAX_MEMBERS")  # fmt: skip
        if total > limits.max_total_bytes:
            raise DataError(f"{source} would inflate to more than {limits.max_total_bytes / 1048576:,.0f} MB "
                            "(a zip bomb, or an archive too large to take whole)",
                            hint="split the archive or raise LEGALDOC_ARCHIVE_MAX_MB")  # fmt: skip
        if _hidden(entry.name):
            continue  # dot files and macOS resource forks, as in folders
        if entry.size < 0 or not is_supported_name(entry.name):
            skipped.append(entry.name)
        else:
            documents.append(entry)
    return documents, skipped


def expand(stream: BinaryIO, source: str, limits: ContainerLimits, depth: int = 1) -> Expansion:
    """The sources of the documents `source` turns into, nested containers expanded to the depth limit.

    An archive with no readable member, or one that fails to list (a bomb, zip slip, damage), stays
    one document: its extraction then fails as DATA with the reason. An e-mail always stays a
    document, whatever its attachments do.
    """
    kind = container_kind(source)
    keeps_self = kind in ("eml", "msg")
    if kind is None:
        return Expansion([source])
    reader = _reader(kind)
    try:
        entries, skipped = list_entries(stream, source, limits, kind, reader)
    except (DataError, ConfigurationError) as exc:
        return Expansion([source], problems=[str(exc)])
    result = Expansion(
        [source] if keeps_self else [], [member_source(source, name) for name in skipped]
    )
    for entry in entries:
        member = member_source(source, entry.name)
        if (
            container_kind(entry.name) is not None
            and depth < limits.max_depth
            and 0 <= entry.size <= limits.max_member_bytes
        ):
            try:
                data = reader.read(stream, source, entry.name, limits.max_member_bytes)
            except (DataError, KeyError):
                result.sources.append(member)  # its extraction says what is wrong with it
                continue
            if container_kind(entry.name) == "eml" and not may_have_attachments(data):
                result.sources.append(member)  # most e-mails have none: skip parsing them
                continue
            inner = expand(io.BytesIO(data), member, limits, depth + 1)
            result.sources.extend(inner.sources)
            result.skipped.extend(inner.skipped)
            result.problems.extend(inner.problems)
        else:
            result.sources.append(member)
    if not result.sources:
        return Expansion([source], result.skipped, result.problems)
    return result


def read_member(
    stream: BinaryIO, container: str, path: str, limits: ContainerLimits, depth: int = 1
) -> bytes:
    """The bytes of member `path` of `container` (`path` may itself cross nested containers)."""
    kind = container_kind(container)
    if kind is None:
        raise DataError(f"{container} is not an archive or e-mail, so it has no member {path}",
                        hint="remove the document and submit again")  # fmt: skip
    if depth > limits.max_depth:
        raise DataError(f"{member_source(container, path)} is nested more than {limits.max_depth} containers deep",
                        hint="unpack the inner archive, or raise LEGALDOC_ARCHIVE_MAX_DEPTH")  # fmt: skip
    reader = _reader(kind)
    names = {entry.name for entry in reader.entries(stream, container)}
    candidates = [path] + [
        path[:i] for i in range(len(path)) if path.startswith(MEMBER_SEPARATOR, i)
    ]
    for name in candidates:
        if name in names:
            data = reader.read(stream, container, name, limits.max_member_bytes)
            if name == path:
                return data
            return read_member(
                io.BytesIO(data),
                member_source(container, name),
                path[len(name) + 2 :],
                limits,
                depth + 1,
            )
    raise DataError(f"{container} holds no member {path}",
                    hint="the container changed since the batch was submitted; submit it again")  # fmt: skip
