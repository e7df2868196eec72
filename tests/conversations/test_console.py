"""Console pages: authorization, escaping, filters, search, and query counts (no N+1)."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from conversations import actions
from conversations.models import Segment

pytestmark = pytest.mark.django_db


@pytest.fixture
def alice_client(world, client):
    client.force_login(world.alice)
    return client


def _seed(world, inbound, n, inbox=None):
    vip = Segment.objects.get_or_create(name="VIP", defaults={"color": "#b45309"})[0]
    convs = []
    for i in range(n):
        conv = inbound(inbox=inbox or world.inbox_a, source_id=f"c{i}@example.com", body=f"hello {i}",
                       contact_name=f"Customer {i}").message.conversation
        actions.do_set_tags(actor=None, conversation=conv, names=[f"t{i}", "common"])
        actions.do_set_contact_segments(actor=None, contact=conv.contact, segment_ids=[vip.id])
        actions.do_assign_conversation(actor=None, conversation=conv, assignee=world.alice)
        convs.append(conv)
    return convs


def _count(client, url):
    with CaptureQueriesContext(connection) as ctx:
        r = client.get(url)
    assert r.status_code == 200
    return len(ctx.captured_queries), r


def test_login_required_and_non_agents_get_404(world, client, django_user_model):
    assert client.get("/console/").status_code == 302
    client.force_login(django_user_model.objects.create_user("mallory", password="x"))
    assert client.get("/console/").status_code == 404


def test_inbox_list_query_count_does_not_grow_with_rows(world, inbound, alice_client):
    _seed(world, inbound, 2)
    few, _ = _count(alice_client, "/console/?view=all&status=open")
    _seed(world, inbound, 12)
    many, r = _count(alice_client, "/console/?view=all&status=open")
    assert few == many, "N+1 in the inbox list"
    # user with agent profile (the session is read from the cache); visible inboxes, pick lists and cursors;
    # rows; rows' tags/segments/assignees
    assert many <= 4, many
    assert r.content.count(b'class="row') >= 14


def test_conversation_view_query_count_does_not_grow_with_history(world, inbound, alice_client):
    conv = _seed(world, inbound, 1)[0]
    few, _ = _count(alice_client, f"/console/c/{conv.id}/")
    for i in range(15):
        inbound(source_id="c0@example.com", body=f"more {i}")
        actions.do_send_agent_reply(actor=world.alice, conversation=conv, body=f"reply {i}")
    many, r = _count(alice_client, f"/console/c/{conv.id}/")
    assert few == many, "N+1 in the conversation view"
    # page chrome and list (4), conversation, history, the panel's reads in one statement (contact, tags,
    # routing, offer, other conversations, assignee), SLA, activity; the assignable agents are fetched when
    # the control is opened
    assert many <= 9, many
    assert b"reply 14" in r.content


def test_other_team_conversation_is_404(world, inbound, alice_client):
    other = inbound(inbox=world.inbox_b).message.conversation
    assert alice_client.get(f"/console/c/{other.id}/").status_code == 404
    assert alice_client.post(f"/console/c/{other.id}/reply/", {"body": "x"}).status_code == 404
    assert alice_client.get(f"/console/c/{other.id}/messages/").status_code == 404


def test_customer_content_is_escaped(world, inbound, alice_client):
    conv = inbound(body='<img src=x onerror="alert(1)">', contact_name="<script>x</script>").message.conversation
    r = alice_client.get(f"/console/c/{conv.id}/")
    assert b'<img src=x onerror' not in r.content and b"<script>x</script>" not in r.content
    assert b"&lt;img src=x onerror=" in r.content
    rows = alice_client.get(f"/console/rows/?ids={conv.id}").json()
    assert "<script>x" not in rows["rows"][str(conv.id)]


def test_views_filters_and_search(world, inbound, alice_client, make_agent):
    a = inbound(source_id="a@example.com", body="the blue tent leaks").message.conversation
    b = inbound(source_id="b@example.com", body="refund please").message.conversation
    actions.do_assign_conversation(actor=None, conversation=a, assignee=world.alice)
    actions.do_change_priority(actor=None, conversation=b, priority=3)

    def ids(query):
        r = alice_client.get("/console/?" + query)
        assert r.status_code == 200
        return {c.id for c in r.context["rows"]}

    assert ids("view=mine") == {a.id}
    assert ids("view=unassigned") == {b.id}
    assert ids("view=all&priority=3") == {b.id}
    assert ids("view=all&q=tent") == {a.id}
    assert ids("view=all&q=refund") == {b.id}
    assert ids("view=all&kind=sms") == set()
    assert ids("view=all&status=solved") == set()
    r = alice_client.get("/console/?view=bogus&priority=abc")
    assert r.status_code == 200 and r.context["filters"].errors


def test_list_sorted_by_waiting_time(world, inbound, alice_client):
    first = inbound(source_id="first@example.com").message.conversation
    second = inbound(source_id="second@example.com").message.conversation
    r = alice_client.get("/console/?view=all")
    assert [c.id for c in r.context["rows"]] == [first.id, second.id]


def test_console_posts_call_actions_and_report_errors(world, inbound, alice_client):
    conv = inbound().message.conversation
    h = {"HTTP_ACCEPT": "application/json"}
    assert alice_client.post(f"/console/c/{conv.id}/reply/", {"body": "hello"}, **h).json()["ok"]
    r = alice_client.post(f"/console/c/{conv.id}/reply/", {"body": "  "}, **h)
    assert r.status_code == 400 and "empty" in r.json()["error"]
    assert alice_client.post(f"/console/c/{conv.id}/reply/", {"body": "n", "mode": "note"}, **h).json()["ok"]
    assert alice_client.post(f"/console/c/{conv.id}/status/", {"status": "pending"}, **h).json()["ok"]
    assert alice_client.post(f"/console/c/{conv.id}/status/", {"status": "zzz"}, **h).status_code == 400
    assert alice_client.post(f"/console/c/{conv.id}/priority/", {"priority": "x"}, **h).status_code == 400
    assert alice_client.post(f"/console/c/{conv.id}/tags/", {"tags": "a, b"}, **h).json()["tags"] == ["a", "b"]
    assert alice_client.post(f"/console/c/{conv.id}/assign/", {"assignee": "me"}, **h).json()["ok"]
    assert alice_client.post(f"/console/c/{conv.id}/assign/", {"assignee": str(world.charlie.id)},
                             **h).status_code == 400
    assert alice_client.post(f"/console/c/{conv.id}/contact/", {"custom_attributes": "{bad"},
                             **h).status_code == 400
    assert alice_client.post(f"/console/c/{conv.id}/contact/", {"email": "nope"}, **h).status_code == 400
    conv.refresh_from_db()
    assert (conv.status, conv.assignee) == ("pending", world.alice)
    assert alice_client.get(f"/console/c/{conv.id}/").status_code == 200


def test_csrf_enforced_on_console_posts(world, inbound):
    from django.test import Client

    conv = inbound().message.conversation
    client = Client(enforce_csrf_checks=True)
    client.force_login(world.alice)
    assert client.post(f"/console/c/{conv.id}/reply/", {"body": "hi"}).status_code == 403


def test_canned_search_fills_placeholders(world, inbound, alice_client):
    from conversations.models import CannedMessage

    conv = inbound(contact_name="Ann Lee").message.conversation
    CannedMessage.objects.create(shortcut="hello", body="Hi {{contact.first_name}}, {{agent.name}} here")
    CannedMessage.objects.create(shortcut="hello", body="Personal hi {{contact.first_name}}", owner=world.alice)
    CannedMessage.objects.create(shortcut="secret", body="bob's", owner=world.bob)
    items = alice_client.get(f"/console/canned/?q=hel&conversation={conv.id}").json()["items"]
    assert items == [{"shortcut": "hello", "title": "", "personal": True, "body": "Personal hi Ann"}]
    all_items = alice_client.get("/console/canned/").json()["items"]
    assert "secret" not in {i["shortcut"] for i in all_items}


def test_demo_page_only_in_demo_mode(world, client, settings):
    assert client.get("/demo/").status_code == 404


def test_search_matches_messages_or_subject_in_list_order_across_pages(world, inbound, alice_client, monkeypatch):
    from conversations import views

    by_body = inbound(source_id="b1@example.com", body="my gadget is broken").message.conversation
    by_subject = inbound(source_id="b2@example.com", body="hello").message.conversation
    actions.do_change_subject(actor=world.alice, conversation=by_subject, subject="Gadget return")
    both = inbound(source_id="b3@example.com", body="gadget again").message.conversation
    actions.do_change_subject(actor=world.alice, conversation=both, subject="gadget")
    inbound(source_id="b4@example.com", body="nothing to see")

    def ids(query):
        r = alice_client.get("/console/?view=all&" + query)
        assert r.status_code == 200
        return [c.id for c in r.context["rows"]]

    assert ids("q=gadget") == [by_body.id, by_subject.id, both.id]  # longest waiting first, each once
    monkeypatch.setattr(views, "PAGE_SIZE", 2)
    assert ids("q=gadget") == [by_body.id, by_subject.id]
    assert ids("q=gadget&page=2") == [both.id]


def test_assignable_agents_are_fetched_on_demand_escaped_and_authorized(world, inbound, alice_client, make_agent):
    from routing.models import AgentProfile

    conv = inbound().message.conversation
    AgentProfile.objects.filter(user=world.alice).update(display_name="<b>Alice</b>")
    page = alice_client.get(f"/console/c/{conv.id}/").content.decode()
    assert "Unassigned" in page and f'data-url="/console/c/{conv.id}/assignees/"' in page
    data = alice_client.get(f"/console/c/{conv.id}/assignees/").json()
    assert "&lt;b&gt;Alice&lt;/b&gt;" in data["assignee"] and "<b>" not in data["assignee"] + data["transfer"]
    assert f'value="{world.bob.id}"' in data["assignee"]  # supervisors may be assigned anywhere
    assert f'value="{world.charlie.id}"' not in data["assignee"]  # not on a team with this inbox
    other = inbound(inbox=world.inbox_b).message.conversation
    assert alice_client.get(f"/console/c/{other.id}/assignees/").status_code == 404


def test_panel_side_reads_are_shown_and_escaped(world, inbound, alice_client):
    """The panel's one-statement reads (routing, offer, assignee, other conversations, wrap-up, survey,
    visitor, dispositions) show what the separate ORM reads showed, escaped."""
    from django.utils import timezone

    from campaigns.models import ChatSurvey, VisitorSession, WidgetConfig, WrapUp
    from conversations.models import ChannelKind, Inbox
    from routing.models import QueueEntry, RoutingDecision

    chat = Inbox.objects.create(name="Chat <b>site</b>", kind=ChannelKind.WEBCHAT)
    world.support.inboxes.add(chat)
    conv = inbound(inbox=chat, source_id="v1", body="hi").message.conversation
    earlier = inbound(source_id="v1-mail@example.com", body="by mail").message.conversation  # another channel
    hidden = inbound(inbox=world.inbox_b, source_id="v1-sales@example.com").message.conversation
    for other in (earlier, hidden):
        other.contact_id = conv.contact_id
        other.save(update_fields=["contact"])
    actions.do_assign_conversation(actor=None, conversation=conv, assignee=world.alice)
    RoutingDecision.objects.create(conversation=conv, outcome="offered", summary="Offered <i>by rule</i>",
                                   details={"rules": [{"rule": "VIP <x>", "matched": True, "conditions": ["c1"]}],
                                            "targets": []})
    QueueEntry.objects.update_or_create(conversation=conv, defaults={
        "inbox": chat, "state": "offered", "enqueued_at": timezone.now(), "offered_to": world.alice.agent})
    WrapUp.objects.create(conversation=conv, disposition="Sales <lead>", note="note <script>n</script>")
    ChatSurvey.objects.create(conversation=conv, rating=4, comment="great <3")
    VisitorSession.objects.create(inbox=chat, visitor_id="v1", contact=conv.contact, page_title="Pricing <page>",
                                  visits=3)
    WidgetConfig.objects.update_or_create(inbox=chat, defaults={"dispositions": ["Won <deal>", "Lost"]})

    r = alice_client.get(f"/console/c/{conv.id}/?status=active")
    assert r.status_code == 200
    html = r.content.decode()
    assert "Offered &lt;i&gt;by rule&lt;/i&gt;" in html and "VIP &lt;x&gt;: matched" in html
    assert "Offered to Alice" in html and 'id="accept-offer"' in html  # offered to the viewer
    assert f'<option value="{world.alice.id}" selected>Alice</option>' in html  # the assignee's display name
    assert "Wrap-up: <strong>Sales &lt;lead&gt;</strong> — note &lt;script&gt;n&lt;/script&gt;" in html
    assert "Visitor rating: <strong>4/5</strong> “great &lt;3”" in html
    assert "<dt>Now on</dt><dd>Pricing &lt;page&gt;</dd>" in html and "<dt>Visits</dt><dd>3</dd>" in html
    assert "<dt>Chats</dt><dd>1</dd>" in html
    # The contact's conversations in the visible inboxes only, newest first; the merge choices exclude this one.
    assert f'<a href="/console/c/{earlier.id}/">#{earlier.id}</a>' in html and f"#{hidden.id}" not in html
    assert f"<strong>#{conv.id}</strong>" in html and "Chat &lt;b&gt;site&lt;/b&gt;" in html
    assert f'<option value="{earlier.id}">#{earlier.id} · Support email</option>' in html
    assert f'<option value="{conv.id}">#{conv.id}' not in html  # (team options share the number space)
    # The sidebar's status filter keeps its own choices on the conversation page (it lost them before).
    assert '<option value="active" selected>Open, pending &amp; on hold</option>' in html
    WrapUp.objects.filter(conversation=conv).delete()
    actions.do_change_status(actor=None, conversation=conv, status="solved")
    html = alice_client.get(f"/console/c/{conv.id}/").content.decode()
    assert "<option>Won &lt;deal&gt;</option><option>Lost</option>" in html  # the wrap-up form's dispositions
