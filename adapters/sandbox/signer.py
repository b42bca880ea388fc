"""The gateway's own Standard Webhooks signer, written from the specification
(https://www.standardwebhooks.com), not shared with the client it tests: a signing bug in
``adapters.signing`` must be caught here, not mirrored.

Signed content: ``{webhook-id}.{webhook-timestamp}.{raw body}``; signature ``v1,<base64 HMAC-SHA256>``
keyed by the base64 part of a ``whsec_`` secret. Like the reference library, the key's base64 may omit
its ``=`` padding. ``webhook-signature`` may carry several space-separated signatures; one match is
enough. Timestamps more than five minutes away are refused.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import time
from collections.abc import Mapping

WINDOW = 5 * 60


class BadSignature(Exception):
    """The request does not carry a valid signature (the gateway answers 401)."""


def _key(secret: str) -> bytes:
    text = secret[len("whsec_") :] if secret.startswith("whsec_") else secret
    try:
        return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
    except binascii.Error:
        raise BadSignature("secret is not base64") from None


def _mac(secret: str, msg_id: str, stamp: str, body: bytes) -> str:
    signed = b".".join((msg_id.encode(), stamp.encode(), body))
    return base64.b64encode(hmac.digest(_key(secret), signed, hashlib.sha256)).decode()


def sign_headers(secret: str, msg_id: str, body: bytes) -> dict[str, str]:
    stamp = str(int(time.time()))
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": stamp,
        "webhook-signature": f"v1,{_mac(secret, msg_id, stamp, body)}",
    }


def check(secret: str, headers: Mapping[str, str], body: bytes) -> str:
    """The request's ``webhook-id`` when one of its signatures matches; ``BadSignature`` otherwise."""
    msg_id = headers.get("webhook-id")
    stamp = headers.get("webhook-timestamp")
    given = headers.get("webhook-signature")
    if not (msg_id and stamp and given):
        raise BadSignature("webhook-id, webhook-timestamp and webhook-signature are required")
    if not stamp.isdigit() or abs(time.time() - int(stamp)) > WINDOW:
        raise BadSignature("webhook-timestamp is not within five minutes of now")
    wanted = _mac(secret, msg_id, stamp, body)
    for part in given.split():
        version, _, value = part.partition(",")
        if version == "v1" and hmac.compare_digest(value.encode(), wanted.encode()):
            return msg_id
    raise BadSignature("no signature matches")
