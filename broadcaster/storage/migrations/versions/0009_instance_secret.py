"""instance secret: the link key `cns init` stores with the database

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-30 09:00:00.000000

One new table, nothing else changed. `cns init` (broadcaster.storage.instance_keys.ensure_link_key)
stores 32 random bytes there after upgrading, so a database that had no key gets one in place; every
process that opens the database keys tracked links, relay confirmation links and pseudonyms with it
unless CNS_LINK_SECRET is set. The key is not written here: a migration stays replayable and a
downgrade followed by an upgrade simply leaves `cns init` to make a new one.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0009'
down_revision: str | None = '0008'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        'instance_secret',
        sa.Column('name', sa.String(length=32), nullable=False),
        sa.Column('value', sa.String(length=128), nullable=False),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint('name'),
    )


def downgrade() -> None:
    op.drop_table('instance_secret')
