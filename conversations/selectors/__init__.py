"""Reads: permission-checked fetches and the console's lists. Nothing here writes.

One module per topic; this package re-exports their public names, so ``selectors.X`` and
``from conversations.selectors import X`` work whichever module holds X:

- ``access``: who may see what (``get_agent``, ``visible_inbox_ids``, ``visible_inboxes``, ``access_*``,
  ``visible_contacts``);
- ``related``: ``get_with_related`` / ``list_with_related``, select_related reads from a statement written once;
- ``inbox``: the inbox list (``InboxFilters``, ``filter_conversations_for_agent``, ``conversation_rows``, …) and
  the console's pick lists (``console_lists``);
- ``conversation``: the conversation view's history and timeline events;
- ``contacts``: a contact's conversations;
- ``agents``: agents for assignment and their live-chat loads.

Their hand-written statements are in ``conversations/queries.py``; the conversation page's side panel (one
statement over core, engine and widget tables) is ``conversations/panel.py``.
"""

from omnichannel.errors import NotFound

from .access import (
    ACCESS_RELATED,
    access_contact_by_id,
    access_conversation_by_id,
    access_inbox_by_id,
    can_see_inbox,
    get_agent,
    visible_contacts,
    visible_inbox_ids,
    visible_inboxes,
)
from .agents import held_chats, list_agents_for_assignment, list_assignable_agents_with_load
from .contacts import CONTACT_CONVERSATIONS_LIMIT, list_contact_conversations
from .conversation import (
    HISTORY_FIELDS,
    HISTORY_PAGE,
    HistoryMessage,
    HistorySender,
    TimelineEvent,
    conversation_events,
    get_contact_history,
    max_body_length,
)
from .inbox import (
    ROW_VALUES,
    VIEWS,
    ConversationRow,
    InboxFilters,
    console_lists,
    conversation_rows,
    filter_conversations_for_agent,
    get_conversation_rows,
    list_conversations_for_agent,
)
from .related import get_with_related, list_with_related

__all__ = [
    "ACCESS_RELATED", "CONTACT_CONVERSATIONS_LIMIT", "HISTORY_FIELDS", "HISTORY_PAGE", "ROW_VALUES", "VIEWS",
    "ConversationRow", "HistoryMessage", "HistorySender", "InboxFilters", "NotFound", "TimelineEvent",
    "access_contact_by_id", "access_conversation_by_id", "access_inbox_by_id", "can_see_inbox", "console_lists",
    "conversation_events", "conversation_rows", "filter_conversations_for_agent", "get_agent",
    "get_contact_history", "get_conversation_rows", "get_with_related", "held_chats", "list_agents_for_assignment",
    "list_assignable_agents_with_load", "list_contact_conversations", "list_conversations_for_agent",
    "list_with_related", "max_body_length", "visible_contacts", "visible_inbox_ids", "visible_inboxes",
]
