"""The channel seam: what each kind of inbox is, in one place, and the contract every provider plugs into.

A channel (web chat, the API, SMS, and the kinds to come: email, Messenger, Instagram, WhatsApp, X) is one
``Channel`` spec, declared in its folder ``omnichannel/integrations/<provider>/channel.py`` and registered at
start-up (``omnichannel.integrations.registry``, from ``OmnichannelConfig.ready()``). The core asks the spec
instead of testing ``inbox.kind``: who a sender is (``identity``, ``identity_per_inbox``), whether a
conversation is a live chat that counts against an agent's concurrent limit (``live``) or asynchronous, what
the channel can do (``capabilities``), how a reply leaves (``transport``), what must hold before one is sent
(``check_send``), how a stored inbound delivery becomes a message (``receive``), and what an admin pastes
into the provider (``endpoints``). See docs/adding-a-channel.md.

Inbound, every provider has one shape: verify the request, store it once per (inbox, provider message id)
with ``conversations.actions.do_record_inbound_delivery``, commit, acknowledge, and let the generic task
``conversations.tasks.process_inbound_delivery`` call the channel's ``receive`` (which calls
``do_receive_inbound_message``). Outbound: ``conversations.tasks.deliver_outbound_message`` claims the
message (compare-and-set), asks the channel's ``Transport`` to send it, and records the provider's id;
status callbacks feed ``conversations.actions.do_update_delivery_status`` (forward only).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING

from omnichannel.errors import TransportError

if TYPE_CHECKING:
    from .models import Conversation, InboundDelivery, Inbox, Message

# Capabilities a channel may have (Channel.capabilities).
TYPING = "typing"  # the customer sees "agent is typing" and the agent sees the customer typing
READ_RECEIPTS = "read_receipts"  # the customer sees when the agent read their messages
ATTACHMENTS = "attachments"  # agents may send files
TEMPLATES = "templates"  # provider-approved message templates (WhatsApp) or our own (proactive SMS)
PUBLIC_POSTS = "public_posts"  # public comments and mentions besides private messages
WIDGET = "widget"  # a live widget on the customer's screen: system lines ("Ana joined the chat"), agent cards
PROACTIVE = "proactive"  # agents may start a conversation (to an opted-in number)
API_INBOUND = "api_inbound"  # client programs post customer messages through the REST API


class Transport:
    """How a reply leaves on a channel (healthchecks' transports). `send` raises TransportError; `permanent`
    errors are not retried. The base class is the transport of a channel that cannot send yet."""

    def __init__(self, inbox: Inbox) -> None:
        self.inbox = inbox

    def send(self, message: Message) -> str | None:
        """Deliver `message`; return the provider's id for it when there is one."""
        raise TransportError(self._not_available(), permanent=True)

    def send_problem(self, conversation: Conversation) -> str | None:
        """Why no reply in `conversation` can leave through this inbox (sending not configured, or not available on
        the channel), or None. Read from what is loaded (no query): the console shows it next to the composer
        before the agent sends, and `send` fails with the same reason."""
        return self._not_available()

    def _not_available(self) -> str:
        return f"Sending on {self.inbox.get_kind_display()} inboxes is not available yet"

    def delivers_at_write(self, conversation: Conversation) -> bool:
        """Whether a reply reaches the customer as it is written, published live by the action (a web chat): it is
        stored as sent and answers the customer at once; no task sends it."""
        return False

    def find_sent(self, message: Message) -> str | None:
        """The provider's id for `message` if an earlier attempt already delivered it, else None (a provider that
        cannot tell: the message is sent again, and receivers dedupe on its id)."""
        return None


@dataclass(frozen=True)
class Endpoint:
    """Something an admin copies into the provider's console: a webhook URL, an embed code."""

    label: str
    value: str
    note: str = ""


@dataclass(frozen=True)
class Channel:
    kind: str  # Inbox.kind (conversations.models.ChannelKind)
    label: str  # "Web chat"
    short: str  # the console's channel badge: "Chat", "SMS"
    identity: str  # ContactIdentity.Kind of a sender on this channel
    identity_per_inbox: bool  # a sender's id means something only within one inbox (page-scoped ids, visitors)
    live: bool  # a live chat (counts against an agent's concurrent chats) or asynchronous (tickets)
    capabilities: frozenset[str] = frozenset()
    max_attachment_bytes: int = 0  # what the provider accepts; 0: no attachments
    counts_segments: bool = False  # the composer counts 160-character SMS segments
    reply_window: timedelta | None = None  # after the customer's last message; None: replies always allowed
    transport: type[Transport] = Transport
    check_send: Callable[[Inbox, object], None] | None = None  # (inbox, conversation): ActionError to refuse a send
    receive: Callable[[InboundDelivery], Message | None] | None = None  # a stored delivery -> its message
    endpoints: Callable[[Inbox, str], list[Endpoint]] | None = None  # (inbox, public base URL)
    settings_help: str = ""  # what goes in Inbox.settings and the secret, for the admin
    secrets: tuple[str, ...] = field(default=())  # names of the settings that are secrets

    def can(self, capability: str) -> bool:
        return capability in self.capabilities


_REGISTRY: dict[str, Channel] = {}


def register(channel: Channel) -> Channel:
    """Add a channel spec (start-up only). A kind registered twice must be the same spec."""
    existing = _REGISTRY.get(channel.kind)
    if existing is not None and existing != channel:
        raise ValueError(f"channel kind {channel.kind!r} is already registered")
    _REGISTRY[channel.kind] = channel
    return channel


def channel(kind: str) -> Channel:
    try:
        return _REGISTRY[kind]
    except KeyError:
        raise LookupError(f"no channel registered for kind {kind!r}") from None


def for_inbox(inbox: Inbox) -> Channel:
    return channel(inbox.kind)


def all_channels() -> Iterable[Channel]:
    return tuple(_REGISTRY.values())


def live_kinds() -> tuple[str, ...]:
    """The kinds whose conversations are live chats (an agent's concurrent-chat load), sorted."""
    return tuple(sorted(c.kind for c in _REGISTRY.values() if c.live))


def kinds_with(capability: str) -> tuple[str, ...]:
    return tuple(sorted(c.kind for c in _REGISTRY.values() if capability in c.capabilities))
