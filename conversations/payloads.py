"""What the visitor's widget is told. Only public messages; never notes, never agent-only data."""

from __future__ import annotations

from django.conf import settings
from django.core import signing

ATTACHMENT_SALT = "widget-attachment"
ATTACHMENT_URL_MAX_AGE = 7 * 24 * 3600


def visitor_stream(inbox_id: int, contact_id: int) -> str:
    return f"webchat.{inbox_id}.{contact_id}"


def attachment_url(attachment_id: int) -> str:
    """A signed, expiring URL the visitor's browser can load without credentials."""
    token = signing.TimestampSigner(salt=ATTACHMENT_SALT).sign(str(attachment_id))
    return f"{settings.PUBLIC_BASE_URL}/widget/files/{token}/"


def agent_card(user) -> dict | None:
    if user is None:
        return None
    agent = getattr(user, "agent", None)
    name = agent.name if agent else (user.get_full_name() or user.get_username())
    avatar = agent.avatar_url if agent else ""
    return {"name": name, "avatar": avatar}


def widget_message(message, attachments=None) -> dict:
    """`attachments`: the message's attachments when the caller has them at hand (saves a query)."""
    sender = {"contact": "visitor", "agent": "agent", "bot": "bot", "system": "system"}[message.sender_type]
    return {
        "id": message.id,
        "conversation_id": message.conversation_id,
        "from": sender,
        "body": message.body,
        "agent": agent_card(message.sender_user) if sender == "agent" else None,
        "attachments": [
            {"name": a.filename, "type": a.content_type, "size": a.size, "image": a.is_image,
             "url": attachment_url(a.id)}
            for a in (message.attachments.all() if attachments is None else attachments)
        ],
        "client_id": message.provider_message_id if sender == "visitor" else None,
        "created_at": message.created_at.isoformat(),
        "read": message.delivery_status == "read",
    }
