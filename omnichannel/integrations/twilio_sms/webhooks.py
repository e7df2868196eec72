"""Twilio → us: inbound messages and delivery status callbacks.

Both verify ``X-Twilio-Signature`` with the SDK's RequestValidator (constant-time) over the public URL
(PUBLIC_BASE_URL + path and query, so it is right behind a proxy) and every posted parameter; a bad or
missing signature is 403. An inbound message is stored once per MessageSid (the verified parameters, one
INSERT … ON CONFLICT DO NOTHING) and committed before the 200 with an empty TwiML <Response/> (or the HELP
reply); the generic task (``conversations.tasks.process_inbound_delivery``) turns it into the contact, conversation and message,
records STOP/START consent and downloads MMS media.
"""

from __future__ import annotations

import logging

from django.conf import settings
from django.db import transaction
from django.http import HttpRequest, HttpResponse, HttpResponseForbidden
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST
from twilio.request_validator import RequestValidator
from twilio.twiml.messaging_response import MessagingResponse

from conversations import actions
from conversations.models import ChannelKind, InboundDelivery, Inbox, Message, SmsConsent
from conversations.tasks import process_inbound_delivery

from . import actions as sms_actions
from .phones import normalize_phone
from .tasks import download_twilio_media
from .transport import PERMANENT_CODES

logger = logging.getLogger(__name__)

OPT_OUT = {"STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT"}
OPT_IN = {"START", "YES", "UNSTOP"}
HELP = {"HELP", "INFO"}
STATUS_MAP = {"queued": "queued", "accepted": "queued", "scheduled": "queued", "sending": "sending",
              "sent": "sent", "delivered": "delivered", "read": "read", "undelivered": "failed",
              "failed": "failed", "canceled": "failed"}


class _Answer(HttpResponse):
    """A response that runs `then` once it has been sent: Django closes a response after sending it."""

    def __init__(self, *args, then=None, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._then = then

    def close(self) -> None:
        then, self._then = self._then, None
        if then is not None:
            then()
        super().close()


def _twiml(text: str | None = None, *, then=None) -> HttpResponse:
    response = MessagingResponse()
    if text:
        response.message(text)
    return _Answer(str(response), content_type="text/xml", then=then)


def _enqueue(delivery_id: int) -> None:
    try:
        process_inbound_delivery.delay_on_commit(delivery_id)
    except Exception:  # the row is committed: the re-drive (beat) processes it
        logger.exception("could not enqueue inbound delivery %s", delivery_id)


def _verify(request: HttpRequest, inbox: Inbox) -> bool:
    signature = request.headers.get("X-Twilio-Signature", "")
    if not signature or not inbox.secret:
        return False
    url = settings.PUBLIC_BASE_URL + request.get_full_path()
    return RequestValidator(inbox.secret).validate(url, request.POST, signature)


def _inbox(token: str) -> Inbox | None:
    return Inbox.objects.filter(public_token=token, kind=ChannelKind.SMS, is_active=True).first()


def _keyword(params) -> str:
    return (params.get("OptOutType") or params.get("Body", "").strip()).upper()


def _media(params) -> list[dict]:
    try:
        num_media = min(int(params.get("NumMedia") or 0), 10)
    except ValueError:
        num_media = 0
    return [{"url": params.get(f"MediaUrl{i}"), "content_type": params.get(f"MediaContentType{i}", "")}
            for i in range(num_media) if params.get(f"MediaUrl{i}")]


@csrf_exempt
@require_POST
def inbound(request: HttpRequest, token: str) -> HttpResponse:
    """Verify, store once per MessageSid (one committed INSERT) and answer; a worker does the rest."""
    inbox = _inbox(token)
    if inbox is None:
        return HttpResponse("Unknown inbox", status=404)
    if not _verify(request, inbox):
        return HttpResponseForbidden("Invalid Twilio signature")
    # Stored as JSON, which PostgreSQL cannot hold with a NUL in it: drop NULs (after the signature check).
    p = {key: value.replace("\x00", "") for key, value in request.POST.dict().items()}
    sid = (p.get("MessageSid") or p.get("SmsMessageSid") or p.get("SmsSid") or "").strip()
    sender = p.get("From", "").strip()
    if not sid or not sender:
        return HttpResponse("MessageSid and From are required", status=400)
    if len(sender) > 255:
        return HttpResponse("From is longer than 255 characters", status=400)
    try:
        actions.check_inbound_body(p.get("Body", ""), media=bool(_media(p)))
    except actions.ActionError as exc:
        return HttpResponse(exc.message, status=400)
    delivery_id = actions.do_record_inbound_delivery(inbox=inbox, provider_message_id=sid, sender=sender,
                                                     payload=p)
    reply = None
    if _keyword(p) in HELP:
        reply = (inbox.settings or {}).get("help_reply") or f"{inbox.name}: reply STOP to unsubscribe."
    # The task is enqueued once the answer is out (it is not part of "stored before the 200"): Twilio's wait
    # ends with the commit. A process that dies in between leaves the row to the re-drive.
    return _twiml(reply, then=None if delivery_id is None else lambda: _enqueue(delivery_id))


def handle_inbound(delivery: InboundDelivery) -> Message:
    """(Celery, via do_process_inbound_delivery) a stored inbound SMS/MMS -> contact, conversation, message, consent."""
    inbox, p = delivery.inbox, delivery.payload
    phone, country = normalize_phone(delivery.sender.removeprefix("whatsapp:"))
    body = p.get("Body", "")
    keyword = _keyword(p)
    media = _media(p)
    meta = {"twilio": {"to": p.get("To", ""), "from_city": p.get("FromCity", ""), "from_state": p.get("FromState", ""),
                       "from_country": p.get("FromCountry", "")}}
    result = actions.do_receive_inbound_message(
        inbox=inbox, source_id=phone, body=body, provider_message_id=delivery.provider_message_id,
        contact_phone=phone, meta=meta, contact_country=country, media_pending=bool(media),
        message_meta={"sms": {"to": p.get("To", ""), "segments": p.get("NumSegments", "")}})
    if result.created:
        contact = result.message.conversation.contact
        if keyword in OPT_OUT:
            sms_actions.do_change_sms_consent(inbox=inbox, phone=phone, state=SmsConsent.State.OPTED_OUT, source="keyword",
                           contact=contact, detail=body[:200])
        elif keyword in OPT_IN:
            sms_actions.do_change_sms_consent(inbox=inbox, phone=phone, state=SmsConsent.State.OPTED_IN, source="keyword",
                           contact=contact, detail=body[:200])
        if media:
            download_twilio_media.delay_on_commit(result.message.id, media)
    return result.message


@csrf_exempt
@require_POST
def status(request: HttpRequest, token: str) -> HttpResponse:
    """Delivery status: forward only, out-of-order and unknown callbacks are acknowledged (200)."""
    inbox = _inbox(token)
    if inbox is None:
        return HttpResponse(status=200)
    if not _verify(request, inbox):
        return HttpResponseForbidden("Invalid Twilio signature")
    sid = (request.POST.get("MessageSid") or request.POST.get("SmsSid") or "").replace("\x00", "")
    new = STATUS_MAP.get((request.POST.get("MessageStatus") or "").lower())
    message = Message.objects.filter(inbox=inbox, provider_message_id=sid).first() if sid else None
    if message is None or new is None:
        return HttpResponse(status=200)
    reason = ""
    if new == "failed":
        code = request.POST.get("ErrorCode") or ""
        reason = PERMANENT_CODES.get(int(code) if code.isascii() and code.isdigit() and len(code) <= 9 else 0) or f"Twilio reports {request.POST.get('MessageStatus')} (error {code or 'unknown'})"
    with transaction.atomic():
        if request.POST.get("ErrorCode") == "21610":
            sms_actions.do_change_sms_consent(inbox=inbox, phone=normalize_phone(request.POST.get("To", ""))[0],
                           state=SmsConsent.State.OPTED_OUT, source="twilio", detail="error 21610")
        actions.do_update_delivery_status(message=message, status=new, reason=reason)
    return HttpResponse(status=200)
