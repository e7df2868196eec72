"""Web chat: replies reach the visitor live over the widget socket (published by the action).

A chat that became a ticket (offline form, or "follow up by email") is answered by email instead.
"""

from __future__ import annotations

from django.conf import settings
from django.core.mail import EmailMessage

from conversations.channels import Transport
from omnichannel.errors import TransportError


def _by_email(conversation) -> bool:
    return bool(conversation.meta.get("offline") or conversation.meta.get("follow_up"))


class WebchatTransport(Transport):
    def delivers_at_write(self, conversation) -> bool:
        return not _by_email(conversation)  # published live to the widget by the action

    def send_problem(self, conversation) -> str | None:
        if _by_email(conversation) and not conversation.contact.email:
            return "The visitor left no email address to answer to"
        return None

    def send(self, message) -> str | None:
        conversation = message.conversation
        if not _by_email(conversation):
            return None  # delivered live to the widget
        problem = self.send_problem(conversation)
        if problem:
            raise TransportError(problem, permanent=True)
        email = conversation.contact.email
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
