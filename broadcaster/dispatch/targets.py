"""From stored rows to what adapters take: groups to targets (the unit's names for template variables,
the admins), attachments to media."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from broadcaster.domain.models import Attachment, RevisionAttachment
from broadcaster.domain.ports import ADMIN_ACTIVE, Admin, Media, Target
from broadcaster.units.tree import UnitTree

# Which template variable each level of the tree fills.
_VARIABLE_OF_LEVEL = {"province": "province", "district": "district", "commune": "commune"}


def variables_for(tree: UnitTree, unit_id: int) -> dict[str, str]:
    """``unit_name`` plus the names of the unit's commune, district and province on the tree's day.

    A level the unit does not have (no district after 2025-07-01) is an empty string, not an error:
    the text was approved with the variable, and the tree decides its value on the send date.
    """
    values = dict.fromkeys(("unit_name", "commune", "district", "province"), "")
    node = tree.nodes.get(unit_id)
    if node is None:
        return values
    values["unit_name"] = node.name
    for each in (node, *tree.ancestors(unit_id)):
        key = _VARIABLE_OF_LEVEL.get(each.level)
        if key and not values[key]:
            values[key] = each.name
    return values


class GroupView(Protocol):
    """What a send needs of a group: a ``ChatGroup`` or a plain row of its table (the dispatcher reads
    rows, not ORM objects: building a thousand model instances per batch cost more than the claim)."""

    @property
    def id(self) -> int | None: ...
    @property
    def account_id(self) -> int: ...
    @property
    def unit_id(self) -> int: ...
    @property
    def platform(self) -> str: ...
    @property
    def external_id(self) -> str: ...
    @property
    def title(self) -> str: ...
    @property
    def mode(self) -> str: ...
    @property
    def status(self) -> str: ...
    @property
    def admins(self) -> Sequence[Mapping[str, Any]]: ...


def target_for(group: GroupView, tree: UnitTree, variables: dict[str, str] | None = None) -> Target:
    """The adapter's view of a group; ``variables`` may be passed in when the caller caches them."""
    return Target(
        platform=group.platform,
        external_id=group.external_id,
        title=group.title,
        mode=group.mode,
        admins=tuple(
            Admin(a["name"], a["channel"], a["address"], a.get("status", ADMIN_ACTIVE)) for a in group.admins
        ),
        variables=variables if variables is not None else variables_for(tree, group.unit_id),
    )


def media_from(rows: Sequence[Attachment], link_base: str | None = None) -> list[Media]:
    """Stored attachments as adapter media; ``link_base`` (the public URL of ``cns serve``) gives links."""
    base = link_base.rstrip("/") if link_base else None
    return [
        Media(r.sha256, r.filename, r.media_type, r.data, f"{base}/a/{r.sha256}" if base else None)
        for r in rows
    ]


async def revision_media(
    session: AsyncSession, revision_id: int | None, link_base: str | None
) -> list[Media]:
    """A revision's attachments, in their order, as adapter media (see :func:`media_from`)."""
    rows = await session.execute(
        select(Attachment)
        .join(RevisionAttachment, col(RevisionAttachment.sha256) == col(Attachment.sha256))
        .where(col(RevisionAttachment.revision_id) == revision_id)
        .order_by(col(RevisionAttachment.position))
    )
    return media_from(list(rows.scalars()), link_base)
