"""Routing's raw SQL: every statement and fragment the routing actions send, as functions returning
``(sql, params)``, so that `routing/actions/` reads as logic, and the setup's version that routing/engine.py
reads (constants).

The hot ones (the candidates' statement, the claim, the lock with the routing state, the decision's INSERT)
run as prepared statements in pipelines (omnichannel.pgtrip), and `bench/` measures them: their text and
parameter order are part of their cost (a changed text is a new prepared statement), so change them only
with a benchmark run beside.

Fragments written for the agent row take its alias (`agent`, "a" by default); a query that reads a
conversation's load counts the live chat and asynchronous channel classes apart (`chat`).
"""

from __future__ import annotations

import json
from datetime import datetime

from django.db import connection
from django.utils import timezone

from agents.models import AgentProfile, AgentSkill, Team
from conversations import channels
from conversations import hooks as conv_hooks
from conversations.models import Conversation, Message
from omnichannel.db import columns, sql_literal

from .models import AgentLoad, QueueEntry, RoutingDecision

# --- the routing setup's version (routing/engine.py) --------------------------------------

SETUP_VERSION_SQL = "(SELECT version FROM routing_setup_version WHERE id = 1)"
"""Reads the setup's version (trigger-bumped, migration 0004): an expression for a statement made anyway."""

SETUP_VERSION_SELECT_SQL = f"SELECT {SETUP_VERSION_SQL}"
"""Reads the setup's version alone: the fingerprint of routing_setup()'s per-process cache."""


# --- agents' loads ------------------------------------------------------------------------


def reconcile_loads_sql() -> tuple[str, list]:
    """The check of the trigger-kept loads (the routing_reconcile_loads() function of migration 0005)."""
    return "SELECT routing_reconcile_loads()", []


def load_sql(chat: bool, agent: str = "a") -> tuple[str, list]:
    """SQL for an agent's open conversations plus pending offers on the channel class (live chat vs
    asynchronous), for the agent row aliased `agent`: the load the triggers keep (AgentLoad), one key lookup.
    (count_load_sql counts the same from the rows; the tests check that the two agree.)"""
    column = "chats" if chat else "asynchronous"
    return (f"COALESCE((SELECT l.{column} FROM {AgentLoad._meta.db_table} l"
            f" WHERE l.user_id = {agent}.user_id), 0)", [])


def count_load_sql(chat: bool, agent: str = "a") -> tuple[str, list]:
    """SQL counting an agent's open conversations plus pending offers on the channel class, for the agent row
    aliased `agent`: two counts over that agent's rows only (the assignee/status index, the offers by agent),
    each row's inbox kind read by its primary key."""
    conversation, inbox, queue = (Conversation._meta.db_table, Conversation._meta.get_field("inbox").related_model
                                  ._meta.db_table, QueueEntry._meta.db_table)
    kinds = ", ".join(sql_literal(k) for k in channels.live_kinds())
    test = "IN" if chat else "NOT IN"
    sql = (f"(SELECT count(*) FROM {conversation} c WHERE c.assignee_id = {agent}.user_id"
           f" AND c.status = {sql_literal(Conversation.Status.OPEN)}"
           f" AND (SELECT i.kind FROM {inbox} i WHERE i.id = c.inbox_id) {test} ({kinds}))"
           f" + (SELECT count(*) FROM {queue} q WHERE q.offered_to_id = {agent}.id"
           f" AND q.state = {sql_literal(QueueEntry.State.OFFERED)}"
           f" AND (SELECT i.kind FROM {inbox} i WHERE i.id = q.inbox_id) {test} ({kinds}))")
    return sql, []


def agent_load_sql(agent_id: int, chat: bool) -> tuple[str, list]:
    """One agent's load on the channel class, as the triggers keep it (do_recheck_reopened)."""
    sql, params = load_sql(chat)
    return f"SELECT {sql} FROM {AgentProfile._meta.db_table} a WHERE a.id = %s", [*params, agent_id]


# --- which agents a target considers (conditions on the agent row `a`) ----------------------


def in_inbox_team_sql(inbox_id: int, agent: str = "a") -> tuple[str, list]:
    """SQL: the agent row aliased `agent` is in a team that works `inbox_id`."""
    members, inboxes = AgentProfile.teams.through._meta.db_table, Team.inboxes.through._meta.db_table
    return (f"EXISTS (SELECT 1 FROM {members} m JOIN {inboxes} ti ON ti.team_id = m.team_id"
            f" WHERE m.agentprofile_id = {agent}.id AND ti.inbox_id = %s)", [inbox_id])


def agent_is_sql(agent_id: int) -> tuple[str, list]:
    """SQL: the agent row `a` is this one."""
    return "a.id = %s", [agent_id]


def team_member_sql(team_id: int) -> tuple[str, list]:
    """SQL: the agent row `a` is a member of the team."""
    members = AgentProfile.teams.through._meta.db_table
    return f"a.id IN (SELECT agentprofile_id FROM {members} WHERE team_id = %s)", [team_id]


def has_skill_sql(skill_id: int, min_level: int) -> tuple[str, list]:
    """SQL: the agent row `a` has the skill at `min_level` or above."""
    return (f"a.id IN (SELECT agent_id FROM {AgentSkill._meta.db_table} WHERE skill_id = %s AND level >= %s)",
            [skill_id, min_level])


# --- the decision's statements --------------------------------------------------------------

# The candidate query's idle_us column: exact (extract() is numeric), 0 for an agent never given one.
IDLE_US_SQL = "COALESCE((extract(epoch FROM a.last_assigned_at) * 1000000)::bigint, 0)"


def candidates_sql(source_sql: str, source_params: list, *, inbox_id: int, chat: bool, skill_id: int | None
                   ) -> tuple[str, list]:
    """Every agent matching `source_sql` (a condition on the agent row `a`) with what eligibility needs: name,
    activity, status, role, limits, idle time, whether a team of theirs works the inbox, the load on the
    channel class (online agents only; the others are skipped for their status before capacity) and the
    level of `skill_id` (0 without one). One statement, run for every target a decision tries."""
    user_table = AgentProfile._meta.get_field("user").related_model._meta.db_table
    load_sql_, load_params = load_sql(chat)
    team_sql, team_params = in_inbox_team_sql(inbox_id)
    idle_sql = IDLE_US_SQL
    level_sql, level_params = "0", []
    if skill_id is not None:
        level_sql = f"(SELECT s.level FROM {AgentSkill._meta.db_table} s WHERE s.agent_id = a.id AND s.skill_id = %s)"
        level_params = [skill_id]
    # Loads are counted for online agents only: the others are skipped for their status before capacity.
    sql = (f"SELECT a.id, a.display_name, u.first_name, u.last_name, u.username, u.is_active, a.status, a.role,"
           f" a.max_concurrent, a.max_concurrent_async, {idle_sql}, {team_sql},"
           f" CASE WHEN a.status = {sql_literal(AgentProfile.Status.ONLINE)} THEN {load_sql_} END, {level_sql}"
           f" FROM {AgentProfile._meta.db_table} a JOIN {user_table} u ON u.id = a.user_id"
           f" WHERE {source_sql} ORDER BY a.id")
    params = [*team_params, *load_params, *level_params, *source_params]
    return sql, params


CLAIM_SAVEPOINT = "routing_claim"


def claim_sql(agent_id: int, *, chat: bool, now: datetime, offer_team_inbox: int | None = None
              ) -> tuple[str, list]:
    """The claim, several statements for one pipeline: SAVEPOINT; UPDATE the agent row (takes its lock);
    SELECT its status, limits and load on the channel class, then (with `offer_team_inbox`) its first team by
    name that works that inbox, then the agent's and its user's columns."""
    table = AgentProfile._meta.db_table
    user_model = AgentProfile._meta.get_field("user").related_model
    load_sql_, load_params = load_sql(chat)
    team_sql, team_params = "", []
    if offer_team_inbox is not None:
        members, inboxes = AgentProfile.teams.through._meta.db_table, Team.inboxes.through._meta.db_table
        team_sql = (f" (SELECT t.id FROM {Team._meta.db_table} t JOIN {members} m ON m.team_id = t.id"
                    f" JOIN {inboxes} ti ON ti.team_id = t.id WHERE m.agentprofile_id = a.id AND ti.inbox_id = %s"
                    f" ORDER BY t.name LIMIT 1),")  # Team's ordering, as first() applies it
        team_params = [offer_team_inbox]
    return (
        f'SAVEPOINT "{CLAIM_SAVEPOINT}"; UPDATE {table} SET last_assigned_at = %s WHERE id = %s; '
        f"SELECT a.status, a.max_concurrent, a.max_concurrent_async, {load_sql_},{team_sql}"
        f" {columns(AgentProfile, 'a')}, {columns(user_model, 'u')}"
        f" FROM {table} a JOIN {user_model._meta.db_table} u ON u.id = a.user_id WHERE a.id = %s",
        [connection.ops.adapt_datetimefield_value(now), agent_id, *load_params, *team_params, agent_id])


def claim_refused_sql() -> tuple[str, list]:
    """A refused claim: back to its savepoint (which releases the agent's row lock), and the savepoint goes."""
    return f'ROLLBACK TO SAVEPOINT "{CLAIM_SAVEPOINT}"; RELEASE SAVEPOINT "{CLAIM_SAVEPOINT}"', []


def routing_state_sql(conversation_id: int, inbox_id: int | None) -> tuple[str, list]:
    """SQL: the routing state's columns (the first incoming message, others waiting in the inbox's queue, the
    conversation's queue entry, the routing setup's version, conversations.hooks.match_check_sql's answer, the
    tag names); the inbox read from the conversation row when `inbox_id` is None."""
    message, queue = Message._meta.db_table, QueueEntry._meta.db_table
    sla_sql, extra_params = conv_hooks.match_check_sql_of(conversation_id)
    links = Conversation.tags.through._meta.db_table
    tags = Conversation.tags.field.related_model._meta.db_table
    extra = (f", {SETUP_VERSION_SQL}, {sla_sql}, ARRAY(SELECT t.name FROM {links} ct JOIN {tags} t"
             f" ON t.id = ct.tag_id WHERE ct.conversation_id = %s)")
    extra_params = [*extra_params, conversation_id]
    inbox = "%s" if inbox_id is not None else f"(SELECT inbox_id FROM {Conversation._meta.db_table} WHERE id = %s)"
    return (f"SELECT (SELECT m.body FROM {message} m WHERE m.conversation_id = %s AND m.direction = %s"
            f"         ORDER BY m.id LIMIT 1),"
            f"       EXISTS (SELECT 1 FROM {queue} q WHERE q.inbox_id = {inbox} AND q.state = %s"
            f"                 AND q.conversation_id <> %s),"
            f"       (SELECT q.id FROM {queue} q WHERE q.conversation_id = %s){extra}",
            [conversation_id, Message.Direction.INCOMING, inbox_id if inbox_id is not None else conversation_id,
             QueueEntry.State.WAITING, conversation_id, conversation_id, *extra_params])


def lock_with_state_sql(conversation_id: int, contact_sql: str, contact_params: list) -> tuple[str, list]:
    """Statements for one pipeline: lock the conversation row and read it with its inbox and contact (their
    columns in that order, as select_related), then the routing state (routing_state_sql), then, when
    `contact_sql` is not empty, the contact's statements (conversations.conditions.contact_facts_sql)."""
    conversation_table, inbox_field, contact_field = (Conversation._meta.db_table, Conversation._meta.get_field(
        "inbox"), Conversation._meta.get_field("contact"))
    inbox_model, contact_model = inbox_field.related_model, contact_field.related_model
    state_sql, state_params = routing_state_sql(conversation_id, None)
    return (
        f"SELECT {columns(Conversation, 'c')}, {columns(inbox_model, 'i')},"
        f" {columns(contact_model, 'ct')} FROM {conversation_table} c"
        f" JOIN {inbox_model._meta.db_table} i ON i.id = c.inbox_id"
        f" JOIN {contact_model._meta.db_table} ct ON ct.id = c.contact_id"
        f" WHERE c.id = %s FOR UPDATE OF c; {state_sql}" + (f"; {contact_sql}" if contact_sql else ""),
        [conversation_id, *state_params, *contact_params])


def decision_sql(conversation: Conversation, outcome: str, *, summary: str, details: dict, agent=None, rule=None,
                 method: str = "") -> tuple[str, list]:
    """The row RoutingDecision.objects.create() writes, as one INSERT (no signals listen)."""
    return (f"INSERT INTO {RoutingDecision._meta.db_table} (conversation_id, created_at, outcome, rule_id, agent_id,"
            f" method, summary, details) VALUES (%s, %s, %s, %s, %s, %s, %s, %s::jsonb)",
            [conversation.pk, timezone.now(), outcome, rule.pk if rule else None, agent.pk if agent else None, method,
             summary[:300], json.dumps(details)])


def entry_deleted_then_sql(conversation_id: int, then: tuple[str, list]) -> tuple[str, list]:
    """The conversation's queue entry deleted, then the statement `then` (the assignment's decision row)."""
    return (f"DELETE FROM {QueueEntry._meta.db_table} WHERE conversation_id = %s; {then[0]}",
            [conversation_id, *then[1]])


# --- the queue -------------------------------------------------------------------------------


def leave_queue_assigned_sql(conversation_id: int) -> tuple[str, list]:
    """Delete the conversation's queue entry, returning its state and the user id of the agent it was offered
    to (None: not offered)."""
    return (f"DELETE FROM {QueueEntry._meta.db_table} q WHERE q.conversation_id = %s RETURNING q.state,"
            f" (SELECT a.user_id FROM {AgentProfile._meta.db_table} a WHERE a.id = q.offered_to_id)",
            [conversation_id])
