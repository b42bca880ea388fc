"""Attachment checks: the type of a file, from its bytes. Storing them is the editorial layer's job.

The type is decided from the file's first bytes, not trusted from its name: a ``.jpg`` that is not a
JPEG is refused. Accepted: JPEG, PNG, GIF, WebP, PDF, MP4, and Office (docx/xlsx/pptx) documents.
"""

from __future__ import annotations

import zipfile
from io import BytesIO
from pathlib import Path

from broadcaster.domain.errors import InputError

OFFICE_TYPES = {
    ".docx": ("word/", "application/vnd.openxmlformats-officedocument.wordprocessingml.document"),
    ".xlsx": ("xl/", "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"),
    ".pptx": ("ppt/", "application/vnd.openxmlformats-officedocument.presentationml.presentation"),
}
EXTENSIONS = {
    "image/jpeg": {".jpg", ".jpeg"},
    "image/png": {".png"},
    "image/gif": {".gif"},
    "image/webp": {".webp"},
    "application/pdf": {".pdf"},
    "video/mp4": {".mp4", ".m4v"},
}


def sniff(data: bytes, filename: str) -> str:
    """The media type of ``data``, checked against the file name's extension."""
    suffix = Path(filename).suffix.lower()
    media_type: str | None = None
    if data.startswith(b"\xff\xd8\xff"):
        media_type = "image/jpeg"
    elif data.startswith(b"\x89PNG\r\n\x1a\n"):
        media_type = "image/png"
    elif data[:6] in (b"GIF87a", b"GIF89a"):
        media_type = "image/gif"
    elif data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        media_type = "image/webp"
    elif data.startswith(b"%PDF-"):
        media_type = "application/pdf"
    elif data[4:8] == b"ftyp":
        media_type = "video/mp4"
    elif data.startswith(b"PK\x03\x04") and suffix in OFFICE_TYPES:
        folder, office_type = OFFICE_TYPES[suffix]
        try:
            with zipfile.ZipFile(BytesIO(data)) as archive:
                if any(n.startswith(folder) for n in archive.namelist()):
                    return office_type
        except zipfile.BadZipFile:
            pass
        raise InputError(f"attachment {filename}: not a valid {suffix} document")
    if media_type is None:
        raise InputError(
            f"attachment {filename}: unsupported file type (accepted: JPEG, PNG, GIF, WebP, PDF, MP4, "
            "DOCX, XLSX, PPTX)"
        )
    if suffix not in EXTENSIONS[media_type]:
        raise InputError(
            f"attachment {filename}: the content is {media_type}, which does not match {suffix!r}"
        )
    return media_type
