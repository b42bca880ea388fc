"""From stored groups to adapter targets: the unit's names for template variables, the admins."""

from __future__ import annotations

from broadcaster.models import ChatGroup
from broadcaster.ports import Admin, Target
from broadcaster.unit_tree import UnitTree

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


def target_for(group: ChatGroup, tree: UnitTree, variables: dict[str, str] | None = None) -> Target:
    """The adapter's view of a group; ``variables`` may be passed in when the caller caches them."""
    return Target(
        platform=group.platform,
        external_id=group.external_id,
        title=group.title,
        mode=group.mode,
        admins=tuple(Admin(a["name"], a["channel"], a["address"]) for a in group.admins),
        variables=variables if variables is not None else variables_for(tree, group.unit_id),
    )
