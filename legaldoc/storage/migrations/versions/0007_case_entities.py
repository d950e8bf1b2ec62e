"""Case citations become cases: the CASE_CITATION mentions and entities of earlier versions are
CASE mentions and entities (one per reporter citation until their documents are processed again,
which groups parallel citations of one case into one entity).

Revision ID: 0007
Revises: 0006
"""

import sqlalchemy as sa
from alembic import op

revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None


def _rename(old: str, new: str) -> None:
    for table in ('mentions', 'entities'):
        op.execute(sa.text(f"UPDATE {table} SET type = :new WHERE type = :old").bindparams(old=old, new=new))


def upgrade() -> None:
    _rename('CASE_CITATION', 'CASE')


def downgrade() -> None:
    _rename('CASE', 'CASE_CITATION')
