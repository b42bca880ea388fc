"""``cns serve``: the aiohttp application (webhooks, tracked links, relay confirmations, health,
metrics and the JSON API). Wired from bootstrap; the handlers only call the core."""
