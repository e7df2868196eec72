"""Facebook Messenger (a Page): page-scoped sender ids. Receiving and sending arrive with the social issue."""

from __future__ import annotations

from conversations.channels import Channel

CHANNEL = Channel(kind="messenger", label="Messenger", short="FB", identity="messenger", identity_per_inbox=True,
                  live=False)
