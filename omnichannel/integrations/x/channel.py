"""X (direct messages and mentions). Receiving and sending arrive with the social issue."""

from __future__ import annotations

from conversations.channels import Channel

CHANNEL = Channel(kind="x", label="X", short="X", identity="x", identity_per_inbox=False, live=False)
