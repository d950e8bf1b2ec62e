"""Indexes on the entity ids of relationships: removing a canonical entity (a document re-processed
leaves some without mentions) cascades to the relationships naming it, and without these indexes
each removal scanned the whole relationships table, twice, on SQLite and PostgreSQL alike.

Revision ID: 0012
Revises: 0011
"""

from alembic import op

revision = '0012'
down_revision = '0011'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index('ix_relationships_source_entity', 'relationships', ['source_entity_id'])
    op.create_index('ix_relationships_target_entity', 'relationships', ['target_entity_id'])


def downgrade() -> None:
    op.drop_index('ix_relationships_target_entity', table_name='relationships')
    op.drop_index('ix_relationships_source_entity', table_name='relationships')
