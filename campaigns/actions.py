"""Web-chat widget state changes: visitor sessions, pre-chat, messages, ending, surveys, offline tickets.

Everything that touches a conversation goes through conversations.actions, so the console,
the timeline and the real-time streams see widget activity exactly like any other channel.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import time
from dataclasses import dataclass
from datetime import datetime

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.core import signing
from django.core.cache import caches
from django.core.cache.backends.base import BaseCache
from django.core.cache.backends.redis import RedisCache
from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db import IntegrityError, transaction
from django.utils import timezone
from redis.exceptions import RedisError

from agents.models import AgentProfile
from conversations import actions as conv_actions
from conversations.business_hours import within_hours
from conversations.models import ChannelKind, Contact, ContactIdentity, Conversation, Inbox, Message
from omnichannel import redis_client
from omnichannel.errors import ActionError, check_text, clean_text
from omnichannel.files import check_upload
from routing.actions import queue_position as routing_position

from .models import ChatSurvey, VisitorSession, WidgetConfig, WrapUp
from .tasks import send_transcript

VISITOR_SALT = "widget-visitor"
RATE_LIMITED = "You're sending messages too quickly. Please wait a moment."
MAX_FIELD = 500


# --- identity -------------------------------------------------------------------------


def sign_visitor(inbox: Inbox, visitor_id: str) -> str:
    return signing.dumps({"i": inbox.id, "v": visitor_id}, salt=VISITOR_SALT, compress=True)


def read_visitor_token(inbox: Inbox, token: str) -> str | None:
    """The visitor id in `token` if it was issued by us for this inbox, else None."""
    if not isinstance(token, str):
        return None
    try:
        data = signing.loads(token or "", salt=VISITOR_SALT)
    except signing.BadSignature:
        return None
    if not isinstance(data, dict) or data.get("i") != inbox.id or not isinstance(data.get("v"), str):
        return None
    return data["v"]


def identity_hash(inbox: Inbox, user_id: str) -> str:
    """What the host site computes on its server: hex HMAC-SHA256 of user_id with the inbox secret."""
    return hmac.new(inbox.secret.encode(), user_id.encode(), hashlib.sha256).hexdigest()


def get_config(inbox: Inbox) -> WidgetConfig:
    config, _ = WidgetConfig.objects.get_or_create(inbox=inbox)
    return config


@dataclass
class SessionInfo:
    page_url: str = ""
    page_title: str = ""
    referrer: str = ""
    user_agent: str = ""
    language: str = ""
    ip: str | None = None


def _clip_url(url: str) -> str:
    url = (url or "")[:2000]
    return url if url.startswith(("http://", "https://")) else ""


@transaction.atomic
def do_start_visitor_session(*, inbox: Inbox, visitor_token: str | None, info: SessionInfo,
                             user_id: str | None = None, user_hash: str | None = None,
                             name: str = "", email: str = "") -> tuple[VisitorSession, str]:
    """Find or create the browser's session and contact; returns (session, visitor token).

    A missing, forged or foreign token starts a new anonymous visitor. A `user_id` is trusted only
    with a valid `user_hash`; inboxes that require verification refuse everything else.
    """
    if inbox.kind != ChannelKind.WEBCHAT or not inbox.is_active:
        raise ActionError("This chat is not available")
    config = get_config(inbox)
    # What the page sent is the browser's word: NUL characters and lone surrogates are dropped, never a 500.
    name, email = clean_text(name or ""), clean_text(email or "").strip()
    verified = ""
    if user_id:
        user_id = check_text(str(user_id)[:200], field="user_id", label="user_id")
        # Bytes: compare_digest refuses str with non-ASCII characters (a TypeError).
        if not user_hash or not hmac.compare_digest(identity_hash(inbox, user_id).encode(),
                                                    str(user_hash).lower().encode("utf-8", "replace")):
            raise ActionError("Identity verification failed: user_hash does not match user_id")
        verified = user_id
    elif config.require_identity_verification:
        raise ActionError("This chat requires a verified user (user_id and user_hash)")

    visitor_id = read_visitor_token(inbox, visitor_token) if visitor_token else None
    session = None
    if visitor_id:
        session = VisitorSession.objects.select_for_update().filter(inbox=inbox, visitor_id=visitor_id).first()
    if session is not None and session.verified_user_id != verified:
        # A different signed-in user on this browser, or a signed-in user's session reused after they
        # signed out (a shared computer): a new session, never the previous user's chat.
        session = None
    if session is None:
        visitor_id = secrets.token_urlsafe(24)
        source_id = f"user:{verified}" if verified else visitor_id
        contact = _contact_for(inbox, source_id, name=name, email=email)
        session = VisitorSession.objects.create(inbox=inbox, visitor_id=visitor_id, contact=contact,
                                                verified_user_id=verified)
    else:
        session.visits += 1
        while session.contact.merged_into_id:
            session.contact = session.contact.merged_into
    session.page_url = _clip_url(clean_text(info.page_url or ""))
    session.page_title = clean_text(info.page_title or "")[:300]
    session.referrer = _clip_url(clean_text(info.referrer or ""))
    session.user_agent = clean_text(info.user_agent or "")[:500]
    session.browser_language = clean_text(info.language or "")[:35]
    session.ip = info.ip
    geo = _geoip(info.ip)
    if geo.country:  # a new location replaces the old one whole; an unknown address keeps what we had
        session.country, session.city, session.region = geo.country, geo.city, geo.region
        session.postal_code, session.time_zone = geo.postal_code, geo.time_zone
    session.save()
    return session, sign_visitor(inbox, session.visitor_id)


def _contact_for(inbox: Inbox, source_id: str, *, name: str = "", email: str = "") -> Contact:
    scope = str(inbox.pk)
    identity = ContactIdentity.objects.select_related("contact").filter(
        kind=ContactIdentity.Kind.WEBCHAT, scope=scope, value=source_id).first()
    if identity:
        return identity.contact
    try:
        with transaction.atomic():
            contact = Contact.objects.create(name=name[:200], email=email[:254])
            ContactIdentity.objects.create(contact=contact, kind=ContactIdentity.Kind.WEBCHAT, scope=scope,
                                           value=source_id)
            return contact
    except IntegrityError:
        return ContactIdentity.objects.get(kind=ContactIdentity.Kind.WEBCHAT, scope=scope, value=source_id).contact


@dataclass
class GeoLocation:
    country: str = ""
    city: str = ""
    region: str = ""
    postal_code: str = ""
    time_zone: str = ""


def _geoip(ip: str | None) -> GeoLocation:
    """Approximate location from the MaxMind City database at GEOIP_PATH, when configured; else blanks."""
    if not ip or not settings.GEOIP_PATH:
        return GeoLocation()
    try:
        # optional: only with GEOIP_PATH set; the reader's import costs ~0.2 s at every process start otherwise
        import geoip2.database
        import geoip2.errors

        with geoip2.database.Reader(settings.GEOIP_PATH) as reader:
            data = reader.city(ip)
        return GeoLocation(country=(data.country.iso_code or "")[:2], city=(data.city.name or "")[:100],
                           region=(data.subdivisions.most_specific.iso_code or "")[:10],
                           postal_code=(data.postal.code or "")[:20], time_zone=(data.location.time_zone or "")[:64])
    except (geoip2.errors.AddressNotFoundError, ValueError, OSError):
        return GeoLocation()


# --- pre-chat -------------------------------------------------------------------------------


def clean_prechat(config: WidgetConfig, answers: dict) -> dict:
    if not isinstance(answers, dict):
        raise ActionError("Pre-chat answers must be an object")
    cleaned, errors = {}, {}
    for field in config.fields:
        name = field.get("name")
        raw = answers.get(name, "")
        value = clean_text(str(raw)).strip()[:MAX_FIELD] if raw is not None else ""
        if not value:
            if field.get("required"):
                errors[name] = f"{field.get('label') or name} is required"
            continue
        if field.get("type") == "email":
            try:
                validate_email(value)
            except ValidationError:
                errors[name] = "Enter a valid email address"
                continue
        if field.get("type") == "select" and field.get("options") and value not in field["options"]:
            errors[name] = f"Choose one of: {', '.join(field['options'])}"
            continue
        cleaned[name] = value
    if errors:
        err = ActionError("; ".join(errors.values()), field="prechat")
        err.errors = errors
        raise err
    return cleaned


@transaction.atomic
def do_save_prechat(*, session: VisitorSession, answers: dict) -> dict:
    """Store the pre-chat answers on the session (routing reads them) and the contact's profile fields."""
    config = get_config(session.inbox)
    cleaned = clean_prechat(config, answers)
    session.prechat = cleaned
    session.save(update_fields=["prechat", "last_seen_at"])
    # Open sockets hold the answers they read; a new stamp makes them re-read (if this fails, within 30 s).
    transaction.on_commit(lambda: _renew_prechat_stamp(session), robust=True)
    profile = {k: cleaned[k] for k in ("name", "email", "phone") if cleaned.get(k)}
    extra = {k: v for k, v in cleaned.items() if k not in ("name", "email", "phone")}
    attrs = {**session.contact.custom_attributes, **({"prechat": extra} if extra else {})}
    conv_actions.do_update_contact(actor=None, contact=session.contact, custom_attributes=attrs, **profile)
    return cleaned


# --- messages ---------------------------------------------------------------------------


# INCR, and start the key's two-minute life on its first count; and read the session's pre-chat stamp (made
# with a two-day life if there is none): one round trip, atomic. Returns {count, stamp}.
_COUNT_SCRIPT = (
    "local n = redis.call('INCR', KEYS[1]) if n == 1 then redis.call('EXPIRE', KEYS[1], ARGV[1]) end "
    "local s = redis.call('GET', KEYS[2]) "
    "if not s then s = ARGV[2] redis.call('SET', KEYS[2], s, 'EX', ARGV[3]) end "
    "return {n, s}"
)
PRECHAT_STAMP_TTL = 2 * 24 * 3600
# A socket re-reads its session's pre-chat answers at least this often (seconds), even with an unchanged stamp.
PRECHAT_MAX_AGE = 30.0


_process_cache: tuple[int, BaseCache] | None = None


def _cache() -> BaseCache:
    """The default cache, one backend per process. ``caches["default"]`` is one per async context: under ASGI
    each websocket's consumer got a backend of its own on its first message (a Redis connection pool, client
    and connection: a connect in the message's path, and ~60 long-lived objects per socket that made the
    garbage collector's full passes over 500 sockets take 170 ms). The Redis backend's client is thread-safe."""
    global _process_cache
    if _process_cache is None or _process_cache[0] != os.getpid():  # a forked child makes its own
        _process_cache = (os.getpid(), caches.create_connection("default"))
    return _process_cache[1]


def _rate_key(session: VisitorSession) -> str:
    return f"widget-rate:{session.pk}:{int(timezone.now().timestamp() // 60)}"


def _prechat_key(inbox_id: int, visitor_id: str) -> str:
    return f"widget-prechat:{inbox_id}:{visitor_id}"


# The pre-chat stamp, made (two-day life) if there is none: one round trip.
_STAMP_SCRIPT = "local s = redis.call('GET', KEYS[1]) if not s then s = ARGV[1] redis.call('SET', KEYS[1], s, 'EX', ARGV[2]) end return s"


def held_session(inbox: Inbox, visitor_id: str) -> VisitorSession | None:
    """The visitor's session (with inbox and contact) for a socket to hold across messages: the pre-chat stamp is
    read first, so the socket's first message need not re-read the answers (see _fresh_prechat)."""
    stamp = None
    backend = _cache()
    if isinstance(backend, RedisCache):
        key = backend.make_and_validate_key(_prechat_key(inbox.pk, visitor_id))
        try:
            stamp = redis_client.client().eval(_STAMP_SCRIPT, 1, key, secrets.randbits(62), PRECHAT_STAMP_TTL)
        except (RedisError, OSError):  # the first message re-reads the answers instead
            stamp = None
    session = VisitorSession.objects.select_related("inbox", "contact").filter(inbox=inbox, visitor_id=visitor_id).first()
    if session is not None and stamp is not None:
        session._prechat_held = (stamp, time.monotonic())
    return session


def check_rate_limit(session: VisitorSession, config: WidgetConfig) -> bytes | None:
    """At most `messages_per_minute` messages per visitor session and clock minute (refused ones not counted).

    Returns the session's pre-chat stamp, read in the same round trip (None without a Redis cache): it changes
    after every commit of new pre-chat answers (do_save_prechat), so a holder of the session may skip re-reading
    them while it is unchanged."""
    key = _rate_key(session)
    backend = _cache()
    if not isinstance(backend, RedisCache):
        count = backend.get_or_set(key, 0, timeout=120)
        if count >= config.messages_per_minute:
            raise ActionError(RATE_LIMITED, field="rate_limit")
        try:
            backend.incr(key)
        except ValueError:
            backend.set(key, 1, timeout=120)
        return None
    # Django's get_or_set + incr took three round trips (and built a client object for each).
    key = backend.make_and_validate_key(key)
    client = redis_client.client()
    stamp_key = backend.make_and_validate_key(_prechat_key(session.inbox_id, session.visitor_id))
    count, stamp = client.eval(_COUNT_SCRIPT, 2, key, stamp_key, 120, secrets.randbits(62), PRECHAT_STAMP_TTL)
    if count > config.messages_per_minute:
        client.decr(key)
        raise ActionError(RATE_LIMITED, field="rate_limit")
    return stamp


def _renew_prechat_stamp(session: VisitorSession) -> None:
    """After new pre-chat answers commit: a new stamp, so every socket of the session re-reads them."""
    _cache().set(_prechat_key(session.inbox_id, session.visitor_id), secrets.randbits(62), timeout=PRECHAT_STAMP_TTL)


def _fresh_prechat(session: VisitorSession, stamp: bytes | None) -> None:
    """For a session object held across messages (the socket, opened before the pre-chat form may be posted):
    re-read its pre-chat answers unless the stamp read just now is the one they were read under, and they were
    read less than PRECHAT_MAX_AGE seconds ago. The stamp is read before the answers, and renewed only after
    their commit, so an unchanged stamp means nothing newer was committed (unless renewing failed: then the
    age bounds how stale they may be)."""
    now = time.monotonic()
    held = getattr(session, "_prechat_held", None)
    if stamp is not None and held is not None and held[0] == stamp and now - held[1] < PRECHAT_MAX_AGE:
        return
    session.refresh_from_db(fields=["prechat"])
    session._prechat_held = (stamp, now)


def uncount_message(session: VisitorSession) -> None:
    """Take back check_rate_limit's count (the message turned out to be a resend)."""
    try:
        _cache().decr(_rate_key(session))
    except ValueError:  # the minute has turned: nothing to take back
        pass


def _conversation_meta(session: VisitorSession) -> dict:
    return {
        "prechat": session.prechat,
        "visitor": {"page_url": session.page_url, "page_title": session.page_title, "referrer": session.referrer,
                    "user_agent": session.user_agent, "language": session.browser_language,
                    "country": session.country, "city": session.city, "region": session.region,
                    "postal_code": session.postal_code, "time_zone": session.time_zone},
    }


def do_visitor_message(*, session: VisitorSession, body: str, client_id: str | None, files=(),
                       config: WidgetConfig | None = None, held_session: bool = False) -> Message:
    """A message typed in the widget; `client_id` (a UUID made by the browser) makes a resend idempotent.

    `config`: the inbox's widget config when the caller holds a recent copy (the socket does). `held_session`:
    the caller keeps `session` across messages (the socket, opened before the pre-chat form may be posted):
    its pre-chat answers are re-read first, unless unchanged since it last read them (_fresh_prechat)."""
    config = config or get_config(session.inbox)
    files = list(files)
    for f in files:
        check_upload(f, allowed_types=config.upload_types, max_bytes=config.max_upload_mb * 1024 * 1024,
                     field="file")
    if client_id is not None:
        client_id = clean_text(str(client_id))[:64] or None
    try:
        stamp = check_rate_limit(session, config)
    except ActionError:
        # A resend of a stored message (the widget's offline outbox) is answered, never refused.
        existing = _stored(session, client_id)
        if existing is None:
            raise
        return existing
    if held_session:
        _fresh_prechat(session, stamp)
    # Not looked up first: a resend is caught by the unique (inbox, client id) constraint instead.
    result = conv_actions.do_receive_inbound_message(
        inbox=session.inbox, source_id=session.source_id, body=body, provider_message_id=client_id,
        attachments=files, meta=_conversation_meta(session), expect_new=True)
    if not result.created:
        if result.message.conversation.contact_id not in (session.contact_id, session.contact.merged_into_id):
            # Client ids are the browser's own UUIDs: another visitor's id is refused, never echoed back.
            raise ActionError("client_id is already used", field="client_id")
        uncount_message(session)  # a resend is not counted against the rate limit
    return result.message


def _stored(session: VisitorSession, client_id: str | None) -> Message | None:
    if not client_id:
        return None
    return Message.objects.filter(inbox=session.inbox, provider_message_id=client_id.strip(),
                                  conversation__contact=session.contact).first()


def active_conversation(session: VisitorSession) -> Conversation | None:
    return (Conversation.objects.filter(inbox=session.inbox, contact=session.contact, merged_into__isnull=True,
                                        status__in=Conversation.ACTIVE_STATUSES)
            .select_related("assignee", "assignee__agent").order_by("-id").first())


def latest_conversation(session: VisitorSession) -> Conversation | None:
    return (Conversation.objects.filter(inbox=session.inbox, contact=session.contact, merged_into__isnull=True)
            .select_related("assignee", "assignee__agent").order_by("-id").first())


def visitor_conversation(session: VisitorSession, conversation_id) -> Conversation:
    """A conversation of this visitor's contact on this inbox; anything else is 'not found'."""
    try:
        return Conversation.objects.get(pk=int(conversation_id), inbox=session.inbox, contact=session.contact)
    except (Conversation.DoesNotExist, TypeError, ValueError, OverflowError):  # OverflowError: 1e400
        raise ActionError("Conversation not found", field="conversation_id")


def queue_position(conversation: Conversation) -> int | None:
    """1-based place in the routing queue; None once an agent has the chat."""
    return routing_position(conversation)[0]


# --- availability --------------------------------------------------------------------------

def within_business_hours(config: WidgetConfig, now: datetime | None = None) -> bool:
    """The widget's own opening hours ({"tz", "days"}); empty means always open."""
    return within_hours(config.business_hours or {}, now)


def agents_online(inbox: Inbox) -> bool:
    """Someone online in a team that works this inbox: the agents routing gives its chats to (a supervisor
    outside those teams sees the inbox but is not given its chats, so does not make the chat 'online')."""
    return AgentProfile.objects.filter(status=AgentProfile.Status.ONLINE, teams__inboxes=inbox,
                                       user__is_active=True).exists()


def is_online(inbox: Inbox, config: WidgetConfig | None = None) -> bool:
    config = config or get_config(inbox)
    return within_business_hours(config) and agents_online(inbox)


# --- offline, ending, surveys, wrap-up -----------------------------------------------------


def do_submit_offline_message(*, session: VisitorSession, name: str, email: str, body: str) -> Message:
    """The offline form: becomes a ticket in the console, answered later by email. Counted by the visitor's
    message rate limit, like chat messages."""
    check_rate_limit(session, get_config(session.inbox))
    name, email = clean_text(name or "").strip(), (email or "").strip()
    try:
        validate_email(email)
    except ValidationError:
        raise ActionError("Enter a valid email address so we can answer you", field="email")
    with transaction.atomic():
        conv_actions.do_update_contact(actor=None, contact=session.contact, name=(name or "").strip()[:200] or None,
                                       email=email)
        meta = {**_conversation_meta(session), "offline": True}
        result = conv_actions.do_receive_inbound_message(
            inbox=session.inbox, source_id=session.source_id, body=body, meta=meta,
            subject=f"Offline message from {name or email}"[:255])
        conversation = result.message.conversation
        conv_actions.do_add_tag(actor=None, conversation=conversation, name="offline-message")
    return result.message


@transaction.atomic
def do_end_chat(*, conversation: Conversation, by: str, actor: AbstractBaseUser | None = None) -> Conversation:
    """Either side ends a live chat: a system line, then the conversation is closed (the widget shows the survey;
    the visitor's next message starts a new chat)."""
    if not conversation.is_active:
        return conversation
    who = "the visitor" if by == "visitor" else conv_actions.actor_name(actor)
    conv_actions.system_line(conversation, f"Chat ended by {who}")
    return conv_actions.do_change_status(actor=actor, conversation=conversation, status=Conversation.Status.CLOSED)


def _rating(raw) -> int | None:
    """A whole number sent as a number or as digits; None for anything else (1e400, NaN, 4.5, true, a list)."""
    if isinstance(raw, bool):
        return None
    if isinstance(raw, int):
        return raw
    if isinstance(raw, float):
        return int(raw) if raw.is_integer() else None  # is_integer(): False for inf and NaN
    if isinstance(raw, str) and raw.strip().isascii() and raw.strip().isdigit() and len(raw.strip()) <= 3:
        return int(raw)
    return None


@transaction.atomic
def do_submit_survey(*, conversation: Conversation, rating, comment: str = "") -> ChatSurvey:
    if not get_config(conversation.inbox).postchat_survey_enabled:
        raise ActionError("This chat has no survey")
    rating = _rating(rating)
    if rating is None or not 1 <= rating <= 5:
        raise ActionError("Rating must be a whole number from 1 to 5", field="rating")
    if conversation.is_active:
        raise ActionError("The chat has not ended yet")
    survey, _ = ChatSurvey.objects.update_or_create(
        conversation=conversation, defaults={"rating": rating, "comment": clean_text(comment or "").strip()[:2000]})
    conv_actions.publish_conversation(conversation, "survey", None, rating=rating)
    return survey


@transaction.atomic
def do_wrap_up(*, actor: AbstractBaseUser, conversation: Conversation, disposition: str, note: str = "") -> WrapUp:
    config = get_config(conversation.inbox)
    if disposition not in config.disposition_choices:
        raise ActionError(f"Choose a disposition: {', '.join(config.disposition_choices)}", field="disposition")
    wrap, _ = WrapUp.objects.update_or_create(conversation=conversation, defaults={
        "agent": actor, "disposition": disposition, "note": (note or "").strip()[:5000]})
    conv_actions.record_event(conversation, "wrapped_up", actor, disposition=disposition)
    conv_actions.publish_conversation(conversation, "wrap_up", actor)
    return wrap


@transaction.atomic
def do_convert_to_ticket(*, actor: AbstractBaseUser, conversation: Conversation) -> Conversation:
    """Turn a live chat into a ticket for follow-up: pending, tagged, the visitor is told."""
    conversation = Conversation.objects.select_for_update().get(pk=conversation.pk)
    conversation.meta = {**conversation.meta, "follow_up": True}
    conversation.save(update_fields=["meta", "updated_at"])
    conv_actions.do_add_tag(actor=actor, conversation=conversation, name="follow-up")
    conv_actions.system_line(conversation, "We'll follow up on this by email.")
    return conv_actions.do_change_status(actor=actor, conversation=conversation, status=Conversation.Status.PENDING)


TRANSCRIPTS_PER_HOUR = 3


def do_request_transcript(*, conversation: Conversation, email: str) -> None:
    email = (email or "").strip()
    try:
        validate_email(email)
    except ValidationError:
        raise ActionError("Enter a valid email address", field="email")
    # Each request mails a copy of the chat to any address: a few per chat per hour, no more.
    key = f"widget-transcripts:{conversation.id}"
    sent = caches["default"].get_or_set(key, 0, timeout=3600)
    if sent >= TRANSCRIPTS_PER_HOUR:
        raise ActionError(f"A transcript can be sent at most {TRANSCRIPTS_PER_HOUR} times an hour",
                          field="rate_limit")
    try:
        caches["default"].incr(key)
    except ValueError:  # expired in between
        caches["default"].set(key, 1, timeout=3600)
    send_transcript.delay_on_commit(conversation.id, email)
