"""A sandbox Graph API for Pages (see platforms.md §3 and §6.3).

Any ``/v<N>.<M>/`` prefix; the Page token in ``access_token`` (query, form, multipart) or a Bearer
header; ``{"id": "<page>_<n>"}`` for feed posts, ``{"id", "post_id"}`` for photos (``{"id"}`` when
unpublished), ``attached_media[i]`` multi-photo posts, edit (POST on the post), DELETE, followers.
Errors in the Graph envelope with ``fbtrace_id`` (190 bad token, 100/33 missing object, 200 for any
group feed, 506 duplicate post, injectable codes); a per-Page Business Use Case budget reported in
``x-business-use-case-usage`` on every answer, with 80001 and ``estimated_time_to_regain_access`` when
spent; seeded faults; members who comment, posted to a webhook with ``X-Hub-Signature-256`` over the raw
(ASCII-escaped) bytes. Control API under ``/__sim``.
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
import random
import secrets
import time
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiohttp import web

from adapters.sandbox.common import Emitter, FaultConfig, Faults, fault_middleware

STATUS = {1: 500, 2: 500, 4: 403, 190: 400}


@dataclass(slots=True)
class Page:
    token: str
    name: str = ""
    followers: int = 1200
    calls: list[float] = field(default_factory=list)
    last_message: str | None = None


@dataclass(slots=True)
class GraphState:
    pages: dict[str, Page] = field(default_factory=dict)
    posts: dict[str, dict[str, Any]] = field(default_factory=dict)
    photos: dict[str, dict[str, Any]] = field(default_factory=dict)
    budget: int | None = 4800  # calls per Page per window
    window: float = 3600.0
    inject: list[tuple[int, int | None]] = field(default_factory=list)  # next answers: (code, subcode)
    faults: Faults = field(default_factory=Faults)
    ids: itertools.count[int] = field(default_factory=lambda: itertools.count(100_000_001))
    app_secret: str = field(default_factory=lambda: secrets.token_hex(16))
    webhook_url: str = ""
    comment_rate: float = 0.0
    rng: random.Random = field(default_factory=lambda: random.Random(3))
    emitter: Emitter = field(default_factory=Emitter)

    def add_page(self, page_id: str, token: str | None = None, **kw: Any) -> Page:
        page = self.pages[page_id] = Page(token or secrets.token_urlsafe(24), **kw)
        return page


STATE = web.AppKey("graph_state", GraphState)


class GraphError(Exception):
    def __init__(
        self, code: int, message: str, subcode: int | None = None, headers: dict[str, str] | None = None
    ):
        super().__init__(message)
        self.code, self.message, self.subcode, self.headers = code, message, subcode, headers or {}

    def response(self) -> web.Response:
        error: dict[str, Any] = {
            "message": self.message,
            "type": "OAuthException",
            "code": self.code,
            "fbtrace_id": secrets.token_urlsafe(8),
        }
        if self.subcode:
            error["error_subcode"] = self.subcode
        if self.code in (1, 2, 4, 17, 32, 613, 80001):
            error["is_transient"] = self.code in (1, 2)
        return web.json_response({"error": error}, status=STATUS.get(self.code, 400), headers=self.headers)


async def _params(request: web.Request) -> tuple[dict[str, str], dict[str, tuple[str, bytes, str]]]:
    params: dict[str, str] = dict(request.query)
    files: dict[str, tuple[str, bytes, str]] = {}
    if request.content_type == "multipart/form-data":
        reader = await request.multipart()
        while (part := await reader.next()) is not None:
            if not isinstance(part, aiohttp.BodyPartReader) or part.name is None:
                continue
            data = bytes(await part.read())
            if part.filename:
                files[part.name] = (part.filename, data, part.headers.get("Content-Type", ""))
            else:
                params[part.name] = data.decode()
    elif request.content_type == "application/json":
        body = await request.json()
        params.update({k: v if isinstance(v, str) else json.dumps(v) for k, v in body.items()})
    elif request.can_read_body:
        params.update({k: str(v) for k, v in (await request.post()).items()})
    auth = request.headers.get("Authorization", "")
    if auth.startswith("Bearer ") and "access_token" not in params:
        params["access_token"] = auth.removeprefix("Bearer ")
    return params, files


def _page_for(state: GraphState, token: str) -> tuple[str, Page]:
    for page_id, page in state.pages.items():
        if hmac.compare_digest(page.token, token):
            return page_id, page
    raise GraphError(190, "Invalid OAuth access token - Cannot parse access token")


def _usage(state: GraphState, page_id: str, page: Page) -> dict[str, str]:
    """Count the call against the Page's budget and describe it the way Meta does."""
    now = time.monotonic()
    page.calls = [t for t in page.calls if now - t < state.window]
    page.calls.append(now)
    percent = 0 if not state.budget else min(100, round(100 * len(page.calls) / state.budget))
    regain = 0
    if state.budget and len(page.calls) > state.budget:
        regain = max(1, round((state.window - (now - page.calls[0])) / 60))
    usage = {
        page_id: [
            {
                "type": "pages",
                "call_count": percent,
                "total_cputime": percent // 2,
                "total_time": percent // 2,
                "estimated_time_to_regain_access": regain,
            }
        ]
    }
    headers = {"x-business-use-case-usage": json.dumps(usage)}
    if regain:
        raise GraphError(
            80001,
            "(#80001) There have been too many calls to this Page account. Wait a bit and try "
            "again. For more info, please refer to https://developers.facebook.com/docs/graph-api/"
            "overview/rate-limiting.",
            headers=headers,
        )
    return headers


async def graph(request: web.Request) -> web.Response:
    state = request.app[STATE]
    try:
        params, files = await _params(request)
        page_id, page = _page_for(state, params.get("access_token", ""))
        headers = _usage(state, page_id, page)
        if state.inject:
            code, subcode = state.inject.pop(0)
            raise GraphError(code, f"(#{code}) injected error", subcode)
        body = await _route(
            state, request.method, request.match_info["path"].strip("/"), page_id, page, params, files
        )
        return web.json_response(body, headers=headers)
    except GraphError as exc:
        return exc.response()


async def _route(
    state: GraphState,
    method: str,
    path: str,
    page_id: str,
    page: Page,
    params: dict[str, str],
    files: dict[str, tuple[str, bytes, str]],
) -> dict[str, Any]:
    parts = path.split("/")
    if len(parts) == 2 and parts[1] in {"feed", "photos"} and method == "POST":
        if parts[0] != page_id:
            if parts[0].startswith("group"):
                raise GraphError(200, "(#200) The publish_to_groups permission is no longer available")
            raise GraphError(
                100,
                f"(#100) Unsupported post request. Object with ID '{parts[0]}' does not exist, "
                "cannot be loaded due to missing permissions, or does not support this operation",
                33,
            )
        return (
            _feed(state, page_id, page, params)
            if parts[1] == "feed"
            else _photo(state, page_id, params, files)
        )
    if len(parts) == 1 and parts[0] == page_id and method == "GET":
        return {"id": page_id, "name": page.name, "followers_count": page.followers}
    if len(parts) == 1 and parts[0] in state.posts:
        post = state.posts[parts[0]]
        if method == "DELETE":
            del state.posts[parts[0]]
            return {"success": True}
        if method == "POST":
            post["message"] = params.get("message", post.get("message"))
            return {"success": True}
        return post
    raise GraphError(
        100,
        f"(#100) Unsupported {method.lower()} request. Object with ID '{parts[0]}' does not "
        "exist, cannot be loaded due to missing permissions, or does not support this operation",
        33,
    )


def _feed(state: GraphState, page_id: str, page: Page, params: dict[str, str]) -> dict[str, Any]:
    message = params.get("message", "")
    attached = [json.loads(v) for k, v in sorted(params.items()) if k.startswith("attached_media[")]
    if not message and not params.get("link") and not attached:
        raise GraphError(100, "(#100) Missing message or attachment")
    if message and message == page.last_message:
        raise GraphError(506, "(#506) Duplicate status message")
    for item in attached:
        photo = state.photos.get(str(item.get("media_fbid")))
        if photo is None or photo["published"]:
            raise GraphError(100, "(#100) param attached_media must be unpublished photos of this Page")
    page.last_message = message or page.last_message
    post_id = f"{page_id}_{next(state.ids)}"
    state.posts[post_id] = {
        "id": post_id,
        "message": message,
        "link": params.get("link"),
        "attached_media": [str(a.get("media_fbid")) for a in attached],
    }
    _maybe_comment(state, page_id, post_id)
    return {"id": post_id}


def _photo(
    state: GraphState, page_id: str, params: dict[str, str], files: dict[str, tuple[str, bytes, str]]
) -> dict[str, Any]:
    source = files.get("source")
    if source is None and not params.get("url"):
        raise GraphError(324, "(#324) Requires upload file")
    if source is not None and not source[2].startswith("image/"):
        raise GraphError(100, "(#100) Invalid image file")
    published = params.get("published", "true").lower() != "false"
    photo_id = str(next(state.ids))
    state.photos[photo_id] = {"id": photo_id, "published": published, "caption": params.get("caption", "")}
    if not published:
        return {"id": photo_id}
    post_id = f"{page_id}_{next(state.ids)}"
    state.posts[post_id] = {"id": post_id, "message": params.get("caption", ""), "photo": photo_id}
    _maybe_comment(state, page_id, post_id)
    return {"id": photo_id, "post_id": post_id}


def _maybe_comment(state: GraphState, page_id: str, post_id: str) -> None:
    if not state.webhook_url or state.rng.random() >= state.comment_rate:
        return
    value = {
        "from": {"id": str(7_000_000 + state.rng.randint(1, 9999)), "name": "Lò Thị Mai"},
        "post_id": post_id,
        "comment_id": f"{post_id.split('_')[1]}_{next(state.ids)}",
        "parent_id": post_id,
        "verb": "add",
        "item": "comment",
        "created_time": int(time.time()),
        "message": "Cảm ơn Sở, bản em làm được rồi ạ",
    }
    reaction = {
        "from": {"id": str(7_000_000 + state.rng.randint(1, 9999)), "name": "Giàng A Chu"},
        "post_id": post_id,
        "parent_id": post_id,
        "verb": "add",
        "item": "reaction",
        "reaction_type": "like",
        "created_time": int(time.time()),
    }
    # Meta batches several changes in one POST: a comment and a reaction here.
    changes = [{"field": "feed", "value": value}, {"field": "feed", "value": reaction}]
    payload = {"object": "page", "entry": [{"id": page_id, "time": int(time.time()), "changes": changes}]}
    state.emitter.spawn(_post_webhook(state, payload))


def hub_signature(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


async def _post_webhook(state: GraphState, payload: dict[str, Any]) -> None:
    body = json.dumps(payload, ensure_ascii=True).encode()  # Meta escapes non-ASCII; sign these exact bytes
    headers = {
        "Content-Type": "application/json",
        "X-Hub-Signature-256": hub_signature(state.app_secret, body),
        "X-Hub-Signature": "sha1=" + hmac.new(state.app_secret.encode(), body, hashlib.sha1).hexdigest(),
    }
    await state.emitter.post(state.webhook_url, body, headers, (0.0, 0.5, 2.0))


async def sim_pages(request: web.Request) -> web.Response:
    state = request.app[STATE]
    for page_id, spec in (await request.json()).items():
        state.add_page(
            page_id, spec.get("token"), name=spec.get("name", ""), followers=int(spec.get("followers", 1200))
        )
    return web.json_response({pid: {"token": p.token} for pid, p in state.pages.items()})


async def sim_inject(request: web.Request) -> web.Response:
    state = request.app[STATE]
    for item in await request.json():
        state.inject.append((int(item["code"]), item.get("subcode")))
    return web.json_response({"queued": len(state.inject)})


async def sim_posts(request: web.Request) -> web.Response:
    return web.json_response(request.app[STATE].posts)


async def sim_faults(request: web.Request) -> web.Response:
    request.app[STATE].faults.configure(FaultConfig(**await request.json()))
    return web.json_response({"ok": True})


async def _close(app: web.Application) -> None:
    await app[STATE].emitter.close()


def create_app(
    *,
    budget: int | None = 4800,
    faults: FaultConfig | None = None,
    comment_rate: float = 0.0,
    webhook_url: str = "",
) -> web.Application:
    state = GraphState(budget=budget, comment_rate=comment_rate, webhook_url=webhook_url)
    if faults is not None:
        state.faults.configure(faults)
    app = web.Application(middlewares=[fault_middleware(state.faults)], client_max_size=20 * 1024 * 1024)
    app[STATE] = state
    app.router.add_post("/__sim/pages", sim_pages)
    app.router.add_post("/__sim/inject", sim_inject)
    app.router.add_get("/__sim/posts", sim_posts)
    app.router.add_post("/__sim/faults", sim_faults)
    app.router.add_route("*", r"/{version:v\d+\.\d+}/{path:.+}", graph)
    app.router.add_route("*", "/{path:[0-9a-zA-Z_]+(/[a-z_]+)?}", graph)
    app.on_cleanup.append(_close)
    return app
