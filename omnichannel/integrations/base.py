"""Provider adapters: one Transport per channel kind (healthchecks' transports.py shape)."""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING

from omnichannel.errors import TransportError

if TYPE_CHECKING:
    from conversations.models import Inbox, Message


class Transport:
    def __init__(self, inbox: Inbox) -> None:
        self.inbox = inbox

    def send(self, message: Message) -> str | None:
        """Deliver `message`; return the provider's id for it when there is one."""
        raise TransportError(f"Sending on {self.inbox.get_kind_display()} inboxes is not available yet",
                             permanent=True)

    def find_sent(self, message: Message) -> str | None:
        """The provider's id for `message` if an earlier attempt already delivered it, else None (a provider that
        cannot tell: the message is sent again, and receivers dedupe on its id)."""
        return None


# Channel kind -> dotted path of its Transport. Kinds not listed cannot send yet.
TRANSPORTS = {
    "api": "omnichannel.integrations.api_webhook.ApiWebhookTransport",
    "webchat": "omnichannel.integrations.webchat.WebchatTransport",
    "sms": "omnichannel.integrations.twilio_sms.transport.TwilioSmsTransport",
}


def get_transport(inbox: Inbox) -> Transport:
    path = TRANSPORTS.get(inbox.kind)
    if path is None:
        return Transport(inbox)
    module, _, name = path.rpartition(".")
    return getattr(import_module(module), name)(inbox)
