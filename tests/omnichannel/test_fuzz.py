"""A fuzz sweep over every URL pattern of the project: no bad input may give a 5xx or let an exception escape.

Every pattern of the URLconf (``get_resolver``) is requested with its path parameters filled from a seeded world
(real ids, another team's ids, and ids past a bigint), as an anonymous visitor, an agent, a supervisor and a
superuser, by GET (each query parameter the views read set to junk, plus ``page``/``limit`` past a bigint) and by
POST: form-encoded, multipart, JSON and raw bodies that are not UTF-8. Each field a view reads (harvested from its
source, its DRF serializers and its Django form, or the admin's form on its page) is set to each bad value in turn
with the other fields valid, and all at once. The widget's socket is fed bad frames as well. The counts are printed
(``-s``) and bounded so the sweep stays within a couple of minutes.
"""

from __future__ import annotations

import inspect
import json
import logging
import re
import sys
import traceback
from dataclasses import dataclass, field
from html.parser import HTMLParser
from urllib.parse import quote, urlencode

import pytest
from django.contrib.auth import get_user_model
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.signals import got_request_exception
from django.db import connection, transaction
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver
from django.utils import timezone

pytestmark = pytest.mark.django_db

HUGE_IDS = ["99999999999999999999999"]
RAW_HUGE = "1" + "0" * 400  # 10**400, as JSON or form text
RAW_HUGER = "1" + "0" * 5000  # past Python's int parsing limit
# Bad values of a form field (text: the browser sends nothing else).
FORM_VALUES = {"nul": "a\x00b", "huge": RAW_HUGE, "float": "1e400", "minus": "-1", "int64": str(2**63),
               "long": "x" * 100_000, "digits": "²١", "json": "[" * 3000 + "]" * 3000}
FORM_FIELD_VALUES = ("nul", "huge", "long", "json")  # one field at a time, the others valid
JSON_FIELD_VALUES = ("nul", "surrogate", "long", "huge", "inf", "int64", "list", "dict", "null", "true")
# Bad values of a JSON field: raw JSON text, so 1e400 and 10**400 reach the parser as sent.
JSON_VALUES = {"nul": '"a\\u0000b"', "surrogate": '"\\ud800x"', "long": json.dumps("x" * 100_000),
               "huge": RAW_HUGE, "huger": RAW_HUGER, "inf": "1e400", "minus": "-1", "int64": str(2**63),
               "float": "4.5", "list": '["a", [1]]', "dict": '{"a": {"b": null}}', "null": "null", "true": "true",
               "nan": "NaN", "deep": "[" * 3000 + "]" * 3000}
QUERY_VALUES = {"nul": "%00", "huge": RAW_HUGE, "float": "1e400", "minus": "-1", "int64": str(2**63),
                "long": "q" * 5000, "bad-utf8": "%ff%fe%ed%a0%80", "list": "a&{name}=b", "empty": ""}
QUERY_NAMES = ["page", "limit", "offset", "q", "status", "priority", "view", "inbox", "tag", "segment", "channel",
               "kind", "sort", "before", "after", "cursor", "ids", "current", "conversation", "updated_since", "o",
               "p", "all", "e", "term", "app_label", "model_name", "field_name", "next", "_changelist_filters",
               "assignee", "team", "from", "to", "days", "_popup", "_to_field"]
# Paging alone (with every parameter bad at once, a filter's error would answer first).
PAGING_QUERIES = ["page=99999999999999999999999&limit=-1", f"offset={RAW_HUGE}&limit={RAW_HUGE}",
                  "offset=9223372036854775807&limit=50", "page=-1&offset=-1&limit=0", "page=1e400&limit=1e400",
                  "before=99999999999999999999999&after=-1", "ids=99999999999999999999999,-1,1e400"]
RAW_BODIES = [  # (content type, body): not UTF-8, lone surrogates as bytes and as escapes
    ("application/json", b'{"body": "\xff\xfe", "name": "\xed\xa0\x80"}'),
    ("application/json", b'{"body": "\\ud800", "name": "\\udfff\\ud800", "email": "\\ud83d"}'),
    ("application/x-www-form-urlencoded", b"body=%ff%fe&name=\xed\xa0\x80&tags=%ed%a0%80&subject=\xff"),
    ("text/plain", b"\xff\xfe\x00\x00"),
    ("multipart/form-data; boundary=zz", b"--zz\r\nContent-Disposition: form-data; name=\"body\"\r\n\r\n\xff\x00"),
]


@dataclass
class Sweep:
    requests: int = 0
    failures: list[str] = field(default_factory=list)
    patterns: set[str] = field(default_factory=set)
    exceptions: list[BaseException] = field(default_factory=list)
    last: object = None  # the last response

    def __post_init__(self) -> None:
        got_request_exception.connect(self._exception, weak=False)

    def _exception(self, sender, request=None, **kwargs) -> None:
        self.exceptions.append(sys.exc_info()[1])

    def send(self, client: Client, method: str, path: str, what: str, **kwargs) -> int:
        self.requests += 1
        # Each request from its own address: the widget's per-network session limit would answer 429 to the rest.
        kwargs.setdefault("REMOTE_ADDR", f"10.{self.requests // 65536 % 256}.{self.requests // 256 % 256}."
                                         f"{self.requests % 256}")
        del self.exceptions[:]
        sid = transaction.savepoint()
        response = self.last = getattr(client, method)(path, **kwargs)
        if response.status_code >= 500 or self.exceptions:
            transaction.savepoint_rollback(sid)  # a failed statement left the test's transaction aborted
            connection.needs_rollback = False
            if len(self.failures) < 300:
                exc = self.exceptions[-1] if self.exceptions else None
                where = ""
                if exc is not None:
                    frames = [f for f in traceback.extract_tb(exc.__traceback__) if "/work/wt-fuzz/" in f.filename and "/.venv/" not in f.filename]
                    where = f" at {frames[-1].filename.split('/wt-fuzz/')[-1]}:{frames[-1].lineno}" if frames else ""
                self.failures.append(f"{response.status_code} {what}: {method.upper()} {path[:120]} -> "
                                     f"{type(exc).__name__}: {str(exc)[:120]!r}{where}")
        else:
            transaction.savepoint_commit(sid)
        return response.status_code

    def close(self) -> None:
        got_request_exception.disconnect(self._exception)

    def report(self, name: str) -> None:
        self.close()
        print(f"\nfuzz {name}: {self.requests} requests, {len(self.failures)} 5xx")
        assert not self.failures, "\n".join(self.failures[:60])


# --- the world --------------------------------------------------------------------------------------------------


@pytest.fixture
def seeded(world, inbound, no_background_tasks, settings):
    """The world of tests/conftest.py, with one of everything the URL patterns name."""
    from agents.actions import do_create_api_token
    from agents.models import Skill
    from campaigns import actions as widget
    from campaigns.models import VisitorSession, WidgetConfig
    from conversations.actions import do_send_agent_reply
    from conversations.models import (
        Attachment,
        CannedMessage,
        ChannelKind,
        Contact,
        Inbox,
        MessageTemplate,
        Segment,
        SmsConsent,
    )
    from conversations.payloads import attachment_url
    from routing.models import RoutingRule
    from sla.models import BusinessCalendar, SlaPolicy

    settings.PUBLIC_BASE_URL = "https://support.example.com"
    w = world
    w.root = get_user_model().objects.create_superuser("root", "root@example.com", "pw-root")
    w.conv_a = inbound(body="Where is my order?").message.conversation
    w.conv_a2 = inbound(body="Another one", subject="second").message.conversation
    w.conv_b = inbound(inbox=w.inbox_b, source_id="sales@example.com", body="Quote?").message.conversation
    w.conv_api = inbound(inbox=w.inbox_api, source_id="api-1", body="From the API").message.conversation
    w.reply = do_send_agent_reply(actor=w.bob, conversation=w.conv_api, body="An answer")
    w.message = w.conv_api.messages.order_by("id").first()
    w.other_contact = Contact.objects.create(name="Other", email="other@example.com")
    w.attachment = Attachment.objects.create(message=w.message, filename="a.txt", size=5, content_type="text/plain",
                                             file=SimpleUploadedFile("a.txt", b"hello"))
    w.sms = Inbox.objects.create(name="SMS", kind=ChannelKind.SMS, secret="twilio-token",
                                 settings={"account_sid": "AC" + "1" * 32, "from_number": "+15550100000"})
    w.support.inboxes.add(w.sms)
    SmsConsent.objects.create(inbox=w.sms, phone="+14155550100", state=SmsConsent.State.OPTED_IN,
                              changed_at=timezone.now())
    w.chat = Inbox.objects.create(name="Chat", kind=ChannelKind.WEBCHAT)
    w.support.inboxes.add(w.chat)
    WidgetConfig.objects.create(inbox=w.chat, allowed_origins="https://shop.example", messages_per_minute=10_000,
                                dispositions=["resolved", "spam"])
    _, w.visitor_token = widget.do_start_visitor_session(inbox=w.chat, visitor_token=None,
                                                         info=widget.SessionInfo(page_url="https://shop.example/"))
    w.chat_message = widget.do_visitor_message(session=VisitorSession.objects.get(), body="Hi", client_id="c-1")
    w.chat_conv = w.chat_message.conversation
    w.canned = CannedMessage.objects.create(owner=w.alice, shortcut="hi", title="Hi", body="Hello {{contact.name}}")
    w.token, _ = do_create_api_token(user=w.alice, name="fuzz")
    w.segment = Segment.objects.create(name="VIP")
    MessageTemplate.objects.create(name="welcome", body="Welcome {{contact.name}}")
    Skill.objects.create(name="French")
    BusinessCalendar.objects.create(name="Office")
    SlaPolicy.objects.create(name="Default", targets={"first_response": {"normal": 60, "high": 30}})
    RoutingRule.objects.create(name="Rule", position=1, target="team", target_team=w.support)
    w.signed = attachment_url(w.attachment.pk).rstrip("/").split("/")[-1]
    return w


def _good(w) -> dict:
    """A valid value for each field name the views read (JSON types; forms send their text)."""
    return {
        "body": "Hello there", "status": "open", "priority": "high", "subject": "A subject", "tags": "billing,vip",
        "assignee": w.alice.pk, "team": w.support.pk, "note": "a note", "into": w.conv_a2.pk,
        "contact": w.other_contact.pk, "name": "Nina", "email": "nina@example.com", "phone": "+14155550100",
        "custom_attributes": '{"plan": "pro"}', "segments": w.segment.pk, "disposition": "resolved", "rating": 5,
        "comment": "Quick", "visitor_token": w.visitor_token, "conversation_id": w.chat_conv.pk,
        "page_url": "https://shop.example/", "page_title": "Shop", "referrer": "https://www.example/",
        "language": "en", "answers": {"name": "Nina"}, "inbox": w.sms.pk, "variables": "{}", "template": "welcome",
        "to": "+14155550100", "mode": "note", "typing": True, "delivery_status": "delivered", "direction": "outgoing",
        "private": False, "source_id": "cust-9", "provider_message_id": "p-9", "meta": {"a": 1},
        "idempotency_key": "k-9", "opted_in": True, "source": "api", "detail": "d", "assignee_id": w.alice.pk,
        "team_id": w.support.pk, "inbox_id": w.inbox_api.pk, "country": "US", "username": "alice",
        "password": "pw-alice", "old_password": "pw-alice", "new_password1": "n3w-Passw0rd!",
        "new_password2": "n3w-Passw0rd!", "client_id": "c-9", "failure_reason": "", "MessageSid": "SM" + "b" * 32,
        "From": "+14155550100", "To": "+15550100000", "Body": "Hi", "NumMedia": "0", "MessageStatus": "delivered",
        "ErrorCode": "30003", "canned": "hi", "shortcut": "hey", "title": "Hey", "user_id": "", "user_hash": "",
    }


# --- URL patterns and their fields -------------------------------------------------------------------------------


def all_patterns() -> list[tuple[str, URLPattern]]:
    """(route with its prefixes, pattern) for every pattern of the project's URLconf."""
    out = []

    def walk(patterns, prefix):
        for p in patterns:
            if isinstance(p, URLResolver):
                walk(p.url_patterns, prefix + str(p.pattern))
            else:
                out.append((prefix + str(p.pattern), p))

    walk(get_resolver().url_patterns, "")
    return out


PARAM = re.compile(r"<(?:\w+:)?(\w+)>|\(\?P<(\w+)>[^)]*\)")


def _admin_model(route: str):
    from django.apps import apps

    m = re.match(r"admin/(\w+)/(\w+)/", route)
    if not m:
        return None
    try:
        return apps.get_model(m.group(1), m.group(2))
    except LookupError:
        return None


def fills(route: str, w) -> list[dict]:
    """Values for the route's parameters: real objects' ids (one another team's), then ids past a bigint."""
    from django.contrib.contenttypes.models import ContentType

    names = [a or b for a, b in PARAM.findall(route)]
    if not names:
        return [{}]
    model = _admin_model(route)
    real = {"conversation_id": [w.conv_a.pk, w.conv_b.pk], "message_id": [w.message.pk],
            "contact_id": [w.conv_a.contact_id], "inbox_id": [w.inbox_api.pk, w.sms.pk],
            "attachment_id": [w.attachment.pk], "canned_id": [w.canned.pk], "token_id": [w.token.pk],
            "public_token": [w.chat.public_token, "x" * 300], "signed": [w.signed, "1:2:3"],
            "token": [w.sms.public_token], "app_label": ["conversations"], "url": ["nothing/here/"],
            "content_type_id": [ContentType.objects.get_for_model(w.conv_a).pk],
            "object_id": [(model.objects.order_by("pk").values_list("pk", flat=True).first() if model else None)
                          or w.conv_a.pk]}
    width = max(len(real.get(n, [1])) for n in names)
    out = [{n: real.get(n, [1])[min(i, len(real.get(n, [1])) - 1)] for n in names} for i in range(width)]
    for huge in HUGE_IDS:
        out.append({n: (huge if n not in ("app_label", "url") else real[n][0]) for n in names})
    return out


def build(route: str, values: dict) -> str:
    path = PARAM.sub(lambda m: quote(str(values[m.group(1) or m.group(2)]), safe="/:"), route)
    return "/" + path.lstrip("^").rstrip("$").replace("\\", "")


FIELD = re.compile(r"""(?:POST|GET|data|query_params|widget_data|FILES|params|\bp|\bv)\s*"""
                   r"""(?:\.get(?:list)?\(|\[)\s*["'](\w+)["']""")


def fields_of(callback) -> set[str]:
    """The field names a view reads: from its source (and its module's serializers it instantiates) or form."""
    view_class = getattr(callback, "view_class", None) or getattr(callback, "cls", None)
    target = view_class or inspect.unwrap(callback)
    try:
        source = inspect.getsource(target)
    except (TypeError, OSError):
        return set()
    module = inspect.getmodule(target)
    for helper in set(re.findall(r"\b(_\w+)\(request", source)):  # e.g. the API's _post_incoming(request, ...)
        if inspect.isfunction(getattr(module, helper, None)):
            source += inspect.getsource(getattr(module, helper))
    names = set(FIELD.findall(source))
    for serializer in set(re.findall(r"\b(\w+Input)\(", source)):
        names |= set(getattr(module, serializer)().fields)
    form_class = getattr(view_class, "form_class", None)
    if form_class is not None:
        names |= set(form_class.base_fields)
    if module.__name__ == "campaigns.views":
        names |= {"visitor_token", "conversation_id"}
    if module.__name__.startswith("django.contrib.admin"):  # the admin site's own views: login, password
        names |= {"username", "password", "old_password", "new_password1", "new_password2"}
    return names


# --- requests -----------------------------------------------------------------------------------------------------


def clients(w) -> dict[str, Client]:
    out = {"anon": Client(raise_request_exception=False)}
    for name in ("alice", "bob", "root"):
        out[name] = Client(raise_request_exception=False)
        out[name].force_login(getattr(w, name))
    return out


def _headers(path: str) -> dict:
    return {"HTTP_ORIGIN": "https://shop.example"} if path.startswith("/widget/") else {}


def _json_body(values: dict) -> str:
    """A JSON object whose values are raw JSON text."""
    return "{" + ", ".join(f"{json.dumps(k)}: {v}" for k, v in values.items()) + "}"


def _form(values: dict) -> dict:
    return {k: (json.dumps(v) if isinstance(v, (dict, list)) else str(v).lower() if isinstance(v, bool) else str(v))
            for k, v in values.items()}


def _twilio(path: str, data: dict, w) -> dict:
    if not path.startswith("/webhooks/twilio/"):
        return {}
    from twilio.request_validator import RequestValidator

    url = "https://support.example.com" + path
    return {"HTTP_X_TWILIO_SIGNATURE": RequestValidator(w.sms.secret).compute_signature(url, data)}


def fuzz_get(sweep: Sweep, client: Client, path: str, who: str, names: set[str], *, every: bool = True) -> None:
    query_names = sorted(set(QUERY_NAMES) | names)
    for label, value in QUERY_VALUES.items() if every else list(QUERY_VALUES.items())[:5]:
        query = "&".join(f"{n}={value.format(name=n)}" for n in query_names)
        sweep.send(client, "get", f"{path}?{query}", f"{who} query {label}", **_headers(path))
    for query in PAGING_QUERIES if every else ():
        sweep.send(client, "get", f"{path}?{query}", f"{who} paging", **_headers(path))


def fuzz_post(sweep: Sweep, client: Client, path: str, who: str, names: set[str], w, *, per_field: bool,
              reads_json: bool, methods=("post",)) -> None:
    good = _good(w)
    names = sorted(names) or ["body"]
    valid = {n: good.get(n, "x") for n in names}
    headers = _headers(path)
    for method in methods:
        # Form-encoded: every field bad at once, then one at a time.
        for label, value in FORM_VALUES.items() if per_field else [(k, FORM_VALUES[k]) for k in FORM_FIELD_VALUES]:
            data = {n: value for n in names}
            sweep.send(client, method, path, f"{who} form all={label}", data=urlencode(data),
                       content_type="application/x-www-form-urlencoded", **headers, **_twilio(path, data, w))
        if per_field:
            for n in names:
                for label in FORM_FIELD_VALUES:
                    data = {**_form(valid), n: FORM_VALUES[label]}
                    sweep.send(client, method, path, f"{who} form {n}={label}", data=urlencode(data),
                               content_type="application/x-www-form-urlencoded", **headers, **_twilio(path, data, w))
        # Multipart with a junk file in each file field.
        data = {**_form(valid), "file": SimpleUploadedFile("x.exe", b"MZ\x00\xff", "text/plain"),
                "files": SimpleUploadedFile("y.png", b"\x00" * 10, "image/png")}
        sweep.send(client, method, path, f"{who} multipart", data=data, **headers)
        # JSON: every field bad at once, then one at a time; then bodies that are not JSON objects.
        for label, value in JSON_VALUES.items() if reads_json and per_field else list(JSON_VALUES.items())[:2]:
            sweep.send(client, method, path, f"{who} json all={label}", data=_json_body({n: value for n in names}),
                       content_type="application/json", **headers)
        if per_field and reads_json:
            valid_json = {n: json.dumps(v) for n, v in valid.items()}
            for n in names:
                for label in JSON_FIELD_VALUES:
                    value = JSON_VALUES[label]
                    sweep.send(client, method, path, f"{who} json {n}={label}",
                               data=_json_body({**valid_json, n: value}), content_type="application/json", **headers)
        if not per_field:
            continue
        for label in ("list", "null", "huge", "deep"):
            sweep.send(client, method, path, f"{who} json body={label}", data=JSON_VALUES[label],
                       content_type="application/json", **headers)
        for content_type, body in RAW_BODIES:
            sweep.send(client, method, path, f"{who} raw {content_type} {body[:20]!r}", data=body,
                       content_type=content_type, **headers)


def _is_api(route: str) -> bool:
    return route.startswith("api/v1/") and "schema" not in route


def _methods(callback) -> tuple[str, ...]:
    """The write methods a view answers: an API view's own, else POST."""
    view_class = getattr(callback, "cls", None)
    if view_class is None:
        return ("post",)
    return tuple(m for m in ("post", "patch", "put", "delete") if hasattr(view_class, m)) or ("post",)


@pytest.fixture(autouse=True)
def _quiet():
    """The sweep's 4xx (and any 5xx: the test reports them) are not logged."""
    logger = logging.getLogger("django.request")
    level = logger.level
    logger.setLevel(logging.CRITICAL)
    yield
    logger.setLevel(level)


# --- the sweep ----------------------------------------------------------------------------------------------------


def test_every_url_pattern_answers_bad_input_without_a_5xx(seeded):
    """Everything but the admin's model pages (next test): console, API, widget, webhooks, accounts, demo."""
    w, sweep = seeded, Sweep()
    users = clients(w)
    patterns = [(route, p) for route, p in all_patterns() if not _admin_model(route)]
    # Writes that end things (merges, ending a chat) last, so the rest see live conversations.
    patterns.sort(key=lambda rp: ("logout" in rp[0],
                                  any(x in rp[0] for x in ("merge", "end-chat", "revoke", "delete"))))
    for route, pattern in patterns:
        names = fields_of(pattern.callback)
        users["anon"].cookies.clear()  # the login form's valid fields signed the visitor in
        for i, values in enumerate(fills(route, w)):
            path = build(route, values)
            real = i == 0
            for who, client in users.items():
                if route.startswith(("widget/", "webhooks/")) and who != "anon":
                    continue  # no cookies there: the user makes no difference
                sweep.patterns.add(route)
                plain = sweep.send(client, "get", path, f"{who} plain", **_headers(path))
                if not real:
                    sweep.send(client, "post", path, f"{who} huge id", data={"body": "x"}, **_headers(path))
                    continue
                if plain != 405:
                    fuzz_get(sweep, client, path, who, names, every=who in ("alice", "bob"))
                # One field at a time as the agent (and as the visitor where there is no login), every field at
                # once as everyone.
                per_field = (who == "alice"
                             or who == "anon" and route.startswith(("widget/", "webhooks/", "accounts/login")))
                fuzz_post(sweep, client, path, who, names, w, per_field=per_field, methods=_methods(pattern.callback),
                          reads_json=_is_api(route) or route.startswith("widget/"))
    assert sweep.patterns == {route for route, _ in patterns}
    sweep.report(f"{len(patterns)} URL patterns")


# --- the admin's model pages ------------------------------------------------------------------------------------


class _FormFields(HTMLParser):
    """The fields a browser would post from the page's form `form_id` (inputs, selects, textareas)."""

    def __init__(self, form_id: str) -> None:
        super().__init__()
        self.form_id, self.inside, self.data = form_id, False, []
        self.select: tuple[str, bool] | None = None
        self.options: list[tuple[str, bool]] = []
        self.textarea: str | None = None
        self.text = ""

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "form":
            self.inside = a.get("id") == self.form_id
        if not self.inside:
            return
        name = a.get("name")
        if tag == "input" and name and a.get("type") not in ("submit", "button", "file", "image", "reset"):
            if a.get("type") in ("checkbox", "radio"):
                if "checked" in a:
                    self.data.append((name, a.get("value") or "on"))
            else:
                self.data.append((name, a.get("value") or ""))
        elif tag == "select" and name:
            self.select, self.options = (name, "multiple" in a), []
        elif tag == "option" and self.select:
            self.options.append((a.get("value") or "", "selected" in a))
        elif tag == "textarea" and name:
            self.textarea, self.text = name, ""

    def handle_data(self, data):
        if self.textarea:
            self.text += data

    def handle_endtag(self, tag):
        if tag == "form":
            self.inside = False
        elif tag == "select" and self.select:
            name, multiple = self.select
            chosen = [v for v, selected in self.options if selected]
            if not chosen and not multiple and self.options:
                chosen = [self.options[0][0]]
            self.data.extend((name, v) for v in chosen)
            self.select = None
        elif tag == "textarea" and self.textarea:
            self.data.append((self.textarea, self.text.removeprefix("\n")))
            self.textarea = None


def admin_form_data(html: str, model) -> list[tuple[str, str]]:
    parser = _FormFields(f"{model._meta.model_name}_form")
    parser.feed(html)
    return [(k, v) for k, v in parser.data if k != "csrfmiddlewaretoken"]


# What a JSON field of an admin form is given, besides the text values: the wrong shapes and the unparseable.
ADMIN_JSON_VALUES = ["", "null", RAW_HUGER, "1e400", "[[[[1]]]]", "{}", '"text"', '{"a": "\\u0000"}', '["\\ud800"]',
                     "[" * 3000 + "]" * 3000]


def _admin_route_kind(route: str) -> str:
    tail = re.sub(r"^admin/\w+/\w+/", "", route)
    return tail.replace("<path:object_id>", "<id>")


def test_every_admin_page_answers_bad_input_without_a_5xx(seeded):
    """Every model page of the admin: as a superuser, each field of one form page per model in turn (JSON fields
    also with null, 5,000-digit numbers and nested lists), every field at once, and the change lists' query
    parameters and actions; as a supervisor every page with every field bad at once; as an agent and a visitor
    (whom the admin turns away) the change lists and add pages."""
    from django.contrib import admin
    from django.db import models

    w, sweep = seeded, Sweep()
    users = clients(w)
    patterns = [(route, p) for route, p in all_patterns() if _admin_model(route)]
    # Deleting comes last (an admin's delete confirmation deletes on any POST), the models' own order otherwise.
    patterns.sort(key=lambda rp: ("delete" in rp[0], rp[0].endswith("/add/")))
    fuzzed_forms: set = set()
    for route, _pattern in patterns:
        model = _admin_model(route)
        kind = _admin_route_kind(route)
        json_fields = {f.name for f in model._meta.fields if isinstance(f, models.JSONField)}
        model_admin = admin.site._registry.get(model)
        filters = [f"{f}__exact" for f in getattr(model_admin, "list_filter", ()) if isinstance(f, str)]
        sweep.patterns.add(route)
        for i, values in enumerate(fills(route, w)[:2]):  # the real object, then an id past a bigint
            path = build(route, values)
            for who in ("root", "bob", "alice", "anon"):
                client = users[who]
                if (i > 0 and (who != "root" or kind not in ("<id>/change/", "<id>/delete/"))
                        or who in ("alice", "anon") and kind not in ("", "add/")):
                    continue
                status = sweep.send(client, "get", path, f"{who} plain")
                if i > 0:
                    sweep.send(client, "post", path, f"{who} huge id", data={"name": "x"})
                    continue
                if kind == "":  # the change list: its query parameters and its actions
                    query_names = {"q", "o", "p", "all", "e", "_to_field", "_popup", *filters,
                                   *(f"{f.name}__exact" for f in model._meta.fields[:6])}
                    if who == "root":
                        fuzz_get(sweep, client, path, who, query_names)
                    for label in ("nul", "huge", "long") if who == "root" else ("nul",):
                        value = FORM_VALUES[label]
                        data = {"action": value, "_selected_action": value, "index": value, "select_across": value}
                        sweep.send(client, "post", path, f"{who} action {label}", data=data)
                    continue
                form = []
                if status == 200 and who == "root" and not kind.endswith(("delete/", "history/")):
                    form = admin_form_data(sweep.last.content.decode(), model)
                names = sorted({k for k, _ in form}) or ["name"]
                if who == "bob" and kind not in ("add/", "<id>/change/"):
                    continue
                for label in ("nul", "huge", "long") if who == "root" else ("nul",):
                    sweep.send(client, "post", path, f"{who} all={label}",
                               data={n: FORM_VALUES[label] for n in names})
                if not form or model in fuzzed_forms:
                    continue
                fuzzed_forms.add(model)  # one form page per model, field by field: the change page, else add
                valid: dict[str, list[str]] = {}
                for k, v in form:
                    valid.setdefault(k, []).append(v)
                sweep.send(client, "post", path, f"{who} unchanged", data=valid)
                for n in names:
                    if re.match(r"\w+-(\d+|__prefix__)-", n) or n.startswith("initial-"):
                        continue  # the inlines' forms: every field at once above
                    bad = [FORM_VALUES["nul"]]
                    if all(v.isdigit() for v in valid[n]):  # a number or a related object's id
                        bad.append(FORM_VALUES["huge"])
                    if n in json_fields:
                        bad += ADMIN_JSON_VALUES
                    for value in bad:
                        sweep.send(client, "post", path, f"{who} {n}={value[:12]!r}", data={**valid, n: value})
    # The admin's autocomplete (a pattern of the admin site, swept above with junk names): real names, bad terms.
    for registered, registered_admin in admin.site._registry.items():
        for name in registered_admin.autocomplete_fields:
            base = (f"/admin/autocomplete/?app_label={registered._meta.app_label}"
                    f"&model_name={registered._meta.model_name}&field_name={name}")
            for who in ("root", "bob"):
                for label, value in QUERY_VALUES.items():
                    sweep.send(users[who], "get", f"{base}&term={value}&page={value}", f"{who} autocomplete {label}")
    assert sweep.patterns == {route for route, _ in patterns}
    sweep.report(f"{len(patterns)} admin URL patterns")


# --- the websockets -------------------------------------------------------------------------------------------------

SOCKET_FIELDS = ["type", "body", "client_id", "typing", "up_to", "conversation_id", "status"]
SOCKET_TEXTS = ["not json", "[" * 3000 + "]" * 3000, "[1, 2]", "null", '"text"', RAW_HUGER, "x" * 70_000,
                '{"type": "message", "body": "\\ud800", "client_id": "\\udfff"}', '{"type": "\\u0000"}']


async def _survives(comm, frame: str | bytes, what: str, failures: list[str]) -> None:
    """Send `frame`, then a heartbeat: the socket must answer it (an error frame first is fine), never close."""
    if isinstance(frame, bytes):
        await comm.send_to(bytes_data=frame)
    else:
        await comm.send_to(text_data=frame)
    await comm.send_json_to({"type": "heartbeat"})
    for _ in range(20):
        try:
            output = await comm.receive_output(timeout=5)
        except Exception as exc:  # the consumer raised: the socket would close with 1011
            failures.append(f"{what}: {type(exc).__name__}: {str(exc)[:150]}")
            raise
        if output["type"] == "websocket.close":
            failures.append(f"{what}: closed {output.get('code')}")
            raise AssertionError(failures)
        if '"heartbeat_ack"' in output.get("text", ""):
            return
    failures.append(f"{what}: no heartbeat_ack")


@pytest.mark.django_db(transaction=True)
async def test_the_sockets_answer_bad_frames_with_error_frames(world):
    """Every frame type of the widget's and the console's sockets, each field set to each bad JSON value, and
    frames that are not JSON objects: an error frame (or nothing), never a crash (a 1011 close)."""
    from channels.db import database_sync_to_async
    from channels.testing import WebsocketCommunicator

    from omnichannel.asgi import application

    def setup():
        from campaigns import actions
        from campaigns.models import WidgetConfig
        from conversations.models import ChannelKind, Inbox

        chat = Inbox.objects.create(name="Chat", kind=ChannelKind.WEBCHAT)
        world.support.inboxes.add(chat)
        WidgetConfig.objects.create(inbox=chat, allowed_origins="https://shop.example", messages_per_minute=10_000)
        token = actions.do_start_visitor_session(inbox=chat, visitor_token=None,
                                                 info=actions.SessionInfo(page_url="https://shop.example/"))[1]
        client = Client()
        client.force_login(world.alice)
        return chat, token, f"sessionid={client.cookies['sessionid'].value}".encode()

    chat, token, cookie = await database_sync_to_async(setup)()
    sockets = {
        "widget": (f"/ws/widget/{chat.public_token}/?token={token}&cursor={RAW_HUGE}",
                   [(b"origin", b"https://shop.example")], ["message", "typing", "read", "end", "queue"]),
        "console": ("/ws/console/?cursors=%7B%22x%22%3A%201e400%7D", [(b"origin", b"http://testserver"),
                                                                       (b"host", b"testserver"), (b"cookie", cookie)],
                    ["status", "typing", "read"]),
    }
    failures: list[str] = []
    frames = 0
    for name, (path, headers, kinds) in sockets.items():
        comm = WebsocketCommunicator(application, path, headers=headers)
        connected, code = await comm.connect(timeout=5)
        assert connected, (name, code)
        assert (await comm.receive_json_from(timeout=5))["type"] == "hello"
        good = {"type": "message", "body": "hi", "client_id": "c-1", "typing": True, "up_to": 1,
                "conversation_id": 1, "status": "online"}
        for kind in kinds:
            for fname in SOCKET_FIELDS:
                for label, value in JSON_VALUES.items():
                    if label in ("long", "deep") and fname != "body":
                        continue  # one of each per frame type is enough
                    fields = {**{k: json.dumps(v) for k, v in good.items()}, "type": json.dumps(kind), fname: value}
                    await _survives(comm, _json_body(fields), f"{name} {kind} {fname}={label}", failures)
                    frames += 1
        for text in SOCKET_TEXTS:
            await _survives(comm, text, f"{name} text {text[:20]!r}", failures)
            frames += 1
        await _survives(comm, b"\xff\xfe\x00", f"{name} bytes", failures)
        frames += 1
        await comm.disconnect()
    print(f"\nfuzz sockets: {frames} frames, {len(failures)} crashes")
    assert not failures, failures
