"""Reading a document's bytes from where the manifest said it is: a local path, an S3 URI, or a
member of an archive or e-mail at either; and expanding containers into their member documents."""

from __future__ import annotations

import io
import logging
import re
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, BinaryIO, TypeVar
from urllib.parse import urlsplit

from legaldoc.config import Settings
from legaldoc.errors import ConfigurationError, DataError, LegaldocError, TransientError, UsageError
from legaldoc.manifest import DocumentSpec
from legaldoc.paths import is_remote, is_remote_listing, source_path, split_container
from legaldoc.pipeline.extract import container_limits
from legaldoc.pipeline.extract.containers import expand, may_have_attachments, read_member
from legaldoc.pipeline.extract.formats import SUPPORTED_SUFFIXES, container_kind
from legaldoc.pipeline.extract.textract import aws_client, calling
from legaldoc.services.textract import guarded_call

log = logging.getLogger("legaldoc.sources")
T = TypeVar("T")


def read_source(source: str, settings: Settings) -> bytes:
    """The bytes of `source`; missing files are DATA errors, unreachable stores TRANSIENT."""
    if split := split_container(source):
        container, member = split
        with open_container(container, settings) as stream:
            return read_member(stream, container, member, container_limits(settings))
    if is_remote(source):
        return _read_s3(source, settings)
    with _local(source) as handle:
        return handle.read()


@contextmanager
def _local(source: str) -> Iterator[BinaryIO]:
    try:
        handle = source_path(source).open("rb")
    except FileNotFoundError:
        raise DataError(f"{source} does not exist any more", hint="restore the file or remove it from the manifest") from None
    except IsADirectoryError:
        raise DataError(f"{source} is a folder, not a document", hint="use a glob entry for folders") from None
    except PermissionError:
        raise ConfigurationError(f"{source} cannot be read: permission denied",
                                 hint="give the worker's user read access") from None  # fmt: skip
    with handle:
        yield handle


@contextmanager
def open_container(container: str, settings: Settings) -> Iterator[BinaryIO]:
    """A seekable stream of an archive or e-mail: the local file itself, or a remote one in memory."""
    if is_remote(container):
        yield io.BytesIO(_read_s3(container, settings, limit_mb=settings.archive_max_mb))
        return
    with _local(container) as handle:
        yield handle


@dataclass
class Expanded:
    """A manifest's documents after archives and e-mails gave up their members."""

    documents: list[DocumentSpec]
    containers: int = 0  # archives and e-mails that held documents
    skipped: list[str] = field(default_factory=list)  # members that are not documents legaldoc reads


def _worth_opening(source: str, settings: Settings) -> bool:
    """Archives always; an e-mail only when its bytes mention an attachment (a cheap look first)."""
    kind = container_kind(source)
    if kind in ("zip", "tar", "msg"):
        return True
    if kind != "eml" or is_remote(source):
        return kind == "eml"
    try:
        with _local(source) as handle:
            data = handle.read()
    except (DataError, ConfigurationError, OSError):
        return False  # extraction reports it
    return may_have_attachments(data)


def expand_documents(documents: Sequence[DocumentSpec], settings: Settings) -> Expanded:
    """Archives replaced by their members and e-mails followed by their attachments, each member a
    document with its container's metadata. A container that cannot be listed stays one document,
    whose extraction then fails with the reason (DATA: a zip bomb, zip slip, damage)."""
    limits = container_limits(settings)
    result = Expanded([])
    seen: set[str] = set()
    listed: list[DocumentSpec] = []
    for spec in documents:  # S3 prefixes and globs: every object they name, listed in bulk
        if not is_remote_listing(spec.source):
            listed.append(spec)
            continue
        objects = list_s3(spec.source, settings)
        for uri, _etag, _size in objects:
            if uri.rsplit("/", 1)[-1].lower().endswith(tuple(SUPPORTED_SUFFIXES)):
                listed.append(DocumentSpec(source=uri, metadata=dict(spec.metadata)))
            else:
                result.skipped.append(uri)
    for spec in listed:
        sources = [spec.source]
        if _worth_opening(spec.source, settings):
            try:
                with open_container(spec.source, settings) as stream:
                    expansion = expand(stream, spec.source, limits)
            except (DataError, ConfigurationError, TransientError) as exc:
                log.warning("%s stays one document: %s", spec.source, exc)
            else:
                sources = expansion.sources
                result.skipped.extend(expansion.skipped)
                result.containers += sources != [spec.source]
                for problem in expansion.problems:  # the document's extraction reports it as a failure
                    log.info("%s stays one document: %s", spec.source, problem)
        if sources == [spec.source]:  # most documents: no container, the spec as it came
            if spec.source not in seen:
                seen.add(spec.source)
                result.documents.append(spec)
            continue
        for source in sources:
            if source not in seen:
                seen.add(source)
                result.documents.append(spec if source == spec.source else DocumentSpec(source=source, metadata=dict(spec.metadata)))
    return result


def _glob_regex(pattern: str) -> re.Pattern[str]:
    """A key glob as a regex: ``**/`` any folders (or none), ``*`` and ``?`` within one folder."""
    out, index = [], 0
    while index < len(pattern):
        if pattern.startswith("**/", index):
            out.append("(?:.*/)?")
            index += 3
        elif pattern.startswith("**", index):
            out.append(".*")
            index += 2
        elif pattern[index] == "*":
            out.append("[^/]*")
            index += 1
        elif pattern[index] == "?":
            out.append("[^/]")
            index += 1
        else:
            out.append(re.escape(pattern[index]))
            index += 1
    return re.compile("".join(out) + r"\Z")


def list_s3(pattern: str, settings: Settings) -> list[tuple[str, str, int]]:
    """(uri, ETag, size) of every object under an ``s3://`` prefix or matching an ``s3://`` glob,
    listed with the paginator (1,000 keys a call) through the shared limiter."""
    bucket, _, key_pattern = pattern.removeprefix("s3://").partition("/")
    wildcard = min((i for i, ch in enumerate(key_pattern) if ch in "*?["), default=len(key_pattern))
    prefix = key_pattern[:wildcard]
    matcher = _glob_regex(key_pattern) if wildcard < len(key_pattern) else None
    client = aws_client("s3", settings.s3_endpoint_url)
    found: list[tuple[str, str, int]] = []

    def pages() -> list[dict]:
        return list(client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix))

    for page in _s3_call(settings, f"s3://{bucket}/{prefix}", pages):
        for item in page.get("Contents", []):
            key = item["Key"]
            if key.endswith("/") or (matcher is not None and not matcher.match(key)):
                continue
            found.append((f"s3://{bucket}/{key}", str(item.get("ETag", "")).strip('"'), int(item.get("Size", 0))))
    if not found:
        raise UsageError(f"{pattern} names no objects", hint="check the bucket, the prefix and the pattern")
    return found


def _s3_call(settings: Settings, what: str, function: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """One S3 request, counted by the shared rate limit (provider ``s3``), its errors explained."""
    result: T = guarded_call(settings, "s3")(calling, what, function, *args, **kwargs)
    return result


def s3_stamp(uri: str, settings: Settings) -> str:
    """An S3 object's identity without its bytes: ETag and size (one HEAD). An object whose stamp is
    the one its document was processed from is unchanged, and is skipped without being downloaded."""
    bucket, _, key = uri.removeprefix("s3://").partition("/")
    client = aws_client("s3", settings.s3_endpoint_url)
    with _s3_errors(uri):
        head = _s3_call(settings, uri, client.head_object, Bucket=bucket, Key=key)
    return f"{str(head.get('ETag', '')).strip(chr(34))}:{head['ContentLength']}"


@contextmanager
def _s3_errors(uri: str) -> Iterator[None]:
    """S3's answers as our errors: a missing object is DATA, a refusal CONFIGURATION, the rest TRANSIENT."""
    try:
        yield
    except LegaldocError:
        raise
    except Exception as exc:
        code = str(getattr(exc, "response", {}).get("Error", {}).get("Code", ""))
        if code in ("NoSuchKey", "404"):
            raise DataError(f"{uri} does not exist", hint="check the bucket and key in the manifest") from None
        if code in ("AccessDenied", "403", "InvalidAccessKeyId", "SignatureDoesNotMatch"):
            raise ConfigurationError(f"{uri}: access denied ({code})", hint="check the worker's AWS credentials") from None
        raise TransientError(f"{uri}: S3 answered {code or exc}") from None


def _read_s3(uri: str, settings: Settings, limit_mb: float | None = None) -> bytes:
    parts = urlsplit(uri)
    bucket, key = parts.netloc, parts.path.lstrip("/")
    client = aws_client("s3", settings.s3_endpoint_url)  # one per process, the SDK's standard retry mode
    with _s3_errors(uri):
        head = _s3_call(settings, uri, client.head_object, Bucket=bucket, Key=key)
        limit_mb = limit_mb or settings.max_file_mb
        if head["ContentLength"] > limit_mb * 1024 * 1024:
            raise DataError(f"{uri} is {head['ContentLength'] / 1e6:.0f} MB, over the {limit_mb:.0f} MB limit",
                            hint="raise LEGALDOC_MAX_FILE_MB or split the file")  # fmt: skip
        data: bytes = _s3_call(settings, uri, lambda: client.get_object(Bucket=bucket, Key=key)["Body"].read())
        return data
