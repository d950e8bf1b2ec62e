"""Full-text search over chunk text: an FTS5 index kept in step with `chunks` by triggers on SQLite,
a generated `tsvector` column with a GIN index on PostgreSQL. Both stem English words (porter /
the `english` configuration) so the same query finds the same chunks on either. Existing chunks
are indexed by the migration.

Revision ID: 0005
Revises: 0004
"""

from alembic import op

revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None

SQLITE_UP = [
    "CREATE VIRTUAL TABLE chunks_fts USING fts5(text, content='chunks', content_rowid='id', tokenize='porter unicode61')",
    """CREATE TRIGGER chunks_fts_insert AFTER INSERT ON chunks BEGIN
         INSERT INTO chunks_fts(rowid, text) VALUES (new.id, new.text);
       END""",
    """CREATE TRIGGER chunks_fts_delete AFTER DELETE ON chunks BEGIN
         INSERT INTO chunks_fts(chunks_fts, rowid, text) VALUES ('delete', old.id, old.text);
       END""",
    """CREATE TRIGGER chunks_fts_update AFTER UPDATE OF text ON chunks BEGIN
         INSERT INTO chunks_fts(chunks_fts, rowid, text) VALUES ('delete', old.id, old.text);
         INSERT INTO chunks_fts(rowid, text) VALUES (new.id, new.text);
       END""",
    "INSERT INTO chunks_fts(chunks_fts) VALUES ('rebuild')",
]

POSTGRES_UP = [
    "ALTER TABLE chunks ADD COLUMN search tsvector GENERATED ALWAYS AS (to_tsvector('english', text)) STORED",
    "CREATE INDEX ix_chunks_search ON chunks USING gin (search)",
]


def upgrade() -> None:
    dialect = op.get_bind().dialect.name
    for statement in SQLITE_UP if dialect == 'sqlite' else POSTGRES_UP:
        op.execute(statement)


def downgrade() -> None:
    if op.get_bind().dialect.name == 'sqlite':
        for name in ('chunks_fts_insert', 'chunks_fts_delete', 'chunks_fts_update'):
            op.execute(f"DROP TRIGGER IF EXISTS {name}")
        op.execute("DROP TABLE IF EXISTS chunks_fts")
    else:
        op.execute("DROP INDEX IF EXISTS ix_chunks_search")
        op.execute("ALTER TABLE chunks DROP COLUMN IF EXISTS search")
