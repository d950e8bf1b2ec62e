"""Batch manifests: YAML read safely, size-capped, validated, and expanded to a list of documents.

Errors name the file, the line and the field, and say what is expected. The YAML is parsed once
(libyaml's `CSafeLoader` where PyYAML has it) into nodes, which are checked before any Python value
is built: nesting depth, how far aliases expand (an alias bomb is refused, not stored), NUL
characters, and tags with no JSON form. Every failure is a `UsageError` (exit 2).
"""

from __future__ import annotations

import fnmatch
import glob as globlib
import os
import stat
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from legaldoc.errors import ManifestError, UsageError
from legaldoc.paths import source_text
from legaldoc.queues import DEFAULT_PRIORITY, parse_priority

REMOTE_SCHEMES = ("s3://",)

MAX_DEPTH = 32
"""Nesting levels of the whole manifest, aliases expanded (`documents` and its entries are 3)."""
MAX_EXPANSION = 4
"""Aliases may make the manifest's values at most this many times as many as it writes out..."""
MIN_EXPANSION_BUDGET = 100_000
"""...or this many values, whichever is more."""
MAX_METADATA_VALUES = 10_000
"""Values (keys, scalars, lists, mappings) in one document's metadata, aliases expanded."""
MAX_PATH_CHARS = 4096
MAX_NAME_BYTES = 255
MAX_GLOB_ENTRIES = 1_000_000
"""Files and folders one local glob may look at: `/*/*/*/...` would walk the whole filesystem (and
through symbolic links that point back up, for ever)."""

_TAG = "tag:yaml.org,2002:"
_JSON_TAGS = frozenset(_TAG + name for name in ("str", "int", "float", "bool", "null", "seq", "map", "timestamp", "merge"))


def json_loader(base: type[Any]) -> type[Any]:
    """A safe loader class on `base` (SafeLoader or CSafeLoader) that keeps dates and times as the text written."""
    loader: type[Any] = type(f"Manifest{base.__name__}", (base,), {})
    loader.add_constructor(_TAG + "timestamp", lambda self, node: self.construct_scalar(node))
    return loader


_Loader = json_loader(getattr(yaml, "CSafeLoader", yaml.SafeLoader))
"""libyaml's parser when PyYAML was built with it (12x faster), else the pure-Python one."""


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

    @field_validator("path", "glob", "uri")
    @classmethod
    def _usable_name(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is None:
            return None
        if "\x00" in value:
            raise ValueError("a file name cannot contain a NUL character")
        if len(value) > MAX_PATH_CHARS:
            raise ValueError(f"{len(value):,} characters; a path is at most {MAX_PATH_CHARS:,}")
        if info.field_name == "uri" or value.startswith(REMOTE_SCHEMES):
            return value
        longest = max((part for part in value.split("/")), key=lambda part: len(part.encode("utf-8", "surrogateescape")))
        if len(longest.encode("utf-8", "surrogateescape")) > MAX_NAME_BYTES:
            raise ValueError(f"a folder or file name of {len(longest.encode('utf-8', 'surrogateescape'))} bytes; "
                             f"names are at most {MAX_NAME_BYTES} bytes")  # fmt: skip
        return value

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


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.MappingNode):
        return [part for pair in node.value for part in pair]
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    return []


def _refuse(path: Path, node: yaml.Node, problem: str, hint: str) -> UsageError:
    return UsageError(f"{path}:{node.start_mark.line + 1}: {problem}", hint=hint)


def _check_scalar(node: yaml.ScalarNode, path: Path) -> None:
    if node.tag not in _JSON_TAGS:
        raise _refuse(path, node, f"the YAML tag {str(node.tag).removeprefix(_TAG)!r} has no place in a manifest",
                      "write plain strings, numbers, true/false, lists and mappings")  # fmt: skip
    if "\x00" in node.value:
        raise _refuse(path, node, "a value contains a NUL character", "remove the \\0 from the value")
    if node.tag == _TAG + "float" and node.value.lstrip("+-").lower() in (".nan", ".inf"):
        raise _refuse(path, node, f"{node.value} is not a number JSON can hold", "quote it to keep it as text")


def _check_nodes(root: yaml.Node, path: Path) -> None:
    """Refuse, before any value is built, what YAML allows and a manifest must not hold.

    Walks each distinct node once (an alias is the node it names, met again), without recursion,
    and works out how many values and how many levels every node stands for once aliases are
    expanded: an alias bomb is counted in microseconds, never built."""
    values: dict[int, int] = {}  # id(node) -> values it stands for, aliases expanded
    height: dict[int, int] = {}  # id(node) -> levels it stands for, aliases expanded
    open_nodes: set[int] = set()
    distinct = 0
    stack: list[tuple[yaml.Node, int, list[yaml.Node] | None]] = [(root, 1, None)]  # children once its own are done
    while stack:
        node, depth, finished = stack.pop()
        key = id(node)
        if finished is not None:
            values[key] = 1 + sum(values[id(child)] for child in finished)
            height[key] = 1 + max((height[id(child)] for child in finished), default=0)
            open_nodes.discard(key)
            continue
        if key in open_nodes:
            raise _refuse(path, node, "an alias refers to a value that contains it",
                          "write the value out instead of the alias")  # fmt: skip
        if key in values:
            if depth + height[key] - 1 > MAX_DEPTH:
                raise _refuse(path, node, f"nested more than {MAX_DEPTH} levels deep (aliases expanded)",
                              "flatten the metadata")  # fmt: skip
            continue
        distinct += 1
        if depth > MAX_DEPTH:
            raise _refuse(path, node, f"nested more than {MAX_DEPTH} levels deep", "flatten the metadata")
        if isinstance(node, yaml.ScalarNode):
            _check_scalar(node, path)
            values[key] = height[key] = 1
            continue
        if node.tag not in _JSON_TAGS:
            raise _refuse(path, node, f"the YAML tag {str(node.tag).removeprefix(_TAG)!r} has no place in a manifest",
                          "write plain strings, numbers, true/false, lists and mappings")  # fmt: skip
        open_nodes.add(key)
        children = _children(node)
        stack.append((node, depth, children))
        for child in reversed(children):
            if type(child) is yaml.ScalarNode and depth < MAX_DEPTH:  # a value of its own: checked here, not stacked
                child_key = id(child)
                if child_key not in values:
                    distinct += 1
                    _check_scalar(child, path)
                    values[child_key] = height[child_key] = 1
            else:
                stack.append((child, depth + 1, None))
    budget = max(MAX_EXPANSION * distinct, MIN_EXPANSION_BUDGET)
    if values[id(root)] > budget:
        raise UsageError(f"{path}: YAML aliases expand the manifest to {values[id(root)]:,} values, from {distinct:,} "
                         f"written out; at most {budget:,} are accepted",
                         hint="write repeated metadata out in full instead of nesting aliases")  # fmt: skip
    for entry in _documents_nodes(root):
        metadata = next((value for name, value in entry.value if name.value == "metadata"), None)
        if metadata is not None and values[id(metadata)] > MAX_METADATA_VALUES:
            raise _refuse(path, metadata, f"this document's metadata holds {values[id(metadata)]:,} values "
                                          f"(aliases expanded); at most {MAX_METADATA_VALUES:,} are accepted",
                          "keep per-document metadata small; put large data in the documents themselves")  # fmt: skip


def _documents_nodes(root: yaml.Node) -> list[yaml.MappingNode]:
    if not isinstance(root, yaml.MappingNode):
        return []
    documents = next((value for name, value in root.value if name.value == "documents"), None)
    if not isinstance(documents, yaml.SequenceNode):
        return []
    return [entry for entry in documents.value if isinstance(entry, yaml.MappingNode)]


def _parse_yaml(text: str, path: Path) -> tuple[Any, yaml.Node | None]:
    """The manifest's data and its root node, parsed once; UsageError for anything YAML refuses."""
    loader = _Loader(text)
    try:
        root = loader.get_single_node()
        if root is None:
            return None, None
        _check_nodes(root, path)
        return loader.construct_document(root), root
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f":{mark.line + 1}" if mark else ""
        raise UsageError(f"{path}{where}: not valid YAML: {getattr(exc, 'problem', None) or exc}",
                         hint="see manifests/sample.yaml for the format") from None  # fmt: skip
    except RecursionError:
        raise UsageError(f"{path}: nested too deeply to read (a manifest nests at most {MAX_DEPTH} levels)",
                         hint="flatten the metadata") from None  # fmt: skip
    finally:
        loader.dispose()


def parse_manifest(text: str, path: Path) -> Manifest:
    """Validate manifest text; raise UsageError naming the line and field on any problem."""
    data, root = _parse_yaml(text, path)
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


def _shown(text: str, limit: int = 160) -> str:
    return repr(text) if len(text) <= limit else repr(text[: limit - 20] + "…" + text[-19:])


def _expand(entry: Entry, base: Path, manifest_path: Path) -> list[DocumentSpec]:
    if entry.uri:
        return [DocumentSpec(source=entry.uri, metadata=entry.metadata)]  # a prefix (ends in /) is listed at submit
    if entry.glob and entry.glob.startswith(REMOTE_SCHEMES):
        return [DocumentSpec(source=entry.glob, metadata=entry.metadata)]  # listed at submit, like a prefix
    try:
        return _expand_local(entry, base, manifest_path)
    except (OSError, ValueError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise UsageError(f"{manifest_path}: cannot look up {_shown(entry.path or entry.glob or '')}: {reason}",
                         hint="fix the path in the manifest") from None  # fmt: skip


class GlobTooBroad(Exception):
    """A glob looked at more files and folders than its budget."""


def bounded_glob(pattern: str, budget: int) -> Iterator[str]:
    """`glob.glob(pattern, recursive=True)` for an absolute pattern, looking at no more than `budget`
    directory entries (`GlobTooBroad` past it) and entering each folder at most once under a `**`
    (a symbolic link to a folder above is not walked again). Hidden names match only a pattern that
    starts with a dot, as in `glob`; a pattern ending in `/` matches folders only, so no document."""
    return (path for path, _ in _glob_entries(pattern, budget))


def _glob_entries(pattern: str, budget: int) -> Iterator[tuple[str, os.DirEntry[str] | None]]:
    """`bounded_glob`'s matches with the directory entry each was found as (None for a name the
    pattern spells out): the entry knows, without a system call, whether it is a symbolic link and
    what kind of file it is."""
    left = [budget]

    def listing(folder: str) -> list[os.DirEntry[str]]:
        try:
            with os.scandir(folder) as entries:
                found = list(entries)
        except OSError:
            return []
        left[0] -= len(found) + 1
        if left[0] < 0:
            raise GlobTooBroad(pattern)
        return found

    def is_dir(entry: os.DirEntry[str]) -> bool:
        try:
            return entry.is_dir()
        except OSError:
            return False

    def below(folder: str, seen: set[tuple[int, int]]) -> Iterator[tuple[str, list[os.DirEntry[str]]]]:
        """`folder` and every folder under it whose names are not hidden, each real folder once, with
        their entries."""
        try:
            info = os.stat(folder)
        except OSError:
            return
        if (info.st_dev, info.st_ino) in seen:
            return
        seen.add((info.st_dev, info.st_ino))
        entries = [e for e in listing(folder) if not e.name.startswith(".")]
        yield folder, entries
        for entry in entries:
            if is_dir(entry):
                yield from below(entry.path, seen)

    def expand(prefix: str, parts: list[str]) -> Iterator[tuple[str, os.DirEntry[str] | None]]:
        while len(parts) > 1 and not globlib.has_magic(parts[0]):  # plain folders: one level, not one per name
            prefix, parts = os.path.join(prefix, parts[0]), parts[1:]
        head, rest = parts[0], parts[1:]
        if head == "**":
            while rest and rest[0] == "**":
                rest = rest[1:]
            for folder, entries in below(prefix, set()):
                if rest:
                    yield from expand(folder, rest)
                else:  # `**` last matches every file and folder under the prefix
                    yield from ((entry.path, entry) for entry in entries)
            return
        if not globlib.has_magic(head):
            path = os.path.join(prefix, head)
            if rest:
                yield from expand(path, rest)
            elif os.path.lexists(path):
                yield path, None
            return
        for entry in listing(prefix):
            if (entry.name.startswith(".") and not head.startswith(".")) or not fnmatch.fnmatchcase(entry.name, head):
                continue
            if not rest:
                yield entry.path, entry
            elif is_dir(entry):
                yield from expand(entry.path, rest)

    if pattern.endswith("/"):
        return
    parts = [part for part in pattern.split("/") if part]
    if parts:
        yield from expand("/", parts)


class _RealPaths:
    """`Path.resolve()` (symbolic links and ``..`` followed) of many files at the cost of one
    `realpath` per folder: a file that is not a symbolic link resolves to its folder's real path and
    its own name. Only a symbolic link, or a name like ``..``, is resolved on its own."""

    def __init__(self) -> None:
        self.folders: dict[str, str] = {}

    def folder(self, path: str) -> str:
        real = self.folders.get(path)
        if real is None:
            real = self.folders[path] = os.path.realpath(path)
        return real

    def of_entry(self, path: str, entry: os.DirEntry[str] | None) -> tuple[str, bool]:
        """(real path, is a regular file or a link to one) of a glob match."""
        try:
            if entry is not None and not entry.is_symlink():
                name = entry.name  # `path` is the listed folder, a slash and the name (os.scandir's join)
                return os.path.join(self.folder(path[: len(path) - len(name) - 1] or "/"), name), entry.is_file()
        except OSError:
            pass
        return self.of_path(path)

    def of_path(self, path: str) -> tuple[str, bool]:
        """(real path, is a regular file or a link to one) of an absolute path: one `lstat` when
        neither it nor its name is a link or ``.``/``..``."""
        folder, name = os.path.split(path)
        if name and name not in (".", "..") and folder:
            real = os.path.join(self.folder(folder), name)
            try:
                info = os.lstat(real)
            except (OSError, ValueError):
                return real, False
            if not stat.S_ISLNK(info.st_mode):
                return real, stat.S_ISREG(info.st_mode)
        real = os.path.realpath(path)
        return real, os.path.isfile(real)


def _path_order(source: str) -> str:
    """The order `sorted()` gives `Path`s (part by part), as a string key: the separator sorts
    before every character a name may hold."""
    return source.replace("/", "\x00")


def _expand_local(entry: Entry, base: Path, manifest_path: Path) -> list[DocumentSpec]:
    real = _RealPaths()
    if entry.path:
        found, is_file = real.of_path(os.path.join(base, entry.path))
        if not is_file:
            raise UsageError(f"{manifest_path}: document {_shown(entry.path)} does not exist "
                             f"(looked for {_shown(source_text(found))})")  # fmt: skip
        return [DocumentSpec(source=source_text(found), metadata=entry.metadata)]
    assert entry.glob, "Entry._exactly_one guarantees path, glob or uri"
    pattern = entry.glob if Path(entry.glob).is_absolute() else str(base / entry.glob)
    try:
        resolved = [real.of_entry(path, found) for path, found in _glob_entries(pattern, MAX_GLOB_ENTRIES)]
    except GlobTooBroad:
        raise UsageError(f"{manifest_path}: glob {_shown(entry.glob)} looks at more than {MAX_GLOB_ENTRIES:,} files and "
                         "folders", hint="name the folder that holds the documents, with fewer wildcards") from None  # fmt: skip
    files = sorted((path for path, is_file in resolved if is_file and not os.path.basename(path).startswith(".")),
                   key=_path_order)  # fmt: skip
    if not files:
        raise UsageError(f"{manifest_path}: glob {_shown(entry.glob)} matches no files "
                         f"(searched {_shown(source_text(pattern))})")  # fmt: skip
    return [DocumentSpec(source=source_text(path), metadata=entry.metadata) for path in files]


def _check_roots(entry: Entry, specs: list[DocumentSpec], roots: Sequence[Path], manifest_path: Path) -> None:
    """Every local document lies under one of `roots` (resolved paths, as `_expand_local` gives
    them: no symbolic link, no ``..``)."""
    prefixes = tuple(str(root).rstrip("/") + "/" for root in roots)
    for spec in specs:
        if spec.source.startswith(REMOTE_SCHEMES) or spec.source.startswith(prefixes):
            continue
        resolved = Path(spec.source)
        if not any(resolved.is_relative_to(root) for root in roots):
            named = f"path {_shown(entry.path)}" if entry.path else f"glob {_shown(entry.glob or '')}"
            shown_roots = ", ".join(str(root) for root in roots)
            raise ManifestError(f"{manifest_path}: document {named} is {_shown(source_text(resolved))}, "
                                f"outside documents_root ({shown_roots})",
                                hint="move the file under documents_root or fix the manifest")  # fmt: skip


def load_manifest(path: Path, *, max_mb: float = 50.0, now: datetime | None = None,
                  roots: Sequence[Path] | None = None) -> LoadedManifest:  # fmt: skip
    """Read, validate and expand a manifest file. Duplicate documents collapse to one.

    With `roots` (the documents_root setting), a local document that resolves outside all of them
    is a ManifestError naming the entry and the roots; s3:// sources are not checked."""
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise UsageError(f"cannot read manifest {path}: {exc.strerror}") from None
    if size > max_mb * 1024 * 1024:
        shown = next(f"{size / 1048576:.{d}f}" for d in range(1, 9) if float(f"{size / 1048576:.{d}f}") > max_mb or d == 8)
        raise UsageError(f"{path} is {shown} MB; manifests are limited to {max_mb:g} MB",
                         hint="split the batch or raise LEGALDOC_MANIFEST_MAX_MB")  # fmt: skip
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"cannot read manifest {path}: {exc}") from None
    manifest = parse_manifest(text, path)
    base = path.resolve().parent
    documents: dict[str, DocumentSpec] = {}
    for entry in manifest.documents:
        specs = _expand(entry, base, path)
        if roots:
            _check_roots(entry, specs, roots, path)
        for spec in specs:
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
