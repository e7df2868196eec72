"""Assignment: assigning or transferring a conversation to an agent and/or a team (``do_assign_conversation``,
with the manual assignment's checks: the team works the inbox, only a supervisor reassigns another agent's
conversation, the assignee may work the inbox and has room, ``capacity``), the writes and events of an
assignment for an action that holds the row lock (``assign_locked``, routing's; raw SQL in one round trip,
``_write_assignment``) and an offer's withdrawal (``offer_withdrawn``).
"""

from __future__ import annotations

import json
from typing import Any

from django.contrib.auth.models import AbstractBaseUser
from django.db import connection, transaction
from django.db.models.sql import InsertQuery
from django.utils import timezone

from agents.models import Team
from omnichannel import pgtrip
from omnichannel.errors import ActionError, clean_text
from omnichannel.realtime import inbox_stream, publish

from .. import channels, hooks, queries
from ..models import (
    Conversation,
    Message,
)
from ..selectors import list_agents_for_assignment
from .capacity import check_chat_capacity, may_exceed_capacity
from .common import (
    actor_name,
    check_agent_can_write,
    clean_body,
    lock_conversation,
    publish_agent_card,
    publish_conversation,
    publish_system_line,
    system_line,
    system_message,
)
from .replies import do_add_note

_UNCHANGED: Any = object()


@transaction.atomic
def do_assign_conversation(*, actor: AbstractBaseUser | None, conversation: Conversation,
                           assignee: AbstractBaseUser | None = _UNCHANGED, team: Team | None = _UNCHANGED,
                           note: str = "") -> Conversation:
    """Assign or transfer a conversation to an agent and/or a team (None clears).
    The writes bypass the ORM: raw SQL in one round trip (_write_assignment)."""
    if actor is not None:
        check_agent_can_write(actor, conversation)
    conversation = lock_conversation(conversation)
    if (actor is not None and team is not _UNCHANGED and team is not None and team.pk != conversation.team_id
            and not team.inboxes.filter(pk=conversation.inbox_id).exists()):
        raise ActionError(f"The {team.name} team does not work the {conversation.inbox.name} inbox (its agents "
                          "could not see this conversation)", field="team")
    if (team is not _UNCHANGED and team is not None and assignee is _UNCHANGED and conversation.assignee_id
            and team.pk != conversation.team_id and not team.members.filter(user_id=conversation.assignee_id).exists()):
        assignee = None  # a transfer to a team its agent is not in: it waits for that team's agents
    if (actor is not None and assignee is not _UNCHANGED and conversation.assignee_id not in (None, actor.pk)
            and (assignee.pk if assignee else None) != conversation.assignee_id and not may_exceed_capacity(actor)):
        # Agents take unassigned conversations and transfer their own; supervisors reassign anything.
        raise ActionError(f"{actor_name(conversation.assignee)} is working on this conversation; only a supervisor "
                          "can reassign it", field="assignee")
    if assignee is not _UNCHANGED and assignee is not None and assignee.pk != conversation.assignee_id:
        if not list_agents_for_assignment(conversation).filter(user=assignee).exists():
            raise ActionError(f"{actor_name(assignee)} cannot work conversations of this inbox", field="assignee")
        if not may_exceed_capacity(actor):
            check_chat_capacity(assignee, conversation)
    old_assignee = conversation.assignee_id
    conversation = assign_locked(actor=actor, conversation=conversation, assignee=assignee, team=team, note=note)
    if conversation.assignee_id is not None and conversation.assignee_id != old_assignee:
        # Out of routing's queue; an offer of it to someone else is withdrawn.
        hooks.agent_assigned(conversation=conversation, assignee=conversation.assignee)
    return conversation


def assign_locked(*, actor: AbstractBaseUser | None, conversation: Conversation,
                   assignee: AbstractBaseUser | None = _UNCHANGED, team: Team | None = _UNCHANGED,
                   note: str = "", reroute: bool = True) -> Conversation:
    """The writes and events of do_assign_conversation, for an action that holds `conversation`'s row lock in
    its transaction (with the inbox loaded) and has checked that `assignee` may work it: routing, which
    chose the agent among those who see the inbox. The engines' queues are not touched here: do_assign_conversation
    calls hooks.agent_assigned, and routing, assigning itself, drops its own queue entry. `reroute=False`: the
    caller itself decides what happens to a conversation left without an agent (no new routing: routing setting
    the team of a conversation it is deciding, or unassigning one it routes again). Raw SQL, not the ORM
    (_write_assignment)."""
    note = clean_text(note or "")  # a note, like every message body, drops NUL (the event's JSON cannot hold one)
    changes: dict[str, Any] = {}
    if assignee is not _UNCHANGED and (assignee.pk if assignee else None) != conversation.assignee_id:
        changes.update(old_assignee=conversation.assignee_id, new_assignee=assignee.pk if assignee else None)
        conversation.assignee = assignee
    if team is not _UNCHANGED and (team.pk if team else None) != conversation.team_id:
        changes.update(old_team=conversation.team_id, new_team=team.pk if team else None)
        conversation.team = team
    if not changes:
        if note.strip() and actor is not None:  # nothing to transfer: the note is kept all the same
            do_add_note(actor=actor, conversation=conversation, body=note)
        return conversation
    line = None  # the web chat's system line
    widget = channels.for_inbox(conversation.inbox).can(channels.WIDGET)
    if "new_assignee" in changes and assignee is not None and widget:
        name = actor_name(assignee)
        line = (f"{name} joined the chat" if changes["old_assignee"] is None else f"You've been transferred to {name}")
    line = system_message(conversation, line) if line is not None else None
    policy_or_clock = _write_assignment(conversation, actor, data={**changes, "note": note[:1000]}, message=line,
                                        match_check="new_team" in changes)
    if "new_assignee" in changes and changes["old_assignee"] is not None:
        hooks.capacity_freed()
    if (reroute and conversation.assignee_id is None and conversation.status == Conversation.Status.OPEN
            and not conversation.merged_into_id and ("new_assignee" in changes or "new_team" in changes)):
        hooks.conversation_released(conversation=conversation, released_user_id=changes.get("old_assignee"),
                                    for_team=team if "new_team" in changes and team is not None else None)
    if line is not None:  # written with the assignment
        publish_system_line(conversation, line)
        publish_agent_card(conversation, assignee)
    elif ("new_assignee" in changes and assignee is None and "new_team" in changes and team is not None
          and widget):
        system_line(conversation, f"You've been transferred to the {team.name} team")
    if note.strip() and actor is not None:
        Message.objects.create(conversation=conversation, inbox_id=conversation.inbox_id,
                               direction=Message.Direction.OUTGOING, sender_type=Message.SenderType.AGENT,
                               sender_user=actor, kind=Message.Kind.NOTE, body=clean_body(note))
    publish_conversation(conversation, "assigned", actor, note=bool(note.strip()))
    if "new_team" in changes:
        hooks.match_changed(conversation=conversation, policy_or_clock=policy_or_clock)
    return conversation


def offer_withdrawn(conversation: Conversation, agent_user_id: int | None) -> None:
    publish({"type": "offer", "op": "withdrawn", "conversation_id": conversation.id, "agent_id": agent_user_id,
             "inbox_id": conversation.inbox_id}, streams=[inbox_stream(conversation.inbox_id)])
    hooks.capacity_freed()


def _write_assignment(conversation: Conversation, actor: AbstractBaseUser | None, *, data: dict[str, Any],
                      message: Message | None = None, match_check: bool = False) -> bool | None:
    """One round trip of raw SQL: the conversation's assignee, team and updated_at (one UPDATE), the timeline's
    "assigned" event and the web chat's system line (`message`, inserted, its id returned); the writes
    save(update_fields), record_event() and message.save() make, without building the ORM statements (no signals
    listen to these models). `match_check` (the team changed): the same round trip also reads
    hooks.match_check_sql_of, returned for hooks.match_changed (else None)."""
    now = timezone.now()
    conversation.updated_at = now
    sql, params = queries.assignment_write_sql(conversation, actor.pk if actor else None, json.dumps(data), now,
                                               _insert_returning_pk(message) if message is not None else None)
    statements = pgtrip.split(sql, params)
    if match_check:
        check_sql, check_params = hooks.match_check_sql_of(conversation.pk)
        statements.append((f"SELECT {check_sql}", check_params))
    results = pgtrip.trip(statements)
    if message is not None:
        message.pk = results[-2 if match_check else -1][0][0]
        message._state.adding = False
        message._state.db = connection.alias
    return bool(results[-1][0][0]) if match_check else None


def _insert_returning_pk(obj: Any) -> tuple[str, list]:
    """The INSERT, returning the primary key, that obj.save(force_insert=True) makes, as (SQL, params). The model
    must have no signal receivers (none in this project listens to a model's save)."""
    meta = type(obj)._meta
    fields = [f for f in meta.local_concrete_fields if f is not meta.auto_field and not getattr(f, "generated", False)]
    query = InsertQuery(type(obj))
    query.insert_values(fields, [obj])
    compiler = query.get_compiler(connection=connection)
    compiler.returning_fields = [meta.pk]
    [(sql, params)] = compiler.as_sql()
    return sql, list(params)
