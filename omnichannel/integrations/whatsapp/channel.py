"""WhatsApp Cloud API. Receiving and sending arrive with the social issue."""

from __future__ import annotations

from conversations.channels import Channel

CHANNEL = Channel(kind="whatsapp", label="WhatsApp", short="WA", identity="whatsapp", identity_per_inbox=False,
                  live=False)
