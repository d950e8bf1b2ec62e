"""Final failures keep their traceback digest; extraction results are keyed for the cache;
projects count changes to their canonical entities (the entity-index cache's generation).

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column('documents', sa.Column('error_digest', sa.String(length=16), nullable=True))
    op.add_column('documents', sa.Column('extract_key', sa.String(length=64), nullable=True))
    op.add_column('projects', sa.Column('entity_generation', sa.Integer(), nullable=False, server_default='0'))
    op.create_index('ix_documents_sha_extract', 'documents', ['sha256', 'extract_key'], unique=False)


def downgrade() -> None:
    op.drop_index('ix_documents_sha_extract', table_name='documents')
    with op.batch_alter_table('projects', schema=None) as batch_op:
        batch_op.drop_column('entity_generation')
    with op.batch_alter_table('documents', schema=None) as batch_op:
        batch_op.drop_column('extract_key')
        batch_op.drop_column('error_digest')
