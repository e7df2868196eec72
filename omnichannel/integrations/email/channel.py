"""Email: a ticket channel. Receiving and sending arrive with the email issue; today inboxes of this kind hold
conversations created through the API or the demo data, and replies say sending is not available yet."""

from __future__ import annotations

from conversations.channels import Channel

CHANNEL = Channel(kind="email", label="Email", short="Mail", identity="email", identity_per_inbox=False, live=False)
