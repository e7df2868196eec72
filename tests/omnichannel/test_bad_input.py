"""Bad input anywhere a browser or an integration can send it gets a clear 4xx (or the form again with an
error), never a 500: every console POST, the console's GET filters, the REST API and the widget's endpoints,
each fed junk values, wrong types, unknown ids, NUL bytes and oversized bodies."""

from __future__ import annotations

import json

import pytest
from django.test import Client

pytestmark = pytest.mark.django_db

CONSOLE_POSTS = ["reply", "assign", "status", "priority", "subject", "tags", "merge", "merge-contact", "contact",
                 "end-chat", "follow-up", "wrap-up", "accept"]
JUNK_FORMS = [
    {},
    {"body": "", "kind": "bogus"},
    {"body": "x" * 300_000},
    {"body": "nul \x00 byte", "kind": "note"},
    {"status": "bogus", "priority": "9999", "subject": "s" * 5000},
    {"assignee": "abc", "team": "-1"},
    {"assignee": "999999", "team": "999999"},
    {"tags": "\x00,,," + ",".join(f"t{i}" for i in range(500))},
    {"into": "abc", "other": "999999", "contact": "-5"},
    {"custom_attributes": "{not json", "email": "not-an-email", "phone": "+" + "9" * 60, "name": "n" * 1000},
    {"disposition": "x" * 500, "note": "\x00", "rating": "abc", "canned": "#" * 300},
    {"custom_attributes": "[" * 5000 + "]" * 5000, "variables": "[" * 5000 + "]" * 5000},
]
DEEP = "[" * 5000 + "]" * 5000  # nested past the parser's recursion limit
JUNK_JSON = [
    "not json at all",
    DEEP,
    '{"visitor_token": 123, "language": ["en"], "user_id": {"a": 1}, "user_hash": [1], "answers": 5}',
    '{"visitor_token": ["x"], "language": 7, "page_url": {"a": 1}}',
    "[]",
    "null",
    '{"body": null}',
    '{"body": 12, "source_id": ["a"], "contact": "x"}',
    '{"body": "' + "y" * 300_000 + '"}',
    '{"status": "bogus", "priority": {"a": 1}, "assignee_id": "abc", "tags": "notalist"}',
    '{"source_id": "\\u0000", "body": "hi", "attachments": [{"url": 5}], "meta": "str"}',
]


def no_500(response, what):
    assert response.status_code < 500, f"{what} -> {response.status_code}: {response.content[:300]!r}"


@pytest.fixture(autouse=True)
def _quiet_tasks(no_background_tasks):
    yield


@pytest.fixture
def conversation(world, inbound):
    return inbound(body="Where is my order?").message.conversation


@pytest.mark.parametrize("who", ["alice", "charlie", "bob", None])
def test_console_posts_never_500(world, conversation, who):
    client = Client(raise_request_exception=False)
    if who:
        client.force_login(getattr(world, who))
    for cid in (conversation.id, 999_999):
        for action in CONSOLE_POSTS:
            for form in JUNK_FORMS:
                no_500(client.post(f"/console/c/{cid}/{action}/", form), f"{who} POST {action} {list(form)}")
    for form in JUNK_FORMS + [{"status": "online"}, {"status": "bogus"}, {"to": "nonsense", "body": "x"}]:
        no_500(client.post("/console/presence/", form), f"{who} presence {form}")
        no_500(client.post("/console/sms/new/", form), f"{who} new sms {list(form)}")


@pytest.mark.parametrize("query", [
    "view=bogus&status=bogus&priority=abc&channel=zzz&tag=%00&segment=abc&sort=nope",
    "view=mine&status=open&inbox=abc&segment=999999&tag=",
    "q=" + "a" * 5000, "q=%00%01", "q=%27%22%3B--", "before=abc&after=-1&page=abc&cursor=%%%",
    "status=open&status=closed&priority=1&priority=x",
])
def test_console_gets_never_500(world, conversation, query):
    client = Client(raise_request_exception=False)
    client.force_login(world.alice)
    for path in ("/console/", "/console/rows/", "/console/canned/", f"/console/c/{conversation.id}/",
                 f"/console/c/{conversation.id}/messages/", f"/console/c/{conversation.id}/panel/",
                 f"/console/c/{conversation.id}/assignees/", "/console/c/999999/", "/console/attachments/999999/",
                 "/reports/sla/", "/reports/routing/"):
        no_500(client.get(f"{path}?{query}"), f"GET {path}?{query[:60]}")


def test_rest_api_never_500(world, conversation, api_client_for):
    from rest_framework.test import APIClient

    world.inbox_api.settings = {**world.inbox_api.settings}
    world.inbox_api.save()
    paths = ["/api/v1/contacts/", f"/api/v1/contacts/{conversation.contact_id}/", "/api/v1/contacts/999999/",
             "/api/v1/conversations/", f"/api/v1/conversations/{conversation.id}/", "/api/v1/conversations/999999/",
             f"/api/v1/conversations/{conversation.id}/messages/", "/api/v1/conversations/999999/messages/",
             f"/api/v1/conversations/{conversation.id}/messages/999999/",
             f"/api/v1/conversations/{conversation.id}/typing/",
             f"/api/v1/inboxes/{world.inbox_api.id}/incoming/", "/api/v1/inboxes/999999/incoming/",
             f"/api/v1/inboxes/{world.inbox_a.id}/sms/messages/", f"/api/v1/inboxes/{world.inbox_a.id}/sms/consent/",
             "/api/v1/attachments/999999"]
    clients = {"alice": api_client_for(world.alice), "bob": api_client_for(world.bob), "anon": APIClient()}
    bad_token = APIClient()
    bad_token.credentials(HTTP_AUTHORIZATION="Token " + "0" * 40)
    clients["bad-token"] = bad_token
    for name, client in clients.items():
        for path in paths:
            no_500(client.get(path + "?limit=abc&offset=-1&status=bogus&q=%00&updated_since=yesterday"),
                   f"{name} GET {path}")
            for body in JUNK_JSON:
                for method in ("post", "patch", "put"):
                    response = getattr(client, method)(path, body, content_type="application/json")
                    no_500(response, f"{name} {method.upper()} {path} {body[:40]}")
            no_500(client.post(path, "body=x", content_type="text/plain"), f"{name} POST text/plain {path}")
            no_500(client.delete(path), f"{name} DELETE {path}")


def test_widget_endpoints_never_500(world):
    from conversations.models import ChannelKind, Inbox

    inbox = Inbox.objects.create(name="Chat", kind=ChannelKind.WEBCHAT,
                                 settings={"allowed_origins": ["https://shop.example"]})
    token = inbox.public_token if hasattr(inbox, "public_token") else inbox.settings.get("public_token", "x")
    client = Client(raise_request_exception=False)
    origin = {"HTTP_ORIGIN": "https://shop.example"}
    for tok in (token, "forged-token", "%00"):
        for ep in ("session", "prechat", "upload", "offline", "survey", "transcript"):
            path = f"/widget/api/{tok}/{ep}/"
            for body in JUNK_JSON:
                no_500(client.post(path, body, content_type="application/json", **origin), f"POST {path} {body[:40]}")
            no_500(client.post(path, {"file": "notafile", "visitor_token": "x" * 500}, **origin), f"form {path}")
            no_500(client.get(path, **origin), f"GET {path}")
        no_500(client.get(f"/widget/popup/{tok}/"), "popup")
    for signed in ("abc", "1:2:3", "x" * 400):
        no_500(client.get(f"/widget/files/{signed}/"), f"file {signed[:20]}")
    no_500(client.post("/demo/messages/", json.dumps({"body": None}), content_type="application/json"), "demo")


# --- issue 14's named cases -------------------------------------------------------------------------------------


@pytest.fixture
def chat(world):
    from campaigns.models import WidgetConfig
    from conversations.models import ChannelKind, Inbox

    inbox = Inbox.objects.create(name="Chat", kind=ChannelKind.WEBCHAT)
    world.support.inboxes.add(inbox)
    WidgetConfig.objects.create(inbox=inbox, allowed_origins="https://shop.example")
    return inbox


def _widget(client, chat, endpoint, data):
    return client.post(f"/widget/api/{chat.public_token}/{endpoint}/", json.dumps(data) if isinstance(data, dict)
                       else data, content_type="application/json", HTTP_ORIGIN="https://shop.example")


@pytest.mark.parametrize("field", ["page_title", "page_url", "referrer", "name", "email", "language"])
def test_a_nul_in_the_widget_session_is_stripped(chat, field):
    from campaigns.models import VisitorSession

    client = Client(raise_request_exception=False)
    data = {"page_url": "https://shop.example/a", "page_title": "Pricing", "referrer": "https://www.example/",
            "name": "Vera", "email": "vera@example.com", "language": "en-US"}
    data[field] = data[field][:3] + "\x00" + data[field][3:]
    r = _widget(client, chat, "session", data)
    assert r.status_code == 200, r.content[:300]
    session = VisitorSession.objects.select_related("contact").get()
    stored = {"page_title": session.page_title, "page_url": session.page_url, "referrer": session.referrer,
              "name": session.contact.name, "email": session.contact.email, "language": session.browser_language}
    assert stored[field] == data[field].replace("\x00", "")


def _visitor(client, chat):
    r = _widget(client, chat, "session", {"page_url": "https://shop.example/"})
    assert r.status_code == 200
    return r.json()["visitor_token"]


def test_a_nul_in_the_offline_form_is_stripped(chat):
    from conversations.models import Conversation

    client = Client(raise_request_exception=False)
    token = _visitor(client, chat)
    r = _widget(client, chat, "offline", {"visitor_token": token, "name": "Ol\x00ga", "email": "olga@example.com",
                                          "body": "Call me \x00back"})
    assert r.status_code == 201, r.content[:300]
    conversation = Conversation.objects.select_related("contact").get()
    assert conversation.contact.name == "Olga" and conversation.subject == "Offline message from Olga"
    # An email address with a NUL is not one: the form's error, not a 500.
    r = _widget(client, chat, "offline", {"visitor_token": token, "name": "Olga", "email": "olga@exa\x00mple.com",
                                          "body": "hi"})
    assert r.status_code == 400 and r.json()["field"] == "email"


@pytest.mark.parametrize("rating", ["1e400", "-1e400", "NaN", "1" + "0" * 5000, "4.5", "true", "[5]", '"\\u0000"'])
def test_a_survey_rating_out_of_range_is_a_400(chat, rating):
    from campaigns import actions
    from campaigns.models import VisitorSession

    client = Client(raise_request_exception=False)
    token = _visitor(client, chat)
    message = actions.do_visitor_message(session=VisitorSession.objects.get(), body="Hello", client_id="c-1")
    actions.do_end_chat(conversation=message.conversation, by="visitor")
    body = f'{{"visitor_token": "{token}", "conversation_id": {message.conversation_id}, "rating": {rating}}}'
    r = _widget(client, chat, "survey", body)
    assert r.status_code == 400, r.content[:300]
    assert "rating" in r.json().get("field", "") or "JSON" in r.json()["error"]
    # A NUL in the comment is stripped.
    r = _widget(client, chat, "survey", {"visitor_token": token, "conversation_id": message.conversation_id,
                                         "rating": 4, "comment": "fa\x00st"})
    assert r.status_code == 200 and message.conversation.survey.comment == "fast"


def test_a_nul_in_console_tags_subject_and_the_new_sms_phone_is_a_400(world, conversation):
    from conversations.models import ChannelKind, Inbox

    sms = Inbox.objects.create(name="SMS", kind=ChannelKind.SMS)
    world.support.inboxes.add(sms)
    client = Client(raise_request_exception=False)
    client.force_login(world.alice)
    json_accept = {"HTTP_ACCEPT": "application/json"}
    for form in ({"tags": "vip,\x00"}, {"tags": "v\x00ip"}):
        r = client.post(f"/console/c/{conversation.id}/tags/", form, **json_accept)
        assert r.status_code == 400 and "NUL" in r.json()["error"], r.content[:300]
    r = client.post(f"/console/c/{conversation.id}/subject/", {"subject": "Re\x00fund"}, **json_accept)
    assert r.status_code == 400 and "NUL" in r.json()["error"], r.content[:300]
    for form in ({"phone": "+1415\x005550100"}, {"phone": "+14155550100", "template": "t\x00"}):
        r = client.post("/console/sms/new/", {"inbox": sms.id, "body": "hi", **form}, **json_accept)
        assert r.status_code == 400, r.content[:300]
    conversation.refresh_from_db()
    assert conversation.subject != "Refund" and not conversation.tags.exists()


@pytest.mark.parametrize("page", ["99999999999999999999999", "9223372036854775807", "-1", "1e400", "%C2%B2"])
def test_a_huge_page_number_is_not_a_500(world, conversation, page):
    client = Client(raise_request_exception=False)
    client.force_login(world.bob)
    for path in ("/console/", f"/console/c/{conversation.id}/"):
        r = client.get(f"{path}?page={page}")
        assert r.status_code in (200, 400), (path, r.status_code, r.content[:300])
