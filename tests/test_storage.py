"""Storage on SQLite and (when LEGALDOC_TEST_POSTGRES_URL is set) PostgreSQL: idempotent writes."""

from __future__ import annotations

from sqlalchemy import func, select

from legaldoc.services.process import process_paths
from legaldoc.storage import tables
from tests.conftest import DOCUMENTS, NEF, SAMPLES

TABLES = [tables.Project, tables.Document, tables.Page, tables.ChunkRow, tables.MentionRow, tables.Entity,
          tables.EntityAlias, tables.RelationshipRow, tables.StageRun]  # fmt: skip
INPUTS = [SAMPLES, NEF / "almd_1.txt", NEF / "gand_1.txt", NEF / "nysd_3.txt", DOCUMENTS / "ca2_1-1.pdf",
          DOCUMENTS / "word-docx.docx", DOCUMENTS / "empty.pdf"]  # fmt: skip


def row_counts(database) -> dict[str, int]:
    with database.session() as session:
        return {table.__tablename__: session.scalar(select(func.count()).select_from(table)) for table in TABLES}


def test_processing_twice_leaves_identical_rows(settings, database):
    first = list(process_paths(INPUTS, "acme", settings, database))
    counts = row_counts(database)
    assert counts["mentions"] > 100 and counts["relationships"] > 100 and counts["entity_aliases"] > 0
    assert sorted(r.status for r in first).count("failed") == 1  # empty.pdf

    second = list(process_paths(INPUTS, "acme", settings, database))
    assert row_counts(database) == counts
    assert {r.status for r in second} == {"skipped", "failed"}

    forced = list(process_paths(INPUTS, "acme", settings, database, force=True))
    assert [r.status for r in forced] == [r.status for r in first]
    after_force = row_counts(database)
    assert after_force["stage_runs"] > counts["stage_runs"]  # the attempt log records the new attempts
    del after_force["stage_runs"], counts["stage_runs"]
    assert after_force == counts
    assert [(r.source, r.chunks, len(r.mentions), r.entities, r.relationships) for r in forced] == [
        (r.source, r.chunks, len(r.mentions), r.entities, r.relationships) for r in first
    ]


def test_changed_file_replaces_its_outputs_and_drops_orphan_entities(settings, database, tmp_path):
    path = tmp_path / "memo.txt"
    path.write_text("Ruling in Alpha Corp. v. Beta LLC, 550 U.S. 544 (2007), on March 3, 2021.")
    list(process_paths([path], "p", settings, database))
    path.write_text("Ruling in Gamma Inc. v. Delta LLC, 556 U.S. 662 (2009), on April 4, 2022.")
    [report] = list(process_paths([path], "p", settings, database))
    assert report.status == "done"
    with database.session() as session:
        keys = set(session.scalars(select(tables.Entity.key)))
    assert "556 u.s. 662" in keys and "550 u.s. 544" not in keys and "2021-03-03" not in keys


def test_entities_are_shared_across_documents_of_a_project(settings, database, tmp_path):
    one, two = tmp_path / "one.txt", tmp_path / "two.txt"
    one.write_text("Signed by Judge Mark H. Cohen on 7/30/2021 in Kinder v. Koch Industries, Inc.")
    two.write_text("Before the Honorable Mark Cohen. See Kinder v. Koch Industries, Inc. and 550 U.S. 544.")
    list(process_paths([one, two], "shared", settings, database))
    from legaldoc.services.queries import list_entities

    judges = [e for e in list_entities(database, "shared", "JUDGE")]
    assert len(judges) == 1 and judges[0]["documents"] == 2
    assert judges[0]["aliases"] and "middle name" in judges[0]["aliases"][0]["reason"]


def test_four_concurrent_first_starts_on_a_fresh_database_all_succeed(database_url):
    """Given a database nobody has opened, When four processes open it at once (four workers or
    commands starting together), Then all four migrate it or wait for the one that does; none fails."""
    import subprocess
    import sys

    code = "import sys; from legaldoc.storage.db import Database; Database(sys.argv[1]); print('ok')"
    processes = [subprocess.Popen([sys.executable, "-c", code, database_url], stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True) for _ in range(4)]  # fmt: skip
    results = [process.communicate(timeout=120) for process in processes]
    assert [process.returncode for process in processes] == [0, 0, 0, 0], [err[-600:] for _, err in results]


def test_the_known_head_is_alembics_and_a_database_behind_it_is_migrated(tmp_path):
    """`db.HEAD` (a database there opens without Alembic) is the newest migration; a database at an
    older revision is still brought to it."""
    from alembic import command
    from alembic.script import ScriptDirectory

    from legaldoc.storage import db

    assert ScriptDirectory.from_config(db._alembic()).get_current_head() == db.HEAD
    url = f"sqlite:///{tmp_path / 'old.db'}"
    engine = db.make_engine(url)
    config = db._alembic()
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "0011")
    assert db.revisions(url)[0] == "0011"
    db.Database(url)
    assert db.revisions(url) == (db.HEAD, db.HEAD)
