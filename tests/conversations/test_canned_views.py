"""Agents manage their own canned messages in the console; the composer offers them (a personal shortcut
shadows the shared one); nobody touches another agent's."""

from __future__ import annotations

import pytest
from django.test import Client

from conversations.models import CannedMessage

pytestmark = pytest.mark.django_db


def test_agent_adds_replaces_and_deletes_personal_canned(world, inbound):
    CannedMessage.objects.create(shortcut="hello", body="Hello from the team")
    alice = Client()
    alice.force_login(world.alice)
    page = alice.get("/console/canned/mine/")
    assert page.status_code == 200 and b"None yet." in page.content and b"#hello" in page.content
    assert b"/console/canned/mine/" in alice.get("/console/").content  # linked from the console
    r = alice.post("/console/canned/mine/", {"shortcut": "hello", "title": "Mine",
                                             "body": "Hi {{contact.first_name}}, <b>Alice</b> here"})
    assert r.status_code == 302
    conversation = inbound(contact_name="Dana Doe").message.conversation
    items = alice.get(f"/console/canned/?q=hel&conversation={conversation.id}").json()["items"]
    assert items[0] == {"shortcut": "hello", "title": "Mine", "personal": True,
                        "body": "Hi Dana, <b>Alice</b> here"}  # JSON: the composer inserts it as text
    page = alice.get("/console/canned/mine/")
    assert b"&lt;b&gt;Alice&lt;/b&gt;" in page.content and b"<b>Alice</b>" not in page.content
    r = alice.post("/console/canned/mine/", {"shortcut": "hello", "title": "Mine", "body": "Replaced"})
    assert CannedMessage.objects.get(owner=world.alice).body == "Replaced"
    for bad, field in (({"shortcut": "two words", "body": "x"}, b"one word"), ({"shortcut": "ok", "body": " "},
                                                                                b"Write the message")):
        r = alice.post("/console/canned/mine/", bad)
        assert r.status_code == 400 and field in r.content
    mine = CannedMessage.objects.get(owner=world.alice)
    charlie = Client()
    charlie.force_login(world.charlie)
    assert charlie.post(f"/console/canned/mine/{mine.pk}/delete/").status_code == 404
    assert charlie.get("/console/canned/?q=hello").json()["items"][0]["body"] == "Hello from the team"
    assert alice.post(f"/console/canned/mine/{mine.pk}/delete/").status_code == 302
    assert not CannedMessage.objects.filter(owner=world.alice).exists()
    assert Client().get("/console/canned/mine/").status_code == 302  # login first
