"""SMS (and MMS) through Twilio."""

from __future__ import annotations

from conversations import channels
from conversations.channels import Channel, Endpoint

from .actions import check_consent
from .transport import TwilioSmsTransport
from .webhooks import handle_inbound


def endpoints(inbox, base: str) -> list[Endpoint]:
    return [
        Endpoint("A message comes in (Twilio phone number › Messaging, HTTP POST)",
                 f"{base}/webhooks/twilio/{inbox.public_token}/sms/"),
        Endpoint("Status callbacks (set on each send)", f"{base}/webhooks/twilio/{inbox.public_token}/status/"),
    ]


CHANNEL = Channel(
    kind="sms", label="SMS", short="SMS", identity="phone", identity_per_inbox=False, live=False,
    capabilities=frozenset({channels.ATTACHMENTS, channels.TEMPLATES, channels.PROACTIVE}),
    max_attachment_bytes=5 * 1024 * 1024, counts_segments=True,
    transport=TwilioSmsTransport, check_send=check_consent, receive=handle_inbound, endpoints=endpoints,
    settings_help='{"account_sid": "AC…", "from_number": "+1…"} or "messaging_service_sid"; the auth token goes '
                  "in the secret field.",
    secrets=("secret",),
)
