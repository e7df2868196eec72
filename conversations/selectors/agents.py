"""Agents for assignment: who may be given a conversation, and each one's live-chat load as routing and the
capacity check count it (with the chats an engine holds for them, hooks.chats_held)."""

from __future__ import annotations

import operator
from functools import reduce
from typing import Any

from django.db.models import Count, OuterRef, Q, QuerySet, Subquery
from django.db.models.functions import Coalesce

from agents.models import AgentProfile

from .. import hooks
from ..models import Conversation


def list_agents_for_assignment(conversation: Conversation) -> QuerySet[AgentProfile]:
    """Agents who may be assigned `conversation`: members of a team with its inbox, and supervisors/admins."""
    return (
        AgentProfile.objects.filter(
            Q(teams__inboxes=conversation.inbox_id) | Q(role__in=[AgentProfile.Role.SUPERVISOR,
                                                               AgentProfile.Role.ADMIN])
        )
        .filter(user__is_active=True)
        .select_related("user")
        .distinct()
        .order_by("display_name", "user__username")
    )


def held_chats(*, exclude: int | None = None) -> Any:
    """The live chats the engines hold for each agent besides their assigned ones (hooks.chats_held), as a
    query expression over an AgentProfile queryset's rows; None when no engine holds any."""
    held = [expression for expression in hooks.chats_held.collect(agent=OuterRef("pk"), exclude=exclude)
            if expression is not None]
    return reduce(operator.add, held) if held else None


def list_assignable_agents_with_load(conversation: Conversation) -> QuerySet[AgentProfile]:
    """As list_agents_for_assignment, with each agent's live-chat load as routing and the capacity check count
    it: open live chats plus the live chats an engine holds for them (routing: offered to them; pending and
    on-hold chats wait for the customer)."""
    live = (Conversation.objects.filter(assignee_id=OuterRef("user_id"), status=Conversation.Status.OPEN,
                                        inbox__kind="webchat")
            .order_by().values("assignee_id").annotate(n=Count("id")).values("n"))
    load = Coalesce(Subquery(live), 0)
    held = held_chats()
    return list_agents_for_assignment(conversation).annotate(live_chats=load if held is None else load + held)
