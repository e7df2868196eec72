"""SMS consent (STOP/START, error 21610, recorded by hand or through the API) and proactive SMS.

Every change of a number's consent is kept with its time and source; a proactive message goes only to a
number that opted in, once per idempotency key.
"""

from __future__ import annotations

from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.utils import timezone

from conversations.actions import do_send_agent_reply, get_or_create_contact, record_event, render_template
from conversations.models import (
    ChannelKind,
    ContactIdentity,
    Conversation,
    ConversationEvent,
    Inbox,
    Message,
    MessageTemplate,
    ProactiveRequest,
    SmsConsent,
    SmsConsentEvent,
)
from omnichannel.errors import ActionError, check_text

from .phones import parse_phone


def do_change_sms_consent(*, inbox: Inbox, phone: str, state: str, source: str, contact=None,
                          detail: str = "") -> None:
    """Set an E.164 number's SMS consent on `inbox` (row locked); every change is kept with its time and source.

    Called by the Twilio webhooks and tasks (STOP/START keywords, error 21610) and by do_record_sms_consent."""
    now = timezone.now()
    with transaction.atomic():
        consent, created = SmsConsent.objects.select_for_update().get_or_create(
            inbox=inbox, phone=phone, defaults={"state": state, "source": source, "changed_at": now,
                                                "contact": contact})
        if not created and consent.state == state:
            return
        if not created:
            consent.state, consent.source, consent.changed_at = state, source, now
            consent.contact = consent.contact or contact
            consent.save(update_fields=["state", "source", "changed_at", "contact"])
        SmsConsentEvent.objects.create(consent=consent, state=state, source=source, detail=detail[:200], at=now)


@transaction.atomic
def do_record_sms_consent(*, inbox: Inbox, phone: str, opted_in: bool, source: str, detail: str = "") -> None:
    if inbox.kind != ChannelKind.SMS:
        raise ActionError("Consent is recorded on SMS inboxes")
    e164 = parse_phone(phone)
    if e164 is None:
        raise ActionError("Enter a phone number in international format, e.g. +14155550100", field="phone")
    contact, _ = get_or_create_contact(kind=ContactIdentity.Kind.PHONE, scope="", value=e164, phone=e164)
    do_change_sms_consent(inbox=inbox, phone=e164, contact=contact, source=source[:30], detail=detail,
                   state=SmsConsent.State.OPTED_IN if opted_in else SmsConsent.State.OPTED_OUT)


@transaction.atomic
def do_send_proactive_sms(*, actor: AbstractBaseUser, inbox: Inbox, phone: str, body: str = "",
                          template: str | None = None, variables: dict | None = None,
                          idempotency_key: str | None = None) -> Message:
    """Start (or continue) an SMS conversation with an opted-in contact; sent once per idempotency key."""
    if inbox.kind != ChannelKind.SMS:
        raise ActionError("Proactive messages are sent from SMS inboxes")
    if idempotency_key is not None:
        done = ProactiveRequest.objects.filter(inbox=inbox, key=idempotency_key).select_related("message").first()
        if done is not None:
            return done.message
    e164 = parse_phone(phone)
    if e164 is None:
        raise ActionError("Enter a phone number in international format, e.g. +14155550100", field="phone")
    consent = SmsConsent.objects.filter(inbox=inbox, phone=e164).first()
    if consent is None or consent.state != SmsConsent.State.OPTED_IN:
        raise ActionError(f"{e164 or phone} has not opted in to messages from this number"
                          + (" (they replied STOP)" if consent else ""), field="phone")
    contact, _ = get_or_create_contact(kind=ContactIdentity.Kind.PHONE, scope="", value=e164, phone=e164)
    if template:
        check_text(template, field="template", label="The template name")
        tpl = MessageTemplate.objects.filter(name=template).first()
        if tpl is None:
            raise ActionError(f"No template named {template!r}", field="template")
        body = render_template(tpl.body, contact=contact, variables=variables or {})
    conversation = (Conversation.objects.filter(inbox=inbox, contact=contact, status__in=Conversation.ACTIVE_STATUSES,
                                                merged_into__isnull=True).order_by("-id").first())
    if conversation is None:
        conversation = Conversation.objects.create(inbox=inbox, contact=contact, status=Conversation.Status.PENDING,
                                                   meta={"proactive": True})
        record_event(conversation, ConversationEvent.Kind.CREATED, actor, channel=inbox.kind, proactive=True)
    message = do_send_agent_reply(actor=actor, conversation=conversation, body=body)
    if idempotency_key is not None:
        ProactiveRequest.objects.create(inbox=inbox, key=idempotency_key, message=message)
    return message


def check_consent(inbox: Inbox, conversation: Conversation) -> None:
    """The channel's pre-send check: nothing is sent to a number that opted out (STOP)."""
    phone = conversation.contact.identities.filter(kind="phone").values_list("value", flat=True).first()
    consent = SmsConsent.objects.filter(inbox=inbox, phone=phone or conversation.contact.phone,
                                        state=SmsConsent.State.OPTED_OUT).first()
    if consent is not None:
        raise ActionError(f"This customer opted out of SMS ({consent.source}, "
                          f"{consent.changed_at:%Y-%m-%d %H:%M}); they must text START before you can "
                          "send again")
