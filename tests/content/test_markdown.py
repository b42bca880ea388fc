"""The Markdown subset."""

from __future__ import annotations

import unicodedata

import pytest

from content.markdown import MarkdownError, parse, plain_text


def test_supported_subset() -> None:
    doc = parse(
        "Chào **bà con** {unit_name}, xem _hướng dẫn_ tại https://dichvucong.gov.vn.\n"
        "Dòng hai với `mã` và [liên kết](https://a.vn/x).\n\n"
        "- một\n* hai\n\n1. bước một\n2) bước hai\n\n"
        "CNS_Bản Mù Cả_Xã Mù Cả và snake_case, \\*không nghiêng\\*, {{ngoặc}}"
    )
    assert [b.kind for b in doc.blocks] == ["paragraph", "bullets", "numbers", "paragraph"]
    first = doc.blocks[0].lines[0]
    assert any(s.bold and s.text == "bà con" for s in first)
    assert any(s.italic and s.text == "hướng dẫn" for s in first)
    assert doc.variables == {"unit_name"}
    assert doc.links == ["https://dichvucong.gov.vn", "https://a.vn/x"]
    text = plain_text(doc, {"unit_name": "Xã Mù Cả"})
    assert "Chào bà con Xã Mù Cả, xem hướng dẫn tại https://dichvucong.gov.vn." in text
    assert "• hai" in text and "2. bước hai" in text
    assert "CNS_Bản Mù Cả_Xã Mù Cả và snake_case, *không nghiêng*, {ngoặc}" in text


def test_input_is_nfc() -> None:
    doc = parse(unicodedata.normalize("NFD", "Mù Cả"))
    assert doc.blocks[0].lines[0][0].text == unicodedata.normalize("NFC", "Mù Cả")


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("ok\n# Tiêu đề", "line 2: headings"),
        ("> trích", "quotes"),
        ("```\ncode\n```", "code blocks"),
        ("| a | b |", "tables"),
        ("---", "horizontal rules"),
        ("![ảnh](https://a.vn/x.png)", "images"),
        ("<b>đậm</b>", "HTML"),
        ("**đậm", "unclosed \\*\\*"),
        ("_nghiêng", "unclosed _"),
        ("`mã", "unclosed `"),
        ("[x](javascript:alert(1))", "must be an http"),
        ("[x]", "a link must look like"),
        ("Xin chào {ten}", "unknown variable {ten}"),
        ("a { b", "a lone {"),
        ("a } b", "a lone }"),
    ],
)
def test_refused(body: str, message: str) -> None:
    with pytest.raises(MarkdownError, match=message):
        parse(body)
