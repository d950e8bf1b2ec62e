"""Each database gets an identity, written once at creation: workers report the database they
serve, messages carry the one they belong to, and a mismatch is found at once.

Revision ID: 0004
Revises: 0003
"""

import uuid
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    table = op.create_table(
        'installation',
        sa.Column('id', sa.String(length=36), nullable=False),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint('id'),
    )
    op.bulk_insert(table, [{'id': str(uuid.uuid4()), 'created_at': datetime.now(UTC)}])


def downgrade() -> None:
    op.drop_table('installation')
