"""What more than one of routing's action modules needs: a decision's `Outcome`, the record of a decision
(`record_decision`: its row and its event), the queue entry's excluded agents (`agent_ids`,
`EXCLUDED_REASON`, `refused_agents`) and a conversation's channel class (`is_chat`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.db import connection

from agents.models import AgentProfile
from conversations import actions as conv_actions
from conversations import channels
from conversations.models import Conversation

from ..queries import decision_sql


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
HELD_REASON = "held for a conversation ahead in the queue"


def agent_ids(value: Any) -> list[int]:
    """QueueEntry.excluded_agents as agent ids (an admin may have written anything there)."""
    return sorted({v for v in value if isinstance(v, int) and not isinstance(v, bool)}) \
        if isinstance(value, list) else []


def refused_agents(details: dict) -> frozenset[int]:
    """The agents a decision's explanation (`details`) skipped for a reason of their own (offline, full, ...),
    not for the conversation's own refusals (EXCLUDED_REASON)."""
    return frozenset(c["agent_id"] for t in details.get("targets") or [] for c in t.get("candidates") or []
                     if c.get("skipped") and c.get("skipped") != EXCLUDED_REASON and c.get("agent_id") is not None)


def is_chat(conversation: Conversation) -> bool:
    """Whether the conversation's inbox is a live chat (its channel spec's `live`), the class its load counts in."""
    return channels.for_inbox(conversation.inbox).live


def record_decision(conversation: Conversation, outcome: str, *, summary: str, details: dict, agent=None,
                    rule=None, method: str = "", written: bool = False) -> None:
    """Store the decision and its explanation (unless `written`: the caller sent queries.decision_sql), and
    publish it. Raw SQL, not the ORM: RoutingDecision's INSERT (routing.queries.decision_sql)."""
    if not written:
        with connection.cursor() as cursor:
            cursor.execute(*decision_sql(conversation, outcome, summary=summary, details=details, agent=agent,
                                         rule=rule, method=method))
    conv_actions.publish_conversation(conversation, "routed", None, outcome=outcome, summary=summary[:300])
