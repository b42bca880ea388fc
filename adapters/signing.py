"""Standard Webhooks signatures (``webhook-id``, ``webhook-timestamp``, ``webhook-signature``).

Signed content is ``"{id}.{timestamp}.{raw body}"``; the signature is ``v1,`` + base64(HMAC-SHA256(key,
content)) where the key is the base64 part of a ``whsec_...`` secret. Used by the webhook adapter to
sign and by the sandbox gateway (and later the inbound endpoint) to verify.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time

from broadcaster.domain.secrets import whsec_key

TOLERANCE_SECONDS = 300
PREFIX = "whsec_"


class SignatureError(ValueError):
    """The request is not signed by the shared secret, or is outside the replay window."""


def secret_key(secret: str) -> bytes:
    """The HMAC key of a ``whsec_`` secret (unpadded base64 accepted); a ``ConfigError`` when it has none."""
    return whsec_key(secret)


def sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    content = f"{msg_id}.{timestamp}.".encode() + body
    digest = hmac.new(secret_key(secret), content, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def headers(secret: str, msg_id: str, body: bytes, now: float | None = None) -> dict[str, str]:
    timestamp = int(time.time() if now is None else now)
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": sign(secret, msg_id, timestamp, body),
    }


def verify(secret: str, received: dict[str, str], body: bytes, now: float | None = None) -> str:
    """Check the headers of a request; returns its ``webhook-id``. Header names are case-insensitive."""
    lowered = {k.lower(): v for k, v in received.items()}
    msg_id = lowered.get("webhook-id", "")
    stamp = lowered.get("webhook-timestamp", "")
    signatures = lowered.get("webhook-signature", "")
    if not msg_id or not stamp or not signatures:
        raise SignatureError("missing webhook-id, webhook-timestamp or webhook-signature")
    try:
        timestamp = int(stamp)
    except ValueError:
        raise SignatureError("webhook-timestamp is not an integer") from None
    current = time.time() if now is None else now
    if abs(current - timestamp) > TOLERANCE_SECONDS:
        raise SignatureError("webhook-timestamp outside the 5 minute window")
    expected = sign(secret, msg_id, timestamp, body).split(",", 1)[1]
    for candidate in signatures.split(" "):
        version, _, value = candidate.partition(",")
        if version == "v1" and hmac.compare_digest(value, expected):
            return msg_id
    raise SignatureError("no matching v1 signature")
