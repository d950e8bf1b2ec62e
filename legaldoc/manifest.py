"""Batch manifests: YAML read safely, size-capped, validated, and expanded to a list of documents.

Errors name the file, the line and the field, and say what is expected.
"""

from __future__ import annotations

import glob as globlib
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from legaldoc.errors import UsageError
from legaldoc.paths import source_text
from legaldoc.queues import DEFAULT_PRIORITY, parse_priority

REMOTE_SCHEMES = ("s3://",)


class Options(BaseModel):
    """Per-batch options; unset ones fall back to Settings."""

    model_config = ConfigDict(extra="forbid")

    ocr: str | None = None
    entities: str | None = None
    skip_processed: bool = True


class Entry(BaseModel):
    """One line of `documents:`: exactly one of path, glob or uri, with optional metadata."""

    model_config = ConfigDict(extra="forbid")

    path: str | None = None
    glob: str | None = None
    uri: str | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _exactly_one(self) -> Entry:
        given = [name for name in ("path", "glob", "uri") if getattr(self, name)]
        if len(given) != 1:
            raise ValueError("each document needs exactly one of 'path', 'glob' or 'uri'")
        if self.uri and not self.uri.startswith(REMOTE_SCHEMES):
            raise ValueError(f"uri must start with {' or '.join(REMOTE_SCHEMES)}")
        return self


class Manifest(BaseModel):
    """A batch: which documents, which project, how urgent."""

    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(None, min_length=1, max_length=200)
    project: str = Field(min_length=1, max_length=200)
    priority: int = DEFAULT_PRIORITY
    options: Options = Field(default_factory=Options)
    documents: list[Entry] = Field(min_length=1)

    @field_validator("priority", mode="before")
    @classmethod
    def _priority(cls, value: Any) -> int:
        return parse_priority(value)


class DocumentSpec(BaseModel):
    """One document of a batch: a local absolute path or a remote URI, with its metadata."""

    source: str
    metadata: dict[str, Any] = Field(default_factory=dict)


class LoadedManifest(BaseModel):
    """A validated manifest with its documents expanded and de-duplicated."""

    path: Path
    name: str
    lock_name: str
    manifest: Manifest
    documents: list[DocumentSpec]


def _line_of(node: yaml.Node | None, location: tuple[Any, ...]) -> int | None:
    """The 1-based line of the YAML node at a pydantic error location, as near as it can be found."""
    line = node.start_mark.line + 1 if node is not None else None
    for part in location:
        if isinstance(node, yaml.MappingNode):
            match = next((value for key, value in node.value if key.value == part), None)
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
            match = node.value[part]
        else:
            match = None
        if match is None:
            break
        node = match
        line = node.start_mark.line + 1
    return line


def _describe(location: tuple[Any, ...]) -> str:
    text = ""
    for part in location:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "(top level)"


def parse_manifest(text: str, path: Path) -> Manifest:
    """Validate manifest text; raise UsageError naming the line and field on any problem."""
    try:
        data = yaml.safe_load(text)
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f":{mark.line + 1}" if mark else ""
        raise UsageError(f"{path}{where}: not valid YAML: {getattr(exc, 'problem', exc)}") from None
    if not isinstance(data, dict):
        raise UsageError(f"{path}: a manifest is a mapping with at least 'project' and 'documents'")
    try:
        return Manifest.model_validate(data)
    except ValidationError as exc:
        problems = []
        for error in exc.errors()[:10]:
            location = tuple(p for p in error["loc"] if not (isinstance(p, str) and p.startswith("function-")))
            line = _line_of(root, location)
            message = error["msg"].removeprefix("Value error, ")
            problems.append(f"{path}:{line or '?'}: {_describe(location)}: {message}")
        raise UsageError("invalid manifest\n  " + "\n  ".join(problems),
                         hint="see manifests/sample.yaml for the format") from None  # fmt: skip


def _expand(entry: Entry, base: Path, manifest_path: Path) -> list[DocumentSpec]:
    if entry.uri:
        return [DocumentSpec(source=entry.uri, metadata=entry.metadata)]  # a prefix (ends in /) is listed at submit
    if entry.glob and entry.glob.startswith(REMOTE_SCHEMES):
        return [DocumentSpec(source=entry.glob, metadata=entry.metadata)]  # listed at submit, like a prefix
    if entry.path:
        path = (base / entry.path).resolve()
        if not path.is_file():
            raise UsageError(f"{manifest_path}: document {entry.path!r} does not exist (looked for {source_text(path)})")
        return [DocumentSpec(source=source_text(path), metadata=entry.metadata)]
    assert entry.glob, "Entry._exactly_one guarantees path, glob or uri"
    pattern = entry.glob if Path(entry.glob).is_absolute() else str(base / entry.glob)
    matches = sorted(Path(p).resolve() for p in globlib.glob(pattern, recursive=True))
    files = [p for p in matches if p.is_file() and not p.name.startswith(".")]
    if not files:
        raise UsageError(f"{manifest_path}: glob {entry.glob!r} matches no files (searched {source_text(pattern)})")
    return [DocumentSpec(source=source_text(p), metadata=entry.metadata) for p in files]


def load_manifest(path: Path, *, max_mb: float = 50.0, now: datetime | None = None) -> LoadedManifest:
    """Read, validate and expand a manifest file. Duplicate documents collapse to one."""
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise UsageError(f"cannot read manifest {path}: {exc.strerror}") from None
    if size > max_mb * 1024 * 1024:
        raise UsageError(f"{path} is {size / 1048576:.1f} MB; manifests are limited to {max_mb:g} MB",
                         hint="split the batch or raise LEGALDOC_MANIFEST_MAX_MB")  # fmt: skip
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"cannot read manifest {path}: {exc}") from None
    manifest = parse_manifest(text, path)
    base = path.resolve().parent
    documents: dict[str, DocumentSpec] = {}
    for entry in manifest.documents:
        for spec in _expand(entry, base, path):
            if spec.source in documents:
                documents[spec.source].metadata.update(spec.metadata)
            else:
                documents[spec.source] = spec
    stamp = (now or datetime.now(UTC)).strftime("%Y%m%d-%H%M%S")
    lock_name = manifest.name or path.stem
    return LoadedManifest(
        path=path.resolve(), name=manifest.name or f"{path.stem}-{stamp}", lock_name=lock_name,
        manifest=manifest, documents=list(documents.values()),
    )  # fmt: skip
