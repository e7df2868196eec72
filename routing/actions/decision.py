"""The routing decision: `do_route_conversation` and what it is made of: the rules' targets and their
candidates (`_target`, `_candidates`), the choice and the claim of an agent under its row lock (`_choose`,
`_claim`), the lock of the conversation with the routing state (`_lock_with_state`), the first matching rule's
settings (`_apply_rule_settings`) and the hand-over, an assignment or an offer (`_hand_over`). Its statements
are in routing.queries; a decision that finds nobody joins the queue (routing.actions.queue.enqueue); every
decision is stored by routing.actions.shared.record_decision."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, NamedTuple

from django.db import transaction
from django.utils import timezone

from agents.models import AgentProfile, Skill, Team
from conversations import actions as conv_actions
from conversations.conditions import Facts, contact_facts_sql, evaluate, evaluate_compiled, gather_facts
from conversations.models import Conversation
from omnichannel import pgtrip
from omnichannel.db import from_row
from omnichannel.realtime import batched, defer, inbox_stream, publish

from ..engine import RoutingSetup, cached_setup, routing_setup, sticky_window_open
from ..models import QueueEntry, RoutingConfig, RoutingRule
from ..queries import (
    agent_is_sql,
    candidates_sql,
    claim_refused_sql,
    claim_sql,
    decision_sql,
    entry_deleted_then_sql,
    has_skill_sql,
    in_inbox_team_sql,
    lock_with_state_sql,
    team_member_sql,
)
from .queue import enqueue
from .shared import EXCLUDED_REASON, HELD_REASON, Outcome, agent_ids, is_chat, record_decision

logger = logging.getLogger(__name__)

SEES_ALL_INBOXES = (AgentProfile.Role.SUPERVISOR, AgentProfile.Role.ADMIN)


@dataclass
class Source:
    """Which agents a target considers, as a condition on the agent row `a`."""

    sql: str
    params: list


def _agent_source(agent_id: int | None) -> Source | None:
    return Source(*agent_is_sql(agent_id)) if agent_id else None


def _target(kind: str, *, agent_id: int | None, team: Team | None, skill: Skill | None, min_level: int,
            facts: Facts) -> tuple[Source | None, str, str]:
    """(which agents, description, distribution method) for one rule target; None: nobody to consider."""
    if kind == RoutingRule.Target.AGENT:
        return _agent_source(agent_id), "agent", "least_busy"  # named from the candidate row
    if kind == RoutingRule.Target.TEAM:
        if team is None:
            return None, "team (deleted)", "least_busy"
        return Source(*team_member_sql(team.pk)), f"team {team.name}", team.distribution_method
    if kind == RoutingRule.Target.SKILL:
        if skill is None:
            return None, "skill (deleted)", "most_capable"
        return (Source(*has_skill_sql(skill.pk, min_level)), f"skill {skill.name} ≥ {min_level}",
                "most_capable")
    if kind == RoutingRule.Target.LAST_AGENT:
        return _agent_source(facts.last_agent_id), "the last agent", "sticky"
    if kind == RoutingRule.Target.ACCOUNT_MANAGER:
        return _agent_source(facts.account_manager_id), "the account manager", "least_busy"
    return None, f"unknown target {kind!r}", "least_busy"


def _inbox_teams(conversation: Conversation) -> Source:
    """Members of the teams that work the conversation's inbox."""
    sql, params = in_inbox_team_sql(conversation.inbox_id)
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


def _candidates(source: Source, *, conversation: Conversation, chat: bool, skill: Skill | None) -> list[Candidate]:
    """Every agent of `source` with what eligibility needs, their loads counted in SQL: one statement.

    Raw SQL, as it runs for every target a decision tries: an ORM query with these subqueries costs
    several milliseconds of Python to build, more than PostgreSQL takes to answer it."""
    sql, params = candidates_sql(source.sql, source.params, inbox_id=conversation.inbox_id, chat=chat,
                                 skill_id=skill.pk if skill is not None else None)
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
    agent.teams.filter(inboxes=...).first() reads it (a live chat's offer settings when the target is no team)."""
    results = pgtrip.execute(*claim_sql(candidate.agent_id, chat=chat, now=now, offer_team_inbox=offer_team_inbox))
    row = results[-1][0] if results[-1] else None
    refused = None
    if row is None:
        refused = "deleted"
    else:
        status, max_chat, max_async, load = row[:4]
        if offer_team_inbox is not None:
            candidate.offer_team_id, candidate.offer_team_read, row = row[4], True, row[:4] + row[5:]
        candidate.profile = _agent_with_user(row[4:])
        candidate.load, candidate.limit = load, max_chat if chat else max_async
        if status != AgentProfile.Status.ONLINE:
            refused = status
        elif candidate.load >= candidate.limit:
            refused = f"at capacity ({candidate.load}/{candidate.limit})"
    if refused is not None:
        pgtrip.execute(*claim_refused_sql())
        return refused
    candidate.last_assigned_at = now
    return None


def _choose(source: Source | None, *, conversation: Conversation, method: str, skill: Skill | None, facts: Facts,
            excluded: dict[int, str], sticky_minutes: int = 1440, team: Team | None = None
            ) -> tuple[Candidate | None, list[dict]]:
    """Read the candidates with their loads in one statement, drop the ineligible (with the reason), order
    the rest by `method` and claim the first whose row, locked and re-checked, still has room (for a live chat
    and no `team`, the claim reads the agent's team for the offer too)."""
    if source is None:
        return None, []
    chat = is_chat(conversation)
    report, eligible = [], []
    for c in _candidates(source, conversation=conversation, chat=chat, skill=skill):
        if not c.is_active:
            c.skipped = "deactivated"
        elif c.agent_id in excluded:
            c.skipped = excluded[c.agent_id]
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
    inbox_field, contact_field = Conversation._meta.get_field("inbox"), Conversation._meta.get_field("contact")
    inbox_model, contact_model = inbox_field.related_model, contact_field.related_model
    results = pgtrip.execute(*lock_with_state_sql(conversation_id, contact_sql, contact_params))
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
def do_route_conversation(*, conversation_id: int, from_queue: bool = False, held: frozenset[int] = frozenset()
                          ) -> Outcome:
    """Decide who gets a new (or queued) conversation, assign or offer it, and store why. `held`: agents the
    queue holds for conversations ahead of this one (the drain's pass), never given this one.
    Its reads, claims and writes bypass the ORM: raw SQL in pipelined round trips (omnichannel.pgtrip).

    Rules run in position order; the first that matches and has an eligible agent in its primary or
    secondary target wins. Then the customer's agent within the reopen window, then the inbox's teams;
    otherwise the configured overflow (queue or ticket). Only the chosen agent's row is locked, and its load
    re-checked under the lock, so parallel arrivals never push an agent past their limit; the first matching
    rule's settings (priority, tags, team) and every event are written after that lock; the events all
    together, in one statement (realtime.batched), and sent after commit in one go. The assignment's writes
    are the plain action's (conversations.actions.assign_locked, a round trip of its own); routing's own writes
    (the queue entry's removal, the decision's row) go in the same round trip as the events' statement, and so
    does the COMMIT when this is the outermost transaction (batched(commit=True): nothing runs between the
    block's end and the atomic block's).
    """
    with batched(commit=True):
        return _route(conversation_id, from_queue=from_queue, held=held)


def _route(conversation_id: int, *, from_queue: bool, held: frozenset[int] = frozenset()) -> Outcome:
    conversation, state, contact_rows = _lock_with_state(conversation_id)
    if conversation is None or conversation.assignee_id or conversation.status != Conversation.Status.OPEN \
            or conversation.merged_into_id:
        QueueEntry.objects.filter(conversation_id=conversation_id).delete()
        return Outcome("skipped")
    if isinstance(conversation.meta, dict) and conversation.meta.get("offline"):
        # The widget's offline form: a ticket answered later by email, not a live chat waiting for a slot.
        QueueEntry.objects.filter(conversation_id=conversation_id).delete()
        record_decision(conversation, "ticket", details={"rules": [], "note": "offline message"},
                        summary="Offline message: kept as a ticket for follow-up by email")
        return Outcome("ticket", summary="ticket")
    first_message, others_waiting, entry_id, setup_version = state[:4]
    entry = QueueEntry.objects.filter(pk=entry_id).first() if entry_id else None
    if entry is not None and entry.state == QueueEntry.State.OFFERED:
        return Outcome("skipped")
    setup = routing_setup(setup_version)
    config = setup.config
    facts = gather_facts(conversation, first_message=first_message or "", contact_rows=contact_rows)
    # Agents this conversation does not get, with the reason its decision stores.
    excluded = dict.fromkeys(held, HELD_REASON)
    excluded.update(dict.fromkeys(agent_ids(entry.excluded_agents) if entry else (), EXCLUDED_REASON))
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
                          details=explanation, offer_team=offer_team, **kwargs)

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
            return enqueue(conversation, entry, details=explanation, vip_level=None,
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
        return enqueue(conversation, entry, details=explanation, vip_level=facts.get("vip_level"),
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
    if config.overflow == RoutingConfig.Overflow.TICKET and not is_chat(conversation):
        QueueEntry.objects.filter(conversation=conversation).delete()
        conv_actions.do_add_tag(actor=None, conversation=conversation, name="follow-up")
        record_decision(conversation, "ticket", summary="Nobody available: kept as a ticket for follow-up",
                        details=explanation)
        return Outcome("ticket", summary="ticket")
    return enqueue(conversation, entry, details=explanation, vip_level=facts.get("vip_level"),
                   summary="Queued: no agent online with capacity in any matching target")


def _apply_rule_settings(rule: RoutingRule, conversation: Conversation, setup: RoutingSetup, state: _State) -> bool:
    """Set the rule's priority, tags and team as their actions do (do_change_priority, do_add_tag,
    do_assign_conversation: their writes and events, in that order), on `conversation`, whose row this
    transaction has locked; whether it did anything."""
    applied = False
    # A setting the actions refuse (a priority out of range, more tags than allowed: a rule written outside the
    # admin, which refuses them) is skipped and logged: the conversation is still routed.
    if rule.set_priority is not None and rule.set_priority not in Conversation.Priority.values:
        logger.warning("routing rule %s sets an unknown priority %r: skipped", rule.pk, rule.set_priority)
    elif rule.set_priority is not None and rule.set_priority != conversation.priority:
        conv_actions.change_priority_locked(actor=None, conversation=conversation, priority=rule.set_priority)
        applied = True
    tags = state.tags
    for tag in [t for t in rule.set_tags.split(",") if t.strip()]:
        try:
            if tags is None:  # not read with the state (not PostgreSQL)
                conv_actions.do_add_tag(actor=None, conversation=conversation, name=tag)
            else:
                tags = conv_actions.add_tag_locked(actor=None, conversation=conversation, name=tag, current=tags)
        except conv_actions.ActionError as refused:
            logger.warning("routing rule %s: tag %r skipped: %s", rule.pk, tag, refused)
            break
        applied = True
    set_team = setup.teams.get(rule.set_team_id)
    if set_team is not None and set_team.pk != conversation.team_id:
        conv_actions.assign_locked(actor=None, conversation=conversation, team=set_team, reroute=False)
        applied = True
    return applied


def _hand_over(conversation: Conversation, entry: QueueEntry | None, agent: AgentProfile, *, team: Team | None,
               rule: RoutingRule | None, method: str, summary_reason: str, details: dict,
               settings_rule: RoutingRule | None, setup: RoutingSetup, state: _State, offer_team: Any = _UNREAD
               ) -> Outcome:
    """Give the conversation to `agent`, whose row this transaction has locked (`_claim`). `offer_team`: for a
    live chat and no `team`, the agent's team the claim read (_UNREAD: read it here)."""
    if settings_rule is not None and _apply_rule_settings(settings_rule, conversation, setup, state) and (
            state.tags is None or state.sla_policy_or_clock is not False):
        # Actions that wrote through copies of their own, or SLA clocks that changed the row.
        conversation.refresh_from_db()
    now = timezone.now()
    if is_chat(conversation):
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
            record_decision(conversation, "offered", summary=summary, details=details, agent=agent, rule=rule,
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
    conv_actions.assign_locked(actor=None, conversation=conversation, **assign)
    # Then routing's own writes, the queue entry's removal and the decision's row: nothing reads them before the
    # decision's batch ends, so they go with the events' log (realtime.defer: no round trip of their own); the
    # decision's event after the assignment's.
    summary = f"Routed to {agent.name}: {summary_reason}"
    decision = dict(summary=summary, details=details, agent=agent, rule=rule, method=method)
    writes = decision_sql(conversation, "assigned", **decision)
    if entry is not None:
        writes = entry_deleted_then_sql(conversation.pk, writes)
    if not defer(*writes):
        pgtrip.execute(*writes)
    record_decision(conversation, "assigned", written=True, **decision)
    return Outcome("assigned", agent, summary)
