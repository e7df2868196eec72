"""Sending SMS/MMS through the official `twilio` SDK.

The REST base URL is a setting (TWILIO_API_BASE_URL): Twilio's by default, a regional edge, or a local
fake for staging and tests. It is applied through the SDK's `http_client` hook, so the whole send path
(`twilio.rest.Client.messages.create`) runs unchanged against a stand-in.
"""

from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from twilio.base.exceptions import TwilioRestException
from twilio.http.http_client import TwilioHttpClient
from twilio.rest import Client

from conversations.channels import Transport
from conversations.models import Message, SmsConsent
from conversations.payloads import attachment_url
from omnichannel.errors import TransportError

TWILIO_BASE = "https://api.twilio.com"
# Error codes that will not succeed on retry (twilio.com/docs/api/errors).
PERMANENT_CODES = {
    21211: "Invalid phone number",
    21214: "The number cannot receive SMS",
    21408: "Sending to this region is not enabled",
    21610: "The recipient has unsubscribed (replied STOP)",
    21612: "This number cannot be reached from our sender",
    21614: "The number is not SMS-capable (landline?)",
    21617: "The message is too long",
    21606: "Our sender cannot send SMS",
    20003: "Twilio rejected the credentials",
}


class BaseUrlHttpClient(TwilioHttpClient):
    """The SDK's HTTP client, pointed at another base URL (an edge or a local fake)."""

    def __init__(self, base_url: str, **kwargs):
        super().__init__(**kwargs)
        self.base_url = base_url.rstrip("/")

    def request(self, method, url, *args, **kwargs):
        if url.startswith(TWILIO_BASE):
            url = self.base_url + url[len(TWILIO_BASE):]
        return super().request(method, url, *args, **kwargs)


def twilio_client(inbox) -> Client:
    config = inbox.settings or {}
    account_sid = config.get("account_sid")
    if not account_sid or not inbox.secret:
        raise TransportError("This SMS inbox has no Twilio account SID / auth token", permanent=True)
    http_client = None
    base = settings.TWILIO_API_BASE_URL
    if base.rstrip("/") != TWILIO_BASE:
        http_client = BaseUrlHttpClient(base, timeout=settings.OUTBOUND_WEBHOOK_TIMEOUT_SECONDS)
    else:
        http_client = TwilioHttpClient(timeout=settings.OUTBOUND_WEBHOOK_TIMEOUT_SECONDS)
    return Client(account_sid, inbox.secret, http_client=http_client)


def status_callback_url(inbox) -> str:
    return f"{settings.PUBLIC_BASE_URL}/webhooks/twilio/{inbox.public_token}/status/"


class TwilioSmsTransport(Transport):
    def send_problem(self, conversation) -> str | None:
        config = self.inbox.settings or {}
        if not config.get("account_sid") or not self.inbox.secret:
            return "This SMS inbox has no Twilio account SID / auth token"
        if not (config.get("messaging_service_sid") or config.get("from_number")):
            return "This SMS inbox has no sender number or Messaging Service SID"
        return None

    def _recipient(self, message) -> str:
        to = message.conversation.contact.phone or ""
        identity = message.conversation.contact.identities.filter(kind="phone").first()
        if identity is not None:
            to = identity.value
        if not to:
            raise TransportError("The contact has no phone number", permanent=True)
        return to

    def find_sent(self, message) -> str | None:
        """Before sending again after an attempt whose outcome is unknown (a worker killed after Twilio may have
        accepted it): the SID of the message Twilio already holds for this reply, or None.

        Twilio's Messages API takes no idempotency key, so the match is Twilio's own record: an outbound message
        to the same number with the same body, created since the reply was written, whose SID no other message
        of this inbox has.
        """
        since = message.created_at - timedelta(minutes=1)  # tolerates a little clock skew with Twilio
        try:
            recent = twilio_client(self.inbox).messages.list(to=self._recipient(message), limit=50)
        except TwilioRestException as exc:
            raise TransportError(f"Twilio error {exc.code or exc.status} while checking an earlier attempt: {exc.msg}")
        except OSError as exc:
            raise TransportError(f"Twilio unreachable: {exc.__class__.__name__}")
        candidates = [m for m in recent if (m.direction or "").startswith("outbound") and m.body == message.body
                      and m.date_created is not None and m.date_created >= since]
        taken = set(Message.objects.filter(inbox=self.inbox, provider_message_id__in=[m.sid for m in candidates])
                    .values_list("provider_message_id", flat=True))
        for found in sorted(candidates, key=lambda m: m.date_created):
            if found.sid not in taken:
                return found.sid
        return None

    def send(self, message) -> str | None:
        problem = self.send_problem(message.conversation)
        if problem:
            raise TransportError(problem, permanent=True)
        config = self.inbox.settings or {}
        to = self._recipient(message)
        if SmsConsent.objects.filter(inbox=self.inbox, phone=to, state=SmsConsent.State.OPTED_OUT).exists():
            raise TransportError("The recipient opted out (STOP); they must text START first", permanent=True)
        params = {"to": to, "body": message.body, "status_callback": status_callback_url(self.inbox)}
        if config.get("messaging_service_sid"):
            params["messaging_service_sid"] = config["messaging_service_sid"]
        else:
            params["from_"] = config["from_number"]
        media = [attachment_url(a.id) for a in message.attachments.all()]
        if media:
            params["media_url"] = media[:10]
        try:
            sent = twilio_client(self.inbox).messages.create(**params)
        except TwilioRestException as exc:
            reason = PERMANENT_CODES.get(exc.code) or f"Twilio error {exc.code or exc.status}: {exc.msg}"
            permanent = exc.code in PERMANENT_CODES or (400 <= exc.status < 500 and exc.status not in (408, 429))
            raise TransportError(reason, permanent=permanent)
        except OSError as exc:  # connection refused/reset, timeouts (requests wraps them in OSError subclasses)
            raise TransportError(f"Twilio unreachable: {exc.__class__.__name__}")
        return sent.sid
