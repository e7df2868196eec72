"""REST API: the API channel, permissions for the personas, and bad input -> clear 4xx (never 500)."""

from __future__ import annotations

import pytest
from django.test import Client

from conversations.models import Conversation, Message

pytestmark = pytest.mark.django_db


@pytest.fixture
def alice_api(world, api_client_for):
    return api_client_for(world.alice)


def _incoming(client, inbox, **payload):
    body = {"source_id": "cust-1", "body": "Hello from the shop", **payload}
    return client.post(f"/api/v1/inboxes/{inbox.id}/incoming/", body, format="json")


def test_integration_posts_customer_message_once(world, alice_api):
    r = _incoming(alice_api, world.inbox_api, provider_message_id="ext-1", contact={"name": "Zoe"})
    assert r.status_code == 201, r.content
    assert r.json()["duplicate"] is False
    again = _incoming(alice_api, world.inbox_api, provider_message_id="ext-1", contact={"name": "Zoe"})
    assert again.status_code == 200 and again.json()["duplicate"] is True
    assert Message.objects.count() == 1
    conv = Conversation.objects.get()
    assert conv.contact.name == "Zoe" and conv.inbox == world.inbox_api


def test_agent_reply_note_and_listing(world, alice_api):
    conv_id = _incoming(alice_api, world.inbox_api).json()["conversation_id"]
    r = alice_api.post(f"/api/v1/conversations/{conv_id}/messages/", {"body": "Hi! Checking."}, format="json")
    assert r.status_code == 201 and r.json()["delivery_status"] == "queued"
    r = alice_api.post(f"/api/v1/conversations/{conv_id}/messages/", {"body": "note", "private": True},
                       format="json")
    assert r.status_code == 201 and r.json()["private"] is True
    r = alice_api.post(f"/api/v1/conversations/{conv_id}/messages/",
                       {"body": "customer again", "direction": "incoming"}, format="json")
    assert r.status_code == 201
    listing = alice_api.get(f"/api/v1/conversations/{conv_id}/messages/").json()
    assert [m["body"] for m in listing["results"]] == ["Hello from the shop", "Hi! Checking.", "note",
                                                       "customer again"]


def test_update_conversation_and_delivery_status(world, alice_api):
    conv_id = _incoming(alice_api, world.inbox_api).json()["conversation_id"]
    r = alice_api.patch(f"/api/v1/conversations/{conv_id}/",
                        {"status": "pending", "priority": "urgent", "tags": ["billing"], "assignee_id": world.alice.id},
                        format="json")
    assert r.status_code == 200, r.content
    data = r.json()
    assert (data["status"], data["priority"], data["tags"], data["assignee_id"]) == (
        "pending", "urgent", ["billing"], world.alice.id)
    # A transfer with a note for the next agent (an internal note); a note alone is refused.
    r = alice_api.patch(f"/api/v1/conversations/{conv_id}/", {"assignee_id": world.bob.id, "note": "VIP, careful"},
                        format="json")
    assert r.status_code == 200 and r.json()["assignee_id"] == world.bob.id
    assert Message.objects.filter(conversation_id=conv_id, kind="note", body="VIP, careful").exists()
    r = alice_api.patch(f"/api/v1/conversations/{conv_id}/", {"note": "alone"}, format="json")
    assert r.status_code == 400 and r.json()["field"] == "note"
    msg = alice_api.post(f"/api/v1/conversations/{conv_id}/messages/", {"body": "x"}, format="json").json()
    r = alice_api.patch(f"/api/v1/conversations/{conv_id}/messages/{msg['id']}/", {"delivery_status": "delivered"},
                        format="json")
    assert r.status_code == 200 and r.json()["delivery_status"] == "delivered"


def test_contacts_create_update_list(world, alice_api):
    r = alice_api.post("/api/v1/contacts/", {"name": "Kim", "email": "kim@example.com",
                                             "custom_attributes": {"tier": 3}}, format="json")
    assert r.status_code == 201
    cid = r.json()["id"]
    # A contact with no conversation in alice's inboxes is invisible to her, but supervisors see it.
    assert alice_api.get(f"/api/v1/contacts/{cid}/").status_code == 404
    _incoming(alice_api, world.inbox_api, source_id="kim-1")
    r = alice_api.patch(f"/api/v1/contacts/{cid}/", {"name": "Kim Park"}, format="json")
    assert r.status_code == 404


@pytest.mark.parametrize("payload,field", [
    ({"body": "hi"}, "source_id"),
    ({"source_id": "", "body": "hi"}, "source_id"),
    ({"source_id": "c", "body": "   "}, None),
    ({"source_id": "c", "body": {"nested": 1}}, "body"),
    ({"source_id": "c" * 300, "body": "hi"}, "source_id"),
    ({"source_id": "c", "body": "hi", "conversation_id": "abc"}, "conversation_id"),
    ({"source_id": "c", "body": "hi", "contact": {"email": "not-an-email"}}, "contact"),
])
def test_malformed_inbound_payloads_get_400_with_a_message(world, alice_api, payload, field):
    r = alice_api.post(f"/api/v1/inboxes/{world.inbox_api.id}/incoming/", payload, format="json")
    assert r.status_code == 400, r.content
    assert r.json()["error"]
    if field:
        assert field in str(r.json())
    assert Message.objects.count() == 0


def test_oversized_body(world, alice_api, settings):
    r = _incoming(alice_api, world.inbox_api, body="x" * (settings.MAX_MESSAGE_LENGTH + 1))
    assert r.status_code == 400 and "longer than" in r.json()["error"]
    huge = "x" * (settings.DATA_UPLOAD_MAX_MEMORY_SIZE + 10)
    r = alice_api.post(f"/api/v1/inboxes/{world.inbox_api.id}/incoming/", {"source_id": "c", "body": huge},
                       format="json")
    assert r.status_code in (400, 413)
    assert "error" in r.json()


def test_invalid_json_and_wrong_content(world, alice_api):
    r = alice_api.generic("POST", f"/api/v1/inboxes/{world.inbox_api.id}/incoming/", "{not json",
                          content_type="application/json")
    assert r.status_code == 400 and r.json()["error"]
    r = alice_api.generic("POST", f"/api/v1/inboxes/{world.inbox_api.id}/incoming/", "[1,2]",
                          content_type="application/json")
    assert r.status_code == 400


def test_unknown_ids_and_other_teams_get_404(world, alice_api, api_client_for, inbound):
    assert alice_api.get("/api/v1/conversations/999999/").status_code == 404
    assert alice_api.post("/api/v1/inboxes/999999/incoming/", {"source_id": "c", "body": "x"},
                          format="json").status_code == 404
    other = inbound(inbox=world.inbox_b).message.conversation
    assert alice_api.get(f"/api/v1/conversations/{other.id}/").status_code == 404
    assert alice_api.post(f"/api/v1/conversations/{other.id}/messages/", {"body": "x"},
                          format="json").status_code == 404
    assert alice_api.post(f"/api/v1/inboxes/{world.inbox_b.id}/incoming/", {"source_id": "c", "body": "x"},
                          format="json").status_code == 404
    assert api_client_for(world.bob).get(f"/api/v1/conversations/{other.id}/").status_code == 200


def test_non_api_inbox_refuses_incoming(world, alice_api):
    r = alice_api.post(f"/api/v1/inboxes/{world.inbox_a.id}/incoming/", {"source_id": "c", "body": "x"},
                       format="json")
    assert r.status_code == 400 and "API inboxes" in r.json()["error"]


def test_bad_updates(world, alice_api):
    conv_id = _incoming(alice_api, world.inbox_api).json()["conversation_id"]
    for payload in ({"status": "nope"}, {"priority": 7}, {"assignee_id": 987654}, {"team_id": 987654},
                    {"assignee_id": world.charlie.id}, {"tags": "not-a-list"}):
        r = alice_api.patch(f"/api/v1/conversations/{conv_id}/", payload, format="json")
        assert r.status_code == 400, (payload, r.content)
        assert r.json()["error"]
    assert alice_api.patch(f"/api/v1/conversations/{conv_id}/messages/999999/", {"delivery_status": "read"},
                           format="json").status_code == 404


def test_wrong_or_missing_token(world):
    from rest_framework.test import APIClient

    client = APIClient()
    assert client.get("/api/v1/conversations/").status_code == 401
    client.credentials(HTTP_AUTHORIZATION="Token nope")
    r = client.get("/api/v1/conversations/")
    assert r.status_code == 401 and r.json()["error"]


def test_non_agent_user_sees_nothing(world, api_client_for, django_user_model):
    outsider = django_user_model.objects.create_user("mallory", password="x")
    client = api_client_for(outsider)
    assert client.get("/api/v1/conversations/").status_code == 404
    assert client.post(f"/api/v1/inboxes/{world.inbox_api.id}/incoming/", {"source_id": "c", "body": "x"},
                       format="json").status_code == 404


def test_openapi_schema(world, alice_api):
    r = alice_api.get("/api/v1/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json")
    assert r.status_code == 200
    assert "/api/v1/inboxes/{inbox_id}/incoming/" in r.json()["paths"]


def test_attachments_are_served_safely(world, alice_api):
    from django.core.files.uploadedfile import SimpleUploadedFile

    from conversations.models import Attachment

    svg = SimpleUploadedFile("x.svg", b"<svg onload=alert(1)></svg>", content_type="image/svg+xml")
    r = alice_api.post(f"/api/v1/inboxes/{world.inbox_api.id}/incoming/",
                       {"source_id": "c", "body": "", "files": [svg]}, format="multipart")
    assert r.status_code == 400 and "not accepted" in r.content.decode()  # the upload policy refuses it
    # One stored before that policy (or by an admin) is still served as a download, never inline.
    r = alice_api.post(f"/api/v1/inboxes/{world.inbox_api.id}/incoming/", {"source_id": "c", "body": "hi"},
                       format="json")
    message = Message.objects.get(pk=r.json()["message"]["id"])
    svg.seek(0)
    att = Attachment(message=message, filename="x.svg", size=svg.size, content_type="image/svg+xml")
    att.file.save("x.svg", svg, save=False)
    att.save()
    url = f"/api/v1/attachments/{att.id}"
    resp = alice_api.get(url)
    assert resp.status_code == 200
    assert resp["Content-Disposition"].startswith("attachment")
    assert resp["Content-Type"] == "application/octet-stream"
    assert Client().get(url).status_code in (401, 403)


@pytest.mark.parametrize("raw", [
    '{"name": "n", "custom_attributes": {"a\\u0000b": 1}}',
    '{"name": "n", "custom_attributes": {"a": ["x\\u0000"]}}',
    '{"name": "n", "custom_attributes": {"a": 1e999}}',
    '{"name": "n", "custom_attributes": ' + '{"a": ' * 30 + "1" + "}" * 30 + "}",
])
def test_contact_attributes_jsonb_cannot_hold_are_refused(world, api_client_for, raw):
    """Found by schemathesis: a NUL character or an infinite number in custom_attributes was a 500 (jsonb)."""
    api = api_client_for(world.bob)
    r = api.generic("POST", "/api/v1/contacts/", raw, content_type="application/json")
    assert r.status_code == 400 and "custom_attributes" in r.json()["fields"], r.content
    contact_id = api.post("/api/v1/contacts/", {"name": "ok"}, format="json").json()["id"]
    r = api.generic("PATCH", f"/api/v1/contacts/{contact_id}/", raw, content_type="application/json")
    assert r.status_code == 400 and "custom_attributes" in r.json()["fields"], r.content


def test_ids_out_of_range_are_bad_input(world, api_client_for):
    """A number no id column holds is a 400 that names the field, in a body or a query; in the address, a 404."""
    api = api_client_for(world.bob)
    huge = 10**30
    r = api.post("/api/v1/conversations/", {"inbox_id": huge, "source_id": "c", "body": "x"}, format="json")
    assert r.status_code == 400 and "inbox_id" in r.json()["fields"]
    r = api.post("/api/v1/conversations/", {"inbox_id": "abc", "source_id": "c", "body": "x"}, format="json")
    assert r.status_code == 400 and "inbox_id" in r.json()["fields"]
    r = _incoming(api, world.inbox_api, conversation_id=huge)
    assert r.status_code == 400 and "conversation_id" in r.json()["fields"]
    conv_id = _incoming(api, world.inbox_api).json()["conversation_id"]
    for field in ("assignee_id", "team_id"):
        r = api.patch(f"/api/v1/conversations/{conv_id}/", {field: huge}, format="json")
        assert r.status_code == 400 and field in r.json()["fields"]
    for query in ("inbox=99999999999999999999", "priority=-99999999999999999999", "offset=99999999999"):
        r = api.get(f"/api/v1/conversations/?{query}")
        assert r.status_code == 400 and r.json()["error"] == "Invalid input", query
    assert api.get(f"/api/v1/conversations/{huge}/").status_code == 404
