"""Telegram's HTML parse mode as the server applies it: the allowed tags, entity rules, and the
visible text whose length (UTF-16 code units) is checked against 4096 / 1024."""

from __future__ import annotations

import html
import re

ALLOWED = {
    "b",
    "strong",
    "i",
    "em",
    "u",
    "ins",
    "s",
    "strike",
    "del",
    "span",
    "tg-spoiler",
    "a",
    "code",
    "pre",
    "blockquote",
    "tg-emoji",
    "tg-time",
}
_TOKEN = re.compile(r"<(/?)([a-zA-Z][a-zA-Z0-9-]*)((?:\s+[^<>]*)?)>|<|&(#x[0-9a-fA-F]+|#[0-9]+|[a-zA-Z]+);|&")
_NAMED = {"lt": "<", "gt": ">", "amp": "&", "quot": '"'}


class EntityError(ValueError):
    """The text does not parse; the message is what Telegram says after "can't parse entities: "."""


def _tag(match: re.Match[str], stack: list[str]) -> None:
    closing, name = match.group(1) == "/", match.group(2).lower()
    if name not in ALLOWED:
        raise EntityError(f'Unsupported start tag "{name}" at byte offset {match.start()}')
    if not closing:
        stack.append(name)
    elif not stack:
        raise EntityError(f"Unexpected end tag at byte offset {match.start()}")
    elif stack[-1] != name:
        raise EntityError(
            f'Unmatched end tag at byte offset {match.start()}, expected "</{stack[-1]}>", found "</{name}>"'
        )
    else:
        stack.pop()


def _entity(match: re.Match[str]) -> str:
    entity = match.group(4)
    if entity is None:
        raise EntityError(f"Character entity expected at byte offset {match.start()}")
    if entity.startswith("#"):
        return html.unescape(match.group(0))
    if entity in _NAMED:
        return _NAMED[entity]
    raise EntityError(f'Unsupported HTML entity "&{entity};" at byte offset {match.start()}')


def visible_text(markup: str) -> str:
    """The text Telegram shows for ``markup`` in HTML mode, or :class:`EntityError`."""
    out: list[str] = []
    stack: list[str] = []
    pos = 0
    for match in _TOKEN.finditer(markup):
        out.append(markup[pos : match.start()])
        pos = match.end()
        if match.group(2):
            _tag(match, stack)
        elif match.group(0) == "<":
            raise EntityError(f'Unsupported start tag "" at byte offset {match.start()}')
        else:
            out.append(_entity(match))
    out.append(markup[pos:])
    if stack:
        raise EntityError(f'Can\'t find end tag corresponding to start tag "{stack[-1]}"')
    return "".join(out)


def utf16_len(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2
