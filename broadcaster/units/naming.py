"""Vietnamese name matching and the CNS group-title convention.

Titles follow ``CNS_<village>_<commune>``, ``CNS_<commune>``, ``CNS_<district>`` and ``CNS_tỉnh <province>``.
Matching ignores diacritics (đ included), case, Unicode normal form, spacing and the unit-type prefix
("Xã Mù Cả" and "Mù Cả" are the same name).
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

TITLE_PREFIX = "CNS_"

# Longest first, so "thành phố" wins over shorter prefixes and "tổ dân phố" over "tổ".
UNIT_TYPE_PREFIXES = (
    "tổ dân phố",
    "thành phố",
    "thị trấn",
    "thị xã",
    "khu phố",
    "phường",
    "huyện",
    "tỉnh",
    "thôn",
    "bản",
    "xóm",
    "làng",
    "xã",
    "ấp",
    "tổ",
    "tp.",
    "tp",
)
_SPACES = re.compile(r"[\s\u00a0]+")


def fold(text: str) -> str:
    """Lower-case ASCII skeleton of ``text``: no diacritics, đ -> d, single spaces."""
    decomposed = unicodedata.normalize("NFD", text.replace("đ", "d").replace("Đ", "D"))
    stripped = "".join(ch for ch in decomposed if not unicodedata.combining(ch))
    return _SPACES.sub(" ", stripped).strip().casefold()


_FOLDED_PREFIXES = tuple(fold(p) for p in UNIT_TYPE_PREFIXES)


def name_key(name: str) -> str:
    """The comparable core of a unit name: folded, without its unit-type prefix."""
    folded = fold(name)
    for prefix in _FOLDED_PREFIXES:
        if folded.startswith(prefix + " ") and len(folded) > len(prefix) + 1:
            return folded[len(prefix) + 1 :].strip()
    return folded


@dataclass(frozen=True, slots=True)
class ParsedTitle:
    """A group title split along the convention; ``parts`` are name keys, innermost unit first."""

    parts: tuple[str, ...]
    province: bool

    @property
    def key(self) -> str:
        return ("tinh:" if self.province else "") + "/".join(self.parts)


def parse_title(title: str) -> ParsedTitle | None:
    """Split a title like ``CNS_Bản Mù Cả_Xã Mù Cả``; None when it does not start with ``CNS_``."""
    text = unicodedata.normalize("NFC", title).strip()
    if fold(text[: len(TITLE_PREFIX)]) != fold(TITLE_PREFIX):
        return None
    parts = [p for p in (s.strip() for s in text[len(TITLE_PREFIX) :].split("_")) if p]
    if not parts:
        return None
    province = len(parts) == 1 and fold(parts[0]).startswith("tinh ")
    return ParsedTitle(tuple(name_key(p) for p in parts), province)


def expected_title(names: list[str], level: str) -> str:
    """The conventional title for a unit, given its name and (for a village) its commune's name."""
    if level == "province":
        return f"{TITLE_PREFIX}tỉnh {name_key_display(names[0])}"
    return TITLE_PREFIX + "_".join(names)


def name_key_display(name: str) -> str:
    """``name`` without its unit-type prefix, keeping its diacritics (for display)."""
    folded = fold(name)
    for prefix in _FOLDED_PREFIXES:
        if folded.startswith(prefix + " "):
            return " ".join(name.split()[len(prefix.split()) :])
    return name


def expected_key(names: list[str], level: str) -> str:
    parsed = parse_title(expected_title(names, level))
    assert parsed is not None
    return parsed.key
