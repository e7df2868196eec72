from celery import shared_task
from django.conf import settings
from django.core.mail import send_mail
from django.template.loader import render_to_string

from conversations.models import Conversation, Message


@shared_task(autoretry_for=(OSError,), retry_backoff=True, max_retries=5)
def send_transcript(conversation_id: int, email: str) -> None:
    """Email the public part of a chat (never internal notes) to the visitor."""
    conversation = Conversation.objects.select_related("inbox", "contact").get(pk=conversation_id)
    messages = (Message.objects.filter(conversation=conversation, kind=Message.Kind.MESSAGE)
                .select_related("sender_user").order_by("id"))
    body = render_to_string("widget/transcript.txt", {"conversation": conversation, "messages": messages})
    send_mail(f"Your chat transcript — {conversation.inbox.name}", body, settings.DEFAULT_FROM_EMAIL, [email])
