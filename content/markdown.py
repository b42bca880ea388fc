"""The Markdown subset that content bodies are written in, parsed into a small document model.

Supported (everything else is refused with its line number, so editors learn at once, not at send time):

* paragraphs, separated by a blank line; a single newline inside a paragraph is a line break;
* bullet lists (lines starting ``- `` or ``* ``) and numbered lists (``1. `` or ``1) ``);
* ``**bold**``, ``*italic*`` or ``_italic_``, ```code```, ``[text](https://link)`` and bare
  ``https://`` links;
* template variables ``{unit_name}``, ``{commune}``, ``{district}``, ``{province}``, filled per group at
  send time; ``{{`` and ``}}`` write literal braces; a backslash escapes ``* _ ` [ ] ( ) { } \\``.

Refused: headings (``#``), quotes (``>``), code fences, tables, images, raw HTML and horizontal rules,
because no target platform renders them the same way.
"""

from __future__ import annotations

import functools
import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass, field

from broadcaster.domain.errors import InputError

TEMPLATE_VARIABLES = ("unit_name", "commune", "district", "province")
_BULLET = re.compile(r"^[-*]\s+(.*)$")
_NUMBERED = re.compile(r"^\d{1,3}[.)]\s+(.*)$")
_REFUSED = (
    (re.compile(r"^#{1,6}\s"), "headings (#) are not supported; use **bold** on its own line"),
    (re.compile(r"^>"), "quotes (>) are not supported"),
    (re.compile(r"^(```|~~~)"), "code blocks are not supported; use `code` inline"),
    (re.compile(r"^\|.*\|\s*$"), "tables are not supported"),
    (re.compile(r"^([-*_]\s*){3,}$"), "horizontal rules are not supported"),
    (re.compile(r"!\["), "images are not supported in the text; add the picture as an attachment"),
    (re.compile(r"</?[A-Za-z][A-Za-z0-9]*(\s[^>]*)?>"), "HTML tags are not supported"),
)
URL_PATTERN = re.compile(r"https?://[^\s<>\"')\]]+")
_VAR = re.compile(r"\{([a-z_]+)\}")
_ESCAPABLE = set("*_`[](){}\\")


class MarkdownError(InputError):
    """The body uses something outside the supported subset."""

    def __init__(self, line: int, message: str) -> None:
        self.line = line
        super().__init__(f"body line {line}: {message}")


@dataclass(frozen=True, slots=True)
class Span:
    """A run of text with its styles; ``variable`` spans hold a template variable name in ``text``."""

    text: str
    bold: bool = False
    italic: bool = False
    code: bool = False
    url: str | None = None
    variable: bool = False


Line = list[Span]


@dataclass(slots=True)
class Block:
    kind: str  # paragraph | bullets | numbers
    lines: list[Line] = field(default_factory=list)  # paragraph lines, or list items


@dataclass(slots=True)
class Document:
    blocks: list[Block]

    @property
    def variables(self) -> set[str]:
        return {s.text for b in self.blocks for line in b.lines for s in line if s.variable}

    @property
    def links(self) -> list[str]:
        return [s.url for b in self.blocks for line in b.lines for s in line if s.url]


@functools.lru_cache(maxsize=256)
def parse(body: str) -> Document:
    """Parse ``body`` (NFC-normalised first); raise :class:`MarkdownError` on anything unsupported.

    Cached: a dispatch renders the same body for thousands of groups. Callers must not modify the
    returned document."""
    text = unicodedata.normalize("NFC", body).replace("\r\n", "\n").replace("\r", "\n")
    blocks: list[Block] = []
    current: Block | None = None
    for number, raw in enumerate(text.split("\n"), start=1):
        stripped = raw.strip()
        if not stripped:
            current = None
            continue
        for pattern, message in _REFUSED:
            if pattern.search(stripped):
                raise MarkdownError(number, message)
        kind, content = "paragraph", stripped
        if match := _BULLET.match(stripped):
            kind, content = "bullets", match.group(1)
        elif match := _NUMBERED.match(stripped):
            kind, content = "numbers", match.group(1)
        if current is None or current.kind != kind:
            current = Block(kind)
            blocks.append(current)
        current.lines.append(_inline(content, number))
    return Document(blocks)


def _inline(text: str, line: int) -> Line:  # noqa: PLR0912, PLR0915 - one small state machine
    spans: Line = []
    buf: list[str] = []
    bold = italic = False
    italic_marker = ""

    def flush() -> None:
        if buf:
            spans.append(Span("".join(buf), bold=bold, italic=italic))
            buf.clear()

    i = 0
    while i < len(text):
        ch = text[i]
        nxt = text[i + 1] if i + 1 < len(text) else ""
        if ch == "\\" and nxt in _ESCAPABLE:
            buf.append(nxt)
            i += 2
        elif ch == "*" and nxt == "*":
            flush()
            bold = not bold
            i += 2
        elif ch in "*_" and (italic_marker in ("", ch)):
            prev = text[i - 1] if i else ""
            if ch == "_" and prev.isalnum() and nxt.isalnum():
                buf.append(ch)  # snake_case and CNS_<name> titles are text, not emphasis
            else:
                flush()
                italic = not italic
                italic_marker = ch if italic else ""
            i += 1
        elif ch == "`":
            end = text.find("`", i + 1)
            if end < 0:
                raise MarkdownError(line, "unclosed ` (inline code)")
            flush()
            spans.append(Span(text[i + 1 : end], code=True))
            i = end + 1
        elif ch == "[":
            close = text.find("](", i)
            end = text.find(")", close + 2) if close >= 0 else -1
            if close < 0 or end < 0:
                raise MarkdownError(
                    line, "a link must look like [text](https://...); write \\[ for a bracket"
                )
            url = text[close + 2 : end].strip()
            if not URL_PATTERN.fullmatch(url):
                raise MarkdownError(line, f"link target {url!r} must be an http(s) URL")
            flush()
            spans.append(Span(text[i + 1 : close], bold=bold, italic=italic, url=url))
            i = end + 1
        elif ch == "{" and nxt == "{":
            buf.append("{")
            i += 2
        elif ch == "}" and nxt == "}":
            buf.append("}")
            i += 2
        elif ch == "{":
            match = _VAR.match(text, i)
            if match is None:
                raise MarkdownError(line, "a lone { : write {{ for a brace, or {variable}")
            if match.group(1) not in TEMPLATE_VARIABLES:
                raise MarkdownError(
                    line, f"unknown variable {{{match.group(1)}}} (known: {', '.join(TEMPLATE_VARIABLES)})"
                )
            flush()
            spans.append(Span(match.group(1), bold=bold, italic=italic, variable=True))
            i = match.end()
        elif ch == "}":
            raise MarkdownError(line, "a lone } : write }} for a brace")
        elif (match := URL_PATTERN.match(text, i)) and (i == 0 or not text[i - 1].isalnum()):
            url = match.group(0).rstrip(".,;:!?")  # "xem https://a.vn." ends the sentence, not the URL
            flush()
            spans.append(Span(url, bold=bold, italic=italic, url=url))
            i += len(url)
        else:
            buf.append(ch)
            i += 1
    if bold:
        raise MarkdownError(line, "unclosed ** (bold)")
    if italic:
        raise MarkdownError(line, f"unclosed {italic_marker} (italic)")
    flush()
    return spans


def plain_text(doc: Document, variables: Mapping[str, str] | None = None) -> str:
    """The document as plain text (links written out), with variables filled from ``variables``."""
    values = variables or {}
    out: list[str] = []
    for block in doc.blocks:
        lines = []
        for n, line in enumerate(block.lines, start=1):
            text = "".join(_plain_span(s, values) for s in line)
            prefix = "• " if block.kind == "bullets" else f"{n}. " if block.kind == "numbers" else ""
            lines.append(prefix + text)
        out.append("\n".join(lines))
    return "\n\n".join(out)


def _plain_span(span: Span, values: Mapping[str, str]) -> str:
    if span.variable:
        return values.get(span.text, "{" + span.text + "}")
    if span.url and span.text != span.url:
        return f"{span.text} ({span.url})"
    return span.text
