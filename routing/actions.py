"""Routing: rules, distribution, capacity, queue, offers (agents' roles and presence: agents.actions)."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, NamedTuple

from django.db import connection, transaction
from django.db.models import Count, F, OuterRef, Q, Subquery
from django.db.models.functions import Coalesce
from django.utils import timezone

from agents.actions import do_set_agent_status
from agents.models import AgentProfile, AgentSkill, Skill, Team
from conversations import actions as conv_actions
from conversations import channels
from conversations import hooks as conv_hooks
from conversations.conditions import (
    Facts,
    contact_facts_sql,
    evaluate,
    evaluate_compiled,
    gather_facts,
)
from conversations.models import ContactSegment, Conversation, Message
from omnichannel import pgtrip
from omnichannel.db import columns, from_row, sql_literal
from omnichannel.realtime import batched, inbox_stream, publish

from . import tasks
from .engine import SETUP_VERSION_SQL, RoutingSetup, cached_setup, routing_setup, sticky_window_open
from .models import AgentLoad, QueueEntry, RoutingConfig, RoutingDecision, RoutingRule

# --- routing ------------------------------------------------------------------------------

logger = logging.getLogger(__name__)

SEES_ALL_INBOXES = (AgentProfile.Role.SUPERVISOR, AgentProfile.Role.ADMIN)


def do_reconcile_loads() -> int:
    """Check the agents' loads the triggers keep against the counts and correct them: how many agents' loads
    were wrong, which should always be 0 (logged as an error otherwise). Raw SQL: the routing_reconcile_loads()
    function of migration 0005 does the work."""
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SELECT routing_reconcile_loads()")
        corrected = cursor.fetchone()[0]
    if corrected:
        logger.error("routing: corrected the load of %d agents (the load triggers missed a change)", corrected)
    return corrected


@dataclass
class Outcome:
    outcome: str
    agent: AgentProfile | None = None
    summary: str = ""
    # Queued: the agents the decision examined and could not give it to for a reason of their own (offline,
    # full, ...; not the conversation's own refusals): for the drain, which skips the entries behind it that
    # only these agents could serve.
    refused: frozenset[int] = frozenset()


EXCLUDED_REASON = "missed or let go of this conversation"


def agent_ids(value: Any) -> list[int]:
    """QueueEntry.excluded_agents as agent ids (an admin may have written anything there)."""
    return sorted({v for v in value if isinstance(v, int) and not isinstance(v, bool)}) \
        if isinstance(value, list) else []


def _refused_agents(details: dict) -> frozenset[int]:
    return frozenset(c["agent_id"] for t in details.get("targets") or [] for c in t.get("candidates") or []
                     if c.get("skipped") and c.get("skipped") != EXCLUDED_REASON and c.get("agent_id") is not None)


def _candidate_agents(details: dict) -> frozenset[int]:
    return frozenset(c["agent_id"] for t in details.get("targets") or [] for c in t.get("candidates") or []
                     if c.get("agent_id") is not None)


def _is_chat(conversation: Conversation) -> bool:
    return channels.for_inbox(conversation.inbox).live


def _load_sql(chat: bool, agent: str = "a") -> tuple[str, list]:
    """SQL for an agent's open conversations plus pending offers on the channel class (live chat vs
    asynchronous), for the agent row aliased `agent`: the load the triggers keep (AgentLoad), one key lookup.
    (_count_load_sql counts the same from the rows; the tests check that the two agree.)"""
    column = "chats" if chat else "asynchronous"
    return (f"COALESCE((SELECT l.{column} FROM {AgentLoad._meta.db_table} l"
            f" WHERE l.user_id = {agent}.user_id), 0)", [])


def _count_load_sql(chat: bool, agent: str = "a") -> tuple[str, list]:
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


def _in_inbox_team_sql(inbox_id: int, agent: str = "a") -> tuple[str, list]:
    """SQL: the agent row aliased `agent` is in a team that works `inbox_id`."""
    members, inboxes = AgentProfile.teams.through._meta.db_table, Team.inboxes.through._meta.db_table
    return (f"EXISTS (SELECT 1 FROM {members} m JOIN {inboxes} ti ON ti.team_id = m.team_id"
            f" WHERE m.agentprofile_id = {agent}.id AND ti.inbox_id = %s)", [inbox_id])


@dataclass
class Source:
    """Which agents a target considers, as a condition on the agent row `a`."""

    sql: str
    params: list


def _agent_source(agent_id: int | None) -> Source | None:
    return Source("a.id = %s", [agent_id]) if agent_id else None


def _target(kind: str, *, agent_id: int | None, team: Team | None, skill: Skill | None, min_level: int,
            facts: Facts) -> tuple[Source | None, str, str]:
    """(which agents, description, distribution method) for one rule target; None: nobody to consider."""
    if kind == RoutingRule.Target.AGENT:
        return _agent_source(agent_id), "agent", "least_busy"  # named from the candidate row
    if kind == RoutingRule.Target.TEAM:
        if team is None:
            return None, "team (deleted)", "least_busy"
        members = AgentProfile.teams.through._meta.db_table
        return (Source(f"a.id IN (SELECT agentprofile_id FROM {members} WHERE team_id = %s)", [team.pk]),
                f"team {team.name}", team.distribution_method)
    if kind == RoutingRule.Target.SKILL:
        if skill is None:
            return None, "skill (deleted)", "most_capable"
        return (Source(f"a.id IN (SELECT agent_id FROM {AgentSkill._meta.db_table} WHERE skill_id = %s AND level >= %s)",
                       [skill.pk, min_level]),
                f"skill {skill.name} ≥ {min_level}", "most_capable")
    if kind == RoutingRule.Target.LAST_AGENT:
        return _agent_source(facts.last_agent_id), "the last agent", "sticky"
    if kind == RoutingRule.Target.ACCOUNT_MANAGER:
        return _agent_source(facts.account_manager_id), "the account manager", "least_busy"
    return None, f"unknown target {kind!r}", "least_busy"


def _inbox_teams(conversation: Conversation) -> Source:
    """Members of the teams that work the conversation's inbox."""
    sql, params = _in_inbox_team_sql(conversation.inbox_id)
    return Source(sql, params)


@dataclass
class Candidate:
    agent_id: int
    name: str
    is_active: bool
    status: str
    sees_inbox: bool
    load: int | None  # None: not counted (the agent is not online)
    limit: int
    skill_level: int
    last_assigned_at: datetime | None = None  # not read by _candidates: see idle_us
    skipped: str = ""
    # When the agent was last given a conversation, in microseconds since the epoch (0: never), as the candidate
    # query reads it for the distribution order (an integer: no datetime built per candidate).
    idle_us: int = 0
    profile: AgentProfile | None = None  # the agent and user rows, as read under the claim's lock
    # The first (by name) of the agent's teams that work the inbox, read by the claim when asked (offer_team_read).
    offer_team_id: int | None = None
    offer_team_read: bool = False
    message_id: int | None = None  # reserved by the claim for a live chat's system line


# The candidate query's idle_us column: exact (extract() is numeric), 0 for an agent never given one.
_IDLE_US_SQL = "COALESCE((extract(epoch FROM a.last_assigned_at) * 1000000)::bigint, 0)"


def _candidates(source: Source, *, conversation: Conversation, chat: bool, skill: Skill | None) -> list[Candidate]:
    """Every agent of `source` with what eligibility needs, their loads counted in SQL: one statement.

    Raw SQL, as it runs for every target a decision tries: an ORM query with these subqueries costs
    several milliseconds of Python to build, more than PostgreSQL takes to answer it."""
    user_table = AgentProfile._meta.get_field("user").related_model._meta.db_table
    load_sql, load_params = _load_sql(chat)
    team_sql, team_params = _in_inbox_team_sql(conversation.inbox_id)
    idle_sql = _IDLE_US_SQL
    level_sql, level_params = "0", []
    if skill is not None:
        level_sql = f"(SELECT s.level FROM {AgentSkill._meta.db_table} s WHERE s.agent_id = a.id AND s.skill_id = %s)"
        level_params = [skill.pk]
    # Loads are counted for online agents only: the others are skipped for their status before capacity.
    sql = (f"SELECT a.id, a.display_name, u.first_name, u.last_name, u.username, u.is_active, a.status, a.role,"
           f" a.max_concurrent, a.max_concurrent_async, {idle_sql}, {team_sql},"
           f" CASE WHEN a.status = {sql_literal(AgentProfile.Status.ONLINE)} THEN {load_sql} END, {level_sql}"
           f" FROM {AgentProfile._meta.db_table} a JOIN {user_table} u ON u.id = a.user_id"
           f" WHERE {source.sql} ORDER BY a.id")
    params = [*team_params, *load_params, *level_params, *source.params]
    rows = pgtrip.trip([(sql, params)])[0]
    candidates = []
    for (pk, display_name, first, last, username, is_active, status, role, max_chat, max_async, idle_us,
         in_team, load, level) in rows:
        candidates.append(Candidate(
            agent_id=pk, name=display_name or f"{first} {last}".strip() or username, is_active=bool(is_active),
            status=status, sees_inbox=bool(in_team) or role in SEES_ALL_INBOXES, load=load,
            limit=max_chat if chat else max_async, skill_level=level or 0, idle_us=idle_us))
    return candidates


_UNREAD: Any = object()  # an offer team the claim did not read


def _claim(candidate: Candidate, *, chat: bool, offer_team_inbox: int | None = None) -> str | None:
    """Lock the candidate's row and re-check it under the lock: None when claimed, else why not.

    Only this one agent row is locked; a refused claim rolls back its savepoint, which releases the lock,
    so a decision never holds one agent while waiting for another (no lock cycles between decisions). The
    re-check is a statement of its own, after the lock, so it sees every assignment committed by whoever
    held the lock before. Raw SQL in one round trip, not the ORM (_claim_one_trip).
    """
    return _claim_one_trip(candidate, chat=chat, now=timezone.now(), offer_team_inbox=offer_team_inbox)


_CLAIM_SAVEPOINT = "routing_claim"


def _agent_with_user(values: tuple) -> AgentProfile:
    """AgentProfile and its user from one raw row (columns of both), linked as select_related("user") links them."""
    user_field = AgentProfile._meta.get_field("user")
    count = len(AgentProfile._meta.concrete_fields)
    agent = from_row(AgentProfile, values[:count])
    user = from_row(user_field.related_model, values[count:])
    user_field.set_cached_value(agent, user)
    user_field.remote_field.set_cached_value(user, agent)
    return agent


def _claim_one_trip(candidate: Candidate, *, chat: bool, now: datetime, offer_team_inbox: int | None = None
                    ) -> str | None:
    """_claim in one round trip: SAVEPOINT; UPDATE (takes the row lock); SELECT (the re-check).

    Sent in one pipeline (omnichannel.pgtrip), the three run as separate statements: the SELECT takes its own
    snapshot after the UPDATE got the lock, so it sees every assignment committed by whoever held the lock
    before. A refused claim rolls back to the savepoint (releasing the lock) in a second trip; a granted one
    keeps its savepoint until the transaction ends (the commit releases it).

    `offer_team_inbox`: also read the agent's first team (by name) that works this inbox, as
    agent.teams.filter(inboxes=...).first() reads it (a live chat's offer settings when the target is no team).
    For a live chat, an id is also reserved for the system line an assignment writes ("Alice joined the chat"),
    so that the assignment's writes can go with the events' log (conversations.actions.assign_locked)."""
    table = AgentProfile._meta.db_table
    user_model = AgentProfile._meta.get_field("user").related_model
    load_sql, load_params = _load_sql(chat)
    team_sql, team_params = "", []
    if offer_team_inbox is not None:
        members, inboxes = AgentProfile.teams.through._meta.db_table, Team.inboxes.through._meta.db_table
        team_sql = (f" (SELECT t.id FROM {Team._meta.db_table} t JOIN {members} m ON m.team_id = t.id"
                    f" JOIN {inboxes} ti ON ti.team_id = t.id WHERE m.agentprofile_id = a.id AND ti.inbox_id = %s"
                    f" ORDER BY t.name LIMIT 1),")  # Team's ordering, as first() applies it
        team_params = [offer_team_inbox]
    results = pgtrip.execute(
        f'SAVEPOINT "{_CLAIM_SAVEPOINT}"; UPDATE {table} SET last_assigned_at = %s WHERE id = %s; '
        f"SELECT a.status, a.max_concurrent, a.max_concurrent_async, {load_sql},{team_sql}"
        f" {columns(AgentProfile, 'a')}, {columns(user_model, 'u')}"
        f" FROM {table} a JOIN {user_model._meta.db_table} u ON u.id = a.user_id WHERE a.id = %s"
        + (f"; SELECT nextval(pg_get_serial_sequence('{Message._meta.db_table}', 'id'))" if chat else ""),
        [connection.ops.adapt_datetimefield_value(now), candidate.agent_id, *load_params, *team_params,
         candidate.agent_id])
    if chat:
        candidate.message_id = results.pop()[0][0]
    row = results[-1][0] if results[-1] else None
    refused = None
    if row is None:
        refused = "deleted"
    else:
        status, max_chat, max_async, load = row[:4]
        if team_sql:
            candidate.offer_team_id, candidate.offer_team_read, row = row[4], True, row[:4] + row[5:]
        candidate.profile = _agent_with_user(row[4:])
        candidate.load, candidate.limit = load, max_chat if chat else max_async
        if status != AgentProfile.Status.ONLINE:
            refused = status
        elif candidate.load >= candidate.limit:
            refused = f"at capacity ({candidate.load}/{candidate.limit})"
    if refused is not None:
        pgtrip.execute(f'ROLLBACK TO SAVEPOINT "{_CLAIM_SAVEPOINT}"; RELEASE SAVEPOINT "{_CLAIM_SAVEPOINT}"')
        return refused
    candidate.last_assigned_at = now
    return None


def _choose(source: Source | None, *, conversation: Conversation, method: str, skill: Skill | None, facts: Facts,
            excluded: set[int], sticky_minutes: int = 1440, team: Team | None = None
            ) -> tuple[Candidate | None, list[dict]]:
    """Read the candidates with their loads in one statement, drop the ineligible (with the reason), order
    the rest by `method` and claim the first whose row, locked and re-checked, still has room (for a live chat
    and no `team`, the claim reads the agent's team for the offer too)."""
    if source is None:
        return None, []
    chat = _is_chat(conversation)
    report, eligible = [], []
    for c in _candidates(source, conversation=conversation, chat=chat, skill=skill):
        if not c.is_active:
            c.skipped = "deactivated"
        elif c.agent_id in excluded:
            c.skipped = EXCLUDED_REASON
        elif c.status != AgentProfile.Status.ONLINE:
            c.skipped = c.status
        elif not c.sees_inbox:
            c.skipped = "cannot see this inbox"
        elif c.load >= c.limit:
            c.skipped = f"at capacity ({c.load}/{c.limit})"
        else:
            eligible.append(c)
        report.append({"agent": c.name, "agent_id": c.agent_id, "load": c.load, "limit": c.limit,
                       "skipped": c.skipped or None})
    def idle(c: Candidate) -> int:
        return c.idle_us

    if method == "round_robin":
        eligible.sort(key=lambda c: (idle(c), c.agent_id))
    elif method == "most_capable":
        eligible.sort(key=lambda c: (-c.skill_level, c.load, idle(c), c.agent_id))
    else:  # least busy: fewest active, tie to the longest idle
        eligible.sort(key=lambda c: (c.load, idle(c), c.agent_id))
        if method == "sticky" and facts.last_agent_id and sticky_window_open(facts, sticky_minutes):
            eligible.sort(key=lambda c: c.agent_id != facts.last_agent_id)  # stable: the last agent first
    for c in eligible:
        refused = _claim(c, chat=chat, offer_team_inbox=conversation.inbox_id if chat and team is None else None)
        entry = next(e for e in report if e["agent_id"] == c.agent_id)
        entry.update(load=c.load, limit=c.limit)
        if refused is None:
            return c, report
        c.skipped = entry["skipped"] = refused
    return None, report


class _State(NamedTuple):
    """What a decision reads under the conversation's lock besides the conversation."""

    first_message: str | None  # the first incoming message
    others_waiting: bool  # others wait in the inbox's queue
    entry_id: int | None  # the conversation's queue entry
    setup_version: Any  # the routing setup's version (None: not read)
    sla_policy_or_clock: bool | None  # conversations.hooks.match_check_sql's answer (None: not read)
    tags: list[str] | None  # the conversation's tag names (None: not read)


def _routing_state_sql(conversation_id: int, inbox_id: int | None) -> tuple[str, list]:
    """SQL: the _State columns; the inbox read from the conversation row when `inbox_id` is None."""
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


def _state(row: tuple) -> _State:
    first_message, others_waiting, entry_id, setup_version, sla, tags = row
    return _State(first_message, bool(others_waiting), entry_id, setup_version, None if sla is None else bool(sla),
                  tags)


def _lock_with_state(conversation_id: int) -> tuple[Conversation | None, _State, tuple | None]:
    """One round trip of raw SQL, not the ORM: lock the conversation row and read it with its inbox and contact
    (as select_related), then, in a statement of its own (so after the lock), the routing state, and, when the
    routing setup's rules read them, the contact's segments and history (Facts' contact_rows, else None)."""
    setup = cached_setup()  # the rules as last seen: only decides what to read now, Facts reads the rest
    contact_sql, contact_params = contact_facts_sql(conversation_id) if setup is None or setup.reads_contact \
        else ("", [])
    conversation_table, inbox_field, contact_field = (Conversation._meta.db_table, Conversation._meta.get_field(
        "inbox"), Conversation._meta.get_field("contact"))
    inbox_model, contact_model = inbox_field.related_model, contact_field.related_model
    state_sql, state_params = _routing_state_sql(conversation_id, None)
    results = pgtrip.execute(
        f"SELECT {columns(Conversation, 'c')}, {columns(inbox_model, 'i')},"
        f" {columns(contact_model, 'ct')} FROM {conversation_table} c"
        f" JOIN {inbox_model._meta.db_table} i ON i.id = c.inbox_id"
        f" JOIN {contact_model._meta.db_table} ct ON ct.id = c.contact_id"
        f" WHERE c.id = %s FOR UPDATE OF c; {state_sql}" + (f"; {contact_sql}" if contact_sql else ""),
        [conversation_id, *state_params, *contact_params])
    row = results[0][0] if results[0] else None
    state = _state(results[1][0])
    contact_rows = (results[2], results[3]) if contact_sql else None
    if row is None:
        return None, state, None
    n_conversation, n_inbox = len(Conversation._meta.concrete_fields), len(inbox_model._meta.concrete_fields)
    conversation = from_row(Conversation, row[:n_conversation])
    inbox_field.set_cached_value(conversation, from_row(inbox_model, row[n_conversation:n_conversation + n_inbox]))
    contact_field.set_cached_value(conversation, from_row(contact_model, row[n_conversation + n_inbox:]))
    return conversation, state, contact_rows


@transaction.atomic
def do_route_conversation(*, conversation_id: int, from_queue: bool = False) -> Outcome:
    """Decide who gets a new (or queued) conversation, assign or offer it, and store why.
    Its reads, claims and writes bypass the ORM: raw SQL in pipelined round trips (omnichannel.pgtrip).

    Rules run in position order; the first that matches and has an eligible agent in its primary or
    secondary target wins. Then the customer's agent within the reopen window, then the inbox's teams;
    otherwise the configured overflow (queue or ticket). Only the chosen agent's row is locked, and its load
    re-checked under the lock, so parallel arrivals never push an agent past their limit; the first matching
    rule's settings (priority, tags, team) and every event are written after that lock; the events all
    together, in one statement (realtime.batched), and sent after commit in one go. The assignment's writes
    go in the same round trip as that statement, and so does the COMMIT when this is the outermost
    transaction (batched(commit=True): nothing runs between the block's end and the atomic block's).
    """
    with batched(commit=True):
        return _route(conversation_id, from_queue=from_queue)


def _route(conversation_id: int, *, from_queue: bool) -> Outcome:
    conversation, state, contact_rows = _lock_with_state(conversation_id)
    if conversation is None or conversation.assignee_id or conversation.status != Conversation.Status.OPEN \
            or conversation.merged_into_id:
        QueueEntry.objects.filter(conversation_id=conversation_id).delete()
        return Outcome("skipped")
    if isinstance(conversation.meta, dict) and conversation.meta.get("offline"):
        # The widget's offline form: a ticket answered later by email, not a live chat waiting for a slot.
        QueueEntry.objects.filter(conversation_id=conversation_id).delete()
        _decision(conversation, "ticket", details={"rules": [], "note": "offline message"},
                  summary="Offline message: kept as a ticket for follow-up by email")
        return Outcome("ticket", summary="ticket")
    first_message, others_waiting, entry_id, setup_version = state[:4]
    entry = QueueEntry.objects.filter(pk=entry_id).first() if entry_id else None
    if entry is not None and entry.state == QueueEntry.State.OFFERED:
        return Outcome("skipped")
    setup = routing_setup(setup_version)
    config = setup.config
    facts = gather_facts(conversation, first_message=first_message or "", contact_rows=contact_rows)
    excluded = set(agent_ids(entry.excluded_agents)) if entry else set()
    explanation: dict[str, Any] = {"rules": [], "targets": []}
    settings_rule = None  # the first matching rule sets priority, tags and team, whoever serves

    def hand_over(chosen: Candidate, **kwargs) -> Outcome:
        agent = chosen.profile or AgentProfile.objects.select_related("user").get(pk=chosen.agent_id)  # locked
        offer_team: Any = _UNREAD
        if chosen.offer_team_read and chosen.offer_team_id is None:
            offer_team = None  # none of the agent's teams works the inbox
        elif chosen.offer_team_read and chosen.offer_team_id in setup.teams:
            offer_team = setup.teams[chosen.offer_team_id]
        return _hand_over(conversation, entry, agent, settings_rule=settings_rule, setup=setup, state=state,
                          details=explanation, offer_team=offer_team, message_id=chosen.message_id, **kwargs)

    transferred_to = entry.for_team_id if entry else None
    team = setup.teams.get(transferred_to or conversation.team_id) if (transferred_to or conversation.team_id) \
        else None
    if team is not None:
        # A team already chosen is served first, by its own distribution method. Transferred to it: the
        # conversation waits for that team's agents only. Otherwise (an unassigned agent's team, a team set
        # by the first matching rule while it waited), when nobody there has room, the rules and the
        # fallbacks decide as for a new conversation.
        source, description, method = _target(RoutingRule.Target.TEAM, agent_id=None, team=team, skill=None,
                                              min_level=0, facts=facts)
        chosen, report = _choose(source, conversation=conversation, method=method, skill=None, facts=facts,
                                 excluded=excluded, sticky_minutes=team.sticky_minutes, team=team)
        why = "transferred to" if transferred_to else "the conversation's team"
        explanation["targets"].append({"rule": None, "target": f"{description} ({why})", "method": method,
                                       "candidates": report})
        if chosen:
            return hand_over(chosen, team=team, rule=None, method=method, summary_reason=f"{why} {description}"
                             if transferred_to else f"the conversation's team, {description}")
        if transferred_to:
            return _enqueue(conversation, entry, details=explanation, vip_level=None,
                            summary=f"Queued: transferred to {description}, nobody there has room")
    # A customer writing again after a solved or closed conversation (within the reopen window) goes back to
    # that conversation's agent, when available: before the rules (RoutingConfig.returning_first). The agent of
    # a conversation still open, or with returning_first off, is tried after the rules.
    def returning() -> bool:  # reads the history facts: only when asked
        return bool(facts.last_agent_id and facts.last_closed_at and
                    timezone.now() - facts.last_closed_at <= timedelta(hours=config.reopen_window_hours))

    def to_returning_agent() -> Outcome | None:
        chosen, report = _choose(_agent_source(facts.last_agent_id), conversation=conversation, method="sticky",
                                 skill=None, facts=facts, excluded=excluded)
        explanation["targets"].append({"rule": None, "target": "returning customer's agent", "method": "sticky",
                                       "candidates": report})
        return hand_over(chosen, team=None, rule=None, method="sticky",
                         summary_reason="returning customer, same agent") if chosen else None

    returning_first = config.returning_first and returning() and facts.last_finished
    if returning_first and (outcome := to_returning_agent()) is not None:
        return outcome
    seen: dict[str, tuple[Any, str]] = {}  # facts read by the rules' conditions, with their repr
    for position, rule in enumerate(setup.rules):
        if setup.compiled is not None:
            matched, lines = evaluate_compiled(setup.compiled[position], facts, seen)
        else:
            matched, lines = evaluate(rule, facts)
        explanation["rules"].append({"rule": rule.name, "matched": matched, "conditions": lines})
        if not matched:
            continue
        settings_rule = settings_rule or rule
        targets = [(rule.target, rule.target_agent_id, rule.target_team_id, rule.target_skill_id)]
        if rule.secondary_target:
            targets.append((rule.secondary_target, rule.secondary_agent_id, rule.secondary_team_id,
                            rule.secondary_skill_id))
        for index, (kind, agent_id, team_id, skill_id) in enumerate(targets):
            team, skill = setup.teams.get(team_id), setup.skills.get(skill_id)
            source, description, method = _target(kind, agent_id=agent_id, team=team, skill=skill,
                                                  min_level=rule.skill_min_level, facts=facts)
            chosen, report = _choose(source, conversation=conversation, method=method, skill=skill, facts=facts,
                                     excluded=excluded, sticky_minutes=team.sticky_minutes if team else 1440,
                                     team=team)
            if kind == RoutingRule.Target.AGENT:
                description = f"agent {report[0]['agent'] if report else '(deleted)'}"
            explanation["targets"].append({"rule": rule.name, "target": description, "method": method,
                                           "candidates": report, "secondary": index > 0})
            if chosen:
                why = f"{rule.name}, {description}" + (" (secondary target)" if index else "")
                return hand_over(chosen, team=team, rule=rule, method=method, summary_reason=why)
    # The customer's agent from a recent conversation (unless tried before the rules), then the inbox's teams.
    if not returning_first and returning() and (outcome := to_returning_agent()) is not None:
        return outcome
    if not from_queue and others_waiting:
        # Others already wait for this inbox's teams: a new arrival that no rule could serve joins the queue
        # behind them (fairness) instead of taking an agent they wait for; the queue's order (priority, SLA,
        # waiting time) decides, with the priority its first matching rule set.
        explanation["targets"].append({"rule": None, "target": "the inbox's teams", "method": "least_busy",
                                       "candidates": [], "note": "others were waiting: joined the queue"})
        if settings_rule is not None:
            _apply_rule_settings(settings_rule, conversation, setup, state)
        return _enqueue(conversation, entry, details=explanation, vip_level=facts.get("vip_level"),
                        summary="Queued behind earlier conversations")
    chosen, report = _choose(_inbox_teams(conversation), conversation=conversation, method="least_busy",
                             skill=None, facts=facts, excluded=excluded)
    explanation["targets"].append({"rule": None, "target": "the inbox's teams", "method": "least_busy",
                                   "candidates": report})
    if chosen:
        return hand_over(chosen, team=None, rule=None, method="least_busy",
                         summary_reason="default: the inbox's teams, least busy")
    if settings_rule is not None:
        _apply_rule_settings(settings_rule, conversation, setup, state)
    if config.overflow == RoutingConfig.Overflow.TICKET and not _is_chat(conversation):
        QueueEntry.objects.filter(conversation=conversation).delete()
        conv_actions.do_add_tag(actor=None, conversation=conversation, name="follow-up")
        _decision(conversation, "ticket", summary="Nobody available: kept as a ticket for follow-up",
                  details=explanation)
        return Outcome("ticket", summary="ticket")
    return _enqueue(conversation, entry, details=explanation, vip_level=facts.get("vip_level"),
                    summary="Queued: no agent online with capacity in any matching target")


def _apply_rule_settings(rule: RoutingRule, conversation: Conversation, setup: RoutingSetup, state: _State) -> bool:
    """Set the rule's priority, tags and team as their actions do (do_change_priority, do_add_tag,
    do_assign_conversation: their writes and events, in that order), on `conversation`, whose row this
    transaction has locked; whether it did anything."""
    applied = False
    sla = state.sla_policy_or_clock
    # A setting the actions refuse (a priority out of range, more tags than allowed: a rule written outside the
    # admin, which refuses them) is skipped and logged: the conversation is still routed.
    if rule.set_priority is not None and rule.set_priority not in Conversation.Priority.values:
        logger.warning("routing rule %s sets an unknown priority %r: skipped", rule.pk, rule.set_priority)
    elif rule.set_priority is not None and rule.set_priority != conversation.priority:
        conv_actions.change_priority_locked(actor=None, conversation=conversation, priority=rule.set_priority,
                                             sla_policy_or_clock=sla)
        applied = True
    tags = state.tags
    for tag in [t for t in rule.set_tags.split(",") if t.strip()]:
        try:
            if tags is None:  # not read with the state (not PostgreSQL)
                conv_actions.do_add_tag(actor=None, conversation=conversation, name=tag)
            else:
                tags = conv_actions.add_tag_locked(actor=None, conversation=conversation, name=tag, current=tags,
                                                    sla_policy_or_clock=sla)
        except conv_actions.ActionError as refused:
            logger.warning("routing rule %s: tag %r skipped: %s", rule.pk, tag, refused)
            break
        applied = True
    set_team = setup.teams.get(rule.set_team_id)
    if set_team is not None and set_team.pk != conversation.team_id:
        conv_actions.assign_locked(actor=None, conversation=conversation, team=set_team, sla_policy_or_clock=sla,
                                    reroute=False)
        applied = True
    return applied


def _decision_sql(conversation: Conversation, outcome: str, *, summary: str, details: dict, agent=None, rule=None,
                  method: str = "") -> tuple[str, list]:
    """The row RoutingDecision.objects.create() writes, as one INSERT (no signals listen)."""
    return (f"INSERT INTO {RoutingDecision._meta.db_table} (conversation_id, created_at, outcome, rule_id, agent_id,"
            f" method, summary, details) VALUES (%s, %s, %s, %s, %s, %s, %s, %s::jsonb)",
            [conversation.pk, timezone.now(), outcome, rule.pk if rule else None, agent.pk if agent else None, method,
             summary[:300], json.dumps(details)])


def _decision(conversation: Conversation, outcome: str, *, summary: str, details: dict, agent=None, rule=None,
              method: str = "", written: bool = False) -> None:
    """Store the decision and its explanation (unless `written`: the caller sent _decision_sql), and publish it.
    Raw SQL, not the ORM: RoutingDecision's INSERT (_decision_sql)."""
    if not written:
        with connection.cursor() as cursor:
            cursor.execute(*_decision_sql(conversation, outcome, summary=summary, details=details, agent=agent,
                                          rule=rule, method=method))
    conv_actions.publish_conversation(conversation, "routed", None, outcome=outcome, summary=summary[:300])


def _hand_over(conversation: Conversation, entry: QueueEntry | None, agent: AgentProfile, *, team: Team | None,
               rule: RoutingRule | None, method: str, summary_reason: str, details: dict,
               settings_rule: RoutingRule | None, setup: RoutingSetup, state: _State, offer_team: Any = _UNREAD,
               message_id: int | None = None) -> Outcome:
    """Give the conversation to `agent`, whose row this transaction has locked (`_claim`). `offer_team`: for a
    live chat and no `team`, the agent's team the claim read (_UNREAD: read it here)."""
    if settings_rule is not None and _apply_rule_settings(settings_rule, conversation, setup, state) and (
            state.tags is None or state.sla_policy_or_clock is not False):
        # Actions that wrote through copies of their own, or SLA clocks that changed the row.
        conversation.refresh_from_db()
    now = timezone.now()
    if _is_chat(conversation):
        if team is not None:
            offer_team = team
        elif offer_team is _UNREAD:
            offer_team = agent.teams.filter(inboxes=conversation.inbox_id).first()
        if offer_team is not None and not offer_team.auto_accept:
            QueueEntry.objects.update_or_create(conversation=conversation, defaults={
                "inbox_id": conversation.inbox_id, "state": QueueEntry.State.OFFERED, "offered_to": agent,
                "offer_expires_at": now + timedelta(seconds=offer_team.offer_timeout_seconds),
                "priority": entry.priority if entry else conversation.priority,
                "enqueued_at": entry.enqueued_at if entry else (conversation.waiting_since or now),
                "excluded_agents": entry.excluded_agents if entry else []})
            summary = f"Offered to {agent.name}: {summary_reason}"
            _decision(conversation, "offered", summary=summary, details=details, agent=agent, rule=rule,
                      method=method)
            publish({"type": "offer", "op": "created", "conversation_id": conversation.id,
                     "agent_id": agent.user_id, "inbox_id": conversation.inbox_id,
                     "expires_in": offer_team.offer_timeout_seconds},
                    streams=[inbox_stream(conversation.inbox_id)])
            return Outcome("offered", agent, summary)
    assign = {"assignee": agent.user}
    if team is not None and conversation.team_id is None:
        assign["team"] = team
    # This transaction holds the conversation's row lock, and the agent sees the inbox (`_choose`): the
    # assignment's writes and events without do_assign_conversation's second lock and visibility query.
    # The queue entry's removal and the decision's row go in the assignment's round trip; the decision's event
    # after the assignment's.
    summary = f"Routed to {agent.name}: {summary_reason}"
    decision = dict(summary=summary, details=details, agent=agent, rule=rule, method=method)
    also = _decision_sql(conversation, "assigned", **decision)
    if entry is not None:
        also = (f"DELETE FROM {QueueEntry._meta.db_table} WHERE conversation_id = %s; {also[0]}",
                [conversation.pk, *also[1]])
    # Nothing reads the assignment's rows before the decision's batch ends: they go with the
    # events' log (one round trip), the system line with the id the claim reserved.
    conv_actions.assign_locked(actor=None, conversation=conversation, sla_policy_or_clock=state.sla_policy_or_clock, also=also, message_id=message_id,
                                defer_writes=True, **assign)
    _decision(conversation, "assigned", written=True, **decision)
    return Outcome("assigned", agent, summary)


QUEUE_SCORE_MAX = 32767  # QueueEntry.priority is a smallint; a segment's level may be up to that


def queue_score(vip_level: int | None, priority: int) -> int:
    """A waiting conversation's place in the queue order: VIP level first, then priority (higher first)."""
    return max(0, min(QUEUE_SCORE_MAX, (vip_level or 0) * 10 + priority))


def refresh_queue_scores(*, conversation_id: int | None = None, contact_id: int | None = None) -> int:
    """Re-place waiting conversations in the queue after their priority or their contact's segments changed
    (the queue orders by VIP level, then priority); how many moved."""
    entries = QueueEntry.objects.select_related("conversation")
    if conversation_id is not None:
        entries = entries.filter(conversation_id=conversation_id)
    if contact_id is not None:
        entries = entries.filter(conversation__contact_id=contact_id)
    moved = 0
    for entry in entries:
        vip_level = max(ContactSegment.objects.filter(contact_id=entry.conversation.contact_id)
                        .values_list("segment__priority_level", flat=True), default=0)
        score = queue_score(vip_level, entry.conversation.priority)
        if score != entry.priority:
            QueueEntry.objects.filter(pk=entry.pk).update(priority=score)
            moved += 1
    return moved


def _enqueue(conversation: Conversation, entry: QueueEntry | None, *, details: dict, summary: str,
             vip_level: int | None = None) -> Outcome:
    if vip_level is None:
        vip_level = max((s.priority_level for s in conversation.contact.segments.all()), default=0)
    score = queue_score(vip_level, conversation.priority)
    if entry is None:
        QueueEntry.objects.create(conversation=conversation, inbox_id=conversation.inbox_id, priority=score,
                                  enqueued_at=conversation.waiting_since or timezone.now())
        _decision(conversation, "queued", summary=summary, details=details)
        return Outcome("queued", summary=summary, refused=_refused_agents(details))
    if entry.priority != score:
        entry.priority = score
        entry.save(update_fields=["priority"])
    # Back in the queue after something else (a missed offer): stored too. A drain that finds it still waiting
    # stores nothing (one row per attempt, every few seconds, would bury the decisions that matter).
    last = RoutingDecision.objects.filter(conversation=conversation).order_by("-id").values_list("outcome",
                                                                                                   flat=True).first()
    if last != RoutingDecision.Outcome.QUEUED:
        _decision(conversation, "queued", summary=summary, details=details)
    return Outcome("queued", summary=summary, refused=_refused_agents(details))


@transaction.atomic
def requeue(conversation: Conversation, *, released_user_id: int | None, for_team: Team | None = None) -> None:
    """An open conversation left without an agent (unassigned, transferred to a team its agent or the agent it
    was offered to is not in, reopened without one) is routed again after commit: a pending offer is withdrawn;
    `released_user_id`, the agent who let it go, is skipped until they next come online (as after a missed
    offer); `for_team`, the team it was transferred to, is the only one it waits for (None: as it was).
    The caller holds the conversation's row lock (the conversations.hooks.conversation_released point)."""
    entry = QueueEntry.objects.select_for_update().filter(conversation=conversation).first()
    excluded = set(agent_ids(entry.excluded_agents)) if entry else set()
    if released_user_id is not None:
        excluded |= set(AgentProfile.objects.filter(user_id=released_user_id).values_list("id", flat=True))
    withdrawn = entry is not None and entry.state == QueueEntry.State.OFFERED
    defaults = {"inbox_id": conversation.inbox_id, "state": QueueEntry.State.WAITING, "offered_to": None,
                "offer_expires_at": None, "priority": entry.priority if entry else conversation.priority,
                "enqueued_at": entry.enqueued_at if entry else (conversation.waiting_since or timezone.now()),
                "excluded_agents": sorted(excluded)}
    if for_team is not None:
        defaults["for_team"] = for_team
    QueueEntry.objects.update_or_create(conversation=conversation, defaults=defaults)
    refresh_queue_scores(conversation_id=conversation.pk)  # its place: VIP level, then priority
    if withdrawn:
        conv_actions.offer_withdrawn(conversation, entry.offered_to.user_id if entry.offered_to else None)
    tasks.route_conversation.delay_on_commit(conversation.id)


def leave_queue(conversation: Conversation) -> None:
    """A conversation that left "open" leaves the routing queue too (a visitor who gave up no longer holds a
    place in it, an offer for it no longer holds the agent's slot); the queue moves on after commit when that
    freed an agent's room."""
    offered = QueueEntry.objects.filter(conversation=conversation).delete()[0] and conversation.assignee_id is None
    if conversation.assignee_id or offered:
        tasks.drain_queue.delay_on_commit()


def offer_again(agent: AgentProfile) -> None:
    """`agent` (row-locked) came online: a missed offer passed that chat to the next agent; now the agent may be
    offered it again (or a chat in a one-agent team would wait for ever), and the queue is served after commit."""
    for entry in QueueEntry.objects.select_for_update().exclude(excluded_agents=[]):
        if agent.pk in agent_ids(entry.excluded_agents):
            entry.excluded_agents = [a for a in agent_ids(entry.excluded_agents) if a != agent.pk]
            entry.save(update_fields=["excluded_agents"])
    tasks.drain_queue.delay_on_commit()


def leave_queue_assigned(conversation: Conversation, assignee) -> None:
    """A conversation given to `assignee` outside routing's decision (by hand, an accepted offer) leaves the
    queue; an offer of it to another agent is withdrawn, which frees that agent's slot. One statement: the
    entry's removal returns what it was (the caller holds the conversation's row lock)."""
    with connection.cursor() as cursor:
        cursor.execute(f"DELETE FROM {QueueEntry._meta.db_table} q WHERE q.conversation_id = %s RETURNING q.state,"
                       f" (SELECT a.user_id FROM {AgentProfile._meta.db_table} a WHERE a.id = q.offered_to_id)",
                       [conversation.pk])
        row = cursor.fetchone()
    if row is not None:
        state, offered_user_id = row
        if state == QueueEntry.State.OFFERED and offered_user_id is not None and offered_user_id != assignee.pk:
            conv_actions.offer_withdrawn(conversation, offered_user_id)


def leave_queue_merged(source: Conversation) -> None:
    """A conversation merged into another leaves the queue; an offer of it no longer holds the agent's slot, and
    the queue moves on after commit (an agent it was assigned to: the core's capacity_freed does that)."""
    left = QueueEntry.objects.filter(conversation=source).delete()[0]
    if left and not (source.status == Conversation.Status.OPEN and source.assignee_id):
        tasks.drain_queue.delay_on_commit()


def chats_offered(*, agent: Any, exclude: int | None = None) -> Any:
    """The live chats offered to the agent row `agent` (an expression for its id) and waiting for their accept,
    as a query expression (an integer); `exclude`: a conversation id not counted."""
    offers = QueueEntry.objects.filter(offered_to_id=agent, state=QueueEntry.State.OFFERED,
                                       inbox__kind__in=channels.live_kinds())
    if exclude is not None:
        offers = offers.exclude(conversation_id=exclude)
    return Coalesce(Subquery(offers.order_by().values("offered_to_id").annotate(n=Count("id")).values("n")), 0)


def do_recheck_reopened(*, conversation_id: int, solved_at: datetime | None = None) -> str:
    """A solved conversation the customer reopened went back to its agent: it stays with them when they are
    available (online, within their limit with it, and the conversation was solved within the reopen window);
    otherwise it is unassigned, which routes it again. "kept", "rerouted" or "skipped"."""
    conversation = (Conversation.objects.select_for_update(of=("self",)).select_related("inbox", "assignee")
                    .filter(pk=conversation_id).first())
    if conversation is None or conversation.status != Conversation.Status.OPEN or not conversation.assignee_id \
            or conversation.merged_into_id:
        return "skipped"
    window = timedelta(hours=RoutingConfig.get().reopen_window_hours)
    agent = AgentProfile.objects.filter(user_id=conversation.assignee_id).first()
    chat = _is_chat(conversation)
    reason = None
    if solved_at is not None and timezone.now() - solved_at > window:
        reason = "it was solved before the reopen window"
    elif agent is None or not conversation.assignee.is_active:
        reason = "no longer an agent"
    elif agent.status != AgentProfile.Status.ONLINE:
        reason = f"{agent.name} is {agent.get_status_display().lower()}"
    else:
        load_sql, load_params = _load_sql(chat)
        with connection.cursor() as cursor:
            cursor.execute(f"SELECT {load_sql} FROM {AgentProfile._meta.db_table} a WHERE a.id = %s",
                           [*load_params, agent.pk])
            load = cursor.fetchone()[0]  # this conversation included
        limit = agent.max_concurrent if chat else agent.max_concurrent_async
        if load > limit:
            reason = f"{agent.name} is at capacity ({load - 1}/{limit})"
    if reason is None:
        return "kept"
    # Unassigned without counting as letting it go: the agent may still get it back once they have room.
    conv_actions.assign_locked(actor=None, conversation=conversation, assignee=None,
                                note=f"Reopened by the customer; {reason}: routed again", reroute=False)
    requeue(conversation, released_user_id=None)
    return "rerouted"


def _route_logged(conversation_id: int, *, from_queue: bool = False) -> Outcome:
    """do_route_conversation for a sweep: a conversation whose decision fails (its transaction rolled back) is
    logged and left for the next sweep, and the sweep goes on with the others; its outcome ("failed" then)."""
    try:
        return do_route_conversation(conversation_id=conversation_id, from_queue=from_queue)
    except Exception:
        logger.exception("routing conversation %s failed; the next sweep tries again", conversation_id)
        return Outcome("failed")


def do_drain_queue(*, limit: int = 500) -> int:
    """Give waiting conversations to agents who have room, head of the queue first. Returns how many moved."""
    # Safety net: open, unassigned conversations that were never decided (a lost or failed routing task).
    # Also the conversations left without an agent after a decision assigned them (a deleted agent, an
    # unassignment whose routing task was lost): open, unassigned, not waiting, and not kept as a ticket.
    stale = timezone.now() - timedelta(seconds=60)
    last_outcome = Subquery(RoutingDecision.objects.filter(conversation_id=OuterRef("pk")).order_by("-id")
                            .values("outcome")[:1])
    for conversation_id in (Conversation.objects.filter(status=Conversation.Status.OPEN, assignee__isnull=True,
                                                        merged_into__isnull=True, created_at__lt=stale,
                                                        queue_entry__isnull=True)
                            .annotate(last_outcome=last_outcome)
                            .filter(Q(last_outcome__isnull=True) | ~Q(last_outcome=RoutingDecision.Outcome.TICKET))
                            .order_by("id").values_list("id", flat=True)[:limit]):
        _route_logged(conversation_id)
    # An entry that stays queued tells which agents could not take it (offline, full, ...): an entry behind
    # it whose candidates, as its last stored decision examined them, are all among those is skipped without
    # a new decision (nothing frees up during the drain). Any other entry is decided: its rules may target
    # someone else (an account manager, a specialist outside the inbox's teams).
    moved = 0
    unavailable: set[int] = set()
    entries = list(QueueEntry.objects.filter(state=QueueEntry.State.WAITING)
                   .order_by("-priority", F("conversation__sla_due_at").asc(nulls_last=True), "enqueued_at", "id")
                   .values_list("conversation_id", flat=True)[:limit])
    for conversation_id in entries:
        if unavailable:
            details = (RoutingDecision.objects.filter(conversation_id=conversation_id).order_by("-id")
                       .values_list("details", flat=True).first())
            known = _candidate_agents(details) if isinstance(details, dict) else frozenset()
            if known and known <= unavailable:
                continue
        outcome = _route_logged(conversation_id, from_queue=True)
        if outcome.outcome in ("assigned", "offered"):
            moved += 1
        elif outcome.outcome == "queued":
            unavailable |= outcome.refused
    return moved


def queue_position(conversation: Conversation) -> tuple[int | None, int | None]:
    """(1-based place in the inbox's queue, estimated wait in seconds), or (None, None) when not waiting."""
    entry = QueueEntry.objects.filter(conversation=conversation, state=QueueEntry.State.WAITING).first()
    if entry is None:
        return None, None
    # The drain's order: priority, then SLA due time (none last), then waiting time, then id.
    due = Conversation.objects.filter(pk=entry.conversation_id).values_list("sla_due_at", flat=True).first()
    same_due = Q(conversation__sla_due_at__isnull=True) if due is None else Q(conversation__sla_due_at=due)
    earlier_due = (Q(conversation__sla_due_at__isnull=False) if due is None
                   else Q(conversation__sla_due_at__lt=due))
    ahead = QueueEntry.objects.filter(inbox=entry.inbox_id, state=QueueEntry.State.WAITING).filter(
        Q(priority__gt=entry.priority)
        | Q(priority=entry.priority) & (earlier_due | same_due & (Q(enqueued_at__lt=entry.enqueued_at)
                                                                  | Q(enqueued_at=entry.enqueued_at, id__lt=entry.id)))
    ).count()
    # Who can serve it: the team it was transferred to, else the inbox's teams; not the agents it excludes.
    servers = AgentProfile.objects.filter(status=AgentProfile.Status.ONLINE).exclude(
        pk__in=agent_ids(entry.excluded_agents))
    servers = (servers.filter(teams=entry.for_team_id) if entry.for_team_id
               else servers.filter(teams__inboxes=entry.inbox_id))
    online = servers.distinct().count()
    if not online:  # nobody to serve the queue now: no estimate (the visitor is told the place only)
        return ahead + 1, None
    config = RoutingConfig.get()
    return ahead + 1, int((ahead + 1) * config.average_handle_seconds / online)


@transaction.atomic
def do_accept_offer(*, user, conversation_id: int) -> Conversation:
    from omnichannel.errors import ActionError

    entry = QueueEntry.objects.select_for_update(of=("self",)).select_related("offered_to").filter(
        conversation_id=conversation_id, state=QueueEntry.State.OFFERED).first()
    if entry is None or entry.offered_to is None or entry.offered_to.user_id != user.pk:
        raise ActionError("This chat is no longer offered to you")
    if entry.offer_expires_at is None or entry.offer_expires_at <= timezone.now():
        # Expired, even if the sweep has not passed it on yet: the sweep gives it to the next agent.
        raise ActionError("This offer has expired; the chat goes to the next agent")
    conversation = Conversation.objects.get(pk=conversation_id)
    if conversation.status != Conversation.Status.OPEN or conversation.merged_into_id:
        raise ActionError("This chat has ended")
    entry.delete()
    conv_actions.do_assign_conversation(actor=None, conversation=conversation, assignee=user)
    _decision(conversation, "assigned", summary=f"{entry.offered_to.name} accepted the chat", details={},
              agent=entry.offered_to, method="offer")
    return conversation


def do_expire_offers() -> int:
    """Offers not accepted in time: the agent goes away, the miss is counted, the chat goes to the next agent."""
    expired = 0
    # An offer without an expiry time (written outside the actions, e.g. in the admin) counts as expired.
    due = Q(offer_expires_at__lte=timezone.now()) | Q(offer_expires_at__isnull=True)
    for entry_id in QueueEntry.objects.filter(due, state=QueueEntry.State.OFFERED).values_list("id", flat=True):
        with transaction.atomic():
            entry = QueueEntry.objects.select_for_update(skip_locked=True, of=("self",)).select_related("offered_to").filter(
                Q(offer_expires_at__lte=timezone.now()) | Q(offer_expires_at__isnull=True), pk=entry_id,
                state=QueueEntry.State.OFFERED).first()
            if entry is None:
                continue
            agent = entry.offered_to
            entry.state = QueueEntry.State.WAITING
            entry.excluded_agents = sorted({*agent_ids(entry.excluded_agents), *([agent.pk] if agent else [])})
            entry.offered_to = None
            entry.offer_expires_at = None
            entry.save(update_fields=["state", "excluded_agents", "offered_to", "offer_expires_at"])
            if agent is not None:
                AgentProfile.objects.filter(pk=agent.pk).update(missed_offers=F("missed_offers") + 1)
                if AgentProfile.objects.filter(pk=agent.pk, status=AgentProfile.Status.ONLINE).exists():
                    # Online agents are set away; one who went offline meanwhile stays offline.
                    do_set_agent_status(agent=agent, status=AgentProfile.Status.AWAY, reason="missed a chat offer")
            _decision(entry.conversation, "missed", agent=agent,
                      summary=f"{agent.name if agent else 'Agent'} did not accept in time", details={})
            expired += 1
        _route_logged(entry.conversation_id, from_queue=True)
    return expired
