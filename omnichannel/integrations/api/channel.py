"""The API channel: a company's own program posts customer messages and receives agent replies by webhook."""

from __future__ import annotations

from conversations import channels
from conversations.channels import Channel, Endpoint

from .inbound import handle_inbound
from .transport import ApiWebhookTransport


def endpoints(inbox, base: str) -> list[Endpoint]:
    return [
        Endpoint("Post customer messages", f"POST {base}/api/v1/inboxes/{inbox.pk}/incoming/",
                 note="header Authorization: Token …"),
        Endpoint("Agent replies are POSTed to", "settings.webhook_url",
                 note="signed in X-Omnichannel-Signature (HMAC-SHA256 of timestamp.body with the inbox secret)"),
    ]


CHANNEL = Channel(
    kind="api", label="API", short="API", identity="api", identity_per_inbox=True, live=False,
    capabilities=frozenset({channels.ATTACHMENTS, channels.API_INBOUND}), max_attachment_bytes=10 * 1024 * 1024,
    transport=ApiWebhookTransport, receive=handle_inbound, endpoints=endpoints,
    settings_help='{"webhook_url": "https://…"} for replies by webhook, or {"delivery": "poll"} to read them '
                  "through the REST API; the secret signs the webhooks.",
)
