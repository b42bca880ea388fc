"""Content revisions and the four-eyes approval workflow."""

from __future__ import annotations

from pathlib import Path

import pytest

from broadcaster.domain.errors import InputError, PermissionDenied, WorkflowError
from broadcaster.editorial import workflow
from broadcaster.storage.app import App
from tests.helpers import actor, add_users, seed_lai_chau

BODY = "Hướng dẫn **nộp hồ sơ** cho {unit_name}: https://dichvucong.gov.vn"


async def _world(app: App) -> None:
    await seed_lai_chau(app, villages=False)
    await add_users(
        app,
        [("ed", "editor", None), ("ap", "approver", None), ("ap2", "approver", None), ("v", "viewer", None)],
    )


async def _new(app: App, body: str = BODY, **kwargs: object) -> int:
    ed = await actor(app, "ed")
    async with app.transaction() as s:
        item, _ = await workflow.create(
            s, ed, title="Dịch vụ công", body=body, category="chinh-quyen-so", max_bytes=1000, **kwargs
        )  # type: ignore[arg-type]
    assert item.id is not None
    return item.id


async def test_happy_path_pins_the_revision_hash(app: App) -> None:
    await _world(app)
    cid = await _new(app, links=["https://dichvucong.gov.vn"])
    ed, ap = await actor(app, "ed"), await actor(app, "ap")
    async with app.transaction() as s:
        await workflow.submit(s, ed, cid)
    async with app.transaction() as s:
        approval = await workflow.approve(s, ap, cid, revision_number=1)
    async with app.transaction() as s:
        shown = await workflow.show(s, cid)
    assert shown.status == "approved" and shown.approved_revision == 1
    assert shown.revisions[0].category == "chính quyền số"
    assert approval.revision_sha256 == shown.revisions[0].sha256
    assert shown.decisions[0].by == "ap"


async def test_author_cannot_approve_own_revision(app: App) -> None:
    await _world(app)
    ap = await actor(app, "ap")
    async with app.transaction() as s:
        item, _ = await workflow.create(
            s, ap, title="T", body="nội dung", category="kinh tế số", max_bytes=10
        )
        await workflow.submit(s, ap, item.id or 0)
    with pytest.raises(PermissionDenied, match="wrote revision 1"):
        async with app.transaction() as s:
            await workflow.approve(s, ap, item.id or 0)
    async with app.transaction() as s:
        assert (await workflow.get(s, item.id or 0)).status == "submitted"


async def test_edit_after_approval_needs_a_new_approval(app: App) -> None:
    await _world(app)
    cid = await _new(app)
    ed, ap, ap2 = await actor(app, "ed"), await actor(app, "ap"), await actor(app, "ap2")
    async with app.transaction() as s:
        await workflow.submit(s, ed, cid)
        await workflow.approve(s, ap, cid)
    async with app.transaction() as s:
        revision = await workflow.edit(s, ap, cid, body=BODY + "\n\nCập nhật.", max_bytes=10)
    assert revision.number == 2
    async with app.transaction() as s:
        item = await workflow.get(s, cid)
        assert (item.status, item.approved_revision) == ("draft", None)
    with pytest.raises(WorkflowError, match="is draft"):
        async with app.transaction() as s:
            await workflow.approve(s, ap2, cid)
    async with app.transaction() as s:
        await workflow.submit(s, ap, cid)
    with pytest.raises(PermissionDenied):  # ap wrote revision 2 now
        async with app.transaction() as s:
            await workflow.approve(s, ap, cid)
    with pytest.raises(WorkflowError, match="revision 1 is not the latest"):
        async with app.transaction() as s:
            await workflow.approve(s, ap2, cid, revision_number=1)
    async with app.transaction() as s:
        await workflow.approve(s, ap2, cid, revision_number=2)
        shown = await workflow.show(s, cid)
    assert shown.approved_revision == 2 and shown.revisions[0].body == BODY  # revision 1 unchanged
    assert shown.revisions[0].sha256 != shown.revisions[1].sha256


async def test_reject_needs_reason_and_can_be_resubmitted(app: App) -> None:
    await _world(app)
    cid = await _new(app)
    ed, ap = await actor(app, "ed"), await actor(app, "ap")
    async with app.transaction() as s:
        await workflow.submit(s, ed, cid)
    with pytest.raises(InputError, match="needs a reason"):
        async with app.transaction() as s:
            await workflow.reject(s, ap, cid, "  ")
    async with app.transaction() as s:
        await workflow.reject(s, ap, cid, "Thiếu số điện thoại hỗ trợ")
        await workflow.submit(s, ed, cid)
        await workflow.archive(s, ed, cid)
    with pytest.raises(WorkflowError, match="archived"):
        async with app.transaction() as s:
            await workflow.edit(s, ed, cid, title="x", max_bytes=10)
    async with app.transaction() as s:
        listed = await workflow.list_items(s, "archived")
    assert [i.id for i in listed] == [cid]


async def test_bad_content_and_roles(app: App, tmp_path: Path) -> None:
    await _world(app)
    with pytest.raises(InputError, match="unknown variable"):
        await _new(app, body="Chào {ten_xa}")
    with pytest.raises(InputError, match="empty body"):
        await _new(app, body="   ")
    with pytest.raises(InputError, match="must be an http"):
        await _new(app, links=["dichvucong.gov.vn"])
    exe = tmp_path / "x.png"
    exe.write_bytes(b"MZ not an image")
    with pytest.raises(InputError, match="unsupported file type"):
        await _new(app, files=[exe])
    viewer = await actor(app, "v")
    with pytest.raises(PermissionDenied, match="may not write content"):
        async with app.transaction() as s:
            await workflow.create(s, viewer, title="x", body="y", category="z", max_bytes=1)
    ed = await actor(app, "ed")
    async with app.transaction() as s:
        assert (await workflow.list_items(s)) == []
    cid = await _new(app)
    async with app.transaction() as s:
        await workflow.submit(s, ed, cid)
    with pytest.raises(PermissionDenied, match="may not approve"):
        async with app.transaction() as s:
            await workflow.approve(s, ed, cid)


async def test_no_approval_by_an_author_of_any_revision_since_the_last_approval(app: App) -> None:
    """Someone else editing only the title does not make the body's author a second pair of eyes."""
    await _world(app)
    await add_users(app, [("ap3", "approver", None)])
    ap, ap2, ap3 = await actor(app, "ap"), await actor(app, "ap2"), await actor(app, "ap3")
    async with app.transaction() as s:
        item, _ = await workflow.create(s, ap, title="T", body=BODY, category="kinh tế số", max_bytes=10)
    cid = item.id or 0
    async with app.transaction() as s:
        await workflow.edit(s, ap2, cid, title="Tiêu đề mới", max_bytes=10)  # revision 2: the title only
        await workflow.submit(s, ap2, cid)
    with pytest.raises(PermissionDenied, match=r"ap wrote revision 1 of content \d+ since it was created"):
        async with app.transaction() as s:
            await workflow.approve(s, ap, cid)
    with pytest.raises(PermissionDenied, match="ap2 wrote revision 2"):
        async with app.transaction() as s:
            await workflow.approve(s, ap2, cid)
    async with app.transaction() as s:
        await workflow.approve(s, ap3, cid)
    # After that approval, only what was written since counts: ap2's revision 2 is behind it.
    async with app.transaction() as s:
        await workflow.edit(s, ap, cid, body=BODY + "\n\nCập nhật.", max_bytes=10)
        await workflow.edit(s, ap3, cid, title="Tiêu đề 3", max_bytes=10)
        await workflow.submit(s, ap, cid)
    for who, wrote in ((ap, "3"), (ap3, "4")):
        with pytest.raises(PermissionDenied, match=f"wrote revision {wrote} .* since its last approval"):
            async with app.transaction() as s:
                await workflow.approve(s, who, cid)
    async with app.transaction() as s:
        assert (await workflow.approve(s, ap2, cid)).user_id == ap2.id
