"""The points where the core's actions call the engines above it (routing, SLA; later the bot).

Every point is a ``omnichannel.hooks.Hook``: the core calls it, routing and SLA register handlers for it in
their ``AppConfig.ready()`` (``routing/apps.py``, ``sla/apps.py``), and the core imports neither of them. All
points run inside the calling action's transaction, with the conversation's row locked (``SELECT … FOR
UPDATE``) unless the point says otherwise; a handler that must act after commit enqueues its work on commit.
Keyword arguments only.
"""

from __future__ import annotations

from omnichannel.hooks import Hook

from . import queries

conversation_created = Hook("conversation_created", """A customer's first message opened `conversation`.
Held: the conversation's and its contact's row locks. SLA starts its clocks; routing routes it after commit.""")

customer_wrote = Hook("customer_wrote", """A customer wrote again in `conversation` (not a new one).
`reopened_from`: the status the message reopened it from (None if it was open); `solved_at`: when it had
been solved. SLA starts the next-response clock; routing rechecks a reopened solved conversation's agent.""")

agent_replied = Hook("agent_replied", """An agent's reply to `conversation` left (went out live as it was written,
or its delivery status first reached sent, delivered or read; replies.reply_left): the customer is answered now.
A reply that fails never calls it. SLA stops the response clocks and starts the periodic-update one.""")

status_changed = Hook("status_changed", """`conversation`'s status went from `old` to `new` (by an agent, the
system, or a customer's message reopening it). SLA pauses, resumes, stops or restarts its clocks; routing
takes a conversation that leaves "open" out of its queue.""")

match_changed = Hook("match_changed", """What an SLA policy matches on changed for `conversation` (priority,
tags, team). `policy_or_clock`: what the caller already read in this transaction (False: no policy is
active and the conversation has no running clock; None: not read). SLA re-applies its policy.""")

match_check_sql = Hook("match_check_sql", """Asked with `collect`: each handler returns (sql, params), an SQL boolean
expression that is true when a change of what policies match on (priority, tags, team) of conversation
`conversation_id` matters to it. A caller that locks the conversation with a statement of its own (routing)
folds the expressions into it (``match_check_sql_of``) and passes the result to ``match_changed`` as
`policy_or_clock`, sparing a statement. SLA: any policy active, or a clock running on the conversation.""")


def match_check_sql_of(conversation_id: int) -> tuple[str, list]:
    """The handlers' match_check_sql expressions OR-ed into one (FALSE when nobody registered one;
    queries.any_of_sql)."""
    return queries.any_of_sql(match_check_sql.collect(conversation_id=conversation_id))


priority_changed = Hook("priority_changed", """An agent changed `conversation`'s priority (do_change_priority).
Routing moves it in the waiting queue.""")

contact_changed = Hook("contact_changed", """`contact`'s attributes or segments changed. Held: the contact's
row lock. SLA re-matches its active conversations; routing re-places them in the queue (VIP level first).""")

conversation_released = Hook("conversation_released", """Open `conversation` was left without an agent
(unassigned, transferred to a team its agent is not in, or reopened with nobody on it). `released_user_id`:
the agent who let it go, or None; `for_team`: the team it now waits for, or None to keep the one it had.
Routing routes it again after commit.""")

capacity_freed = Hook("capacity_freed", """An agent has room for one more conversation (one was taken from
them, ended, or an offer to them was withdrawn). No lock is implied. Routing serves its queue after commit.""")

agent_assigned = Hook("agent_assigned", """do_assign_conversation gave `conversation` to `assignee` (a user), by hand,
by the system (an SLA escalation) or because they accepted its offer; not routing's own decision, which keeps its
queue itself. Held: the conversation's row lock; the assignment is written and published. Routing takes the
conversation out of its queue; an offer of it to another agent is withdrawn (that agent's slot is free).""")

conversation_merged = Hook("conversation_merged", """`source` is being merged into `target` (same contact).
Held: both conversations' row locks; `source` still has its status and assignee (it is closed right after), and
the core frees its assignee's capacity itself (capacity_freed). Routing takes `source` out of its queue (its
place, or an offer holding an agent's slot, whose room is then free).""")

chats_held = Hook("chats_held", """Asked with `collect`: the live chats an engine holds for an agent besides the
open live chats assigned to them, as a query expression (an integer) over an agent row: `agent`, an expression
for that row's AgentProfile id (OuterRef("pk") on an AgentProfile queryset); `exclude`: a conversation id not to
count, or None. No lock is implied. Routing: the live chats offered to the agent, waiting for their accept. The
manual assignment's capacity check and the console's list of agents add them to an agent's load.""")
