"""Start the sandbox platforms on 127.0.0.1 (``cns sandbox``, the demo and the benchmarks use this)."""

from __future__ import annotations

import base64
import secrets
from dataclasses import dataclass, field
from typing import Any

from adapters.sandbox import facebook, telegram, webhook_gateway, zalo
from adapters.sandbox.common import FaultConfig, Running

PLATFORMS = ("telegram", "zalo", "facebook", "webhook")
DEMO_PAGE = "104857600000012"


def new_webhook_secret() -> str:
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


@dataclass(slots=True)
class SandboxConfig:
    only: tuple[str, ...] = PLATFORMS
    ports: dict[str, int] = field(default_factory=dict)
    limits: bool = True
    faults: FaultConfig = field(default_factory=FaultConfig)
    reply_rate: float = 0.0
    react_rate: float = 0.0
    hook_base: str = ""  # where simulated members' events go: {hook_base}/hooks/<platform>/<account>
    hook_accounts: dict[str, str] = field(
        default_factory=lambda: {"zalo": "zalo-oa", "facebook": "fb-page", "webhook": "bridge"}
    )  # the account names in those URLs
    webhook_secret: str = field(default_factory=new_webhook_secret)
    inbound_secret: str = field(default_factory=new_webhook_secret)


@dataclass(slots=True)
class Sandboxes:
    config: SandboxConfig
    running: dict[str, Running] = field(default_factory=dict)
    credentials: dict[str, dict[str, Any]] = field(default_factory=dict)

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
            self.credentials["telegram"] = {
                "token": f"{secrets.randbelow(9 * 10**8) + 10**8}:{secrets.token_urlsafe(26)}"
            }
        if "zalo" in cfg.only:
            app = zalo.create_app(
                per_minute=4000 if cfg.limits else None,
                faults=cfg.faults,
                reply_rate=cfg.reply_rate,
                webhook_url=f"{cfg.hook_base}/hooks/zalo/{cfg.hook_accounts['zalo']}"
                if cfg.hook_base
                else "",
            )
            self.running["zalo"] = await Running(app, cfg.ports.get("zalo", 0)).start()
            state = app[zalo.STATE]
            self.credentials["zalo"] = {
                "app_id": state.app_id,
                "app_secret": state.app_secret,
                "oa_secret": state.oa_secret,
                **state.issue(),
            }
        if "facebook" in cfg.only:
            app = facebook.create_app(
                budget=4800 if cfg.limits else None,
                faults=cfg.faults,
                comment_rate=cfg.reply_rate,
                webhook_url=f"{cfg.hook_base}/hooks/facebook/{cfg.hook_accounts['facebook']}"
                if cfg.hook_base
                else "",
            )
            self.running["facebook"] = await Running(app, cfg.ports.get("facebook", 0)).start()
            graph = app[facebook.STATE]
            page = graph.add_page(DEMO_PAGE, name="Sở KH&CN tỉnh Lai Châu (sandbox)")
            self.credentials["facebook"] = {
                "page_id": DEMO_PAGE,
                "page_token": page.token,
                "app_secret": graph.app_secret,
            }
        if "webhook" in cfg.only:
            app = webhook_gateway.create_app(
                cfg.webhook_secret,
                per_second=50 if cfg.limits else None,
                faults=cfg.faults,
                inbound_url=f"{cfg.hook_base}/hooks/webhook/{cfg.hook_accounts['webhook']}"
                if cfg.hook_base
                else "",
                inbound_secret=cfg.inbound_secret,
                reply_rate=cfg.reply_rate,
            )
            self.running["webhook"] = await Running(app, cfg.ports.get("webhook", 0)).start()
            self.credentials["webhook"] = {"secret": cfg.webhook_secret, "inbound_secret": cfg.inbound_secret}
        return self

    async def stop(self) -> None:
        for running in self.running.values():
            await running.stop()
        self.running.clear()

    def instructions(self) -> list[str]:
        urls, creds = self.urls, self.credentials
        lines: list[str] = []
        if "telegram" in urls:
            lines += [
                f"telegram  {urls['telegram']}  Bot API; any well-formed token is a bot",
                f"  export TG_TOKEN='{creds['telegram']['token']}'",
                "  cns accounts add tg --platform telegram --secret env:TG_TOKEN "
                f"--base-url {urls['telegram']}",
            ]
        if "zalo" in urls:
            z = creds["zalo"]
            lines += [
                f"zalo      {urls['zalo']}  OA API and OAuth; app_id {z['app_id']}",
                f"  export ZALO_APP_SECRET='{z['app_secret']}'",
                f"  # the OA's first token pair: GET {urls['zalo']}/__sim/tokens",
                f"  cns accounts add zalo-oa --platform zalo --secret env:ZALO_APP_SECRET "
                f"--base-url {urls['zalo']} --set app_id={z['app_id']} --set oauth_url={urls['zalo']}",
            ]
        if "facebook" in urls:
            f = creds["facebook"]
            lines += [
                f"facebook  {urls['facebook']}  Graph API; page {f['page_id']}",
                f"  export FB_PAGE_TOKEN='{f['page_token']}'",
                f"  cns accounts add fb-page --platform facebook --secret env:FB_PAGE_TOKEN "
                f"--base-url {urls['facebook']}",
            ]
        if "webhook" in urls:
            lines += [
                f"webhook   {urls['webhook']}  signed-webhook gateway",
                f"  export WEBHOOK_SECRET='{creds['webhook']['secret']}'",
                f"  cns accounts add bridge --platform webhook --secret env:WEBHOOK_SECRET "
                f"--base-url {urls['webhook']}",
            ]
        lines.append(
            "Control API on each: POST /__sim/faults (and /__sim/chats, /__sim/groups, /__sim/pages, "
            "/__sim/targets); GET /__sim/messages or /__sim/posts"
        )
        return lines
