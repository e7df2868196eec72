"""Who may see what: the user's agent profile, the inboxes it sees, and the permission-checked fetches
(``access_*``) of an inbox, a conversation or a contact. An object the user may not see is NotFound, exactly like
one that does not exist."""

from __future__ import annotations

from django.contrib.auth.models import AbstractBaseUser
from django.db.models import QuerySet

from agents.models import AgentProfile
from omnichannel.errors import NotFound

from ..models import Contact, Conversation, Inbox
from .related import get_with_related


def get_agent(user: AbstractBaseUser) -> AgentProfile | None:
    """The user's agent profile, or None if the user is not an agent (superusers get a virtual admin)."""
    if not user or not user.is_authenticated or not user.is_active:
        return None
    try:
        return user.agent
    except AgentProfile.DoesNotExist:
        if user.is_superuser:
            return AgentProfile(user=user, role=AgentProfile.Role.ADMIN)
        return None


def visible_inbox_ids(user: AbstractBaseUser) -> list[int]:
    """Inboxes whose conversations `user` may see: its teams' inboxes, or all for supervisors/admins."""
    agent = get_agent(user)
    if agent is None:
        return []
    if agent.sees_all_inboxes:
        return list(Inbox.objects.order_by("id").values_list("id", flat=True))
    return sorted(set(Inbox.objects.filter(teams__members=agent).values_list("id", flat=True)))


def can_see_inbox(user: AbstractBaseUser, inbox_id: int) -> bool:
    agent = get_agent(user)
    if agent is None:
        return False
    if agent.sees_all_inboxes:
        return True
    return Inbox.objects.filter(id=inbox_id, teams__members=agent).exists()


def access_inbox_by_id(user: AbstractBaseUser, inbox_id: int) -> Inbox:
    try:
        inbox = Inbox.objects.get(id=inbox_id)
    except (Inbox.DoesNotExist, ValueError, TypeError, OverflowError):  # OverflowError: int(1e400)
        raise NotFound("Inbox not found")
    if not can_see_inbox(user, inbox.id):
        raise NotFound("Inbox not found")
    return inbox


ACCESS_RELATED = ("inbox", "contact", "assignee", "team")


def access_conversation_by_id(user: AbstractBaseUser, conversation_id: int, *, lock: bool = False,
                              inbox_ids: list[int] | None = None, related: tuple[str, ...] = (),
                              base_related: tuple[str, ...] = ACCESS_RELATED) -> Conversation:
    """The conversation if `user` may see it; NotFound for missing and forbidden alike.

    `inbox_ids`: the user's visible inboxes (visible_inbox_ids) when the caller already has them this request.
    `related`: more relations to load in the same query (select_related); `base_related`: the ones loaded by
    default (a caller that never reads one, e.g. the team, may leave it out: each join costs ~0.3-0.5 ms).
    """
    try:
        pk = int(conversation_id)
        if lock:
            conversation = (Conversation.objects.select_for_update(of=("self",)).select_related("inbox", "contact")
                            .get(id=pk))
        else:
            conversation = get_with_related(Conversation, pk, (*base_related, *related))
            if conversation is None:
                raise Conversation.DoesNotExist
    except (Conversation.DoesNotExist, ValueError, TypeError, OverflowError):
        raise NotFound("Conversation not found")
    if inbox_ids is not None:
        if conversation.inbox_id not in inbox_ids:
            raise NotFound("Conversation not found")
    elif not can_see_inbox(user, conversation.inbox_id):
        raise NotFound("Conversation not found")
    return conversation


def visible_inboxes(user: AbstractBaseUser) -> list[Inbox]:
    """The inboxes `user` may see (id, name and kind loaded), by name; see visible_inbox_ids."""
    agent = get_agent(user)
    if agent is None:
        return []
    qs = Inbox.objects.only("id", "name", "kind")
    if not agent.sees_all_inboxes:
        qs = qs.filter(teams__members=agent).distinct()
    return list(qs)


def access_contact_by_id(user: AbstractBaseUser, contact_id: int) -> Contact:
    """A contact is visible when the user is a supervisor/admin or sees one of its conversations' inboxes."""
    agent = get_agent(user)
    try:
        contact = Contact.objects.get(id=int(contact_id))
    except (Contact.DoesNotExist, ValueError, TypeError, OverflowError):
        raise NotFound("Contact not found")
    if agent is None:
        raise NotFound("Contact not found")
    if agent.sees_all_inboxes:
        return contact
    if not contact.conversations.filter(inbox_id__in=visible_inbox_ids(user)).exists():
        raise NotFound("Contact not found")
    return contact


def visible_contacts(user: AbstractBaseUser) -> QuerySet[Contact]:
    agent = get_agent(user)
    if agent is None:
        return Contact.objects.none()
    qs = Contact.objects.filter(merged_into__isnull=True)
    if agent.sees_all_inboxes:
        return qs
    return qs.filter(conversations__inbox_id__in=visible_inbox_ids(user)).distinct()
