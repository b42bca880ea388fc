"""Faithful fake platform servers (aiohttp) for tests, ``cns demo`` and ``cns sandbox``. Not built yet."""
