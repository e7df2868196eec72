"""Web chat: replies reach the visitor live over the widget socket (published by the action).

A chat that became a ticket (offline form, or "follow up by email") is answered by email instead.
"""

from __future__ import annotations

from django.conf import settings
from django.core.mail import EmailMessage

from conversations.channels import Transport
from omnichannel.errors import TransportError


class WebchatTransport(Transport):
    def send(self, message) -> str | None:
        conversation = message.conversation
        if not (conversation.meta.get("offline") or conversation.meta.get("follow_up")):
            return None  # delivered live to the widget
        email = conversation.contact.email
        if not email:
            raise TransportError("The visitor left no email address to answer to", permanent=True)
        mail = EmailMessage(
            subject=conversation.subject or f"Re: your message to {self.inbox.name}",
            body=message.body, from_email=settings.DEFAULT_FROM_EMAIL, to=[email],
            headers={"X-Omnichannel-Conversation": str(conversation.id)},
        )
        for att in message.attachments.all():
            mail.attach(att.filename, att.file.read(), att.content_type)
        try:
            mail.send()
        except OSError as exc:
            raise TransportError(f"Mail server error: {exc}")
        return None
