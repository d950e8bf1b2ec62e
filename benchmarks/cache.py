"""What `cache warm` saves the resolve stage: database statements and rows read, and time.

A project is built from the corpus (text-layer court PDFs and half of the court e-mails); the
other e-mails are the "next batch", taken through extract, chunk and entities, and the database
snapshotted. The next batch's resolve stage then runs from that snapshot in three ways:

- no cache:   StageRunner without Redis (every resolve reads the entity index from the database),
- cold cache: Redis empty at the start (the cache fills itself as resolves write through),
- warmed:     after `cache warm` (service `warm_project`) of the project.

Statements are counted by SQLAlchemy's cursor events and rows by wrapping the DBAPI cursor, over
the whole `execute` of each resolve (claim and bookkeeping included). Time is the median of
interleaved rounds; figures are ratios against the no-cache run of the same round.

With --postgres URL (an admin URL such as postgresql+psycopg://postgres@127.0.0.1/postgres) the
same runs go against PostgreSQL over TCP, each from a copy of the prepared database made with
CREATE DATABASE ... TEMPLATE.

Usage: python benchmarks/cache.py [--rounds 5] [--postgres URL] [--json]
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sqlalchemy import create_engine, event  # noqa: E402

from benchmarks.batches import start_redis  # noqa: E402
from legaldoc.config import load_settings  # noqa: E402
from legaldoc.models import Stage  # noqa: E402
from legaldoc.services.caching import warm_project  # noqa: E402
from legaldoc.services.process import process_paths, sha256_file  # noqa: E402
from legaldoc.services.stages import StageRunner  # noqa: E402
from legaldoc.services.wiring import Runtime  # noqa: E402
from legaldoc.storage import repository as repo  # noqa: E402
from legaldoc.storage.db import Database, get_engine  # noqa: E402
from legaldoc.storage.tables import Entity, EntityAlias  # noqa: E402

CORPUS = Path(__file__).resolve().parents[2] / "shared" / "corpus"
SCANNED = {"image-pdf.pdf", "image-pdf-2.pdf", "ocr_pdf_variation.pdf", "gov.uscourts.cand.203070.27.0.pdf"}


class CountingCursor:
    """A DBAPI cursor that counts the rows fetched through it."""

    def __init__(self, cursor, counter: dict[str, int]) -> None:
        self._cursor, self._counter = cursor, counter

    def fetchone(self):
        row = self._cursor.fetchone()
        self._counter["rows"] += row is not None
        return row

    def fetchmany(self, size=None):
        rows = self._cursor.fetchmany(size) if size is not None else self._cursor.fetchmany()
        self._counter["rows"] += len(rows)
        return rows

    def fetchall(self):
        rows = self._cursor.fetchall()
        self._counter["rows"] += len(rows)
        return rows

    def __iter__(self):
        for row in self._cursor:
            self._counter["rows"] += 1
            yield row

    def __getattr__(self, name):
        return getattr(self._cursor, name)


def instrument(database: Database) -> dict[str, int]:
    counter = {"statements": 0, "selects": 0, "rows": 0, "on": 0}

    def after(conn, cursor, statement, parameters, context, executemany) -> None:
        if not counter["on"]:
            return
        counter["statements"] += 1
        if statement.lstrip().upper().startswith("SELECT") or " RETURNING " in statement.upper():
            counter["selects"] += 1
            context.cursor = CountingCursor(cursor, counter)

    event.listen(database.engine, "after_cursor_execute", after)
    return counter


class Store:
    """Where the prepared database lives and how a run gets its own copy of it."""

    def __init__(self, folder: Path, postgres: str | None) -> None:
        self.folder, self.postgres = folder, postgres

    def url(self, name: str) -> str:
        if self.postgres:
            return f"{self.postgres.rsplit('/', 1)[0]}/legaldoc_bench_{name}"
        return f"sqlite:///{self.folder / name}.db"

    def _admin(self, *statements: str) -> None:
        engine = create_engine(self.postgres, isolation_level="AUTOCOMMIT")
        with engine.connect() as connection:
            for statement in statements:
                connection.exec_driver_sql(statement)
        engine.dispose()

    def create_base(self) -> str:
        if self.postgres:
            self._admin("DROP DATABASE IF EXISTS legaldoc_bench_base", "CREATE DATABASE legaldoc_bench_base")
        return self.url("base")

    def copy(self, name: str) -> str:
        if self.postgres:
            self._admin(f"DROP DATABASE IF EXISTS legaldoc_bench_{name}",
                        f"CREATE DATABASE legaldoc_bench_{name} TEMPLATE legaldoc_bench_base")  # fmt: skip
        else:
            for suffix in ("", "-wal", "-shm"):
                if Path(f"{self.folder / 'base.db'}{suffix}").exists():
                    shutil.copyfile(f"{self.folder / 'base.db'}{suffix}", f"{self.folder / name}.db{suffix}")
        return self.url(name)

    def drop(self, name: str) -> None:
        if self.postgres:
            self._admin(f"DROP DATABASE IF EXISTS legaldoc_bench_{name}")
        else:
            Path(f"{self.folder / name}.db").unlink()


def prepare(store: Store, folder: Path, redis_url: str) -> tuple[list[int], object]:
    settings = load_settings(data_dir=folder / ".legaldoc", database_url=store.create_base(), redis_url=redis_url)
    database = Database(settings.resolved_database_url)
    emails = sorted((CORPUS / "nef").glob("*.txt"))
    base = [p for p in sorted((CORPUS / "documents").glob("*.pdf")) if p.name not in SCANNED and p.stat().st_size]
    base += emails[::2]
    for _ in process_paths(base, "acme", settings, database):
        pass
    runner = StageRunner(settings, database, retries=False)
    with database.session() as session:
        project_id = repo.find_project(session, "acme").id
    pending = []
    for path in emails[1::2]:
        sha256, size = sha256_file(path)
        with database.session() as session:
            document_id = repo.register_document(session, project_id, str(path), sha256, size).id
            repo.reset_for_run(session, [document_id], batch_id=None)
        for stage in (Stage.EXTRACT, Stage.CHUNK, Stage.ENTITIES):
            assert runner.execute(document_id, stage, 1).status == "done"
        pending.append(document_id)
    database.engine.dispose()
    get_engine.cache_clear()
    return pending, settings


def run(mode: str, store: Store, pending: list[int], settings, round_: int) -> dict:
    name = f"{mode.replace(' ', '_')}_{round_}"
    rt = Runtime(settings.model_copy(update={"database_url": store.copy(name)}))
    database = rt.database
    cache = rt.cache if mode != "no cache" else None
    if cache is not None:
        cache.clear()
    if mode == "warmed":
        warm_project(rt, "acme")
    counter = instrument(database)
    runner = StageRunner(settings, database, retries=False, cache=cache)
    counter["on"] = 1
    started = time.perf_counter()
    for document_id in pending:
        assert runner.execute(document_id, Stage.RESOLVE, 1).status == "done"
    elapsed = time.perf_counter() - started
    counter["on"] = 0
    with database.read() as session:
        entities = session.query(Entity).count() + session.query(EntityAlias).count()
    database.engine.dispose()
    get_engine.cache_clear()
    store.drop(name)
    return {"statements": counter["statements"], "selects": counter["selects"], "rows": counter["rows"],
            "seconds": elapsed, "entities_and_aliases": entities}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--postgres", metavar="URL", help="run against PostgreSQL (an admin URL)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="legaldoc-cache-bench-"))
    server, url = start_redis(folder)
    try:
        store = Store(folder, args.postgres)
        pending, settings = prepare(store, folder, url)
        modes = ("no cache", "cold cache", "warmed")
        results: dict[str, list[dict]] = {m: [] for m in modes}
        for round_ in range(args.rounds):
            for mode in modes[round_ % 3 :] + modes[: round_ % 3]:
                results[mode].append(run(mode, store, pending, settings, round_))
        base = Database(store.url("base"))
        with base.read() as session:
            index_size = session.query(Entity).count()
        base.engine.dispose()
        get_engine.cache_clear()
        summary = {"database": "postgresql" if args.postgres else "sqlite", "documents_resolved": len(pending), "project_entities": index_size, "rounds": args.rounds}
        base_seconds = statistics.median(r["seconds"] for r in results["no cache"])
        for mode in modes:
            first = results[mode][0]
            assert all(r["rows"] == first["rows"] for r in results[mode]), f"{mode}: row counts differ between rounds"
            assert first["entities_and_aliases"] == results["no cache"][0]["entities_and_aliases"]
            seconds = statistics.median(r["seconds"] for r in results[mode])
            summary[mode] = {"statements": first["statements"], "selects": first["selects"], "rows_read": first["rows"],
                             "median_seconds": round(seconds, 3), "time_ratio": round(seconds / base_seconds, 2)}  # fmt: skip
        if args.json:
            print(json.dumps(summary, indent=2))
            return
        print(f"{summary['database']}: resolve of {len(pending)} new court e-mails into a project of {index_size} canonical entities "
              f"(medians of {args.rounds} interleaved rounds)\n")  # fmt: skip
        print(f"{'':12} {'statements':>10} {'SELECTs':>8} {'rows read':>10} {'seconds':>8} {'time ratio':>10}")
        for mode in modes:
            s = summary[mode]
            print(f"{mode:12} {s['statements']:>10} {s['selects']:>8} {s['rows_read']:>10} {s['median_seconds']:>8} {s['time_ratio']:>10}")
        rows = summary["no cache"]["rows_read"], summary["warmed"]["rows_read"]
        print(f"\nwarmed cache: {rows[1] / rows[0]:.1%} of the rows the resolve stage reads without a cache")
    finally:
        if args.postgres:
            Store(folder, args.postgres)._admin("DROP DATABASE IF EXISTS legaldoc_bench_base")
        server.terminate()
        server.wait(10)
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
