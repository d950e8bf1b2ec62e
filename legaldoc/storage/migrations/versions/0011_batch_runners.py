"""Batch runners: the `legaldoc run` (private Redis and workers) a batch belongs to, so the sweeper
of a shared installation on the same database leaves that batch to its run, and the run's own
sweeper leaves the shared installation's batches alone. NULL: the shared installation's.

Revision ID: 0011
Revises: 0010
"""

import sqlalchemy as sa
from alembic import op

revision = '0011'
down_revision = '0010'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('batches') as table:
        table.add_column(sa.Column('runner', sa.String(64), nullable=True))


def downgrade() -> None:
    op.drop_column('batches', 'runner')  # in place (SQLite 3.35+), as 0010 does
