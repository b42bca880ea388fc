"""Strict CSV reading for imports: UTF-8 (a BOM is fine), a header row, blank lines skipped, line numbers."""

from __future__ import annotations

import csv
import io
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from broadcaster.domain.errors import CsvError


@dataclass(frozen=True, slots=True)
class CsvRow:
    line: int
    values: dict[str, str]

    def __getitem__(self, key: str) -> str:
        return self.values.get(key, "")


def nfc(text: str) -> str:
    return unicodedata.normalize("NFC", text).strip()


def read_csv(path: Path | str, required: Sequence[str], optional: Iterable[str] = ()) -> list[CsvRow]:
    """Read ``path`` and return its data rows, NFC-normalised and stripped.

    Raises :class:`CsvError` for a file that cannot be read, is not UTF-8, lacks a required column,
    has an unknown column, or has a row with the wrong number of fields.
    """
    name = str(path)
    try:
        raw = Path(path).read_bytes()
    except OSError as exc:
        raise CsvError(name, f"cannot read file: {exc.strerror or exc}") from exc
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise CsvError(name, "not UTF-8 text (save the file as UTF-8)", line) from exc
    reader = csv.reader(io.StringIO(text, newline=""))
    header: list[str] | None = None
    rows: list[CsvRow] = []
    allowed = set(required) | set(optional)
    try:
        for record in reader:
            if not any(field.strip() for field in record):
                continue  # blank line
            if header is None:
                header = [nfc(h).lower() for h in record]
                missing = [c for c in required if c not in header]
                if missing:
                    raise CsvError(name, f"missing column(s): {', '.join(missing)}", reader.line_num)
                unknown = [c for c in header if c not in allowed]
                if unknown:
                    raise CsvError(name, f"unknown column(s): {', '.join(unknown)}", reader.line_num)
                continue
            if len(record) != len(header):
                raise CsvError(name, f"expected {len(header)} fields, found {len(record)}", reader.line_num)
            rows.append(CsvRow(reader.line_num, {h: nfc(v) for h, v in zip(header, record, strict=True)}))
    except csv.Error as exc:
        raise CsvError(name, f"malformed CSV: {exc}", reader.line_num) from exc
    if header is None:
        raise CsvError(name, "empty file: expected a header row " + ",".join(required))
    return rows
