"""Textract jobs: the job started for a document's pages, so a killed worker resumes it.

Revision ID: 0009
Revises: 0008
"""

import sqlalchemy as sa
from alembic import op

revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'textract_jobs',
        sa.Column('id', sa.Integer(), primary_key=True),
        sa.Column('document_id', sa.Integer(), sa.ForeignKey('documents.id', ondelete='CASCADE'), nullable=False),
        sa.Column('batch_id', sa.String(length=40), sa.ForeignKey('batches.id', ondelete='SET NULL'), nullable=True),
        sa.Column('sha256', sa.String(length=64), nullable=False),
        sa.Column('bucket', sa.String(length=255), nullable=False),
        sa.Column('key', sa.String(length=1024), nullable=False),
        sa.Column('job_id', sa.String(length=255), nullable=False),
        sa.Column('pages', sa.JSON(), nullable=False),
        sa.Column('status', sa.String(length=20), nullable=False),
        sa.Column('cost_usd', sa.Float(), nullable=False, server_default='0'),
        sa.Column('polls', sa.Integer(), nullable=False, server_default='0'),
        sa.Column('deadline_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('started_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('finished_at', sa.DateTime(timezone=True), nullable=True),
        sa.UniqueConstraint('document_id', 'sha256', name='uq_textract_jobs_document_sha'),
    )
    op.create_index('ix_textract_jobs_batch', 'textract_jobs', ['batch_id'])


def downgrade() -> None:
    op.drop_index('ix_textract_jobs_batch', table_name='textract_jobs')
    op.drop_table('textract_jobs')
