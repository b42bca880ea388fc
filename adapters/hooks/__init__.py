"""The inbound side of each platform: authenticate a webhook request and read it into core ``Signal``s.

One module per platform, each exposing ``CODEC`` (a :class:`broadcaster.domain.ports.HookCodec`). They are
pure functions of the bytes and headers received: no I/O, no database, so the web layer can verify
and store a request within the platforms' answer deadlines and process it afterwards.
"""
