"""Alembic environment: always run programmatically by broadcaster.storage.schema on a given connection."""

from alembic import context
from sqlmodel import SQLModel

import broadcaster.domain.models  # noqa: F401  (registers the tables on SQLModel.metadata)
from broadcaster.domain.sqltypes import UTCDateTime
from broadcaster.storage.instance_keys import InstanceSecret  # noqa: F401  (storage's own table)


def render_item(type_, obj, autogen_context):
    # Migrations must not import application types that may change later: write the plain column type.
    if type_ == "type" and isinstance(obj, UTCDateTime):
        return "sa.DateTime(timezone=True)"
    return False


connection = context.config.attributes["connection"]
context.configure(
    connection=connection,
    target_metadata=SQLModel.metadata,
    render_as_batch=True,  # SQLite cannot ALTER most things; batch mode copies the table instead
    compare_type=True,
    render_item=render_item,
)
with context.begin_transaction():
    context.run_migrations()
