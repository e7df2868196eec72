"""Outbound webhooks, for every feature that calls a customer's URL (the API channel, SLA escalations, and
later bot actions and campaigns): the private-address refusal (SSRF) and the HMAC-SHA256 signature.

A signed delivery carries ``X-Omnichannel-Timestamp`` (Unix seconds) and ``X-Omnichannel-Signature``
(``sha256=<hex HMAC-SHA256 of "<timestamp>.<raw body>">``); ``verify`` is the receiver's constant-time check.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import socket
import time
from urllib.parse import urlparse

from django.conf import settings

from omnichannel.errors import TransportError

SIGNATURE_HEADER = "X-Omnichannel-Signature"
TIMESTAMP_HEADER = "X-Omnichannel-Timestamp"


def sign(secret: str, timestamp: str, body: bytes) -> str:
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"sha256={mac}"


def signed_headers(secret: str, body: bytes, *, event: str, delivery: str) -> dict[str, str]:
    """The headers of a signed delivery of `body`: JSON, who sends it, the event, a delivery id the receiver
    can deduplicate on, the timestamp and the signature over both."""
    timestamp = str(int(time.time()))
    return {"Content-Type": "application/json", "User-Agent": "omnichannel-webhook/1", "X-Omnichannel-Event": event,
            "X-Omnichannel-Delivery": delivery, TIMESTAMP_HEADER: timestamp,
            SIGNATURE_HEADER: sign(secret, timestamp, body)}


def verify(secret: str, timestamp: str, body: bytes, signature: str, *, tolerance: int = 300) -> bool:
    """Constant-time check of a signature produced by `sign` (for receivers and tests)."""
    try:
        if abs(time.time() - int(timestamp)) > tolerance:
            return False
    except (TypeError, ValueError):
        return False
    return hmac.compare_digest(sign(secret, timestamp, body), signature or "")


def check_webhook_url(url: str) -> None:
    """Refuse URLs that are not http(s) or resolve to private/loopback/link-local addresses (SSRF),
    unless their host is in OUTBOUND_WEBHOOK_ALLOWED_PRIVATE_HOSTS."""
    parsed = urlparse(url or "")
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise TransportError(f"Webhook URL {url!r} is not an http(s) URL", permanent=True)
    host = parsed.hostname
    if host in settings.OUTBOUND_WEBHOOK_ALLOWED_PRIVATE_HOSTS:
        return
    try:
        infos = socket.getaddrinfo(host, parsed.port or (443 if parsed.scheme == "https" else 80))
    except socket.gaierror as exc:
        raise TransportError(f"Cannot resolve webhook host {host}: {exc}")
    for info in infos:
        ip = ipaddress.ip_address(info[4][0])
        if ip.is_private or ip.is_loopback or ip.is_link_local or ip.is_reserved or ip.is_multicast:
            raise TransportError(f"Webhook host {host} resolves to a private address ({ip}); "
                                 "allow it in OUTBOUND_WEBHOOK_ALLOWED_PRIVATE_HOSTS", permanent=True)
