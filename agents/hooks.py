"""The points where agents' actions call the engines above them (routing), as conversations/hooks.py does for
conversations: routing registers its handlers in its AppConfig.ready(); agents imports no engine.
Keyword arguments only; every point runs inside the calling action's transaction."""

from __future__ import annotations

from omnichannel.hooks import Hook

agent_online = Hook("agent_online", """`agent` came online (from away or offline; do_set_agent_status). Held: the
agent's row lock. Routing may offer them again the chats whose offer they missed or let go, and serves its queue
after commit.""")
