"""Engine and session factory; SQLite gets WAL and a busy timeout; migrations run through Alembic."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache, cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, Engine, create_engine, event, func, select, text
from sqlalchemy.exc import DatabaseError, OperationalError
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import NullPool

from legaldoc.errors import ConfigurationError, ServiceUnavailable

if TYPE_CHECKING:
    from alembic.config import Config

MIGRATIONS = Path(__file__).parent / "migrations"


def _sqlite_pragmas(dbapi_connection: Any, _record: object) -> None:
    dbapi_connection.isolation_level = None  # transactions are begun by _sqlite_begin
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


def _sqlite_begin(connection: Connection) -> None:
    """Writers take the write lock up front, so a read-then-write transaction never fails on a stale
    snapshot under concurrent workers; read-only sessions begin deferred."""
    read_only = connection.get_execution_options().get("legaldoc_read_only", False)
    connection.exec_driver_sql("BEGIN" if read_only else "BEGIN IMMEDIATE")


@cache
def get_engine(url: str) -> Engine:
    """One engine per URL per process."""
    return make_engine(url)


def make_engine(url: str, *, pooled: bool = True) -> Engine:
    """A new engine. One that is not `pooled` opens a connection per session and closes it at its end
    (NullPool): a process that forks (a worker's main process) keeps no connection for a child to share."""
    pool: dict[str, Any] = {} if pooled else {"poolclass": NullPool}
    if url.startswith("sqlite"):
        path = url.split("///", 1)[-1]
        if path and path != ":memory:":
            try:
                Path(path).parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise ConfigurationError(f"cannot create the data folder {Path(path).parent}: {exc.strerror}",
                                         hint="choose another with --data-dir or LEGALDOC_DATA_DIR") from None  # fmt: skip
        engine = create_engine(url, connect_args={"timeout": 30}, **pool)
        event.listen(engine, "connect", _sqlite_pragmas)
        event.listen(engine, "begin", _sqlite_begin)
        return engine
    return create_engine(url, pool_pre_ping=True, **pool)


MIGRATION_LOCK = 0x1E6A1D0B  # PostgreSQL advisory lock key: one migrator at a time
HEAD = "0012"
"""The newest migration's revision (a test checks it is Alembic's head): a database already there
is opened without loading Alembic and the migration scripts, a third of a command's start-up."""


def _alembic() -> Config:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    return config


def _at_head(engine: Engine) -> bool:
    """Whether the schema is at `HEAD`, read in a deferred (read-only) transaction."""
    with _reachable(engine), engine.execution_options(legaldoc_read_only=True).connect() as connection:
        try:
            with connection.begin():
                return connection.execute(text("SELECT version_num FROM alembic_version")).scalars().all() == [HEAD]
        except DatabaseError:  # no such table: a new database (or not a legaldoc one: the full path says)
            return False


def migrate(engine: Engine) -> str | None:
    """Bring the schema to the newest Alembic revision; safe to call at every start, by any number
    of processes at once: they take turns (a PostgreSQL advisory lock; SQLite's write lock, taken
    by BEGIN IMMEDIATE) and the later ones find nothing left to do. Returns the revision."""
    if _at_head(engine):
        return HEAD
    from alembic import command
    from alembic.runtime.migration import MigrationContext

    config = _alembic()
    sqlite = engine.dialect.name == "sqlite"
    with _reachable(engine), engine.connect() as connection:
        raw: Any = connection.connection.dbapi_connection  # sqlite3 or psycopg
        if sqlite:  # SQLite rebuilds tables to alter them; cascades must not fire meanwhile
            raw.execute("PRAGMA foreign_keys=OFF")
        try:
            with connection.begin():
                if not sqlite:
                    connection.execute(select(func.pg_advisory_xact_lock(MIGRATION_LOCK)))
                config.attributes["connection"] = connection
                command.upgrade(config, "head")
                return MigrationContext.configure(connection).get_current_revision()
        finally:
            if sqlite:
                raw.execute("PRAGMA foreign_keys=ON")


def revisions(url: str) -> tuple[str | None, str | None]:
    """(the database's schema revision, the newest this legaldoc knows), changing nothing."""
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory

    engine = get_engine(url)
    with _reachable(engine), engine.connect() as connection:
        current = MigrationContext.configure(connection).get_current_revision()
    return current, ScriptDirectory.from_config(_alembic()).get_current_head()


@contextmanager
def _reachable(engine: Engine) -> Iterator[None]:
    where = engine.url.render_as_string(hide_password=True)
    try:
        yield
    except OperationalError as exc:
        if engine.dialect.name == "sqlite":  # a file: nothing is "down", the path or the file is wrong
            raise ConfigurationError(f"cannot open the database {where}: {exc.orig}",
                                     hint="check --data-dir / LEGALDOC_DATABASE_URL and the folder's permissions") from None  # fmt: skip
        raise ServiceUnavailable(f"cannot reach the database at {where}: {exc.orig}",
                                 hint="check LEGALDOC_DATABASE_URL and that the server is running") from None  # fmt: skip
    except DatabaseError as exc:  # e.g. a file that is not an SQLite database
        raise ConfigurationError(f"{where} is not a legaldoc database: {exc.orig}",
                                 hint="point --data-dir or LEGALDOC_DATABASE_URL at a legaldoc database") from None  # fmt: skip


class Database:
    """An engine with its schema migrated, and the sessions to use it."""

    def __init__(self, url: str, *, pooled: bool = True) -> None:
        self.url = url
        self.engine = get_engine(url) if pooled else make_engine(url, pooled=False)
        migrate(self.engine)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        self._read_sessions = sessionmaker(
            self.engine.execution_options(legaldoc_read_only=True), expire_on_commit=False
        )

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    @cached_property
    def identity(self) -> str:
        """The database's identity, written when it was created: who serves which database."""
        from legaldoc.storage.tables import Installation

        with self.read() as session:
            return session.scalars(select(Installation.id)).one()

    @property
    def where(self) -> str:
        """The URL, safe to show (no password)."""
        return self.engine.url.render_as_string(hide_password=True)

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A session whose transaction commits on success and rolls back on error."""
        with self._sessions() as session, session.begin():
            yield session

    @contextmanager
    def snapshot(self) -> Iterator[Session]:
        """A read-only session that sees one consistent state for all its queries, however long it
        runs and whatever commits meanwhile (PostgreSQL: REPEATABLE READ; SQLite: one WAL read
        transaction). Long exports and reports read through it."""
        if self.dialect == "postgresql":
            engine = self.engine.execution_options(isolation_level="REPEATABLE READ", postgresql_readonly=True)
            with Session(engine, expire_on_commit=False) as session, session.begin():
                yield session
            return
        with self.read() as session:
            yield session

    @contextmanager
    def read(self) -> Iterator[Session]:
        """A session for reading only; on SQLite it does not wait for or block writers."""
        with self._read_sessions() as session, session.begin():
            yield session
