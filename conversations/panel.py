"""The conversation page's side panel: its small reads in one statement (an 11-branch UNION ALL over the
contact's identities and segments, the tags, routing's latest decision and pending offer, the contact's other
conversations and, for web chats, the widget's wrap-up, survey, visitor session and dispositions).

A console-layer module, not part of conversations.selectors: its statement reads the routing engine's and the
widget's tables, which the core may not import (the import contract in pyproject.toml). The views call
side_panel().
"""

from __future__ import annotations

import json
from types import SimpleNamespace

from django.contrib.auth import get_user_model
from django.db import connection

from agents.models import AgentProfile
from campaigns.actions import get_config
from campaigns.models import DEFAULT_DISPOSITIONS, ChatSurvey, VisitorSession, WidgetConfig, WrapUp
from routing.models import QueueEntry, RoutingDecision

from . import channels, selectors
from .models import ContactIdentity, ContactSegment, Conversation, Inbox, Segment, Tag

User = get_user_model()


IDENTITY_KINDS = dict(ContactIdentity.Kind.choices)
STATUS_LABELS = dict(Conversation.Status.choices)


def chat_count(conversation: Conversation, other_conversations: list[Conversation]) -> int:
    """The contact's conversations in this inbox: counted in the panel's list of the contact's conversations in
    the visible inboxes (this inbox is one) unless that list was cut at its limit."""
    if len(other_conversations) < selectors.CONTACT_CONVERSATIONS_LIMIT:
        return sum(1 for c in other_conversations if c.inbox_id == conversation.inbox_id)
    return Conversation.objects.filter(inbox_id=conversation.inbox_id, contact_id=conversation.contact_id).count()


def _panel_data(conversation: Conversation, inboxes: dict[int, Inbox], *, webchat: bool) -> dict:
    """The side panel's small reads in one statement (UNION ALL of text columns, one group per read):

    the contact's identities and segments, the conversation's tag names, the assignee's display name, the
    latest routing decision, the pending offer, the contact's conversations in the visible `inboxes` (newest
    first, at most selectors.CONTACT_CONVERSATIONS_LIMIT), and for web chats the wrap-up, the survey, the
    visitor's latest session and the widget's dispositions. Each group selects what the ORM reads did.
    """
    t = {name: connection.ops.quote_name(model._meta.db_table) for name, model in (
        ("identity", ContactIdentity), ("member", ContactSegment), ("segment", Segment),
        ("conv_tag", Conversation.tags.through), ("tag", Tag), ("agent", AgentProfile), ("user", User),
        ("decision", RoutingDecision), ("queue", QueueEntry), ("conversation", Conversation),
        ("wrap_up", WrapUp), ("survey", ChatSurvey), ("visitor", VisitorSession), ("widget", WidgetConfig))}
    cid, contact_id, inbox_ids = conversation.id, conversation.contact_id, sorted(inboxes)
    n = "CAST(NULL AS TEXT)"
    groups = [
        (f"SELECT 0 AS k, row_number() OVER (ORDER BY i.id) AS pos, i.kind AS a, i.value AS b, {n} AS c, {n} AS d, "
         f"{n} AS e FROM {t['identity']} i WHERE i.contact_id = %s", [contact_id]),
        (f"SELECT 1, row_number() OVER (ORDER BY s.priority_level DESC, s.name), s.name, s.label, s.color, {n}, {n} "
         f"FROM {t['member']} m JOIN {t['segment']} s ON s.id = m.segment_id WHERE m.contact_id = %s", [contact_id]),
        (f"SELECT 2, row_number() OVER (ORDER BY tg.name), tg.name, {n}, {n}, {n}, {n} FROM {t['conv_tag']} ct "
         f"JOIN {t['tag']} tg ON tg.id = ct.tag_id WHERE ct.conversation_id = %s", [cid]),
        (f"SELECT * FROM (SELECT 3, 0, r.summary, CAST(r.details AS TEXT), {n}, {n}, {n} FROM {t['decision']} r "
         f"WHERE r.conversation_id = %s ORDER BY r.id DESC LIMIT 1) AS g3", [cid]),
        (f"SELECT 4, 0, a.display_name, u.first_name, u.last_name, u.username, CAST(a.user_id AS TEXT) "
         f"FROM {t['queue']} q LEFT JOIN {t['agent']} a ON a.id = q.offered_to_id "
         f"LEFT JOIN {t['user']} u ON u.id = a.user_id WHERE q.conversation_id = %s AND q.state = 'offered'", [cid]),
    ]
    if inbox_ids:
        groups.append((
            f"SELECT * FROM (SELECT 5, row_number() OVER (ORDER BY c.id DESC), CAST(c.id AS TEXT), c.status, "
            f"CAST(c.merged_into_id AS TEXT), CAST(c.inbox_id AS TEXT), {n} FROM {t['conversation']} c "
            f"WHERE c.contact_id = %s AND c.inbox_id IN ({', '.join(['%s'] * len(inbox_ids))}) "
            f"ORDER BY c.id DESC LIMIT {int(selectors.CONTACT_CONVERSATIONS_LIMIT)}) AS g5",
            [contact_id, *inbox_ids]))
    if conversation.assignee_id is not None:
        groups.append((f"SELECT 6, 0, a.display_name, {n}, {n}, {n}, {n} FROM {t['agent']} a WHERE a.user_id = %s",
                       [conversation.assignee_id]))
    if webchat:
        groups += [
            (f"SELECT 7, 0, w.disposition, w.note, {n}, {n}, {n} FROM {t['wrap_up']} w WHERE w.conversation_id = %s",
             [cid]),
            (f"SELECT 8, 0, CAST(v.rating AS TEXT), v.comment, {n}, {n}, {n} FROM {t['survey']} v "
             f"WHERE v.conversation_id = %s", [cid]),
            (f"SELECT * FROM (SELECT 9, 0, v.page_url, v.page_title, CAST(v.visits AS TEXT), {n}, {n} "
             f"FROM {t['visitor']} v WHERE v.inbox_id = %s AND v.contact_id = %s ORDER BY v.last_seen_at DESC "
             f"LIMIT 1) AS g9", [conversation.inbox_id, contact_id]),
            (f"SELECT 10, 0, CAST(wc.dispositions AS TEXT), {n}, {n}, {n}, {n} FROM {t['widget']} wc "
             f"WHERE wc.inbox_id = %s", [conversation.inbox_id]),
        ]
    out: dict = {"contact_identities": [], "contact_segments": [], "conversation_tags": [], "routing": None,
                 "offer": None, "other_conversations": [], "assignee_name": ""}
    if webchat:
        out.update(wrap_up=None, survey=None, visitor=None)
    display_name = dispositions = None
    with connection.cursor() as cursor:
        cursor.execute(" UNION ALL ".join(sql for sql, _ in groups) + " ORDER BY k, pos",
                       [p for _, params in groups for p in params])
        rows = cursor.fetchall()
    for k, _pos, a, b, c, d, e in rows:
        if k == 0:
            out["contact_identities"].append(SimpleNamespace(kind=a, kind_label=IDENTITY_KINDS.get(a, a), value=b))
        elif k == 1:
            out["contact_segments"].append(SimpleNamespace(name=a, color=c, label=b or a))  # str(Segment)
        elif k == 2:
            out["conversation_tags"].append(a)
        elif k == 3:
            out["routing"] = SimpleNamespace(summary=a, details=json.loads(b) if b else {})
        elif k == 4:
            # AgentProfile.name: display name, full name or username ("" when the offer has no agent).
            name = (a or f"{b} {c}".strip() or d) if d is not None else ""
            out["offer"] = SimpleNamespace(offered_to=SimpleNamespace(name=name, user_id=int(e) if e else None))
        elif k == 5:
            inbox_id = int(d)
            inbox = inboxes[inbox_id]
            out["other_conversations"].append(SimpleNamespace(
                id=int(a), status=b, status_label=STATUS_LABELS.get(b, b), merged_into_id=int(c) if c else None,
                inbox_id=inbox_id, contact_id=contact_id, inbox=inbox, channel=channels.for_inbox(inbox)))
        elif k == 6:
            display_name = a
        elif k == 7:
            out["wrap_up"] = SimpleNamespace(disposition=a, note=b)
        elif k == 8:
            out["survey"] = SimpleNamespace(rating=int(a), comment=b)
        elif k == 9:
            out["visitor"] = SimpleNamespace(page_url=a, page_title=b, visits=int(c))
        elif k == 10:
            dispositions = json.loads(a) if a else []
    if conversation.assignee_id is not None:
        user = conversation.assignee  # loaded with the conversation (access_conversation_by_id)
        out["assignee_name"] = display_name or user.get_full_name() or user.get_username()
    if webchat:
        if dispositions is None:  # no widget configuration yet: get_config creates it, as before
            out["dispositions"] = get_config(conversation.inbox).disposition_choices
        else:
            out["dispositions"] = dispositions or DEFAULT_DISPOSITIONS
    return out


def side_panel(conversation: Conversation, inboxes: dict[int, Inbox], *, webchat: bool) -> dict:
    """The side panel's data (see _panel_data: one statement, and get_config's when a web chat's inbox has no
    widget configuration yet); for web chats also ``is_webchat`` and ``chat_count`` (chat_count: one more
    query only when the list of the contact's conversations was cut at its limit)."""
    panel = _panel_data(conversation, inboxes, webchat=webchat)
    if webchat:
        panel.update(is_webchat=True, chat_count=chat_count(conversation, panel["other_conversations"]))
    return panel
