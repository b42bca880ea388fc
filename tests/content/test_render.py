"""Rendering per platform: escaping, limits counted like Telegram, splitting, variables, media."""

from __future__ import annotations

import re
import unicodedata

import pytest

from broadcaster.domain.errors import InputError
from broadcaster.domain.ports import Media
from content.render import CAPTION_LIMIT, LIMITS, render, utf16_len

VARS = {"unit_name": "Xã Mù Cả", "commune": "Xã Mù Cả", "district": "", "province": "Tỉnh Lai Châu"}


def test_telegram_html_escapes_text_and_variables() -> None:
    out = render(
        "telegram",
        title="A < B & C",
        body="**Đậm** _nghiêng_ `x<y` [liên kết](https://a.vn/?q=1&r=2)\nChào {unit_name}",
        variables={**VARS, "unit_name": "<script>alert(1)</script>"},
    )
    text = out.parts[0]
    assert text.startswith("<b>A &lt; B &amp; C</b>\n\n")
    assert "<b>Đậm</b> <i>nghiêng</i> <code>x&lt;y</code>" in text
    assert '<a href="https://a.vn/?q=1&amp;r=2">liên kết</a>' in text
    assert "Chào &lt;script&gt;alert(1)&lt;/script&gt;" in text
    assert out.fmt == "html" and out.plain_parts[0].endswith("Chào <script>alert(1)</script>")
    assert re.sub(r"<[^>]+>", "", text).count("<") == 0  # no stray tags survive


def test_plain_platforms_and_lists() -> None:
    out = render(
        "zalo", title="T", body="Các bước:\n\n1. Một\n2. Hai\n\n- a [x](https://x.vn)", variables=VARS
    )
    assert out.fmt == "plain"
    assert out.parts[0] == "T\n\nCác bước:\n\n1. Một\n2. Hai\n\n• a x (https://x.vn)"
    assert out.link == "https://x.vn"


def test_text_is_nfc_and_counted_in_utf16() -> None:
    nfd = unicodedata.normalize("NFD", "Mù Cả")
    out = render("zalo", title="", body=nfd)
    assert out.parts[0] == unicodedata.normalize("NFC", "Mù Cả")
    assert utf16_len("👍") == 2 and utf16_len("Mù Cả") == 5


def test_long_body_splits_at_paragraphs_then_sentences_with_numbers() -> None:
    para = "Câu một dài dòng về dịch vụ công trực tuyến. " * 30  # ~1,400 characters
    body = "\n\n".join([para.strip()] * 4)
    out = render("zalo", title="Hướng dẫn", body=body)
    assert len(out.parts) >= 3
    for i, part in enumerate(out.parts, start=1):
        assert part.startswith(f"({i}/{len(out.parts)}) ")
        assert utf16_len(part) <= LIMITS["zalo"]
        assert part.rstrip().endswith((".", "Hướng dẫn")), part[-40:]  # cut at a sentence, not mid-word
    joined = " ".join(p.split(") ", 1)[1] for p in out.parts)
    assert joined.count("Câu một") == 120  # nothing lost


def test_telegram_limit_counts_visible_text_not_tags() -> None:
    body = "**" + "a" * 4000 + "**"  # 4,004 HTML characters with tags, 4,000 visible
    out = render("telegram", title="", body=body)
    assert len(out.parts) == 1
    long = render("telegram", title="", body="😀" * 2100)  # 4,200 UTF-16 units
    assert len(long.parts) == 2 and all(utf16_len(p) <= 4096 for p in long.plain_parts)


def test_caption_only_when_it_fits() -> None:
    photo = Media("ab" * 32, "anh.png", "image/png", b"\x89PNG")
    short = render("telegram", title="T", body="ngắn", media=[photo])
    assert short.caption == "<b>T</b>\n\nngắn" and short.media == (photo,)
    longer = render("telegram", title="T", body="x" * (CAPTION_LIMIT + 10), media=[photo])
    assert longer.caption is None


def test_attachments_as_links_where_not_uploaded() -> None:
    pdf = Media("cd" * 32, "huong-dan.pdf", "application/pdf", b"%PDF", url="https://cns.example/a/cd")
    zalo = render("zalo", title="T", body="x", media=[pdf])
    assert zalo.media == () and "📎 huong-dan.pdf: https://cns.example/a/cd" in zalo.parts[-1]
    hook = render("webhook", title="T", body="x", media=[pdf])
    assert hook.media == (pdf,)


def test_unknown_platform() -> None:
    with pytest.raises(InputError):
        render("mocha", title="", body="x")
