"""The monthly report as an Excel workbook: a summary sheet, one sheet per tier, a chart on each."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import xlsxwriter

from broadcaster.reports.monthly import EmptyMonthlyReport, MonthlyReport

COLUMNS = [
    ("code", "Mã"),
    ("name", "Đơn vị"),
    ("parent_code", "Mã cấp trên"),
    ("groups", "Nhóm"),
    ("groups_active", "Nhóm hoạt động"),
    ("groups_unreachable", "Nhóm không gửi được"),
    ("coverage", "Độ phủ"),
    ("members", "Thành viên"),
    ("members_unknown_groups", "Nhóm chưa rõ số thành viên"),
    ("posts_planned", "Bài dự kiến"),
    ("posts_delivered", "Bài đã gửi"),
    ("posts_failed", "Bài lỗi"),
    ("posts_confirmed", "Bài đã xác nhận"),
    ("relay_confirmation_rate", "Tỷ lệ xác nhận"),
    ("replies", "Phản hồi"),
    ("reactions", "Cảm xúc"),
    ("clicks", "Lượt mở liên kết"),
    ("reply_rate", "Tỷ lệ phản hồi"),
]
RATES = {"coverage", "relay_confirmation_rate", "reply_rate"}
TIER_NAMES = {"province": "Tỉnh", "district": "Huyện", "commune": "Xã", "village": "Thôn-Bản"}


def write_xlsx(report: MonthlyReport | EmptyMonthlyReport, path: Path) -> None:
    workbook = xlsxwriter.Workbook(str(path))
    try:
        bold = workbook.add_format({"bold": True})
        pct = workbook.add_format({"num_format": "0%"})
        summary = workbook.add_worksheet("Tổng hợp")
        summary.write(0, 0, f"Báo cáo tháng {report.month}", bold)
        summary.write(1, 0, "Cây đơn vị ngày")
        summary.write(1, 1, report.as_of.isoformat())
        for row, (key, label) in enumerate(COLUMNS[3:], start=3):
            summary.write(row, 0, label)
            value = getattr(report.totals, key)
            if value is None:
                summary.write(row, 1, "chưa rõ")
            else:
                summary.write(row, 1, value, pct if key in RATES else None)
        for level in report.tiers:
            _tier_sheet(workbook, report, level, bold, pct)
    finally:
        workbook.close()


def _tier_sheet(
    workbook: Any, report: MonthlyReport | EmptyMonthlyReport, level: str, bold: Any, pct: Any
) -> None:
    sheet = workbook.add_worksheet(TIER_NAMES.get(level, level)[:31])
    for col, (_, label) in enumerate(COLUMNS):
        sheet.write(0, col, label, bold)
    units = list(report.rows_for_tier(level))
    for row, unit in enumerate(units, start=1):
        for col, (key, _) in enumerate(COLUMNS):
            value = getattr(unit, key) if key in {"code", "name", "parent_code"} else getattr(unit.total, key)
            if value is None:
                sheet.write_blank(row, col, None)
            else:
                sheet.write(row, col, value, pct if key in RATES else None)
    sheet.set_column(1, 1, 28)
    if not units:
        return
    chart = workbook.add_chart({"type": "column"})
    name_col = 1
    for key in ("posts_delivered", "replies", "clicks"):
        col = next(i for i, (k, _) in enumerate(COLUMNS) if k == key)
        chart.add_series(
            {
                "name": [sheet.name, 0, col],
                "categories": [sheet.name, 1, name_col, len(units), name_col],
                "values": [sheet.name, 1, col, len(units), col],
            }
        )
    chart.set_title({"name": f"{TIER_NAMES.get(level, level)}: bài đã gửi, phản hồi, lượt mở"})
    chart.set_size({"width": 900, "height": 420})
    sheet.insert_chart(len(units) + 3, 1, chart)
