"""Retry due times: when a document's waiting attempt may run (a retry's backoff or Retry-After), so
the sweeper does not take a delayed retry for a lost message and an early message runs nothing; an
index for the sweeper's query of documents waiting at a stage since before a moment.

Revision ID: 0010
Revises: 0009
"""

import sqlalchemy as sa
from alembic import op

revision = '0010'
down_revision = '0009'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('documents') as table:
        table.add_column(sa.Column('due_at', sa.DateTime(timezone=True), nullable=True))
    op.create_index('ix_documents_waiting', 'documents', ['status', 'stage', 'updated_at', 'due_at'])


def downgrade() -> None:
    op.drop_index('ix_documents_waiting', table_name='documents')
    # ALTER TABLE ... DROP COLUMN in place (SQLite 3.35+): the batch mode's copy-and-move of `documents`
    # fails on SQLite at its DROP TABLE ("database table is locked")
    op.drop_column('documents', 'due_at')
