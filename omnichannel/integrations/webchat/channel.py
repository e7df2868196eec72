"""Web chat: the widget a company embeds with one <script> tag (the widget itself is the campaigns app)."""

from __future__ import annotations

from django.conf import settings

from conversations import channels
from conversations.channels import Channel, Endpoint

from .transport import WebchatTransport


def embed_code(inbox, base: str | None = None) -> str:
    """The one <script> tag a company pastes into its site."""
    base = (base or settings.PUBLIC_BASE_URL).rstrip("/")
    return (f'<script async src="{base}/static/widget/widget.js" data-omnichannel-token="{inbox.public_token}" '
            f'data-omnichannel-url="{base}"></script>')


def endpoints(inbox, base: str) -> list[Endpoint]:
    return [Endpoint("Paste into your website", embed_code(inbox, base),
                     note=f"Customize the widget (look, hours, pre-chat form, allowed websites): "
                          f"{base}/admin/campaigns/widgetconfig/?inbox__id__exact={inbox.pk} (made the first time "
                          f"the widget loads; to set it up before that: "
                          f"{base}/admin/campaigns/widgetconfig/add/?inbox={inbox.pk})")]


CHANNEL = Channel(
    kind="webchat", label="Web chat", short="Chat", identity="webchat", identity_per_inbox=True, live=True,
    capabilities=frozenset({channels.TYPING, channels.READ_RECEIPTS, channels.ATTACHMENTS, channels.WIDGET}),
    max_attachment_bytes=10 * 1024 * 1024,
    transport=WebchatTransport, endpoints=endpoints,
    settings_help="Nothing to set here: the widget's look, hours, pre-chat form and allowed websites are in "
                  "Campaigns › Widget configs.",
)
