"""Batches, batch membership, stage claims (version, lease) and duplicate links.

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('batches',
    sa.Column('id', sa.String(length=40), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('lock_name', sa.String(length=200), nullable=False),
    sa.Column('project_id', sa.Integer(), nullable=False),
    sa.Column('priority', sa.Integer(), nullable=False),
    sa.Column('status', sa.String(length=20), nullable=False),
    sa.Column('options', sa.JSON(), nullable=False),
    sa.Column('manifest', sa.String(length=2000), nullable=True),
    sa.Column('total', sa.Integer(), nullable=False),
    sa.Column('succeeded', sa.Integer(), nullable=False),
    sa.Column('failed', sa.Integer(), nullable=False),
    sa.Column('skipped', sa.Integer(), nullable=False),
    sa.Column('cancelled', sa.Integer(), nullable=False),
    sa.Column('errors_by_category', sa.JSON(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('finished_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['project_id'], ['projects.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('batches', schema=None) as batch_op:
        batch_op.create_index('ix_batches_lock_status', ['lock_name', 'status'], unique=False)

    op.create_table('batch_documents',
    sa.Column('batch_id', sa.String(length=40), nullable=False),
    sa.Column('document_id', sa.Integer(), nullable=False),
    sa.Column('outcome', sa.String(length=20), nullable=True),
    sa.Column('reason', sa.String(length=500), nullable=True),
    sa.ForeignKeyConstraint(['batch_id'], ['batches.id'], ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['document_id'], ['documents.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('batch_id', 'document_id')
    )
    with op.batch_alter_table('batch_documents', schema=None) as batch_op:
        batch_op.create_index('ix_batch_documents_document', ['document_id'], unique=False)

    with op.batch_alter_table('documents', schema=None) as batch_op:
        batch_op.add_column(sa.Column('batch_id', sa.String(length=40), nullable=True))
        batch_op.add_column(sa.Column('version', sa.Integer(), nullable=False, server_default='0'))
        batch_op.add_column(sa.Column('claimed_by', sa.String(length=200), nullable=True))
        batch_op.add_column(sa.Column('lease_expires_at', sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('duplicate_of', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('processed_sha256', sa.String(length=64), nullable=True))
        batch_op.alter_column('sha256',
               existing_type=sa.VARCHAR(length=64),
               nullable=True)
        batch_op.alter_column('size',
               existing_type=sa.INTEGER(),
               nullable=True)
        batch_op.create_index('ix_documents_batch_status', ['batch_id', 'status'], unique=False)
        batch_op.create_index('ix_documents_project_processed', ['project_id', 'processed_sha256'], unique=False)
        batch_op.create_foreign_key('fk_documents_batch_id', 'batches', ['batch_id'], ['id'], ondelete='SET NULL')
        batch_op.create_foreign_key('fk_documents_duplicate_of', 'documents', ['duplicate_of'], ['id'], ondelete='SET NULL')
    # Documents already done keep counting as processed content.
    op.execute("UPDATE documents SET processed_sha256 = sha256 WHERE status = 'done'")



def downgrade() -> None:
    with op.batch_alter_table('documents', schema=None) as batch_op:
        batch_op.drop_constraint('fk_documents_duplicate_of', type_='foreignkey')
        batch_op.drop_constraint('fk_documents_batch_id', type_='foreignkey')
        batch_op.drop_index('ix_documents_project_processed')
        batch_op.drop_index('ix_documents_batch_status')
        batch_op.alter_column('size',
               existing_type=sa.INTEGER(),
               nullable=False)
        batch_op.alter_column('sha256',
               existing_type=sa.VARCHAR(length=64),
               nullable=False)
        batch_op.drop_column('processed_sha256')
        batch_op.drop_column('duplicate_of')
        batch_op.drop_column('lease_expires_at')
        batch_op.drop_column('claimed_by')
        batch_op.drop_column('version')
        batch_op.drop_column('batch_id')

    with op.batch_alter_table('batch_documents', schema=None) as batch_op:
        batch_op.drop_index('ix_batch_documents_document')

    op.drop_table('batch_documents')
    with op.batch_alter_table('batches', schema=None) as batch_op:
        batch_op.drop_index('ix_batches_lock_status')

    op.drop_table('batches')
