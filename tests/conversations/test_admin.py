"""The admin: every page renders, conversation edits go through actions, secrets are never shown."""

from __future__ import annotations

import pytest
from django.contrib import admin
from django.urls import reverse

from conversations.models import Conversation, Inbox

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin_client(world, make_agent, client):
    boss = make_agent("boss", role="admin")
    boss.is_superuser = True
    boss.save()
    client.force_login(boss)
    return client


def test_every_admin_page_renders(admin_client, world, inbound):
    inbound(inbox=world.inbox_api, source_id="x")
    for model in admin.site._registry:
        meta = model._meta
        url = reverse(f"admin:{meta.app_label}_{meta.model_name}_changelist")
        assert admin_client.get(url).status_code == 200, url
        obj = model.objects.first()
        if obj is not None:
            url = reverse(f"admin:{meta.app_label}_{meta.model_name}_change", args=[obj.pk])
            assert admin_client.get(url).status_code == 200, url


def test_conversation_admin_edits_go_through_actions(admin_client, world, inbound, published):
    conv = inbound().message.conversation
    url = reverse("admin:conversations_conversation_change", args=[conv.pk])
    with published() as frames:
        r = admin_client.post(url, {"status": "pending", "priority": "3", "assignee": world.alice.pk,
                                    "team": world.support.pk, "subject": "Damaged tent", "tags": []})
    assert r.status_code == 302, r.content[:2000]
    conv.refresh_from_db()
    assert (conv.status, conv.priority, conv.assignee, conv.subject) == ("pending", 3, world.alice, "Damaged tent")
    kinds = set(conv.events.values_list("kind", flat=True))
    assert {"status_changed", "priority_changed", "assigned", "subject_changed"} <= kinds
    assert {f["op"] for _, f in frames} >= {"status", "priority", "assigned", "subject"}


def test_conversation_admin_refuses_ineligible_assignee(admin_client, world, inbound):
    conv = inbound().message.conversation
    url = reverse("admin:conversations_conversation_change", args=[conv.pk])
    r = admin_client.post(url, {"status": "open", "priority": "1", "assignee": world.charlie.pk, "subject": ""},
                          follow=True)
    assert r.status_code == 200
    assert b"cannot work conversations of this inbox" in r.content
    conv.refresh_from_db()
    assert conv.assignee is None


def test_inbox_secret_is_never_shown(admin_client, world):
    url = reverse("admin:conversations_inbox_change", args=[world.inbox_api.pk])
    r = admin_client.get(url)
    assert world.inbox_api.secret.encode() not in r.content
    assert f"…{world.inbox_api.secret[-4:]}".encode() in r.content
    r = admin_client.post(url, {"name": "Shop API", "kind": "api", "is_active": "on",
                                "settings": '{"webhook_url": "https://shop.example/hook"}',
                                "new_secret": "s3cret-from-admin"})
    assert r.status_code == 302
    assert Inbox.objects.get(pk=world.inbox_api.pk).secret == "s3cret-from-admin"


def test_agents_have_no_admin_and_supervisors_read_only_config(world, client):
    client.force_login(world.alice)
    assert client.get("/admin/").status_code == 302
    client.force_login(world.bob)
    assert client.get(reverse("admin:conversations_inbox_changelist")).status_code == 200
    assert client.get(reverse("admin:conversations_inbox_add")).status_code == 403


def test_merge_contacts_admin_action(admin_client, world, inbound):
    a = inbound(source_id="a@example.com").message.conversation.contact
    b = inbound(inbox=world.inbox_api, source_id="shop-1").message.conversation.contact
    r = admin_client.post(reverse("admin:conversations_contact_changelist"),
                          {"action": "merge_contacts", "_selected_action": [a.pk, b.pk]})
    assert r.status_code == 302
    assert Conversation.objects.filter(contact=a).count() == 2
