"""The Sender contract, run against the in-memory twin and every real adapter on its sandbox.

What every implementation promises (``broadcaster.domain.ports.Sender``), as these tests check it:

1. ``send`` returns one message id per message the platform shows, in the order shown, and each id is
   a message the platform holds with the text and media expected for the platform's ``shape`` (see
   ``harness``): a text of N parts is N ids on a chat (Telegram, Zalo, memory), one post on Facebook
   and on a webhook bridge; media add one id per medium on a chat, except a single medium sent with a
   caption where the platform takes captions (Telegram, memory); a post carries them all.
2. A message with nothing to show is refused (PermanentError), never "sent" with no id.
3. The same idempotency key sent twice: the webhook bridge de-duplicates (same ids, one message); the
   chats post again (new ids, so a re-sent unknown delivery is a visible duplicate); Facebook refuses
   an identical status (506, PermanentError).
4. ``edit`` changes the message in place where the platform can; ``delete`` removes exactly the ids
   given; where the platform cannot (Zalo OA), both raise NotSupported and change nothing.
5. Deleting a message already gone succeeds (a recall run again is harmless); editing it is a
   PermanentError for the message, not TargetGone (the group still takes posts).
6. ``member_count`` is an int (the platform's number) or None when the platform does not say, never 0.
7. Errors: a gone target -> TargetGone; rate limited -> RateLimited with retry_after > 0; refused
   credentials -> AuthFailed; 5xx -> TransientError (not RateLimited), and nothing was posted; a moved
   group -> TargetMigrated(new_id). Each is skipped, with the reason, where the sandbox cannot produce it.
8. ``close()`` may be called twice.
"""

from __future__ import annotations

from dataclasses import replace

import pytest

from broadcaster.domain.errors import (
    AuthFailed,
    NotSupported,
    PermanentError,
    RateLimited,
    TargetGone,
    TargetMigrated,
    TransientError,
)
from broadcaster.domain.ports import Media, RenderedMessage, Sender
from tests.adapters.contract.harness import Delivered, Harness, contract

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64
PARTS = (
    "(1/3) Bà con cài ứng dụng VNeID để làm thủ tục trực tuyến.",
    "(2/3) Thanh toán học phí và tiền điện qua ngân hàng số.",
    "(3/3) Mọi thắc mắc xin hỏi Tổ Công nghệ số cộng đồng của thôn.",
)


def photo(n: int) -> Media:
    return Media(f"{n:064x}", f"anh-{n}.png", "image/png", PNG + bytes([n]))


def message(
    h: Harness, *parts: str, media: tuple[Media, ...] = (), caption: str | None = None
) -> RenderedMessage:
    return RenderedMessage(
        parts=parts, fmt=h.fmt, plain_parts=parts, media=media, title="Thông báo", caption=caption
    )


def expected(h: Harness, sent: RenderedMessage) -> list[tuple[str | None, tuple[str, ...]]]:
    """(text, media kinds) of each message the platform should show for ``sent``, in order."""
    kinds = tuple(m.kind for m in sent.media)
    if h.shape == "post":
        return [("\n\n".join(sent.plain_parts), kinds)]
    if h.shape == "caption" and len(sent.media) == 1 and sent.caption is not None:
        return [(sent.caption, kinds)]
    return [(part, ()) for part in sent.parts] + [(None, (kind,)) for kind in kinds]


async def send_and_read(
    h: Harness, sent: RenderedMessage, key: str
) -> tuple[tuple[str, ...], list[Delivered]]:
    """Send, then read back what the platform received for it."""
    before = len(await h.delivered())
    result = await h.sender.send(h.target, sent, key)
    return result.message_ids, (await h.delivered())[before:]


@contract()
async def test_is_a_sender(harness: Harness) -> None:
    assert isinstance(harness.sender, Sender)
    assert harness.sender.platform == harness.target.platform


@contract()
async def test_text_parts_one_id_per_message_in_order(harness: Harness) -> None:
    sent = message(harness, *PARTS)
    ids, new = await send_and_read(harness, sent, "contract-text")
    assert ids == tuple(d.id for d in new)  # every id is a message received, in order, and no other
    assert len(set(ids)) == len(ids)
    assert [(d.text, d.media) for d in new] == expected(harness, sent)
    assert len(ids) == (1 if harness.shape == "post" else len(PARTS))


@contract()
async def test_photo_with_caption(harness: Harness) -> None:
    text = "Ảnh hướng dẫn cài VNeID."
    sent = message(harness, text, media=(photo(1),), caption=text)
    ids, new = await send_and_read(harness, sent, "contract-photo")
    assert ids == tuple(d.id for d in new)
    assert [(d.text, d.media) for d in new] == expected(harness, sent)
    assert len(ids) == {"caption": 1, "chat": 2, "post": 1}[harness.shape]


@contract()
async def test_parts_and_album_one_id_per_item(harness: Harness) -> None:
    sent = message(harness, *PARTS[:2], media=(photo(2), photo(3)))  # too long for a caption
    ids, new = await send_and_read(harness, sent, "contract-album")
    assert ids == tuple(d.id for d in new)
    assert [(d.text, d.media) for d in new] == expected(harness, sent)
    assert len(ids) == (1 if harness.shape == "post" else 4)


@contract(
    telegram="sends nothing and returns SendResult(()) for a message without parts or media",
    zalo="sends nothing and returns SendResult(()) for a message without parts or media",
)
async def test_empty_message_is_refused(harness: Harness) -> None:
    with pytest.raises(PermanentError):
        await harness.sender.send(harness.target, message(harness), "contract-empty")
    assert await harness.delivered() == []


@contract()
async def test_same_key_twice(harness: Harness) -> None:
    sent = message(harness, "Lịch tiêm chủng tháng này.")
    first, posted = await send_and_read(harness, sent, "contract-same-key")
    assert first == tuple(d.id for d in posted)
    if harness.same_key == "refused":
        with pytest.raises(PermanentError):
            await harness.sender.send(harness.target, sent, "contract-same-key")
        assert len(await harness.delivered()) == len(posted)
        return
    again, new = await send_and_read(harness, sent, "contract-same-key")
    if harness.same_key == "dedupe":
        assert again == first and new == []
    else:
        assert harness.same_key == "duplicate"
        assert not set(again) & set(first) and again == tuple(d.id for d in new)
        assert [d.text for d in new] == [d.text for d in posted]


@contract()
async def test_edit_in_place_or_not_supported(harness: Harness) -> None:
    (mid,), _ = await send_and_read(harness, message(harness, "Họp thôn lúc 8 giờ."), "contract-edit")
    correction = message(harness, "Họp thôn lúc 9 giờ.")
    if not harness.can_edit:
        with pytest.raises(NotSupported):
            await harness.sender.edit(harness.target, mid, correction)
        assert [d.text for d in await harness.delivered() if d.id == mid] == ["Họp thôn lúc 8 giờ."]
        return
    await harness.sender.edit(harness.target, mid, correction)
    assert [d.text for d in await harness.delivered() if d.id == mid] == ["Họp thôn lúc 9 giờ."]


@contract()
async def test_delete_exactly_the_ids_or_not_supported(harness: Harness) -> None:
    (keep,), _ = await send_and_read(harness, message(harness, "Tin giữ lại."), "contract-keep")
    ids, _ = await send_and_read(harness, message(harness, *PARTS[:2]), "contract-delete")
    if not harness.can_delete:
        with pytest.raises(NotSupported):
            await harness.sender.delete(harness.target, ids)
        assert all(not d.deleted for d in await harness.delivered())
        return
    await harness.sender.delete(harness.target, ids)
    left = {d.id for d in await harness.delivered() if not d.deleted}
    assert keep in left and not left & set(ids)


async def _deleted_message(harness: Harness) -> tuple[str, ...]:
    if not harness.can_delete:
        pytest.skip(f"{harness.name}: cannot delete at all (NotSupported)")
    ids, _ = await send_and_read(harness, message(harness, "Tin sẽ thu hồi."), "contract-recall")
    await harness.sender.delete(harness.target, ids)
    return ids


@contract()
async def test_deleting_again_is_harmless_and_a_deleted_message_cannot_be_edited(harness: Harness) -> None:
    """A recall run again (or resumed after a 429) deletes what is left: a message already gone counts
    as deleted. Editing it is refused, but as the message missing, not the group: the group still
    takes posts, so TargetGone would be wrong."""
    ids = await _deleted_message(harness)
    await harness.sender.delete(harness.target, ids)
    if harness.can_edit:
        with pytest.raises(PermanentError) as refused:
            await harness.sender.edit(harness.target, ids[0], message(harness, "Sửa tin đã thu hồi."))
        assert not isinstance(refused.value, TargetGone), refused.value
    await harness.sender.send(harness.target, message(harness, "Tin mới sau thu hồi."), "contract-after")


@contract()
async def test_member_count_is_the_platforms_number(harness: Harness) -> None:
    count = await harness.sender.member_count(harness.target)
    assert type(count) is int and count == harness.members


@contract()
async def test_member_count_unknown_is_none_not_zero(harness: Harness) -> None:
    harness.needs("uncounted")
    assert harness.uncounted is not None
    assert await harness.sender.member_count(harness.uncounted) is None


@contract()
async def test_gone_target(harness: Harness) -> None:
    harness.needs("gone")
    assert harness.gone is not None
    gone = await harness.gone()
    with pytest.raises(TargetGone):
        await harness.sender.send(gone, message(harness, "Tin cho nhóm đã giải tán."), "contract-gone")


@contract()
async def test_rate_limited_with_a_wait(harness: Harness) -> None:
    harness.needs("limit")
    assert harness.limit is not None
    await harness.limit()
    before = await harness.delivered()
    with pytest.raises(RateLimited) as limited:
        await harness.sender.send(harness.target, message(harness, "Tin bị giới hạn."), "contract-429")
    assert limited.value.retry_after > 0
    assert await harness.delivered() == before


@contract()
async def test_bad_credentials(harness: Harness) -> None:
    harness.needs("bad_credentials")
    assert harness.bad_credentials is not None
    refused = await harness.bad_credentials()
    try:
        with pytest.raises(AuthFailed):
            await refused.send(harness.target, message(harness, "Tin không được phép."), "contract-auth")
    finally:
        await refused.close()
    assert await harness.delivered() == []


@contract()
async def test_server_error_is_transient(harness: Harness) -> None:
    harness.needs("fail_5xx")
    assert harness.fail_5xx is not None
    await harness.fail_5xx()
    with pytest.raises(TransientError) as failed:
        await harness.sender.send(harness.target, message(harness, "Tin gặp lỗi 502."), "contract-5xx")
    assert not isinstance(failed.value, RateLimited)
    assert await harness.delivered() == []


@contract()
async def test_migrated_target(harness: Harness) -> None:
    harness.needs("migrated")
    assert harness.migrated is not None
    target, new_id = await harness.migrated()
    with pytest.raises(TargetMigrated) as moved:
        await harness.sender.send(target, message(harness, "Tin cho nhóm đã nâng cấp."), "contract-moved")
    assert moved.value.new_id == new_id


@contract()
async def test_close_twice(harness: Harness) -> None:
    await harness.sender.send(harness.target, message(harness, "Tin trước khi đóng."), "contract-close")
    await harness.sender.close()
    await harness.sender.close()


@contract()
async def test_a_post_that_broke_off_resumes_where_it_stopped(harness: Harness) -> None:
    """A post of three messages fails on the second: the error carries the first one's id, and the
    retry given it (``target.sent``) sends the second and third only; each part is there once."""
    harness.needs("break_after_first")
    assert harness.break_after_first is not None
    await harness.break_after_first()
    sent = message(harness, *PARTS)
    with pytest.raises(TransientError) as broke:
        await harness.sender.send(harness.target, sent, "contract-resume")
    assert len(broke.value.sent_ids) == 1
    again = await harness.sender.send(
        replace(harness.target, sent=broke.value.sent_ids), sent, "contract-resume"
    )
    assert again.message_ids[:1] == broke.value.sent_ids and len(again.message_ids) == 3
    shown = {d.id: d for d in await harness.delivered()}
    assert [shown[i].text for i in again.message_ids] == [text for text, _ in expected(harness, sent)]
    texts = [d.text for d in shown.values()]
    assert all(texts.count(part) == 1 for part in PARTS), texts


@contract()
async def test_a_post_already_out_is_not_sent_again(harness: Harness) -> None:
    """A retry whose every message an earlier attempt sent sends nothing and answers those ids."""
    sent = message(harness, *PARTS)
    first = await harness.sender.send(harness.target, sent, "contract-whole")
    before = len(await harness.delivered())
    again = await harness.sender.send(
        replace(harness.target, sent=first.message_ids), sent, "contract-whole-2"
    )
    assert again.message_ids == first.message_ids and len(await harness.delivered()) == before
