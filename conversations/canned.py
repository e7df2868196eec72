"""Canned-message placeholders: {{contact.first_name}}, {{agent.name}}, … (plain text, no template engine)."""

from __future__ import annotations

import re

from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils.text import slugify

from omnichannel.errors import ActionError, NotFound

from .models import CannedMessage

PLACEHOLDER = re.compile(r"\{\{\s*([a-z_]+)\.([a-z_]+)\s*\}\}")


def render_canned(body: str, *, contact=None, agent_user=None, conversation=None) -> str:
    agent = getattr(agent_user, "agent", None) if agent_user is not None else None
    values = {
        ("contact", "first_name"): contact.first_name if contact else "",
        ("contact", "name"): contact.name if contact else "",
        ("contact", "email"): contact.email if contact else "",
        ("contact", "phone"): contact.phone if contact else "",
        ("agent", "name"): (agent.name if agent else (agent_user.get_full_name() if agent_user else "")),
        ("agent", "first_name"): (agent_user.first_name if agent_user else ""),
        ("conversation", "id"): str(conversation.pk) if conversation else "",
        ("conversation", "subject"): conversation.subject if conversation else "",
    }
    return PLACEHOLDER.sub(lambda m: values.get((m.group(1), m.group(2)), m.group(0)), body)


def canned_for_user(user):
    """Shared canned messages plus the user's personal ones (a personal shortcut wins)."""
    return CannedMessage.objects.filter(Q(owner__isnull=True) | Q(owner=user)).order_by("shortcut", "owner_id")


MAX_CANNED_BODY = 5000


def do_save_personal_canned(*, user, shortcut: str, title: str = "", body: str) -> CannedMessage:
    """An agent's own canned message (created, or replaced when the agent already has that shortcut)."""
    shortcut = (shortcut or "").strip().lstrip("#")
    if not shortcut or slugify(shortcut) != shortcut.lower() or len(shortcut) > 50:
        raise ActionError("A shortcut is one word of letters, digits, - or _ (at most 50), e.g. refund-policy",
                          field="shortcut")
    body = (body or "").replace("\x00", "").strip()
    if not body:
        raise ActionError("Write the message", field="body")
    if len(body) > MAX_CANNED_BODY:
        raise ActionError(f"At most {MAX_CANNED_BODY} characters", field="body")
    title = (title or "").replace("\x00", "").strip()[:100]
    try:
        with transaction.atomic():
            canned, _ = CannedMessage.objects.update_or_create(owner=user, shortcut=shortcut,
                                                               defaults={"title": title, "body": body})
    except IntegrityError:  # a concurrent save of the same shortcut
        raise ActionError(f"You already have #{shortcut}", field="shortcut")
    return canned


def do_delete_personal_canned(*, user, canned_id: int) -> None:
    """Agents delete only their own; shared ones are managed in the admin."""
    deleted, _ = CannedMessage.objects.filter(pk=canned_id, owner=user).delete()
    if not deleted:
        raise NotFound("No such canned message of yours")
