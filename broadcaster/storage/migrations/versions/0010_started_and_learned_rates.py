"""delivery.started_at (claimed vs in flight) and account_rate (the pace a platform really allows)

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-02 01:50:00.000000

`started_at` is set when a claimed delivery's request is about to leave; a row whose lease runs out
becomes `unknown` (maybe sent, counted as a possible duplicate when sent again) only when it was started,
and goes back to `queued` otherwise. `account_rate` keeps each account's learned rate (after 429s).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0010'
down_revision: str | None = '0009'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('delivery') as batch_op:
        batch_op.add_column(sa.Column('started_at', sa.DateTime(timezone=True), nullable=True))
    op.create_table(
        'account_rate',
        sa.Column('account_id', sa.Integer(), nullable=False),
        sa.Column('rate', sa.Float(), nullable=False),
        sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(['account_id'], ['account.id']),
        sa.PrimaryKeyConstraint('account_id'),
    )


def downgrade() -> None:
    op.drop_table('account_rate')
    with op.batch_alter_table('delivery') as batch_op:
        batch_op.drop_column('started_at')
