"""Pages people open from a chat: tracked links (``/l/``), relay confirmations (``/r/``), attachments."""

from __future__ import annotations

import html
import re

from aiohttp import web

from broadcaster.domain.models import Attachment
from broadcaster.domain.states import DeliveryState
from broadcaster.inbound import links
from broadcaster.inbound.links import confirmation_token
from broadcaster.inbound.privacy import pseudonym
from broadcaster.web.state import STATE

_SHA = re.compile(r"^[0-9a-f]{64}$")

PAGE = """<!doctype html><html lang="vi"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1"><meta name="robots" content="noindex">
<title>{title}</title><style>body{{font-family:system-ui,sans-serif;max-width:32rem;margin:2rem auto;
padding:0 1rem;line-height:1.5}}button{{font-size:1.2rem;padding:.8rem 1.6rem}}</style></head>
<body><h1>{title}</h1>{body}</body></html>"""


def _page(title: str, body: str, status: int = 200) -> web.Response:
    return web.Response(
        text=PAGE.format(title=html.escape(title), body=body),
        status=status,
        content_type="text/html",
        headers={"Cache-Control": "no-store"},
    )


def _visitor(request: web.Request) -> str:
    # Behind a reverse proxy on this host, the client is the first X-Forwarded-For hop.
    remote = request.remote or ""
    forwarded = request.headers.get("X-Forwarded-For", "")
    if forwarded and remote in {"127.0.0.1", "::1"}:
        remote = forwarded.split(",")[0].strip()
    agent = request.headers.get("User-Agent", "")
    return f"{remote}|{agent}"


async def tracked_link(request: web.Request) -> web.StreamResponse:
    state = request.app[STATE]
    settings = state.app.settings
    parsed = links.parse_link_code(settings.key_for_links(), request.match_info["code"])
    if parsed is None:
        state.count("link", "invalid")
        return _page("Liên kết không hợp lệ", "<p>Liên kết này không tồn tại.</p>", 404)
    async with state.app.transaction() as s:
        click = await links.resolve_link(s, parsed[0], parsed[1], state.links_of)
        if click is None:
            state.count("link", "invalid")
            return _page("Liên kết không hợp lệ", "<p>Liên kết này không tồn tại.</p>", 404)
        outcome = "preview"
        if request.method == "GET":
            visitor = pseudonym(settings.key_for_pseudonyms(), "web", _visitor(request))
            outcome = await links.record_click(s, click, visitor, request.headers.get("User-Agent", ""))
    state.count("link", outcome)
    raise web.HTTPFound(click.url, headers={"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"})


async def confirmation(request: web.Request) -> web.Response:
    """GET shows a button; only the POST it sends confirms (link previews must not confirm a post)."""
    state = request.app[STATE]
    token = request.match_info["token"]
    key = token.split(".", 1)[0]
    delivery_id = links.parse_confirmation(token, confirmation_token(state.app.settings, key))
    if delivery_id is None:
        state.count("confirmation", "invalid")
        return _page("Liên kết không hợp lệ", "<p>Liên kết xác nhận này không đúng.</p>", 404)
    if request.method == "GET":
        return _page(
            "Xác nhận đã đăng bài",
            '<p>Anh/chị đã đăng bài vào nhóm chưa? Bấm nút để báo với Tổ CNS.</p><form method="post">'
            '<button type="submit">Đã đăng vào nhóm</button></form>',
        )
    async with state.app.transaction() as s:
        outcome = await links.confirm_delivery(s, delivery_id)
    state.count("confirmation", outcome)
    if outcome in {DeliveryState.CONFIRMED, "already"}:
        return _page("Cảm ơn anh/chị", "<p>Đã ghi nhận: bài đã được đăng vào nhóm.</p>")
    if outcome == DeliveryState.RECALLED:
        return _page("Bài đã được thu hồi", "<p>Bài này đã được thu hồi, xin đừng đăng.</p>", 410)
    return _page("Không xác nhận được", f"<p>Bài gửi đang ở trạng thái {html.escape(outcome)}.</p>", 409)


async def attachment(request: web.Request) -> web.StreamResponse:
    state = request.app[STATE]
    sha = request.match_info["sha256"]
    if not _SHA.match(sha):
        raise web.HTTPNotFound()
    async with state.app.sessions() as s:
        row = await s.get(Attachment, sha)
    if row is None:
        raise web.HTTPNotFound()
    return web.Response(
        body=row.data,
        content_type=row.media_type,
        headers={
            "Content-Disposition": f"inline; filename*=UTF-8''{_quote(row.filename)}",
            "Cache-Control": "public, max-age=31536000, immutable",
            "X-Content-Type-Options": "nosniff",
        },
    )


def _quote(name: str) -> str:
    from urllib.parse import quote

    return quote(name, safe="")
