"""Canned-message placeholders: {{contact.first_name}}, {{agent.name}}, … (plain text, no template engine)."""

from __future__ import annotations

import re

from django.db.models import Q

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
