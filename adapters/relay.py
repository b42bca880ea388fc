"""Relay (assisted forward): for a group no API can post into, the post goes to the group's admins.

Each admin is reached one to one through the channel named in the group's admin list (Zalo OA follower
message, Telegram private chat, a webhook bridge...), with a short note saying which group to forward it
to and a confirmation link; the delivery then waits for the admin to confirm (handled by the inbound
endpoints). Success when at least one admin was reached; when none can be, the first admin's error is
raised (a permanent one if no admin has a usable channel).
"""

from __future__ import annotations

import html
from collections.abc import Callable, Mapping

from broadcaster.domain.errors import DeliveryError, PermanentError, TargetGone
from broadcaster.domain.ports import ADMIN_UNREACHABLE, Admin, RenderedMessage, Sender, SendResult, Target

HTML_CHANNELS = {"telegram"}


def admin_message(message: RenderedMessage, channel: str, header: str, footer: str) -> RenderedMessage:
    """The post as plain text (escaped for HTML channels), between the forwarding note and the link."""
    plain = (header, *message.plain_parts, footer)
    parts = tuple(html.escape(p, quote=False) for p in plain) if channel in HTML_CHANNELS else plain
    return RenderedMessage(
        parts=parts,
        fmt="html" if channel in HTML_CHANNELS else "plain",
        plain_parts=plain,
        media=message.media,
        link=message.link,
        title=message.title,
    )


class RelaySender:
    platform = "relay"

    def __init__(self, channels: Mapping[str, Sender], confirm_link: Callable[[str], str]) -> None:
        self.channels = channels
        self.confirm_link = confirm_link

    @staticmethod
    def _admin_target(admin: Admin, sent: tuple[str, ...] = ()) -> Target:
        return Target(admin.channel, admin.address, admin.name, kind="user", sent=sent)

    async def _each(
        self, target: Target, build: Callable[[Admin], RenderedMessage], key: str, sent: tuple[str, ...] = ()
    ) -> SendResult:
        """Each admin's package (note, post, link: several messages) through their channel. The ids are
        ``channel:address:message id``; ``sent`` holds those an earlier attempt sent, so an admin whose
        package broke off at part k gets it from part k, and one who got it whole gets nothing again."""
        ids: list[str] = []
        partial: list[str] = []  # packages that broke off: kept so the retry resumes them
        errors: list[DeliveryError] = []
        gone: list[str] = []  # admins their channel says are gone (unfollowed the OA, blocked the bot)
        reachable = [a for a in target.admins if a.channel in self.channels and a.status != ADMIN_UNREACHABLE]
        if not reachable:
            if any(a.status == ADMIN_UNREACHABLE for a in target.admins):
                raise TargetGone(f"relay: no admin of {target.title or target.external_id} can be reached")
            raise PermanentError(
                f"relay: no admin of {target.title or target.external_id} has a configured channel"
            )
        for admin in reachable:
            prefix = f"{admin.channel}:{admin.address}:"
            before = tuple(i.removeprefix(prefix) for i in sent if i.startswith(prefix))
            try:
                result = await self.channels[admin.channel].send(
                    self._admin_target(admin, before), build(admin), f"{key}:{admin.channel}:{admin.address}"
                )
            except TargetGone as exc:  # this admin, not the group: the others may still forward it
                gone.append(admin.key)
                errors.append(exc)
                continue
            except DeliveryError as exc:
                errors.append(exc)
                partial.extend(prefix + mid for mid in exc.sent_ids)
                continue
            ids.extend(prefix + mid for mid in result.message_ids)
        if not ids:
            # The group is gone only when every admin is; otherwise the first other error decides.
            error = next((e for e in errors if not isinstance(e, TargetGone)), errors[0])
            error = error.after(tuple(partial))
            error.gone_admins = tuple(gone)
            raise error
        return SendResult(tuple(ids), accepted_only=True, gone_admins=tuple(gone))

    async def send(self, target: Target, message: RenderedMessage, key: str) -> SendResult:
        def build(admin: Admin) -> RenderedMessage:
            ask = (
                f"Kính gửi {admin.name}: nhờ anh/chị đăng tin dưới đây vào nhóm "
                f"«{target.title or target.external_id}»."
            )
            header = f"Nhắc lại (chưa nhận được xác nhận). {ask}" if target.reminder else ask
            # The same link as the first request: either message confirms the one delivery.
            footer = f"Đăng xong, bấm để xác nhận: {self.confirm_link(key)}"
            return admin_message(message, admin.channel, header, footer)

        # A reminder is a new message on each channel (a webhook receiver dedupes by key).
        if target.reminder:
            return await self._each(target, build, f"{key}:reminder-{target.reminder}")
        return await self._each(target, build, key, target.sent)

    async def edit(self, target: Target, message_id: str, message: RenderedMessage) -> None:
        def build(admin: Admin) -> RenderedMessage:
            header = (
                f"Kính gửi {admin.name}: tin đã đăng trong nhóm «{target.title}» có đính chính, nhờ đăng lại:"
            )
            return admin_message(message, admin.channel, header, "Xin cảm ơn.")

        await self._each(target, build, f"edit:{message_id}")

    async def delete(self, target: Target, message_ids: tuple[str, ...]) -> None:
        notice = RenderedMessage(parts=(), fmt="plain", plain_parts=())

        def build(admin: Admin) -> RenderedMessage:
            header = (
                f"Kính gửi {admin.name}: tin đã chuyển vào nhóm «{target.title}» được thu hồi. "
                "Nhờ anh/chị gỡ tin đó khỏi nhóm."
            )
            return admin_message(notice, admin.channel, header, "Xin cảm ơn.")

        await self._each(target, build, f"recall:{','.join(message_ids)}")

    async def member_count(self, target: Target) -> int | None:
        return None  # the group is not ours to read: unknown, never 0

    async def close(self) -> None:
        """The channels belong to their own accounts and are closed there."""
