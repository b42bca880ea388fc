"""Name folding and the CNS title convention."""

from __future__ import annotations

import unicodedata

import pytest

from broadcaster.units.naming import expected_title, fold, name_key, parse_title


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("Xã Mù Cả", "Mù Cả"),
        ("Xã Mù Cả", "mu ca"),
        ("Thị trấn Tam Đường", "TAM  DUONG"),
        ("Phường Đoàn Kết", unicodedata.normalize("NFD", "đoàn kết")),
        ("Tỉnh Lai Châu", "Lai Châu"),
        ("Bản Mù Cả", "Mù Cả"),
        ("Thành phố Lai Châu", "lai chau"),
    ],
)
def test_names_match_without_diacritics_case_prefix_or_form(a: str, b: str) -> None:
    assert name_key(a) == name_key(b)


def test_different_names_do_not_match() -> None:
    assert name_key("Xã Mù Cả") != name_key("Xã Mường Tè")
    assert fold("Đà") == "da"


def test_titles() -> None:
    village = parse_title("CNS_Bản Mù Cả_Xã Mù Cả")
    assert village is not None and village.parts == ("mu ca", "mu ca") and not village.province
    province = parse_title("cns_tỉnh Lai Châu")
    assert province is not None and province.province and province.key == "tinh:lai chau"
    assert parse_title("Nhóm Zalo bản Mù Cả") is None
    assert parse_title("CNS_") is None
    assert expected_title(["Tỉnh Lai Châu"], "province") == "CNS_tỉnh Lai Châu"
    assert expected_title(["Bản Mù Cả", "Xã Mù Cả"], "village") == "CNS_Bản Mù Cả_Xã Mù Cả"
