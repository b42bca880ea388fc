"""One platform registry: the core's facts and the adapters' factories and hook readers name the same
platforms, the factories build that platform's adapter, and limits and checks read the facts."""

from __future__ import annotations

from pathlib import Path

import pytest

from adapters import registry
from broadcaster.dispatch.ratelimit import SAFETY, Limits
from broadcaster.domain.errors import ConfigError, InputError
from broadcaster.domain.platforms import FACTS, PLATFORMS, platform_facts
from broadcaster.domain.secrets import Secret
from broadcaster.storage.token_store import FileTokenStore

SETTINGS = {
    "telegram": {"base_url": "http://127.0.0.1:9"},
    "zalo": {"app_id": "42", "base_url": "http://127.0.0.1:9", "oauth_url": "http://127.0.0.1:9"},
    "facebook": {"base_url": "http://127.0.0.1:9"},
    "webhook": {"base_url": "http://127.0.0.1:9"},
}


def _config(tmp_path: Path, settings: dict[str, object]) -> registry.AccountConfig:
    return registry.AccountConfig(
        name="acc",
        settings=settings,
        secret=Secret("whsec_" + "QUJD" * 8),
        secret_named=lambda name: None,
        tokens=lambda: FileTokenStore(tmp_path / "tokens.json"),
    )


def test_both_halves_name_the_same_platforms() -> None:
    assert tuple(registry.REGISTRY) == PLATFORMS == tuple(FACTS)
    for name, entry in registry.REGISTRY.items():
        assert entry.name == name and entry.facts is FACTS[name]
        assert entry.hooks.platform == name


@pytest.mark.parametrize("name", PLATFORMS)
async def test_each_factory_builds_its_platforms_adapter(name: str, tmp_path: Path) -> None:
    sender = registry.build(name, _config(tmp_path, SETTINGS[name]))
    try:
        assert getattr(sender, "platform", None) == name
    finally:
        await sender.close()


@pytest.mark.parametrize(("name", "missing"), [("zalo", "app_id"), ("webhook", "base_url")])
def test_a_required_setting_left_out_is_named(name: str, missing: str, tmp_path: Path) -> None:
    settings = {k: v for k, v in SETTINGS[name].items() if k != missing}
    with pytest.raises(ConfigError, match=f"needs the setting {missing}"):
        registry.build(name, _config(tmp_path, settings))


def test_unknown_platforms_are_refused_with_the_list(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="telegram, zalo, facebook, webhook"):
        platform_facts("mocha")
    with pytest.raises(ConfigError, match="no adapter for platform 'mocha'"):
        registry.build("mocha", _config(tmp_path, {}))
    assert platform_facts(" Zalo ").name == "zalo"


def test_rate_limits_default_to_the_registry_and_settings_override_them() -> None:
    limits = Limits()
    for i, name in enumerate(PLATFORMS):
        assert limits.account(i, name, {}).rate == pytest.approx(FACTS[name].account_rate * SAFETY)
    assert limits.account(99, "telegram", {"rate_per_second": 3}).rate == pytest.approx(3 * SAFETY)
    group = limits.group(1, "telegram", {})
    assert group is not None and group.rate == pytest.approx(20.0 / 60 * SAFETY)
    assert limits.group(2, "zalo", {}) is None
