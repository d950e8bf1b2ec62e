"""`legaldoc export`: every format round-trips against the database it came from, on SQLite and
PostgreSQL; scopes filter consistently; an export reads one snapshot while others write."""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import networkx as nx
import pyarrow.parquet as pq
import pytest
from sqlalchemy import func, select

from legaldoc.errors import UsageError
from legaldoc.services.export import ExportFormat, export
from legaldoc.services.process import process_paths
from legaldoc.storage import repository as repo
from legaldoc.storage.tables import (
    Document,
    Entity,
    EntityAlias,
    EntityLinkRow,
    MentionRow,
    RelationshipRow,
)
from tests.conftest import DOCUMENTS, NEF
from tests.test_cli import legaldoc

INPUTS = [*sorted(NEF.glob("*.txt"))[:8], DOCUMENTS / "ca4_17.pdf", DOCUMENTS / "gov.uscourts.cand.203070.27.0.pdf"]
TABLE_MODELS = {"documents": Document, "mentions": MentionRow, "entities": Entity, "aliases": EntityAlias,
                "relationships": RelationshipRow, "links": EntityLinkRow}  # fmt: skip


@pytest.fixture
def processed(settings, database):
    reports = list(process_paths(INPUTS, "acme", settings, database))
    assert all(r.status == "done" for r in reports), [r.error for r in reports if r.error]
    return database


def _counts(database) -> dict[str, int]:
    with database.read() as session:
        counts = {name: session.scalar(select(func.count()).select_from(model)) for name, model in TABLE_MODELS.items()}
        counts["entities"] = session.scalar(select(func.count()).select_from(Entity))
        return counts


def test_every_format_round_trips(processed, tmp_path):
    database, counts = processed, _counts(processed)
    assert counts["relationships"] > 50 and counts["aliases"] > 0  # a graph worth exporting

    lines = tmp_path / "acme.jsonl"
    result = export(database, "acme", ExportFormat.JSONL, lines)
    objects = [json.loads(line) for line in lines.read_text().splitlines()]
    assert len(objects) == counts["documents"] == result.files[0].rows
    process_keys = {"document_id", "source", "status", "error", "pages", "ocr_pages", "chunks", "mentions", "entities", "relationships"}
    assert all(process_keys <= set(o) for o in objects)
    assert sum(len(o["mentions"]) for o in objects) == counts["mentions"]
    assert sum(len(o["relationship_edges"]) for o in objects) == counts["relationships"]
    assert all(o["relationships"] == len(o["relationship_edges"]) and o["entities"] == len(o["canonical_entities"]) for o in objects)
    assert all(re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z", o["created_at"]) for o in objects)

    folder = tmp_path / "csv"
    result = export(database, "acme", ExportFormat.CSV, folder, excel=True)
    for name, expected in counts.items():
        raw = (folder / f"{name}.csv").read_bytes()
        assert raw.startswith(b"\xef\xbb\xbf")  # --excel: a byte-order mark
        with (folder / f"{name}.csv").open(encoding="utf-8-sig", newline="") as handle:
            table = list(csv.DictReader(handle))
        assert len(table) == expected, name
    with (folder / "mentions.csv").open(encoding="utf-8-sig", newline="") as handle:
        mentions = list(csv.DictReader(handle))
    assert all(" ".join(m["text"].split()) in m["context"] for m in mentions)
    with (folder / "relationships.csv").open(encoding="utf-8-sig", newline="") as handle:
        assert all(isinstance(json.loads(r["evidence"]), list) for r in csv.DictReader(handle))

    graphml = tmp_path / "acme.graphml"
    export(database, "acme", ExportFormat.GRAPHML, graphml)
    graph = nx.read_graphml(graphml, force_multigraph=True)
    assert graph.number_of_nodes() == counts["documents"] + counts["entities"]
    assert graph.number_of_edges() == counts["relationships"] + counts["links"]
    kinds = {data["kind"] for _, data in graph.nodes(data=True)}
    assert kinds == {"document", "entity"}
    assert all(isinstance(data["weight"], float) and data["type"] for *_, data in graph.edges(data=True))

    parquet = tmp_path / "parquet"
    export(database, "acme", ExportFormat.PARQUET, parquet)
    for name, expected in counts.items():
        assert pq.read_table(parquet / f"{name}.parquet").num_rows == expected, name

    neo4j = tmp_path / "neo4j"
    export(database, "acme", ExportFormat.NEO4J, neo4j)
    nodes, relationships = _check_neo4j_import(neo4j)
    assert nodes == counts["documents"] + counts["entities"] and relationships == counts["relationships"] + counts["links"]


_HEADER = re.compile(r"^(?P<name>[A-Za-z_][A-Za-z0-9_]*)?:(?P<type>ID|START_ID|END_ID|LABEL|TYPE|int|long|float|double|"
                     r"boolean|string|date|datetime)(\((?P<space>[A-Za-z_][A-Za-z0-9_]*)\))?(?P<array>\[\])?$|^[A-Za-z_][A-Za-z0-9_]*$")  # fmt: skip


def _check_neo4j_import(folder: Path) -> tuple[int, int]:
    """What `neo4j-admin database import full` checks of the files import.sh names: header grammar,
    one :ID per node file with its ID space, every relationship's ends present in their space,
    typed values that parse, labels and types that are identifiers."""
    script = (folder / "import.sh").read_text()
    command = re.search(r"neo4j-admin database import full (.+?)\"\$\{1:-neo4j\}\"", script.replace("\\\n", " "), re.S)
    assert command, script
    arguments = command.group(1).split()
    node_files = [a.split("=", 1)[1] for a in arguments if a.startswith("--nodes=")]
    relationship_files = [a.split("=", 1)[1] for a in arguments if a.startswith("--relationships=")]
    assert "--multiline-fields=true" in arguments and "--id-type=integer" in arguments
    ids: dict[str, set[str]] = {}
    nodes = relationships = 0
    identifier = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")

    def parse(path: Path) -> tuple[list[re.Match], list[list[str]]]:
        with path.open(newline="", encoding="utf-8") as handle:
            reader = csv.reader(handle)
            header = [_HEADER.match(cell) for cell in next(reader)]
            assert all(header), path
            return header, list(reader)

    for name in node_files:
        header, rows = parse(folder / name)
        id_columns = [i for i, m in enumerate(header) if m.group("type") == "ID"]
        assert len(id_columns) == 1 and header[id_columns[0]].group("space"), name
        space = header[id_columns[0]].group("space")
        labels = [i for i, m in enumerate(header) if m.group("type") == "LABEL"]
        for row in rows:
            assert len(row) == len(header)
            ids.setdefault(space, set()).add(row[id_columns[0]])
            assert all(identifier.match(label) for i in labels for label in row[i].split(";"))
            _typed(header, row)
        nodes += len(rows)
    for name in relationship_files:
        header, rows = parse(folder / name)
        kinds = {m.group("type"): (i, m.group("space")) for i, m in enumerate(header) if m.group("type") in ("START_ID", "END_ID", "TYPE")}
        assert set(kinds) == {"START_ID", "END_ID", "TYPE"}, name
        for row in rows:
            assert row[kinds["START_ID"][0]] in ids[kinds["START_ID"][1]]
            assert row[kinds["END_ID"][0]] in ids[kinds["END_ID"][1]]
            assert identifier.match(row[kinds["TYPE"][0]])
            _typed(header, row)
        relationships += len(rows)
    assert "CREATE CONSTRAINT" in (folder / "constraints.cypher").read_text()
    return nodes, relationships


def _typed(header: list[re.Match], row: list[str]) -> None:
    for match, value in zip(header, row, strict=True):
        if value and match.group("type") in ("int", "long"):
            int(value)
        elif value and match.group("type") in ("float", "double"):
            float(value)


def test_scopes_by_batch_and_type(processed, tmp_path):
    database = processed
    only_courts = tmp_path / "courts"
    export(database, "acme", ExportFormat.CSV, only_courts, types=["court", "JUDGE"])
    with (only_courts / "entities.csv").open(newline="") as handle:
        entities = list(csv.DictReader(handle))
    assert entities and {e["type"] for e in entities} <= {"COURT", "JUDGE"}
    kept = {e["id"] for e in entities}
    with (only_courts / "relationships.csv").open(newline="") as handle:
        for edge in csv.DictReader(handle):
            assert edge["target_entity_id"] in kept and edge["source_entity_id"] in kept | {""}
    with (only_courts / "mentions.csv").open(newline="") as handle:
        assert {m["type"] for m in csv.DictReader(handle)} <= {"COURT", "JUDGE"}

    with pytest.raises(UsageError, match="no project named 'nope'"):
        export(database, "nope", ExportFormat.JSONL, tmp_path / "x.jsonl")
    with pytest.raises(UsageError, match="no batch b-1 in project"):
        export(database, "acme", ExportFormat.JSONL, tmp_path / "x.jsonl", batch_id="b-1")
    with pytest.raises(UsageError, match="unknown entity type 'WIZARD'"):
        export(database, "acme", ExportFormat.JSONL, tmp_path / "x.jsonl", types=["WIZARD"])
    with pytest.raises(UsageError, match="exists"):
        export(database, "acme", ExportFormat.CSV, only_courts)
    export(database, "acme", ExportFormat.CSV, only_courts, force=True)  # replaced whole
    assert not list(tmp_path.glob(".*partial*"))


def test_an_export_reads_one_snapshot_while_a_batch_writes(processed, tmp_path):
    """A document committed after the export started is not in it, on either backend."""
    database = processed
    with database.read() as session:
        before = session.scalar(select(func.count()).select_from(Document))

    def write_meanwhile(total: int):
        with database.session() as session:
            project_id = repo.get_or_create_project(session, "acme").id
            repo.register_document(session, project_id, "/late/arrival.pdf", "0" * 64, 1)
        return lambda _n: None

    result = export(database, "acme", ExportFormat.JSONL, tmp_path / "a.jsonl", progress=write_meanwhile)
    assert result.files[0].rows == before
    assert "/late/arrival.pdf" not in (tmp_path / "a.jsonl").read_text()
    export(database, "acme", ExportFormat.JSONL, tmp_path / "b.jsonl")
    assert "/late/arrival.pdf" in (tmp_path / "b.jsonl").read_text()


def test_export_command(tmp_path):
    done = legaldoc("process", str(NEF / "almd_1.txt"), "--project", "acme", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    piped = legaldoc("export", "--project", "acme", cwd=tmp_path)
    assert piped.returncode == 0 and json.loads(piped.stdout.splitlines()[0])["source"].endswith("almd_1.txt")
    written = legaldoc("export", "--project", "acme", "--format", "graphml", "--json", cwd=tmp_path)
    assert written.returncode == 0, written.stderr
    assert json.loads(written.stdout)["files"][0]["path"] == "acme.graphml" and (tmp_path / "acme.graphml").is_file()
    for arguments, words in [
        (["--format", "graphml"], "acme.graphml exists"),
        (["--format", "csv", "--out", "-"], "only jsonl can go to stdout"),
        (["--format", "csv", "--out", "/proc/nope/x"], "cannot write /proc/nope/x"),
        (["--project", "nope"], "no project named 'nope'"),
        (["--format", "xml"], "Invalid value"),
    ]:
        refused = legaldoc("export", "--project", "acme", *arguments, cwd=tmp_path)
        assert refused.returncode == 2 and words in refused.stderr and "Traceback" not in refused.stderr, refused.stderr
