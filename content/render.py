"""Rendering a revision for one platform and one target.

* Telegram: HTML parse mode (only ``&``, ``<``, ``>`` and quotes escaped, as the Bot API requires),
  4096 per message and 1024 per caption, counted in UTF-16 code units of the visible text, which is how
  Telegram counts entity offsets (Vietnamese in NFC is one unit per letter; emoji are two).
* Zalo: plain text, 2000 per message. Facebook: plain text with the first link as the post's link.
* Webhook: plain text and HTML side by side.

A body over the limit is split at paragraph (and list item) boundaries, then sentence boundaries, then
words, into parts numbered ``(1/3)``. Template variables are filled from the target's unit; their values
are text, escaped like any other text, never evaluated.
"""

from __future__ import annotations

import html
import re
import unicodedata
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from broadcaster.domain.errors import InputError
from broadcaster.domain.models import ContentRevision
from broadcaster.domain.ports import Media, RenderedMessage
from content.markdown import Block, Line, Span, parse

LIMITS = {"telegram": 4096, "zalo": 2000, "facebook": 60000, "webhook": 20000}
CAPTION_LIMIT = 1024
FORMATS = {"telegram": "html", "zalo": "plain", "facebook": "plain", "webhook": "plain"}
_SENTENCE_END = re.compile(r"(?<=[.!?…])\s+")
_NUMBER_RESERVE = len("(99/99) ")


def utf16_len(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


@dataclass(frozen=True, slots=True)
class _Piece:
    html: str
    plain: str


class _Values(dict[str, str]):
    """A unit's variable values plus this delivery's tracked form of each link (carried along with the
    values so the line-splitting helpers keep one parameter)."""

    def __init__(self, values: Mapping[str, str], links: Mapping[str, str]) -> None:
        super().__init__(values)
        self.links = links


def _tracked(variables: Mapping[str, str], url: str) -> str:
    return variables.links.get(url, url) if isinstance(variables, _Values) else url


def _span(span: Span, variables: Mapping[str, str]) -> _Piece:
    text = variables.get(span.text, "") if span.variable else span.text
    text = unicodedata.normalize("NFC", text)
    if span.url:
        body = html.escape(text, quote=False)
        href = _tracked(variables, span.url)
        markup = f'<a href="{html.escape(href, quote=True)}">{body}</a>'
        # Plain-text platforms show the address people will open: the tracked one when tracking.
        plain = href if text == span.url else f"{text} ({href})"
    elif span.code:
        markup, plain = f"<code>{html.escape(text, quote=False)}</code>", text
    else:
        markup, plain = html.escape(text, quote=False), text
    if span.bold and not span.code:
        markup = f"<b>{markup}</b>"
    if span.italic and not span.code:
        markup = f"<i>{markup}</i>"
    return _Piece(markup, plain)


def _line(line: Line, variables: Mapping[str, str], prefix: str = "") -> _Piece:
    pieces = [_span(s, variables) for s in line]
    return _Piece(prefix + "".join(p.html for p in pieces), prefix + "".join(p.plain for p in pieces))


def _block_lines(block: Block, variables: Mapping[str, str]) -> list[_Piece]:
    out = []
    for n, line in enumerate(block.lines, start=1):
        prefix = "• " if block.kind == "bullets" else f"{n}. " if block.kind == "numbers" else ""
        out.append(_line(line, variables, prefix))
    return out


def _sentences(line: Line, variables: Mapping[str, str], budget: int) -> list[_Piece]:
    """Split one over-long line at sentence ends (then words, then characters), keeping styles."""
    chunks: list[list[Span]] = [[]]
    for span in line:
        if span.variable or span.url or span.code:
            chunks[-1].append(span)
            continue
        parts = _SENTENCE_END.split(span.text)
        for i, part in enumerate(parts):
            if i:
                chunks.append([])
            if part:
                chunks[-1].append(Span(part + (" " if i < len(parts) - 1 else ""), span.bold, span.italic))
    pieces: list[_Piece] = []
    for chunk in chunks:
        piece = _line(chunk, variables)
        if utf16_len(piece.plain) <= budget:
            pieces.append(piece)
        else:
            pieces.extend(_hard_split(piece.plain, budget))
    return pieces


def _hard_split(text: str, budget: int) -> list[_Piece]:
    """Last resort for a sentence longer than a whole message: words, then characters (no styles)."""
    out: list[_Piece] = []
    current = ""
    for word in text.split(" "):
        candidate = f"{current} {word}" if current else word
        if utf16_len(candidate) <= budget:
            current = candidate
            continue
        if current:
            out.append(_Piece(html.escape(current, quote=False), current))
        rest = word
        while utf16_len(rest) > budget:
            head = rest[:budget]
            while utf16_len(head) > budget:
                head = head[:-1]
            out.append(_Piece(html.escape(head, quote=False), head))
            rest = rest[len(head) :]
        current = rest
    if current:
        out.append(_Piece(html.escape(current, quote=False), current))
    return out


def _pack(units: list[list[_Piece]], budget: int) -> list[_Piece]:
    """Greedily pack units (each a list of lines) into parts of at most ``budget`` visible units."""
    parts: list[_Piece] = []
    cur_html: list[str] = []
    cur_plain: list[str] = []
    size = 0
    for unit in units:
        u_html = "\n".join(p.html for p in unit)
        u_plain = "\n".join(p.plain for p in unit)
        length = utf16_len(u_plain)
        sep = 2 if cur_plain else 0
        if cur_plain and size + sep + length > budget:
            parts.append(_Piece("\n\n".join(cur_html), "\n\n".join(cur_plain)))
            cur_html, cur_plain, size, sep = [], [], 0, 0
        cur_html.append(u_html)
        cur_plain.append(u_plain)
        size += sep + length
    if cur_plain:
        parts.append(_Piece("\n\n".join(cur_html), "\n\n".join(cur_plain)))
    return parts


def _units(
    blocks: list[list[_Piece]], lines: list[list[Line]], variables: Mapping[str, str], budget: int
) -> list[list[_Piece]]:
    """Blocks that fit stay whole; a block that does not is cut into its lines, then sentences."""
    units: list[list[_Piece]] = []
    for pieces, raw in zip(blocks, lines, strict=True):
        if utf16_len("\n".join(p.plain for p in pieces)) <= budget:
            units.append(pieces)
            continue
        for piece, line in zip(pieces, raw, strict=True):
            if utf16_len(piece.plain) <= budget:
                units.append([piece])
            else:
                units.extend([s] for s in _sentences(line, variables, budget))
    return units


def render(
    platform: str,
    *,
    title: str,
    body: str,
    links: Sequence[str] = (),
    media: Sequence[Media] = (),
    variables: Mapping[str, str] | None = None,
    limit: int | None = None,
    track: Callable[[str], str] | None = None,
) -> RenderedMessage:
    """Render a revision for ``platform``; ``limit`` overrides the platform's message length; ``track``
    turns each link into this delivery's tracked link (``/l/...``), keeping the visible text."""
    if platform not in LIMITS:
        raise InputError(f"no renderer for platform {platform!r}")
    doc = parse(body)
    all_links = [*doc.links, *(u for u in links if u not in doc.links)]
    tracked = {u: track(u) for u in all_links} if track else {}
    values: dict[str, str] = _Values(variables or {}, tracked) if track else dict(variables or {})
    budget = limit or LIMITS[platform]
    title_text = unicodedata.normalize("NFC", title)
    blocks = [[_Piece(f"<b>{html.escape(title_text, quote=False)}</b>", title_text)]] if title_text else []
    raw: list[list[Line]] = [[[Span(title_text, bold=True)]]] if title_text else []
    for block in doc.blocks:
        blocks.append(_block_lines(block, values))
        raw.append(block.lines)
    extra = [link for link in links if link not in doc.links]
    linked = [m for m in media if not _uploads(platform, m)]
    if extra or linked:
        lines = [
            _Piece(
                f'🔗 <a href="{html.escape(tracked.get(u, u), quote=True)}">{html.escape(u, quote=False)}</a>',  # noqa: E501
                f"🔗 {tracked.get(u, u)}",
            )
            for u in extra
        ]
        for m in linked:
            name = html.escape(m.filename, quote=False)
            if m.url:
                lines.append(
                    _Piece(
                        f'📎 <a href="{html.escape(m.url, quote=True)}">{name}</a>',
                        f"📎 {m.filename}: {m.url}",
                    )
                )
            else:
                lines.append(_Piece(f"📎 {name}", f"📎 {m.filename}"))
        blocks.append(lines)
        raw.append([[Span(p.plain)] for p in lines])

    whole = _pack(_units(blocks, raw, values, budget), budget)
    if len(whole) > 1:
        whole = _pack(_units(blocks, raw, values, budget - _NUMBER_RESERVE), budget - _NUMBER_RESERVE)
        whole = [
            _Piece(f"({i}/{len(whole)}) {p.html}", f"({i}/{len(whole)}) {p.plain}")
            for i, p in enumerate(whole, start=1)
        ]
    fmt = FORMATS[platform]
    parts = tuple(p.html if fmt == "html" else p.plain for p in whole)
    plain_parts = tuple(p.plain for p in whole)
    uploaded = tuple(m for m in media if _uploads(platform, m))
    caption = None
    if len(whole) == 1 and utf16_len(whole[0].plain) <= CAPTION_LIMIT:
        caption = parts[0]
    first_link = tracked.get(all_links[0], all_links[0]) if all_links else None
    return RenderedMessage(
        parts=parts,
        fmt=fmt,
        plain_parts=plain_parts,
        media=uploaded,
        link=first_link,
        title=title_text,
        caption=caption,
    )


def render_revision(
    platform: str,
    revision: ContentRevision,
    media: Sequence[Media],
    variables: Mapping[str, str],
    limit: int | None = None,
    track: Callable[[str], str] | None = None,
) -> RenderedMessage:
    """The approved revision for one target (its unit's variables) on one platform."""
    return render(
        platform,
        title=revision.title,
        body=revision.body,
        links=revision.links,
        media=media,
        variables=variables,
        limit=limit,
        track=track,
    )


def _uploads(platform: str, media: Media) -> bool:
    """Which attachments a platform takes as files (the rest go as links)."""
    if platform == "telegram":
        return True
    if platform in {"zalo", "facebook"}:
        return media.kind == "photo"
    return True  # webhook: every attachment travels as metadata (sha256, type, size, url)


def revision_links(revision: ContentRevision) -> list[str]:
    """Every link of a revision in rendering order: those in the body, then the extra ones."""
    found = parse(revision.body).links
    return [*found, *(u for u in revision.links if u not in found)]


# Stand-ins that no content contains (Unicode private use): a variable's value, a tracked link.
_VAR, _LINK = "\ue000{}\ue001", "\ue002{}\ue003"
_STAND_IN_CHARS = frozenset("\ue000\ue001\ue002\ue003")


@dataclass(frozen=True, slots=True)
class _Template:
    message: RenderedMessage  # rendered with the stand-ins, in one part
    variables: tuple[tuple[str, str], ...]  # (stand-in, variable name), only those the text uses
    links: tuple[tuple[str, str], ...]  # (stand-in, link), in the order render tracked them


class RenderCache:
    """``render_revision`` for a dispatch's thousands of targets: each (revision, platform) is rendered
    once with stand-ins for the unit's values and the tracked links, then filled in per target.

    Rendering was ~8 % of the dispatcher's time, and every village's values differ, so results cannot
    simply be reused. The filled message is the full render's exactly when the post fits one message:
    the values change no decision but the split, so a template in several parts, a filled text over
    the platform's limit, or a tracked link that HTML would escape all fall back to the full render
    (tests compare the two on random values)."""

    def __init__(self, size: int = 64) -> None:
        self._size = size
        self._templates: dict[tuple[object, ...], _Template | None] = {}

    def __call__(
        self,
        platform: str,
        revision: ContentRevision,
        media: Sequence[Media],
        variables: Mapping[str, str],
        limit: int | None = None,
        track: Callable[[str], str] | None = None,
    ) -> RenderedMessage:
        names = tuple(sorted(variables))
        key = (
            revision.sha256,
            revision.title,
            revision.body,
            tuple(revision.links),
            platform,
            tuple((m.sha256, m.filename, m.url) for m in media),
            limit,
            names,
            track is not None,
        )
        if key not in self._templates:
            if len(self._templates) >= self._size:
                self._templates.pop(next(iter(self._templates)))
            self._templates[key] = self._template(platform, revision, media, names, limit, track)
        template = self._templates[key]
        filled = None if template is None else _fill(template, platform, variables, limit, track)
        if filled is None:
            return render_revision(platform, revision, media, variables, limit, track)
        return filled

    @staticmethod
    def _template(
        platform: str,
        revision: ContentRevision,
        media: Sequence[Media],
        names: tuple[str, ...],
        limit: int | None,
        track: Callable[[str], str] | None,
    ) -> _Template | None:
        links: list[str] = []

        def stand_in(url: str) -> str:
            links.append(url)
            return _LINK.format(len(links) - 1)

        values = {name: _VAR.format(i) for i, name in enumerate(names)}
        message = render_revision(
            platform, revision, media, values, limit, stand_in if track is not None else None
        )
        if len(message.parts) != 1:
            return None
        text = message.plain_parts[0]
        used = tuple((_VAR.format(i), name) for i, name in enumerate(names) if _VAR.format(i) in text)
        return _Template(message, used, tuple((_LINK.format(i), url) for i, url in enumerate(links)))


def _fill(
    template: _Template,
    platform: str,
    variables: Mapping[str, str],
    limit: int | None,
    track: Callable[[str], str] | None,
) -> RenderedMessage | None:
    plain_map: list[tuple[str, str]] = []
    html_map: list[tuple[str, str]] = []
    for stand_in, name in template.variables:
        value = unicodedata.normalize("NFC", variables.get(name, ""))
        if _STAND_IN_CHARS.intersection(value):
            return None
        plain_map.append((stand_in, value))
        html_map.append((stand_in, html.escape(value, quote=False)))
    for stand_in, url in template.links:
        tracked = track(url) if track is not None else url
        if html.escape(tracked, quote=True) != tracked:
            return None
        plain_map.append((stand_in, tracked))
        html_map.append((stand_in, tracked))

    def sub(text: str, pairs: list[tuple[str, str]]) -> str:
        for stand_in, value in pairs:
            text = text.replace(stand_in, value)
        return text

    message = template.message
    plain = sub(message.plain_parts[0], plain_map)
    if utf16_len(plain) > (limit or LIMITS[platform]):
        return None
    part = sub(message.parts[0], html_map) if message.fmt == "html" else plain
    return RenderedMessage(
        parts=(part,),
        fmt=message.fmt,
        plain_parts=(plain,),
        media=message.media,
        link=sub(message.link, plain_map) if message.link else None,
        title=message.title,
        caption=part if utf16_len(plain) <= CAPTION_LIMIT else None,
    )
