"""Reading a document's bytes from where the manifest said it is: a local path, an S3 URI, or a
member of an archive or e-mail at either; and expanding containers into their member documents."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import BinaryIO
from urllib.parse import urlsplit

from legaldoc.config import Settings
from legaldoc.errors import ConfigurationError, DataError, TransientError
from legaldoc.manifest import DocumentSpec
from legaldoc.paths import is_remote, source_path, split_container
from legaldoc.pipeline.extract import container_limits
from legaldoc.pipeline.extract.containers import expand, may_have_attachments, read_member
from legaldoc.pipeline.extract.formats import container_kind

log = logging.getLogger("legaldoc.sources")


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
    for spec in documents:
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
        for source in sources:
            if source not in seen:
                seen.add(source)
                result.documents.append(DocumentSpec(source=source, metadata=dict(spec.metadata)))
    return result


def _read_s3(uri: str, settings: Settings, limit_mb: float | None = None) -> bytes:
    try:
        import boto3
        from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError
    except ImportError:
        raise ConfigurationError(f"{uri} needs boto3", hint="pip install 'legaldoc[aws]'") from None
    parts = urlsplit(uri)
    bucket, key = parts.netloc, parts.path.lstrip("/")
    client = boto3.client("s3", endpoint_url=settings.s3_endpoint_url or None)
    try:
        head = client.head_object(Bucket=bucket, Key=key)
        limit_mb = limit_mb or settings.max_file_mb
        if head["ContentLength"] > limit_mb * 1024 * 1024:
            raise DataError(f"{uri} is {head['ContentLength'] / 1e6:.0f} MB, over the {limit_mb:.0f} MB limit",
                            hint="raise LEGALDOC_MAX_FILE_MB or split the file")  # fmt: skip
        return client.get_object(Bucket=bucket, Key=key)["Body"].read()
    except NoCredentialsError:
        raise ConfigurationError(f"{uri}: no AWS credentials", hint="set AWS_PROFILE or AWS_ACCESS_KEY_ID") from None
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "")
        if code in ("NoSuchKey", "404", "NoSuchBucket"):
            raise DataError(f"{uri} does not exist", hint="check the bucket and key in the manifest") from None
        if code in ("AccessDenied", "403", "InvalidAccessKeyId", "SignatureDoesNotMatch"):
            raise ConfigurationError(f"{uri}: access denied ({code})", hint="check the worker's AWS credentials") from None
        raise TransientError(f"{uri}: S3 answered {code or exc}") from None
    except BotoCoreError as exc:
        raise TransientError(f"{uri}: {exc}") from None
