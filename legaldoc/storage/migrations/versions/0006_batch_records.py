"""What a batch did stays the batch's: each document's stage, error category, message and attempts
as they were when it ended in that batch (a later batch reprocessing the file no longer rewrites
them), the batch's report as settled, and when each canonical entity first appeared.

Revision ID: 0006
Revises: 0005
"""

import sqlalchemy as sa
from alembic import op

revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('batch_documents') as table:
        table.add_column(sa.Column('stage', sa.String(length=20), nullable=True))
        table.add_column(sa.Column('error_category', sa.String(length=20), nullable=True))
        table.add_column(sa.Column('attempts', sa.Integer(), nullable=False, server_default='0'))
        table.add_column(sa.Column('finished_at', sa.DateTime(timezone=True), nullable=True))
    with op.batch_alter_table('batches') as table:
        table.add_column(sa.Column('report', sa.JSON(), nullable=True))
    with op.batch_alter_table('entities') as table:
        table.add_column(sa.Column('created_at', sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('entities') as table:
        table.drop_column('created_at')
    with op.batch_alter_table('batches') as table:
        table.drop_column('report')
    with op.batch_alter_table('batch_documents') as table:
        for name in ('finished_at', 'attempts', 'error_category', 'stage'):
            table.drop_column(name)
