"""An agent's live-chat capacity: who may assign beyond an agent's limit (``may_exceed_capacity``, by role:
``agent_role_of``) and the check that an agent has room for one more live chat (``check_chat_capacity``),
made by a manual assignment (``assignment``) and by an agent who takes a conversation by replying
(``replies``).
"""

from __future__ import annotations

from django.contrib.auth.models import AbstractBaseUser

from agents.models import AgentProfile
from omnichannel.errors import ActionError

from .. import channels
from ..models import (
    Conversation,
)
from ..selectors import held_chats


def may_exceed_capacity(actor: AbstractBaseUser | None) -> bool:
    """Supervisors, admins and the system may assign beyond an agent's limit (shown in the console)."""
    if actor is None:
        return True
    return agent_role_of(actor) in (AgentProfile.Role.SUPERVISOR, AgentProfile.Role.ADMIN)


def check_chat_capacity(user: AbstractBaseUser, conversation: Conversation) -> None:
    """An agent works live chats up to their concurrent limit (other channels are asynchronous)."""
    if not channels.for_inbox(conversation.inbox).live:
        return
    agent = AgentProfile.objects.select_for_update().filter(user=user).first()
    if agent is None:
        return
    # The load as routing counts it (routing.queries.load_sql): open live chats and the live chats an engine
    # holds for the agent (routing: offered to them); pending and on-hold chats wait for the customer and do not
    # count (as in Zendesk's capacity). Read after the agent's lock, in statements of their own.
    active = Conversation.objects.filter(assignee=user, inbox__kind__in=channels.live_kinds(),
                                         status=Conversation.Status.OPEN).exclude(pk=conversation.pk).count()
    held = held_chats(exclude=conversation.pk)
    if held is not None:
        active += AgentProfile.objects.filter(pk=agent.pk).annotate(held=held).values_list("held", flat=True).get()
    if active >= agent.max_concurrent:
        raise ActionError(f"{agent.name} already has {active} live chats (limit {agent.max_concurrent}); "
                          "end one first or ask a supervisor", field="assignee")


def agent_role_of(user: AbstractBaseUser) -> str | None:
    try:
        return user.agent.role
    except (AgentProfile.DoesNotExist, AttributeError):
        return AgentProfile.Role.ADMIN if getattr(user, "is_superuser", False) else None
