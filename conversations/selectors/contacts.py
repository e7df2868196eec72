"""A contact's conversations as the console's side panel and the API list them."""

from __future__ import annotations

from django.contrib.auth.models import AbstractBaseUser

from ..models import Conversation
from .access import visible_inbox_ids

CONTACT_CONVERSATIONS_LIMIT = 50


def list_contact_conversations(user: AbstractBaseUser, contact_id: int, *,
                               inbox_ids: list[int] | None = None) -> list[Conversation]:
    if inbox_ids is None:
        inbox_ids = visible_inbox_ids(user)
    return list(
        Conversation.objects.filter(contact_id=contact_id, inbox_id__in=inbox_ids)
        .select_related("inbox").only("id", "status", "merged_into_id", "contact_id", "inbox__name", "inbox__kind")
        .order_by("-id")[:CONTACT_CONVERSATIONS_LIMIT]
    )
