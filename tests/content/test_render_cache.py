"""RenderCache renders a revision once per platform and fills in each target's values: it must give
exactly what the full render gives, for any values, or fall back to it."""

from __future__ import annotations

import random

import pytest

from broadcaster.domain.models import ContentRevision
from broadcaster.domain.ports import Media
from content.render import LIMITS, RenderCache, render_revision

BODIES = [
    "Bà con {unit_name} ơi, nộp hồ sơ trực tuyến trên Cổng Dịch vụ công.",
    "**Thông báo của {commune}** ({district}, {province})\n\n- Tiêm chủng cho trẻ tại {unit_name}\n"
    "- Xem [hướng dẫn](https://vneid.gov.vn/hd) và https://dichvucong.gov.vn\n\n*{unit_name}* & *{commune}*",
    "1. Họp thôn {unit_name} lúc 8:00\n2. Mang theo CCCD <bắt buộc>\n\n`mã: {unit_name}`",
]
PHOTO = Media("a" * 64, "anh.jpg", "image/jpeg", b"x", "https://cns.example/a/" + "a" * 64)
DOC = Media("b" * 64, "huong-dan.pdf", "application/pdf", b"y", "https://cns.example/a/" + "b" * 64)
ODD = ["", "&", "<b>", 'Nậm "Cuổi"', "Bản Ô\u0301", "x" * 3000, "\ue000", "Tà Tổng & <Mù Cả>"]


def _revision(body: str, links: list[str]) -> ContentRevision:
    return ContentRevision(
        content_id=1, number=1, title="Tin của {unit_name}", body=body, category="x", links=links,
        attachments=[], sha256="s" * 64, author_id=1,
    )  # fmt: skip


def _values(rng: random.Random) -> dict[str, str]:
    def one() -> str:
        if rng.random() < 0.3:
            return rng.choice(ODD)
        return "".join(rng.choice("Bản Nậm Lò Xã Tả Phìn ơư ế & <>") for _ in range(rng.randint(0, 40)))

    return {name: one() for name in ("unit_name", "commune", "district", "province")}


@pytest.mark.parametrize("platform", sorted(LIMITS))
def test_filled_template_equals_the_full_render(platform: str) -> None:
    rng = random.Random(f"render-{platform}")
    cache = RenderCache()
    for n in range(400):
        revision = _revision(rng.choice(BODIES), rng.choice([[], ["https://example.gov.vn/extra?a=1&b=2"]]))
        media = rng.choice([[], [PHOTO], [PHOTO, DOC]])
        values = _values(rng)
        limit = rng.choice([None, None, 300])
        track = rng.choice(
            [None, lambda u, n=n: f"https://cns.example/l/{n:x}{len(u)}", lambda u: f"https://x/l?u={u}&q=1"]
        )
        got = cache(platform, revision, media, values, limit, track)
        assert got == render_revision(platform, revision, media, values, limit, track), (n, values)


def test_templates_are_made_once_per_revision_and_platform() -> None:
    cache = RenderCache()
    revision = _revision(BODIES[1], [])
    for village in range(50):
        cache("telegram", revision, [], {"unit_name": f"Bản {village}", "commune": "Xã Mù Cả"})
    cache("zalo", revision, [], {"unit_name": "Bản 1", "commune": "Xã Mù Cả"})
    assert len(cache._templates) == 2
