"""Template variables come from the unit's place in the tree on the send date."""

from __future__ import annotations

from datetime import date

from broadcaster.dispatch.targets import target_for, variables_for
from broadcaster.domain.models import ChatGroup
from broadcaster.storage.app import App
from broadcaster.units.tree import load_tree
from tests.helpers import seed_lai_chau


async def test_variables_before_and_after_the_reform(app: App) -> None:
    await seed_lai_chau(app)
    async with app.transaction() as s:
        old = await load_tree(s, date(2025, 6, 30))
        new = await load_tree(s, date(2025, 7, 1))
    assert variables_for(old, old.get("03451").id) == {
        "unit_name": "Xã Mù Cả",
        "commune": "Xã Mù Cả",
        "district": "Huyện Mường Tè",
        "province": "Tỉnh Lai Châu",
    }
    village = variables_for(new, new.get("03451-01").id)
    assert village == {
        "unit_name": "Bản Mù Cả",
        "commune": "Xã Mù Cả",
        "district": "",
        "province": "Tỉnh Lai Châu",
    }
    assert variables_for(new, 10**9)["unit_name"] == ""
    group = ChatGroup(
        unit_id=new.get("03451-01").id,
        platform="zalo",
        account_id=1,
        external_id="g",
        title="CNS_Bản Mù Cả_Xã Mù Cả",
        mode="relay",
        admins=[{"name": "Lò Văn Pọm", "channel": "zalo", "address": "849"}],
    )
    target = target_for(group, new)
    assert target.admins[0].address == "849" and target.variables["commune"] == "Xã Mù Cả"
