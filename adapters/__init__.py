"""Platform adapters (telegram, zalo, facebook, webhook, relay, memory) behind one sender Protocol.

Not built yet: see the platform adapters issue. Nothing here is imported by the core.
"""
