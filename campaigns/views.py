"""The widget's HTTP endpoints, called cross-origin from customers' websites.

They authenticate with the signed visitor token (never cookies), so they are CSRF-exempt; each
checks the Origin against the inbox's allowed origins and answers CORS only to allowed origins.
Errors are JSON ``{"error": …}`` with a 4xx status.
"""

from __future__ import annotations

import json
from functools import wraps
from urllib.parse import urlparse

from django.conf import settings
from django.core import signing
from django.core.cache import cache
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, render
from django.utils import translation
from django.views.decorators.clickjacking import xframe_options_exempt
from django.views.decorators.csrf import csrf_exempt

from conversations.models import Attachment, ChannelKind, Inbox, Message
from conversations.payloads import (
    ATTACHMENT_SALT,
    ATTACHMENT_URL_MAX_AGE,
    agent_card,
    visitor_stream,
    widget_message,
)
from omnichannel.errors import ActionError
from omnichannel.files import attachment_response
from omnichannel.integrations.webchat.channel import embed_code
from omnichannel.login_throttle import client_ip
from omnichannel.realtime import current_cursors

from . import actions
from .consumers import origin_allowed
from .models import VisitorSession
from .strings import localized_config, widget_strings

MAX_JSON_BYTES = 64 * 1024


def _cors(response: HttpResponse, origin: str) -> HttpResponse:
    if origin:
        response["Access-Control-Allow-Origin"] = origin
        response["Access-Control-Allow-Methods"] = "POST, GET, OPTIONS"
        response["Access-Control-Allow-Headers"] = "Content-Type"
        response["Access-Control-Max-Age"] = "600"
    response["Vary"] = "Origin"
    return response


def widget_endpoint(view):
    """Resolve the inbox, enforce allowed origins, answer preflights, map ActionError to 400."""

    @csrf_exempt
    @wraps(view)
    def wrapper(request: HttpRequest, public_token: str, *args, **kwargs):
        inbox = Inbox.objects.filter(public_token=public_token, kind=ChannelKind.WEBCHAT, is_active=True).first()
        if inbox is None:
            return JsonResponse({"error": "Unknown chat"}, status=404)
        config = actions.get_config(inbox)
        origin = request.headers.get("Origin", "")
        if not origin_allowed(config.origins, origin or _referrer_origin(request)):
            return JsonResponse({"error": "This website is not allowed to use this chat"}, status=403)
        if request.method == "OPTIONS":
            return _cors(HttpResponse(status=204), origin)
        if request.method != "POST":
            return _cors(JsonResponse({"error": "Use POST"}, status=405), origin)
        try:
            if request.content_type == "application/json" or request.content_type == "text/plain":
                if len(request.body) > MAX_JSON_BYTES:
                    raise ActionError("Request is too large")
                data = json.loads(request.body or b"{}")
                if not isinstance(data, dict):
                    raise ActionError("Send a JSON object")
            else:
                data = request.POST
            request.widget_data = data
            response = view(request, inbox, config, *args, **kwargs)
        except ActionError as exc:
            body = {"error": exc.message}
            if exc.field:
                body["field"] = exc.field
            if getattr(exc, "errors", None):
                body["errors"] = exc.errors
            response = JsonResponse(body, status=429 if exc.field == "rate_limit" else 400)
        except (ValueError, RecursionError):  # RecursionError: JSON nested too deeply to parse
            response = JsonResponse({"error": "Request body is not valid JSON"}, status=400)
        return _cors(response, origin)

    return wrapper


def _referrer_origin(request: HttpRequest) -> str:
    ref = urlparse(request.headers.get("Referer", ""))
    return f"{ref.scheme}://{ref.netloc}" if ref.scheme and ref.netloc else ""


def _text(value) -> str:
    """A JSON value that should be text: numbers as their text, anything else (lists, objects) as ''."""
    if isinstance(value, str):
        return value
    return str(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else ""


def _session(inbox: Inbox, data) -> VisitorSession:
    visitor_id = actions.read_visitor_token(inbox, data.get("visitor_token", ""))
    session = None
    if visitor_id:
        session = VisitorSession.objects.select_related("contact", "inbox").filter(
            inbox=inbox, visitor_id=visitor_id).first()
    if session is None:
        raise ActionError("Your chat session is not valid; reload the page", field="visitor_token")
    while session.contact.merged_into_id:
        session.contact = session.contact.merged_into
    return session


def _client_ip(request: HttpRequest) -> str | None:
    # Behind our proxy, the address it saw (the last X-Forwarded-For entry); the same one sign-in throttling uses.
    return client_ip(request)


def _language(request: HttpRequest, data) -> str:
    language = data.get("language")
    for candidate in (language if isinstance(language, str) else "",
                      request.headers.get("Accept-Language", "").split(",")[0]):
        code = candidate.split(";")[0].strip()
        if code:
            try:
                return translation.get_supported_language_variant(code.lower())
            except LookupError:
                continue
    return settings.LANGUAGE_CODE


@widget_endpoint
def session_view(request: HttpRequest, inbox: Inbox, config) -> HttpResponse:
    """Page load: start or resume the visitor's session; returns config, strings, state and history."""
    data = request.widget_data
    ip = _client_ip(request)
    key = f"widget-sessions:{inbox.pk}:{ip}"
    if cache.get_or_set(key, 0, timeout=60) >= 60:
        raise ActionError("Too many chat sessions from your network; wait a minute", field="rate_limit")
    cache.incr(key)
    info = actions.SessionInfo(
        page_url=_text(data.get("page_url")), page_title=_text(data.get("page_title")),
        referrer=_text(data.get("referrer")), user_agent=request.headers.get("User-Agent", ""),
        language=_text(data.get("language")), ip=ip)
    session, token = actions.do_start_visitor_session(
        inbox=inbox, visitor_token=_text(data.get("visitor_token")), info=info,
        user_id=_text(data.get("user_id")) or None, user_hash=_text(data.get("user_hash")) or None, name=_text(data.get("name"))[:200],
        email=_text(data.get("email"))[:254])
    lang = _language(request, data)
    texts = localized_config(config, lang)
    conversation = actions.latest_conversation(session)
    messages = []
    if conversation is not None:
        qs = (Message.objects.filter(conversation__contact=session.contact, inbox=inbox, kind=Message.Kind.MESSAGE)
              .select_related("sender_user__agent").prefetch_related("attachments").order_by("-id")[:100])
        messages = [widget_message(m) for m in reversed(list(qs))]
    stream = visitor_stream(inbox.id, session.contact_id)
    return JsonResponse({
        "visitor_token": token,
        "language": lang,
        "strings": widget_strings(lang),
        "config": {
            "button_color": config.button_color, "button_text": texts["button_text"], "button_icon": config.button_icon,
            "mobile_button_text": config.mobile_button_text, "position": config.position,
            "header_color": config.header_color, "header_text_color": config.header_text_color,
            "window_background": config.window_background, "title": texts["title"], "greeting": texts["greeting"],
            "show_agent_avatars": config.show_agent_avatars, "display_mode": config.display_mode,
            "mobile_fullscreen": config.mobile_fullscreen, "prechat_enabled": config.prechat_enabled,
            "prechat_message": texts["prechat_message"], "prechat_fields": texts["prechat_fields"],
            "offline_message": texts["offline_message"], "queue_message": texts["queue_message"],
            "postchat_survey_enabled": config.postchat_survey_enabled,
            "postchat_question": texts["postchat_question"], "max_upload_mb": config.max_upload_mb,
            "upload_types": sorted(config.upload_types),
        },
        "online": actions.is_online(inbox, config),
        "prechat_done": bool(session.prechat) or not config.prechat_enabled,
        "conversation": None if conversation is None else {
            "id": conversation.id, "status": conversation.status, "active": conversation.is_active,
            "agent": agent_card(conversation.assignee) if conversation.assignee_id else None,
            "queue_position": actions.queue_position(conversation),
            "rated": hasattr(conversation, "survey"),
        },
        "messages": messages,
        "cursor": current_cursors([stream])[stream],
        "socket_path": f"/ws/widget/{inbox.public_token}/",
    })


@widget_endpoint
def prechat_view(request: HttpRequest, inbox: Inbox, config) -> HttpResponse:
    session = _session(inbox, request.widget_data)
    answers = request.widget_data.get("answers")
    cleaned = actions.do_save_prechat(session=session, answers=answers if isinstance(answers, dict) else {})
    return JsonResponse({"ok": True, "answers": cleaned})


@widget_endpoint
def upload_view(request: HttpRequest, inbox: Inbox, config) -> HttpResponse:
    session = _session(inbox, request.POST)
    files = request.FILES.getlist("file")
    if not files:
        raise ActionError("Choose a file to send", field="file")
    message = actions.do_visitor_message(session=session, body=request.POST.get("body", ""),
                                         client_id=request.POST.get("client_id") or None, files=files)
    return JsonResponse({"ok": True, "message": widget_message(message)}, status=201)


@widget_endpoint
def offline_view(request: HttpRequest, inbox: Inbox, config) -> HttpResponse:
    data = request.widget_data
    session = _session(inbox, data)
    message = actions.do_submit_offline_message(session=session, name=_text(data.get("name")),
                                                email=_text(data.get("email")), body=_text(data.get("body")))
    return JsonResponse({"ok": True, "conversation_id": message.conversation_id}, status=201)


@widget_endpoint
def survey_view(request: HttpRequest, inbox: Inbox, config) -> HttpResponse:
    data = request.widget_data
    session = _session(inbox, data)
    conversation = actions.visitor_conversation(session, data.get("conversation_id"))
    actions.do_submit_survey(conversation=conversation, rating=data.get("rating"),
                             comment=_text(data.get("comment")))
    return JsonResponse({"ok": True})


@widget_endpoint
def transcript_view(request: HttpRequest, inbox: Inbox, config) -> HttpResponse:
    data = request.widget_data
    session = _session(inbox, data)
    conversation = actions.visitor_conversation(session, data.get("conversation_id"))
    actions.do_request_transcript(conversation=conversation, email=_text(data.get("email")))
    return JsonResponse({"ok": True})


def attachment_view(request: HttpRequest, signed: str) -> HttpResponse:
    """Attachments for the widget: a signed, expiring URL (no cookies on the customer's site)."""
    try:
        attachment_id = signing.TimestampSigner(salt=ATTACHMENT_SALT).unsign(signed, max_age=ATTACHMENT_URL_MAX_AGE)
    except signing.BadSignature:
        raise Http404
    att = get_object_or_404(Attachment.objects.select_related("message"), pk=attachment_id)
    if att.message.kind != Message.Kind.MESSAGE:
        raise Http404
    response = attachment_response(att)
    response["Cross-Origin-Resource-Policy"] = "cross-origin"
    return response


@xframe_options_exempt
def popup_view(request: HttpRequest, public_token: str) -> HttpResponse:
    """The chat in its own window (display mode "pop-up", or the visitor pops the panel out)."""
    inbox = get_object_or_404(Inbox, public_token=public_token, kind=ChannelKind.WEBCHAT, is_active=True)
    return render(request, "widget/popup.html", {"inbox": inbox, "base_url": settings.PUBLIC_BASE_URL})


def snippet(inbox: Inbox, base: str | None = None) -> str:
    """The one <script> tag a company pastes into its site (the web chat channel's embed code)."""
    return embed_code(inbox, base)
