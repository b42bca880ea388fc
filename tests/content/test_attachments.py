"""Attachments: stored once by hash, type sniffed from bytes, size limit."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import pytest
from sqlalchemy import func, select

from broadcaster.domain.errors import InputError
from broadcaster.domain.models import Attachment
from broadcaster.editorial.attachments import store
from broadcaster.storage.app import App
from content.attachments import sniff

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64
PDF = b"%PDF-1.7\n" + b"x" * 64


def _docx() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as archive:
        archive.writestr("word/document.xml", "<w/>")
    return buf.getvalue()


def test_sniffing() -> None:
    assert sniff(PNG, "a.png") == "image/png"
    assert sniff(PDF, "HD.PDF") == "application/pdf"
    assert sniff(b"\xff\xd8\xff\xe0" + b"0" * 20, "a.jpeg") == "image/jpeg"
    assert sniff(_docx(), "huong-dan.docx").endswith("wordprocessingml.document")
    with pytest.raises(InputError, match=r"does not match '\.jpg'"):
        sniff(PNG, "fake.jpg")
    with pytest.raises(InputError, match="unsupported file type"):
        sniff(b"MZ\x90\x00 windows exe", "setup.exe")
    with pytest.raises(InputError, match=r"not a valid \.xlsx"):
        sniff(_docx()[:30], "bang.xlsx")


async def test_store_dedupes_and_limits(app: App, tmp_path: Path) -> None:
    a = tmp_path / "a.png"
    a.write_bytes(PNG)
    b = tmp_path / "copy.png"
    b.write_bytes(PNG)
    async with app.transaction() as s:
        first = await store(s, a, 1000)
        second = await store(s, b, 1000)
        count = (await s.execute(select(func.count()).select_from(Attachment))).scalar_one()
    assert first.sha256 == second.sha256 and count == 1
    assert first.size == len(PNG) and first.media_type == "image/png"
    with pytest.raises(InputError, match="over the limit of 10"):
        async with app.transaction() as s:
            await store(s, a, 10)
    with pytest.raises(InputError, match="cannot read"):
        async with app.transaction() as s:
            await store(s, tmp_path / "missing.png", 1000)
