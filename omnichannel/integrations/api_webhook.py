"""The API channel: agent replies are POSTed to the integration's webhook, signed with HMAC-SHA256.

Headers sent with every delivery:
- ``X-Omnichannel-Event``: ``message.created``
- ``X-Omnichannel-Delivery``: the message's UUID; the same on every retry, so receivers can dedupe
- ``X-Omnichannel-Timestamp``: Unix seconds
- ``X-Omnichannel-Signature``: ``sha256=<hex HMAC-SHA256 of "<timestamp>.<raw body>" with the inbox secret>``
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import socket
import time
from urllib.parse import urlparse

import requests
from django.conf import settings

from .base import Transport, TransportError

SIGNATURE_HEADER = "X-Omnichannel-Signature"
TIMESTAMP_HEADER = "X-Omnichannel-Timestamp"


def sign(secret: str, timestamp: str, body: bytes) -> str:
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"sha256={mac}"


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


def message_payload(message) -> dict:
    conversation = message.conversation
    identity = conversation.contact.identities.filter(kind="api", scope=str(message.inbox_id)).first()
    base = settings.PUBLIC_BASE_URL
    return {
        "event": "message.created",
        "id": str(message.uuid),
        "inbox_id": message.inbox_id,
        "conversation": {"id": conversation.id, "source_id": identity.value if identity else None,
                         "contact_id": conversation.contact_id},
        "message": {
            "id": message.id,
            "uuid": str(message.uuid),
            "body": message.body,
            "created_at": message.created_at.isoformat(),
            "sender": {"type": message.sender_type,
                       "name": message.sender_user.agent.name if message.sender_user and hasattr(
                           message.sender_user, "agent") else None},
            "attachments": [
                {"filename": a.filename, "content_type": a.content_type, "size": a.size,
                 "url": f"{base}/api/v1/attachments/{a.id}"}
                for a in message.attachments.all()
            ],
        },
    }


class ApiWebhookTransport(Transport):
    def send(self, message) -> str | None:
        inbox_settings = self.inbox.settings or {}
        url = inbox_settings.get("webhook_url")
        if not url and inbox_settings.get("delivery") == "poll":
            return None  # polling mode: the integration reads replies through the REST API
        if not url:
            raise TransportError("This API inbox has no webhook_url configured", permanent=True)
        check_webhook_url(url)
        body = json.dumps(message_payload(message), separators=(",", ":")).encode()
        timestamp = str(int(time.time()))
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "omnichannel-webhook/1",
            "X-Omnichannel-Event": "message.created",
            "X-Omnichannel-Delivery": str(message.uuid),
            TIMESTAMP_HEADER: timestamp,
            SIGNATURE_HEADER: sign(self.inbox.secret, timestamp, body),
        }
        try:
            response = requests.post(url, data=body, headers=headers,
                                     timeout=settings.OUTBOUND_WEBHOOK_TIMEOUT_SECONDS, allow_redirects=False)
        except requests.RequestException as exc:
            raise TransportError(f"Webhook request failed: {exc.__class__.__name__}")
        if 200 <= response.status_code < 300:
            return None
        if response.status_code in (408, 425, 429) or response.status_code >= 500:
            raise TransportError(f"Webhook answered HTTP {response.status_code}")
        raise TransportError(f"Webhook refused the message: HTTP {response.status_code}", permanent=True)
