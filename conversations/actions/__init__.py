"""Every state change of contacts, conversations and messages happens here.

Views, the REST API, websocket consumers, Celery tasks, webhooks and the admin all
call these functions. Each one runs in a transaction, records a timeline row where
the conversation changes, and publishes a real-time event that is delivered after
commit (``omnichannel.realtime.publish``).

One module per topic; this package re-exports their public names, so callers write
``from conversations import actions`` and ``actions.do_x`` (or ``from conversations.actions import do_x``):

- ``contacts``: ``get_or_create_contact``, ``identity_scope``, ``do_update_contact``
- ``segments``: ``do_apply_segment_rules``, ``do_set_contact_segments``
- ``merge``: ``do_merge_contacts``, ``do_merge_conversations``
- ``inbound``: ``do_receive_inbound_message`` (and its one-round-trip fast path), ``InboundResult``,
  ``check_inbound_body``, ``do_record_inbound_delivery``, ``do_process_inbound_delivery``
- ``replies``: ``do_send_agent_reply``, ``do_add_note``
- ``delivery``: ``do_update_delivery_status``, ``do_notify_typing``, ``do_mark_read``
- ``capacity``: ``check_chat_capacity``, ``may_exceed_capacity``, ``agent_role_of``
- ``assignment``: ``do_assign_conversation``, ``assign_locked``, ``offer_withdrawn``
- ``status``: ``do_change_status``, ``do_change_priority``, ``change_priority_locked``, ``do_change_subject``
- ``tags``: ``do_set_tags``, ``do_add_tag``, ``add_tag_locked``, ``normalize_tag``, ``MAX_TAGS``
- ``templates``: ``render_template``
- ``common``: what the topic modules share (``check_agent_can_write``, ``record_event``, ``actor_name``,
  ``message_event``, ``publish_conversation``, ``system_line``, ``MAX_ATTACHMENT_BYTES``, …)

A test that patches a name patches it in the topic module that looks it up
(``conversations.actions.inbound._lock_known_customer``), not here.
"""

from omnichannel.errors import ActionError

from .assignment import assign_locked, do_assign_conversation, offer_withdrawn
from .capacity import agent_role_of, check_chat_capacity, may_exceed_capacity
from .common import (
    MAX_ATTACHMENT_BYTES,
    actor_name,
    check_agent_can_write,
    message_event,
    publish_conversation,
    record_event,
    system_line,
)
from .contacts import do_update_contact, get_or_create_contact, identity_scope
from .delivery import do_mark_read, do_notify_typing, do_update_delivery_status
from .inbound import (
    InboundResult,
    check_inbound_body,
    do_process_inbound_delivery,
    do_receive_inbound_message,
    do_record_inbound_delivery,
)
from .merge import do_merge_contacts, do_merge_conversations
from .replies import do_add_note, do_send_agent_reply
from .segments import do_apply_segment_rules, do_set_contact_segments
from .status import change_priority_locked, do_change_priority, do_change_status, do_change_subject
from .tags import MAX_TAGS, add_tag_locked, do_add_tag, do_set_tags, normalize_tag
from .templates import PLACEHOLDER_VAR, render_template

__all__ = [
    "MAX_ATTACHMENT_BYTES",
    "MAX_TAGS",
    "PLACEHOLDER_VAR",
    "ActionError",
    "InboundResult",
    "actor_name",
    "add_tag_locked",
    "agent_role_of",
    "assign_locked",
    "change_priority_locked",
    "check_agent_can_write",
    "check_chat_capacity",
    "check_inbound_body",
    "do_add_note",
    "do_add_tag",
    "do_apply_segment_rules",
    "do_assign_conversation",
    "do_change_priority",
    "do_change_status",
    "do_change_subject",
    "do_mark_read",
    "do_merge_contacts",
    "do_merge_conversations",
    "do_notify_typing",
    "do_process_inbound_delivery",
    "do_receive_inbound_message",
    "do_record_inbound_delivery",
    "do_send_agent_reply",
    "do_set_contact_segments",
    "do_set_tags",
    "do_update_contact",
    "do_update_delivery_status",
    "get_or_create_contact",
    "identity_scope",
    "may_exceed_capacity",
    "message_event",
    "normalize_tag",
    "offer_withdrawn",
    "publish_conversation",
    "record_event",
    "render_template",
    "system_line",
]
