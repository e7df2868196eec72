"""Instagram (a professional account): account-scoped sender ids. Receiving and sending arrive with the social
issue."""

from __future__ import annotations

from conversations.channels import Channel

CHANNEL = Channel(kind="instagram", label="Instagram", short="IG", identity="instagram", identity_per_inbox=True,
                  live=False)
