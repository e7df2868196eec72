"""Console pages: authorization, escaping, filters, search, and query counts (no N+1)."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test import Client
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
    # rows with their tags/segments/assignees
    assert many <= 3, many
    assert r.content.count(b'class="row') >= 14


def test_conversation_view_query_count_does_not_grow_with_history(world, inbound, alice_client):
    conv = _seed(world, inbound, 1)[0]
    few, _ = _count(alice_client, f"/console/c/{conv.id}/")
    for i in range(15):
        inbound(source_id="c0@example.com", body=f"more {i}")
        actions.do_send_agent_reply(actor=world.alice, conversation=conv, body=f"reply {i}")
    many, r = _count(alice_client, f"/console/c/{conv.id}/")
    assert few == many, "N+1 in the conversation view"
    # page chrome and list (3), conversation, history, the panel's reads in one statement (contact, tags,
    # routing, offer, other conversations, assignee), SLA, activity; the assignable agents are fetched when
    # the control is opened
    assert many <= 8, many
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
    page = alice_client.get(f"/console/c/{conv.id}/")
    assert page.status_code == 200 and b'<option value="keep">Keep the team</option>' in page.content
    # The transfer form: to an agent keeping the team, or to a team (no agent), each with a note.
    assert alice_client.post(f"/console/c/{conv.id}/assign/", {"assignee": str(world.bob.id), "team": "keep",
                                                               "note": "Over to Bob"}, **h).json()["ok"]
    conv.refresh_from_db()
    assert (conv.assignee, conv.team) == (world.bob, None)
    from agents.models import Team

    billing = Team.objects.create(name="Billing")
    billing.inboxes.set([conv.inbox])
    bob = Client()
    bob.force_login(world.bob)
    assert bob.post(f"/console/c/{conv.id}/assign/", {"assignee": "", "team": str(billing.id),
                                                      "note": "Refund: billing"}, **h).json()["ok"]
    conv.refresh_from_db()
    assert (conv.assignee, conv.team) == (None, billing)
    assert list(conv.messages.filter(kind="note").values_list("body", flat=True))[-2:] == [
        "Over to Bob", "Refund: billing"]


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
    from agents.models import AgentProfile

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


def test_conversation_rows_carry_tags_top_segment_and_assignee_name_in_list_order(world, inbound, make_agent,
                                                                                 django_user_model):
    """selectors.conversation_rows (the page's one statement, its SQL reused per filters/inboxes/user/slice) gives
    the rows of list_conversations_for_agent in the same order, each with its tag names, its contact's top
    segment and its assignee's name as the ORM reads them; data changed between calls shows (only SQL is kept)."""
    from agents.models import AgentProfile
    from conversations.models import Conversation
    from conversations.selectors import InboxFilters, conversation_rows, list_conversations_for_agent

    low = Segment.objects.create(name="Low", label="", color="#111111", priority_level=1)
    high = Segment.objects.create(name="High", label="H!", color="#222222", priority_level=5)
    plain = django_user_model.objects.create_user("plain", first_name="No", last_name="Profile")
    nameless = make_agent("nameless", teams=[world.support])
    AgentProfile.objects.filter(user=nameless).update(display_name="")
    convs = [inbound(source_id=f"r{i}@example.com", body=f"row {i}", contact_name=f"Row {i}").message.conversation
             for i in range(6)]
    actions.do_set_tags(actor=None, conversation=convs[0], names=["zeta", "alpha", "<b>"])
    actions.do_set_contact_segments(actor=None, contact=convs[0].contact, segment_ids=[low.id, high.id])
    actions.do_set_contact_segments(actor=None, contact=convs[1].contact, segment_ids=[low.id])
    actions.do_assign_conversation(actor=None, conversation=convs[0], assignee=world.alice)
    actions.do_assign_conversation(actor=None, conversation=convs[2], assignee=nameless)
    Conversation.objects.filter(id=convs[3].id).update(assignee=plain)  # a user without an agent profile

    filters = InboxFilters(view="all", status="open")
    inbox_ids = [world.inbox_a.id, world.inbox_api.id]

    def expected(offset, limit, f=filters):
        out = []
        for row in list(list_conversations_for_agent(world.alice, f, inbox_ids=inbox_ids)[offset:offset + limit]):
            out.append((row.id, row.tag_names, row.segment, row.assignee_name, row.contact_display_name))
        return out

    def got(offset, limit, f=filters):
        return [(r.id, r.tag_names, r.segment, r.assignee_name, r.contact_display_name)
                for r in conversation_rows(world.alice, f, inbox_ids=inbox_ids, offset=offset, limit=limit)]

    first = got(0, 10)
    assert first == expected(0, 10)
    by_id = {r[0]: r for r in first}
    assert [r[0] for r in first] == [c.id for c in sorted(convs, key=lambda c: (c.waiting_since, -c.id))]
    assert by_id[convs[0].id][1:4] == (["<b>", "alpha", "zeta"], ("#222222", "H!"), "Alice")
    assert by_id[convs[1].id][1:4] == ([], ("#111111", "Low"), "")
    assert by_id[convs[2].id][3] == "Nameless"  # no display name: the full name
    assert by_id[convs[3].id][3] == "plain"  # no agent profile: the username
    assert got(2, 3) == expected(2, 3) and len(got(2, 3)) == 3
    # Timestamps as the ORM reads them (same instant and tzinfo).
    Conversation.objects.filter(id=convs[4].id).update(sla_due_at=convs[4].waiting_since, sla_paused=True)
    orm = {c["id"]: c for c in Conversation.objects.values("id", "waiting_since", "sla_due_at", "sla_warn_at")}
    for row in conversation_rows(world.alice, filters, inbox_ids=inbox_ids, offset=0, limit=10):
        for name in ("waiting_since", "sla_due_at", "sla_warn_at"):
            value = getattr(row, name)
            assert value == orm[row.id][name] and getattr(value, "tzinfo", None) is getattr(orm[row.id][name],
                                                                                             "tzinfo", None)
    # The same key again reads the current data.
    actions.do_set_tags(actor=None, conversation=convs[1], names=["late"])
    actions.do_assign_conversation(actor=None, conversation=convs[1], assignee=world.bob)
    again = {r[0]: r for r in got(0, 10)}
    assert again[convs[1].id][1] == ["late"] and again[convs[1].id][3] == "Bob"
    mine = InboxFilters(view="mine", status="open")
    assert [r[0] for r in got(0, 10, mine)] == [convs[0].id]
    assert [r.id for r in conversation_rows(world.bob, mine, inbox_ids=inbox_ids, offset=0, limit=10)] \
        == [convs[1].id]
    assert conversation_rows(world.alice, filters, inbox_ids=[], offset=0, limit=10) == []


def test_history_rows_render_as_the_orm_messages(world, inbound, alice_client):
    """get_contact_history's PostgreSQL rows (HistoryMessage) render exactly as the ORM's Message objects:
    senders, notes, other conversations, delivery states, attachments (image and file, escaped); older pages."""
    from django.core.files.uploadedfile import SimpleUploadedFile

    from conversations.console_html import render_messages
    from conversations.models import Message
    from conversations.selectors import get_contact_history, visible_inboxes

    first = inbound(source_id="h@example.com", body="first <b>", contact_name="Hist").message.conversation
    actions.do_send_agent_reply(actor=world.alice, conversation=first, body="reply\nline two")
    actions.do_add_note(actor=world.alice, conversation=first, body="note", attachments=[
        SimpleUploadedFile("<pic>.png", b"\x89PNG\r\n\x1a\n", content_type="image/png"),
        SimpleUploadedFile("doc&.pdf", b"%PDF-1.4", content_type="application/pdf")])
    Message.objects.filter(conversation=first, direction="out").update(delivery_status="failed",
                                                                       failure_reason="<bounced>")
    actions.do_change_status(actor=world.alice, conversation=first, status="closed")
    second = inbound(source_id="h@example.com", body="second").message.conversation
    for i in range(4):
        inbound(source_id="h@example.com", body=f"more {i}")
    assert second.id != first.id and second.contact_id == first.contact_id
    inboxes = visible_inboxes(world.alice)

    def orm(limit, before=None):
        qs = Message.objects.filter(conversation__contact_id=first.contact_id,
                                    inbox_id__in=[i.id for i in inboxes]).order_by("-id")
        if before is not None:
            qs = qs.filter(id__lt=before)
        return list(qs[:limit])[::-1]

    page = get_contact_history(world.alice, second, inboxes=inboxes)
    expected = orm(100)
    assert [m.id for m in page] == [m.id for m in expected] and len(page) == 8
    html = render_messages(page, second)
    assert html == render_messages(expected, second)
    assert "&lt;pic&gt;.png" in html and "doc&amp;.pdf" in html and "&lt;bounced&gt;" in html
    older = get_contact_history(world.alice, second, inboxes=inboxes, before_id=page[5].id, limit=3)
    assert render_messages(older, second) == render_messages(orm(3, before=page[5].id), second)


def test_get_with_related_builds_what_select_related_builds(world, inbound, django_user_model):
    """selectors.get_with_related (access_conversation_by_id's read) gives the instances select_related gives:
    every field (JSON ones decoded), related objects cached (no query), missing nullable relations as None."""
    from conversations.models import Conversation
    from conversations.selectors import NotFound, access_conversation_by_id, get_with_related

    conv = inbound(body="hi", contact_name="Jay").message.conversation
    Conversation.objects.filter(id=conv.id).update(meta={"prechat": {"dept": "<b>"}})
    related = ("inbox", "contact", "assignee", "team")

    def fields(obj):
        return {f.attname: getattr(obj, f.attname) for f in obj._meta.concrete_fields}

    for assigned in (False, True):
        if assigned:
            actions.do_assign_conversation(actor=None, conversation=conv, assignee=world.alice)
        expected = Conversation.objects.select_related(*related).get(id=conv.id)
        with CaptureQueriesContext(connection) as ctx:
            got = get_with_related(Conversation, conv.id, related)
            assert fields(got) == fields(expected) and got.meta == {"prechat": {"dept": "<b>"}}
            for name in related:
                a, b = getattr(got, name), getattr(expected, name)
                assert (a is None) == (b is None) and (a is None or fields(a) == fields(b)), name
            assert got.inbox.settings == expected.inbox.settings and not got._state.adding
        assert len(ctx.captured_queries) == 1
    assert (got.assignee.pk, got.team) == (world.alice.pk, None)
    assert get_with_related(Conversation, conv.id + 1000, related) is None
    with pytest.raises(NotFound):
        access_conversation_by_id(world.alice, "x")
    with pytest.raises(NotFound):
        access_conversation_by_id(world.alice, 10**30)
    with pytest.raises(NotFound):
        access_conversation_by_id(world.charlie, conv.id)  # another team's inbox
    assert access_conversation_by_id(world.alice, str(conv.id)).contact.name == "Jay"


def test_conversation_events_render_as_the_orm_events(world, inbound):
    """selectors.conversation_events (the panel's activity, one statement) renders as the ORM's events with
    their actors: newest first, at most `limit`, data decoded, system events without an actor."""
    from django.template.loader import render_to_string

    from conversations.selectors import conversation_events

    def render_events(events):
        return render_to_string("console/_events.html", {"events": events})

    conv = inbound(body="hi").message.conversation
    actions.do_assign_conversation(actor=world.alice, conversation=conv, assignee=world.bob)
    actions.do_change_status(actor=world.alice, conversation=conv, status="pending")
    actions.do_set_tags(actor=None, conversation=conv, names=["<x>"])
    for limit in (2, 20):
        expected = list(conv.events.select_related("actor").order_by("-id")[:limit])
        got = conversation_events(conv, limit=limit)
        assert [e.id for e in got] == [e.id for e in expected] and len(got) == min(limit, len(expected))
        assert [e.data for e in got] == [e.data for e in expected]
        assert render_events(got) == render_events(expected)
    assert any(e.actor is None for e in got) and any(e.actor is not None for e in got)


def test_list_with_related_reads_the_panels_sla_clocks_as_the_orm(world, inbound, alice_client):
    """selectors.list_with_related (the panel's SLA clocks with their policy) gives what
    filter().select_related().order_by("pk") gives, and the panel shows them."""
    from django.utils import timezone

    from conversations.selectors import list_with_related
    from sla.models import SlaClock, SlaPolicy

    conv = inbound(body="hi").message.conversation
    policy = SlaPolicy.objects.create(name="Gold <24h>", position=1, conditions=[],
                                      targets={"first_response": {"normal": 60}})
    now = timezone.now()
    SlaClock.objects.filter(conversation=conv).delete()
    SlaClock.objects.create(conversation=conv, policy=policy, metric="first_response", target_seconds=60,
                            started_at=now, due_at=now, warn_at=now)
    SlaClock.objects.create(conversation=conv, policy=None, metric="next_response", target_seconds=60,
                            started_at=now, state="fulfilled", fulfilled_at=now)

    def fields(obj):
        return {f.attname: getattr(obj, f.attname) for f in obj._meta.concrete_fields}

    expected = list(SlaClock.objects.filter(conversation=conv.id).select_related("policy").order_by("pk"))
    with CaptureQueriesContext(connection) as ctx:
        got = list_with_related(SlaClock, "conversation", conv.id, ("policy",))
        assert [fields(c) for c in got] == [fields(c) for c in expected] and len(got) == 2
        assert fields(got[0].policy) == fields(expected[0].policy) and got[1].policy is None
        assert got[0].policy.targets == {"first_response": {"normal": 60}}
    assert len(ctx.captured_queries) == 1
    page = alice_client.get(f"/console/c/{conv.id}/").content.decode()
    assert "SLA · Gold &lt;24h&gt;" in page and "First response:" in page and "achieved" in page
