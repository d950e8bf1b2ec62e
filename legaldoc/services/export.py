"""Use case: a project's results out, in the formats users load elsewhere.

Every format streams from one read transaction (a consistent snapshot even while a batch writes)
in slices of rows, so memory stays flat whatever the project's size:

- jsonl: one object per document, the shape of `process --json` plus its canonical entities and
  its relationships with evidence (per-document streams merged by document id);
- csv: documents, mentions (with a context snippet), entities, aliases, relationships, links
  (project-wide SAME_AS between the person entities of one human, with the reason);
- graphml: documents and entities as nodes, relationships as typed, weighted edges and links as
  SAME_AS edges with their reason, written as it goes (networkx and Gephi read it);
- neo4j: node and relationship CSVs with the headers `neo4j-admin database import full` reads, an
  `import.sh` with the command, and `constraints.cypher`;
- parquet: one file per table through pyarrow (optional extra).

Folders and files are written beside their final name and renamed into place when complete.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import IO, Any
from xml.sax.saxutils import escape

from sqlalchemy.orm import Session

from legaldoc.errors import ConfigurationError, UsageError
from legaldoc.moments import iso
from legaldoc.services.search import check_entity_type
from legaldoc.storage import exports as rows
from legaldoc.storage import repository as repo
from legaldoc.storage.db import Database
from legaldoc.storage.tables import Batch

CONTEXT_CHARS = 80
"""Characters of text each side of a mention in its context snippet."""

Tick = Callable[[int], None]
Written = list[tuple[str, int]]  # (file name, rows) of what a writer wrote


class ExportFormat(StrEnum):
    JSONL = "jsonl"
    CSV = "csv"
    GRAPHML = "graphml"
    NEO4J = "neo4j"
    PARQUET = "parquet"


@dataclass
class WrittenFile:
    path: str
    rows: int


@dataclass
class ExportResult:
    """What an export wrote."""

    format: ExportFormat
    project: str
    out: str
    files: list[WrittenFile] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        return {"format": self.format.value, "project": self.project, "out": self.out,
                "files": [{"path": f.path, "rows": f.rows} for f in self.files]}  # fmt: skip


# -- values as text ------------------------------------------------------------------------------


def snippet(text: str, start: int, end: int, chars: int = CONTEXT_CHARS) -> str:
    """Text from `start` to `end` with `chars` characters each side, on one line."""
    return " ".join(text[max(0, start - chars) : end + chars].split())


class _Contexts:
    """Context snippets of mentions streamed in document order: the documents' texts are a second
    stream in the same order, one text held at a time."""

    def __init__(self, session: Session, scope: rows.Scope) -> None:
        self.texts = rows.stream(session, rows.document_texts(scope))
        self.document_id, self.text = -1, ""

    def __call__(self, row: Any) -> str:
        while self.document_id < row.document_id:
            current = next(self.texts, None)
            if current is None:
                break
            self.document_id, self.text = current[0], current[1] or ""
        return snippet(self.text, row.start, row.end) if self.document_id == row.document_id else ""


def _cells(table: str, row: Any, contexts: _Contexts | None = None) -> list[Any]:
    """One database row as the cells of its table's CSV/Parquet row."""
    if table == "documents":
        values = list(row)
        values[12], values[13] = iso(values[12]), iso(values[13])
        values[14] = _json_text(values[14], "{}")
        return values
    if table == "mentions":
        return [*row, contexts(row) if contexts else ""]
    if table == "relationships":
        return [*list(row)[:6], _json_text(row.evidence, "[]")]
    return list(row)


def _json_text(value: Any, empty: str) -> str:
    """JSON as text: as the database holds it (CSV and Parquet read it cast), else encoded."""
    if isinstance(value, str):
        return value or empty
    return json.dumps(value, ensure_ascii=False) if value else empty


TABLES: dict[str, tuple[tuple[str, ...], Callable[[rows.Scope], Any]]] = {
    "documents": (rows.DOCUMENT_COLUMNS, lambda scope: rows.documents(scope, json_as_text=True)),
    "mentions": ((*rows.MENTION_COLUMNS, "context"), rows.mentions),
    "entities": (rows.ENTITY_COLUMNS, rows.entities),
    "aliases": (rows.ALIAS_COLUMNS, rows.aliases),
    "relationships": (rows.RELATIONSHIP_COLUMNS, lambda scope: rows.relationships(scope, json_as_text=True)),
    "links": (rows.LINK_COLUMNS, rows.links),
}


# -- the use case ----------------------------------------------------------------------------------


def default_out(project: str, fmt: ExportFormat) -> Path:
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in project)
    return Path(f"{safe}.{fmt.value}" if fmt in (ExportFormat.JSONL, ExportFormat.GRAPHML) else f"{safe}-{fmt.value}")


def resolve_scope(session: Session, project: str, batch_id: str | None, types: list[str]) -> rows.Scope:
    project_row = repo.require_project(session, project)
    if batch_id is not None:
        batch = session.get(Batch, batch_id)
        if batch is None or batch.project_id != project_row.id:
            raise UsageError(f"no batch {batch_id} in project {project!r}", hint="list batches with: legaldoc status")
    return rows.Scope(project_row.id, batch_id, tuple(str(check_entity_type(t)) for t in types))


def export(
    database: Database, project: str, fmt: ExportFormat, out: Path | None = None, *, batch_id: str | None = None,
    types: list[str] | None = None, excel: bool = False, force: bool = False, stdout: IO[str] | None = None,
    progress: Callable[[int], Tick] | None = None,
) -> ExportResult:  # fmt: skip
    """Write the project (or one batch's part of it) in `fmt`. `out` "-" is stdout (jsonl only).
    `progress(total)` is called once with the number of rows to write and returns a tick."""
    if fmt is ExportFormat.PARQUET:
        _pyarrow()  # before anything is read or written
    target = out if out is not None else (Path("-") if fmt is ExportFormat.JSONL else default_out(project, fmt))
    to_stdout = str(target) == "-"
    if to_stdout and fmt is not ExportFormat.JSONL:
        raise UsageError(f"--format {fmt.value} writes files; only jsonl can go to stdout", hint="give --out PATH")
    if not to_stdout and (target.exists() or target.is_symlink()) and not force:
        raise UsageError(f"{target} exists", hint="use --force to replace it, or choose another --out")
    with database.snapshot() as session:
        scope = resolve_scope(session, project, batch_id, types or [])
        total = _total(session, scope, fmt)
        tick = progress(total) if progress else (lambda _n: None)
        result = ExportResult(fmt, project, "-" if to_stdout else str(target))
        if to_stdout:
            result.files.append(WrittenFile("-", _jsonl(session, scope, stdout or sys.stdout, tick)))
            return result
        folder = fmt in (ExportFormat.CSV, ExportFormat.NEO4J, ExportFormat.PARQUET)
        with _replacing(target, force, directory=folder) as partial:
            written = _WRITERS[fmt](session, scope, partial, tick, excel)
        result.files = [WrittenFile(str(target / name) if folder else str(target), count) for name, count in written]
        return result


def _total(session: Session, scope: rows.Scope, fmt: ExportFormat) -> int:
    if fmt is ExportFormat.JSONL:
        return rows.count(session, rows.documents(scope))
    tables = ("documents", "entities", "relationships", "links") if fmt in (ExportFormat.GRAPHML, ExportFormat.NEO4J) else TABLES
    return sum(rows.count(session, TABLES[name][1](scope)) for name in tables)


class _replacing:  # noqa: N801 - used as a context manager, like open()
    """A sibling path to write into, renamed over `target` only when writing succeeded."""

    def __init__(self, target: Path, force: bool, directory: bool) -> None:
        self.target, self.force, self.directory = target, force, directory
        self.partial = target.with_name(f".{target.name}.partial-{os.getpid()}")

    def __enter__(self) -> Path:
        try:
            if self.partial.exists():
                _remove(self.partial)
            if self.directory:
                self.partial.mkdir(parents=False)
            else:
                self.partial.touch()
        except OSError as exc:
            raise UsageError(f"cannot write {self.target}: {exc.strerror}",
                             hint="choose an --out in a folder you can write to") from None  # fmt: skip
        return self.partial

    def __exit__(self, kind: type[BaseException] | None, *_: object) -> None:
        if kind is not None:
            _remove(self.partial)
            return
        if self.target.exists() or self.target.is_symlink():
            _remove(self.target)
        self.partial.rename(self.target)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)


# -- jsonl ---------------------------------------------------------------------------------------


class _ByDocument:
    """Rows of a stream ordered by document id (column `key`), handed out one document at a time."""

    def __init__(self, source: Iterator[Any], key: int) -> None:
        self._rows, self._key = source, key
        self._next = next(self._rows, None)

    def take(self, document_id: int) -> list[Any]:
        taken = []
        while self._next is not None and self._next[self._key] <= document_id:
            if self._next[self._key] == document_id:
                taken.append(self._next)
            self._next = next(self._rows, None)
        return taken


def _by_document(session: Session, query: Any, key: int) -> _ByDocument:
    return _ByDocument(rows.stream(session, query), key)


def document_object(document: Any, mentions: list[Any], entities: list[Any], relationships: list[Any], chunks: int) -> dict[str, Any]:
    """One document as `process --json` prints it, plus its canonical entities and relationships."""
    (doc_id, source, status, kind, pages, ocr_pages, size, sha256, batch_id, category, stage, message,
     created, updated, metadata) = document  # fmt: skip
    return {
        "document_id": doc_id, "source": source, "status": status,
        "error": {"category": category, "stage": stage, "message": message} if category else None,
        "pages": pages or 0, "ocr_pages": ocr_pages or 0, "chunks": chunks,
        "mentions": [{"type": m.type, "text": m.text, "start": m.start, "end": m.end, "page": m.page,
                      "normalized": m.normalized, "entity_id": m.entity_id} for m in mentions],
        "entities": len(entities), "relationships": len(relationships),
        "kind": kind, "size": size, "sha256": sha256, "batch_id": batch_id, "metadata": metadata or {},
        "created_at": iso(created), "updated_at": iso(updated),
        "canonical_entities": [{"id": e[1], "type": e[2], "key": e[3], "name": e[4]} for e in entities],
        "relationship_edges": [{"id": r.id, "type": r.type, "source_entity_id": r.source_entity_id,
                                "target_entity_id": r.target_entity_id, "weight": r.weight, "evidence": r.evidence or []}
                               for r in relationships],
    }  # fmt: skip


def _jsonl(session: Session, scope: rows.Scope, handle: IO[str], tick: Tick) -> int:
    mentions = _by_document(session, rows.mentions(scope), 1)
    entities = _by_document(session, rows.document_entities(scope), 0)
    relationships = _by_document(session, rows.relationships(scope), 2)
    chunks = _by_document(session, rows.chunk_counts(scope), 0)
    written = 0
    for document in rows.stream(session, rows.documents(scope)):
        doc_id = document[0]
        counted = chunks.take(doc_id)
        obj = document_object(document, mentions.take(doc_id), entities.take(doc_id), relationships.take(doc_id),
                              counted[0][1] if counted else 0)  # fmt: skip
        handle.write(json.dumps(obj, ensure_ascii=False) + "\n")
        written += 1
        tick(1)
    handle.flush()
    return written


def _jsonl_file(session: Session, scope: rows.Scope, path: Path, tick: Tick, _excel: bool) -> Written:
    with path.open("w", encoding="utf-8") as handle:
        return [(path.name, _jsonl(session, scope, handle, tick))]


# -- csv -----------------------------------------------------------------------------------------


def _csv(session: Session, scope: rows.Scope, folder: Path, tick: Tick, excel: bool) -> Written:
    written: Written = []
    for table, (columns, query) in TABLES.items():
        path = folder / f"{table}.csv"
        with path.open("w", newline="", encoding="utf-8-sig" if excel else "utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow(columns)
            count = 0
            contexts = _Contexts(session, scope) if table == "mentions" else None
            for row in rows.stream(session, query(scope)):
                writer.writerow(_cells(table, row, contexts))
                count += 1
                if count % 1000 == 0:
                    tick(1000)
            tick(count % 1000)
        written.append((path.name, count))
    return written


# -- graphml -------------------------------------------------------------------------------------

_XML_INVALID = dict.fromkeys([*range(0x00, 0x09), 0x0B, 0x0C, *range(0x0E, 0x20), 0xFFFE, 0xFFFF])
_NODE_KEYS = (("label", "string"), ("kind", "string"), ("type", "string"), ("key", "string"), ("source", "string"),
              ("status", "string"), ("pages", "int"), ("mentions", "long"), ("documents", "long"))  # fmt: skip
_EDGE_KEYS = (("type", "string"), ("weight", "double"), ("evidence", "string"), ("document_id", "long"), ("reason", "string"))


def _xml(value: Any) -> str:
    text = str(value).translate(_XML_INVALID)
    return escape("".join(c for c in text if not 0xD800 <= ord(c) <= 0xDFFF))


def _data(key: str, value: Any) -> str:
    return "" if value is None else f'<data key="{key}">{_xml(value)}</data>'


def _graphml(session: Session, scope: rows.Scope, path: Path, tick: Tick, _excel: bool) -> Written:
    count = 0
    with path.open("w", encoding="utf-8") as out:
        out.write('<?xml version="1.0" encoding="UTF-8"?>\n'
                  '<graphml xmlns="http://graphml.graphdrawing.org/xmlns" '
                  'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" '
                  'xsi:schemaLocation="http://graphml.graphdrawing.org/xmlns '
                  'http://graphml.graphdrawing.org/xmlns/1.0/graphml.xsd">\n')  # fmt: skip
        for name, kind in _NODE_KEYS:
            out.write(f'  <key id="n_{name}" for="node" attr.name="{name}" attr.type="{kind}"/>\n')
        for name, kind in _EDGE_KEYS:
            out.write(f'  <key id="e_{name}" for="edge" attr.name="{name}" attr.type="{kind}"/>\n')
        out.write('  <graph id="legaldoc" edgedefault="directed">\n')
        for d in rows.stream(session, rows.documents(scope)):
            out.write(f'    <node id="d{d.id}">{_data("n_label", d.source.rsplit("/", 1)[-1])}{_data("n_kind", "document")}'
                      f'{_data("n_source", d.source)}{_data("n_status", d.status)}{_data("n_pages", d.pages)}</node>\n')  # fmt: skip
            count += 1
            tick(1)
        for e in rows.stream(session, rows.entities(scope)):
            out.write(f'    <node id="e{e[0]}">{_data("n_label", e[3])}{_data("n_kind", "entity")}{_data("n_type", e[1])}'
                      f'{_data("n_key", e[2])}{_data("n_mentions", e[4])}{_data("n_documents", e[5])}</node>\n')  # fmt: skip
            count += 1
            tick(1)
        for r in rows.stream(session, rows.relationships(scope)):
            source = f"e{r.source_entity_id}" if r.source_entity_id is not None else f"d{r.document_id}"
            out.write(f'    <edge id="r{r.id}" source="{source}" target="e{r.target_entity_id}">{_data("e_type", r.type)}'
                      f'{_data("e_weight", r.weight)}{_data("e_evidence", json.dumps(r.evidence or [], ensure_ascii=False))}'
                      f'{_data("e_document_id", r.document_id)}</edge>\n')  # fmt: skip
            count += 1
            tick(1)
        for link in rows.stream(session, rows.links(scope)):
            out.write(f'    <edge id="l{link.id}" source="e{link.source_entity_id}" target="e{link.target_entity_id}">'
                      f'{_data("e_type", link.type)}{_data("e_weight", 1.0)}{_data("e_reason", link.reason)}</edge>\n')  # fmt: skip
            count += 1
            tick(1)
        out.write("  </graph>\n</graphml>\n")
    return [(path.name, count)]


# -- neo4j ---------------------------------------------------------------------------------------

NEO4J_FILES = {
    "nodes-documents.csv": ["documentId:ID(Document)", "source", "status", "kind", "pages:int", "ocr_pages:int", "sha256", ":LABEL"],
    "nodes-entities.csv": ["entityId:ID(Entity)", "type", "key", "name", "mentions:long", "documents:long", ":LABEL"],
    "rels-entities.csv": [":START_ID(Entity)", ":END_ID(Entity)", ":TYPE", "relationshipId:long", "documentId:long",
                          "weight:double", "evidence", "reason"],
    "rels-documents.csv": [":START_ID(Document)", ":END_ID(Entity)", ":TYPE", "relationshipId:long", "documentId:long",
                           "weight:double", "evidence"],
}  # fmt: skip

IMPORT_SH = """#!/bin/sh
# Load this export into a new Neo4j 5 database (default: neo4j; stop it first, it is overwritten):
#   ./import.sh [DATABASE]
# then, with the database started:  cypher-shell -d DATABASE -f constraints.cypher
set -eu
cd "$(dirname "$0")"
neo4j-admin database import full --overwrite-destination --multiline-fields=true --id-type=integer \\
  --nodes=nodes-documents.csv --nodes=nodes-entities.csv \\
  --relationships=rels-entities.csv --relationships=rels-documents.csv \\
  "${1:-neo4j}"
"""

CONSTRAINTS_CYPHER = """// Run once after import.sh, with the database started: cypher-shell -d neo4j -f constraints.cypher
CREATE CONSTRAINT document_id IF NOT EXISTS FOR (d:Document) REQUIRE d.documentId IS UNIQUE;
CREATE CONSTRAINT entity_id IF NOT EXISTS FOR (e:Entity) REQUIRE e.entityId IS UNIQUE;
CREATE INDEX entity_type_key IF NOT EXISTS FOR (e:Entity) ON (e.type, e.key);
CREATE INDEX document_source IF NOT EXISTS FOR (d:Document) ON (d.source);
"""


def _neo4j_label(entity_type: str) -> str:
    return "".join(part.capitalize() for part in entity_type.split("_"))


def _neo4j(session: Session, scope: rows.Scope, folder: Path, tick: Tick, _excel: bool) -> Written:
    handles = {name: (folder / name).open("w", newline="", encoding="utf-8") for name in NEO4J_FILES}
    counts = dict.fromkeys(NEO4J_FILES, 0)
    try:
        writers = {name: csv.writer(handle) for name, handle in handles.items()}
        for name, header in NEO4J_FILES.items():
            writers[name].writerow(header)

        def put(name: str, values: list[Any]) -> None:
            writers[name].writerow(["" if v is None else v for v in values])
            counts[name] += 1
            tick(1)

        for d in rows.stream(session, rows.documents(scope)):
            put("nodes-documents.csv", [d.id, d.source, d.status, d.kind, d.pages, d.ocr_pages, d.sha256, "Document"])
        for e in rows.stream(session, rows.entities(scope)):
            put("nodes-entities.csv", [e[0], e[1], e[2], e[3], e[4], e[5], f"Entity;{_neo4j_label(e[1])}"])
        for r in rows.stream(session, rows.relationships(scope)):
            evidence = json.dumps(r.evidence or [], ensure_ascii=False)
            if r.source_entity_id is None:
                put("rels-documents.csv", [r.document_id, r.target_entity_id, r.type, r.id, r.document_id, r.weight, evidence])
            else:
                put("rels-entities.csv", [r.source_entity_id, r.target_entity_id, r.type, r.id, r.document_id, r.weight, evidence, None])
        for link in rows.stream(session, rows.links(scope)):  # SAME_AS: no document, no evidence, a reason
            put("rels-entities.csv", [link.source_entity_id, link.target_entity_id, link.type, None, None, 1.0, None, link.reason])
    finally:
        for handle in handles.values():
            handle.close()
    script = folder / "import.sh"
    script.write_text(IMPORT_SH)
    script.chmod(0o755)
    (folder / "constraints.cypher").write_text(CONSTRAINTS_CYPHER)
    return [*counts.items(), (script.name, 0), ("constraints.cypher", 0)]


# -- parquet -------------------------------------------------------------------------------------


def _pyarrow() -> Any:
    try:
        import pyarrow
        import pyarrow.parquet  # noqa: F401 - the writer lives in the submodule
    except ImportError:
        raise ConfigurationError("--format parquet needs pyarrow", hint="pip install 'legaldoc[parquet]'") from None
    return pyarrow


def _parquet_schema(pa: Any, table: str) -> Any:
    text, long, double = pa.string(), pa.int64(), pa.float64()
    types: dict[str, Any] = {
        "documents": [long, text, text, text, long, long, long, text, text, text, text, text, text, text, text],
        "mentions": [long, long, long, text, text, text, long, long, long, text, double, text],
        "entities": [long, text, text, text, long, long],
        "aliases": [long, text, text],
        "relationships": [long, text, long, long, long, double, text],
        "links": [long, text, long, long, text],
    }
    return pa.schema(list(zip(TABLES[table][0], types[table], strict=True)))


def _write_parquet(pa: Any, writer: Any, schema: Any, batch: list[list[Any]], tick: Tick) -> None:
    if batch:
        arrays = [pa.array([row[i] for row in batch], type=schema.field(i).type) for i in range(len(schema))]
        writer.write_batch(pa.record_batch(arrays, schema=schema))
        tick(len(batch))
        batch.clear()


def _parquet(session: Session, scope: rows.Scope, folder: Path, tick: Tick, _excel: bool) -> Written:
    pa = _pyarrow()
    written: Written = []
    for table, (_columns, query) in TABLES.items():
        path = folder / f"{table}.parquet"
        schema = _parquet_schema(pa, table)
        count = 0
        with pa.parquet.ParquetWriter(str(path), schema) as writer:
            batch: list[list[Any]] = []
            contexts = _Contexts(session, scope) if table == "mentions" else None
            for row in rows.stream(session, query(scope)):
                batch.append(_cells(table, row, contexts))
                count += 1
                if len(batch) >= rows.STREAM_ROWS:
                    _write_parquet(pa, writer, schema, batch, tick)
            _write_parquet(pa, writer, schema, batch, tick)
        written.append((path.name, count))
    return written


_WRITERS: dict[ExportFormat, Callable[[Session, rows.Scope, Path, Tick, bool], Written]] = {
    ExportFormat.JSONL: _jsonl_file,
    ExportFormat.CSV: _csv,
    ExportFormat.GRAPHML: _graphml,
    ExportFormat.NEO4J: _neo4j,
    ExportFormat.PARQUET: _parquet,
}

