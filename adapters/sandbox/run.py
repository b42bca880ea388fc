"""Start the sandbox platforms on 127.0.0.1 (``cns sandbox`` and the benchmarks use this)."""

from __future__ import annotations

import base64
import secrets
from dataclasses import dataclass, field

from adapters.sandbox import telegram, webhook_gateway
from adapters.sandbox.common import FaultConfig, Running

PLATFORMS = ("telegram", "webhook")


@dataclass(slots=True)
class SandboxConfig:
    only: tuple[str, ...] = PLATFORMS
    ports: dict[str, int] = field(default_factory=dict)
    limits: bool = True
    faults: FaultConfig = field(default_factory=FaultConfig)
    reply_rate: float = 0.0
    react_rate: float = 0.0
    webhook_secret: str = field(
        default_factory=lambda: "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()
    )


@dataclass(slots=True)
class Sandboxes:
    config: SandboxConfig
    running: dict[str, Running] = field(default_factory=dict)

    @property
    def urls(self) -> dict[str, str]:
        return {name: r.url for name, r in self.running.items()}

    async def start(self) -> Sandboxes:
        cfg = self.config
        if "telegram" in cfg.only:
            app = telegram.create_app(
                limits=telegram.Limits(enabled=cfg.limits),
                faults=cfg.faults,
                auto_bots=True,
                members=telegram.Members(reply_rate=cfg.reply_rate, react_rate=cfg.react_rate),
            )
            self.running["telegram"] = await Running(app, cfg.ports.get("telegram", 0)).start()
        if "webhook" in cfg.only:
            app = webhook_gateway.create_app(
                cfg.webhook_secret, per_second=None if not cfg.limits else 50, faults=cfg.faults
            )
            self.running["webhook"] = await Running(app, cfg.ports.get("webhook", 0)).start()
        return self

    async def stop(self) -> None:
        for running in self.running.values():
            await running.stop()
        self.running.clear()

    def instructions(self) -> list[str]:
        lines = []
        urls = self.urls
        if "telegram" in urls:
            lines += [
                f"telegram  {urls['telegram']}  (Bot API; any token of the form 123456:ABC... is a bot)",
                "  cns accounts add tg --platform telegram --secret env:TG_TOKEN "
                f"--base-url {urls['telegram']}",
            ]
        if "webhook" in urls:
            lines += [
                f"webhook   {urls['webhook']}  (signed-webhook gateway; secret {self.config.webhook_secret})",
                f"  cns accounts add bridge --platform webhook --secret env:WEBHOOK_SECRET "
                f"--base-url {urls['webhook']}",
            ]
        lines.append(
            "Control API: POST {url}/__sim/faults, /__sim/chats or /__sim/targets; GET {url}/__sim/messages"
        )
        return lines
