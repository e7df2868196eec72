"""The API channel: agent replies are POSTed to the integration's webhook, signed with HMAC-SHA256.

Headers sent with every delivery:
- ``X-Omnichannel-Event``: ``message.created``
- ``X-Omnichannel-Delivery``: the message's UUID; the same on every retry, so receivers can dedupe
- ``X-Omnichannel-Timestamp``: Unix seconds
- ``X-Omnichannel-Signature``: ``sha256=<hex HMAC-SHA256 of "<timestamp>.<raw body>" with the inbox secret>``
"""

from __future__ import annotations

import json

import requests
from django.conf import settings

from conversations.channels import Transport
from omnichannel.errors import TransportError
from omnichannel.outbound_webhooks import check_webhook_url, signed_headers


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
    def send_problem(self, conversation) -> str | None:
        inbox_settings = self.inbox.settings or {}
        if not inbox_settings.get("webhook_url") and inbox_settings.get("delivery") != "poll":
            return "This API inbox has no webhook_url configured"
        return None

    def send(self, message) -> str | None:
        inbox_settings = self.inbox.settings or {}
        url = inbox_settings.get("webhook_url")
        if not url and inbox_settings.get("delivery") == "poll":
            return None  # polling mode: the integration reads replies through the REST API
        problem = self.send_problem(message.conversation)
        if problem:
            raise TransportError(problem, permanent=True)
        check_webhook_url(url)
        body = json.dumps(message_payload(message), separators=(",", ":")).encode()
        headers = signed_headers(self.inbox.secret, body, event="message.created", delivery=str(message.uuid))
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
