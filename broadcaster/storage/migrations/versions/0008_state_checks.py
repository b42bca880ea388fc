"""CHECK constraints on every state, status and mode column

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-29 10:12:00.000000

Each column may hold only the values of its enum in broadcaster.domain.states, as of this revision.
The lists are written out here: a migration must not import the application's enums, which will change
after it (a later value needs a later migration that replaces the constraint with its own list).

SQLite cannot add a constraint to a table: batch mode rebuilds each table (copy, drop, rename), which
broadcaster.storage.schema runs with foreign keys off and checks afterwards. A stored value outside a
list makes the upgrade fail, and roll back, naming the constraint.
"""

from collections.abc import Sequence

from alembic import op

revision: str = '0008'
down_revision: str | None = '0007'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

GROUP_MODES = ('direct', 'relay')
GROUP_STATUSES = ('active', 'unreachable', 'migrated', 'archived')

# table -> column -> allowed values; each constraint is named ck_<table>_<column>
CHECKS: dict[str, dict[str, tuple[str, ...]]] = {
    'account': {'status': ('active', 'paused')},
    'chat_group': {'mode': GROUP_MODES, 'status': GROUP_STATUSES},
    'group_status_change': {'previous': GROUP_STATUSES, 'status': GROUP_STATUSES},
    'report_post': {'state': ('sending', 'sent', 'failed', 'refused')},
    'content_item': {'status': ('draft', 'submitted', 'approved', 'rejected', 'archived')},
    'approval': {'decision': ('approved', 'rejected')},
    'dispatch': {'status': ('planned', 'running', 'paused', 'done', 'cancelled', 'recalled')},
    'delivery': {
        'mode': GROUP_MODES,
        'state': (
            'planned',
            'queued',
            'sending',
            'sent',
            'errored',
            'failed',
            'unknown',
            'skipped',
            'recalled',
            'awaiting_confirmation',
            'confirmed',
        ),
    },
    'inbound_event': {'status': ('pending', 'working', 'done', 'unmatched', 'ignored', 'failed')},
    'group_suggestion': {'status': ('pending', 'accepted', 'dismissed')},
    'campaign': {'status': ('active', 'ended')},
}


def _one_of(column: str, values: Sequence[str]) -> str:
    allowed = ", ".join(f"'{value}'" for value in values)
    return f"{column} IN ({allowed})"


def upgrade() -> None:
    for table, columns in CHECKS.items():
        with op.batch_alter_table(table, schema=None) as batch_op:
            for column, values in columns.items():
                batch_op.create_check_constraint(f'ck_{table}_{column}', _one_of(column, values))


def downgrade() -> None:
    for table, columns in reversed(CHECKS.items()):
        with op.batch_alter_table(table, schema=None) as batch_op:
            for column in reversed(columns):
                batch_op.drop_constraint(f'ck_{table}_{column}', type_='check')
