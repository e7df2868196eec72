"""The widget's HTTP API: origins, sessions, identity verification, pre-chat, uploads, offline, surveys."""

from __future__ import annotations

import hashlib
import hmac

import pytest
from django.core import mail, signing
from django.core.files.uploadedfile import SimpleUploadedFile

from agents.models import AgentProfile
from campaigns import actions
from campaigns.models import ChatSurvey, VisitorSession, WidgetConfig
from conversations.models import Conversation, Message
from omnichannel.errors import ActionError

from .conftest import ORIGIN

pytestmark = pytest.mark.django_db

PNG = (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x06\x00\x00\x00\x1f\x15\xc4\x89"
       b"\x00\x00\x00\rIDATx\x9cc\xf8\xcf\xc0\xf0\x1f\x00\x05\x00\x01\xff\x89\x99=\x1d\x00\x00\x00\x00IEND\xaeB`\x82")


def test_session_on_allowed_origin(visitor, chat):
    assert visitor["online"] is True and visitor["prechat_done"] is False
    assert visitor["config"]["prechat_fields"][2]["options"] == ["Sales", "Support", "Billing"]
    assert visitor["strings"]["send"] == "Send"
    session = VisitorSession.objects.get()
    assert (session.page_url, session.page_title, session.visits) == ("https://shop.example/pricing", "Pricing", 1)


def test_other_origins_are_refused_with_a_message(widget_post):
    r = widget_post("session", origin="https://evil.example")
    assert r.status_code == 403 and "not allowed" in r.json()["error"]
    assert "Access-Control-Allow-Origin" not in r


def test_cors_preflight_and_headers(client, chat):
    r = client.options(f"/widget/api/{chat.public_token}/session/", HTTP_ORIGIN=ORIGIN)
    assert r.status_code == 204 and r["Access-Control-Allow-Origin"] == ORIGIN


def test_returning_visitor_keeps_contact_and_forged_token_starts_fresh(widget_post, visitor):
    again = widget_post("session", {"visitor_token": visitor["visitor_token"]}).json()
    # The same visitor (the token is signed afresh, with the current second in it).
    assert signing.loads(again["visitor_token"], salt=actions.VISITOR_SALT) == \
        signing.loads(visitor["visitor_token"], salt=actions.VISITOR_SALT)
    assert VisitorSession.objects.get().visits == 2
    forged = widget_post("session", {"visitor_token": visitor["visitor_token"][:-3] + "abc"}).json()
    assert forged["visitor_token"] != visitor["visitor_token"]
    assert VisitorSession.objects.count() == 2


def test_token_of_another_inbox_is_not_accepted(world, widget_post, visitor):
    from conversations.models import ChannelKind, Inbox

    other = Inbox.objects.create(name="Other chat", kind=ChannelKind.WEBCHAT)
    assert actions.read_visitor_token(other, visitor["visitor_token"]) is None


def test_identity_verification(widget_post, chat):
    good = hmac.new(chat.secret.encode(), b"user-42", hashlib.sha256).hexdigest()
    r = widget_post("session", {"user_id": "user-42", "user_hash": good})
    assert r.status_code == 200
    r2 = widget_post("session", {"user_id": "user-42", "user_hash": good})  # another browser, same user
    assert VisitorSession.objects.get(visitor_id=actions.read_visitor_token(chat, r2.json()["visitor_token"])
                                      ).contact_id == VisitorSession.objects.first().contact_id
    bad = widget_post("session", {"user_id": "user-42", "user_hash": "0" * 64})
    assert bad.status_code == 400 and "verification failed" in bad.json()["error"]
    WidgetConfig.objects.filter(inbox=chat).update(require_identity_verification=True)
    anon = widget_post("session", {})
    assert anon.status_code == 400 and "requires a verified user" in anon.json()["error"]


def test_a_signed_out_users_chat_is_not_resumed_on_a_shared_browser(widget_post, chat):
    """The host site signs Ana in (user_id + hash); she chats, signs out; the next person on that computer
    loads the page with the browser's stored token but no user_id: a new anonymous session, not Ana's."""
    from conversations.models import Message

    good = hmac.new(chat.secret.encode(), b"ana-7", hashlib.sha256).hexdigest()
    ana = widget_post("session", {"user_id": "ana-7", "user_hash": good}).json()
    ana_session = VisitorSession.objects.get(visitor_id=actions.read_visitor_token(chat, ana["visitor_token"]))
    actions.do_visitor_message(session=ana_session, body="my card ending 4242 was charged twice", client_id="a1")
    after = widget_post("session", {"visitor_token": ana["visitor_token"]})
    assert after.status_code == 200
    data = after.json()
    assert data["visitor_token"] != ana["visitor_token"] and data["messages"] == [] and data["conversation"] is None
    stranger = VisitorSession.objects.get(visitor_id=actions.read_visitor_token(chat, data["visitor_token"]))
    assert stranger.contact_id != ana_session.contact_id and not stranger.verified_user_id
    # Ana signs in again on that browser: her own chat is back.
    again = widget_post("session", {"visitor_token": data["visitor_token"], "user_id": "ana-7", "user_hash": good})
    assert [m["body"] for m in again.json()["messages"]] == ["my card ending 4242 was charged twice"]
    assert Message.objects.count() == 1


def test_another_visitors_client_id_is_refused_not_echoed(chat):
    first, _ = actions.do_start_visitor_session(inbox=chat, visitor_token=None, info=actions.SessionInfo())
    second, _ = actions.do_start_visitor_session(inbox=chat, visitor_token=None, info=actions.SessionInfo())
    mine = actions.do_visitor_message(session=first, body="victim secret text", client_id="uuid-1")
    assert actions.do_visitor_message(session=first, body="victim secret text", client_id="uuid-1") == mine
    with pytest.raises(ActionError) as caught:
        actions.do_visitor_message(session=second, body="probe", client_id="uuid-1")
    assert caught.value.field == "client_id"


def test_prechat_validation_and_storage(widget_post, visitor):
    token = visitor["visitor_token"]
    r = widget_post("prechat", {"visitor_token": token, "answers": {"name": "", "email": "nope",
                                                                   "department": "Legal"}})
    assert r.status_code == 400
    assert set(r.json()["errors"]) == {"name", "email", "department"}
    r = widget_post("prechat", {"visitor_token": token, "answers": {"name": "Vera", "email": "vera@example.com",
                                                                   "department": "Billing"}})
    assert r.status_code == 200
    session = VisitorSession.objects.get()
    assert session.contact.name == "Vera" and session.contact.email == "vera@example.com"
    msg = actions.do_visitor_message(session=session, body="Charged twice", client_id="c-1")
    assert msg.conversation.meta["prechat"]["department"] == "Billing"
    assert msg.conversation.meta["visitor"]["page_url"] == "https://shop.example/pricing"


def test_bad_requests_are_4xx(widget_post, visitor, client, chat):
    assert widget_post("prechat", {"visitor_token": "garbage"}).status_code == 400
    r = client.post(f"/widget/api/{chat.public_token}/session/", "{oops", content_type="text/plain",
                    HTTP_ORIGIN=ORIGIN)
    assert r.status_code == 400 and "JSON" in r.json()["error"]
    assert client.post("/widget/api/nope/session/", "{}", content_type="text/plain").status_code == 404
    assert client.get(f"/widget/api/{chat.public_token}/session/", HTTP_ORIGIN=ORIGIN).status_code == 405
    assert widget_post("survey", {"visitor_token": visitor["visitor_token"], "conversation_id": 999,
                                  "rating": 5}).status_code == 400


def test_upload_limits_and_safe_serving(client, chat, visitor):
    url = f"/widget/api/{chat.public_token}/upload/"
    token = visitor["visitor_token"]
    r = client.post(url, {"visitor_token": token, "client_id": "f1",
                          "file": SimpleUploadedFile("p.png", PNG, content_type="image/png")}, HTTP_ORIGIN=ORIGIN)
    assert r.status_code == 201, r.content
    att = r.json()["message"]["attachments"][0]
    assert att["image"] is True
    served = client.get(att["url"].replace("http://127.0.0.1:8000", ""))
    assert served.status_code == 200 and served["Content-Type"] == "image/png"
    r = client.post(url, {"visitor_token": token, "file": SimpleUploadedFile("x.html", b"<script>",
                                                                             content_type="text/html")},
                    HTTP_ORIGIN=ORIGIN)
    assert r.status_code == 400 and "not accepted" in r.json()["error"]
    # The declared type is checked against the file's first bytes and its name.
    for name, content, declared in (("invoice.pdf.exe", b"MZ\x90\x00", "application/pdf"),
                                    ("invoice.pdf", b"MZ\x90\x00binary", "application/pdf"),
                                    ("photo.png", b"<svg onload=alert(1)>", "image/png"),
                                    ("notes.txt", b"\x00\x01\x02", "text/plain")):
        r = client.post(url, {"visitor_token": token, "file": SimpleUploadedFile(name, content, content_type=declared)},
                        HTTP_ORIGIN=ORIGIN)
        assert r.status_code == 400 and "claims to be" in r.json()["error"], name
    r = client.post(url, {"visitor_token": token, "client_id": "f2", "file": SimpleUploadedFile(
        "order.pdf", b"%PDF-1.7 ...", content_type="application/pdf")}, HTTP_ORIGIN=ORIGIN)
    assert r.status_code == 201
    WidgetConfig.objects.filter(inbox=chat).update(max_upload_mb=1)
    big = SimpleUploadedFile("big.png", PNG + b"0" * (1024 * 1024 + 1), content_type="image/png")
    r = client.post(url, {"visitor_token": token, "file": big}, HTTP_ORIGIN=ORIGIN)
    assert r.status_code == 400 and "larger than" in r.json()["error"]
    assert client.get("/widget/files/forged-signature/").status_code == 404


def test_offline_form_becomes_a_ticket(widget_post, visitor, world):
    AgentProfile.objects.update(status="offline")
    session_json = widget_post("session", {"visitor_token": visitor["visitor_token"]}).json()
    assert session_json["online"] is False
    r = widget_post("offline", {"visitor_token": visitor["visitor_token"], "name": "Olga", "email": "bad"})
    assert r.status_code == 400 and r.json()["field"] == "email"
    r = widget_post("offline", {"visitor_token": visitor["visitor_token"], "name": "Olga",
                                "email": "olga@example.com", "body": "Do you ship to Norway?"})
    assert r.status_code == 201
    conv = Conversation.objects.get(pk=r.json()["conversation_id"])
    assert conv.meta["offline"] is True and conv.contact.email == "olga@example.com"
    assert list(conv.tags.values_list("name", flat=True)) == ["offline-message"]


def test_offline_tickets_never_take_live_chat_slots(widget_post, visitor, world, chat):
    """Overnight offline messages stay tickets when agents come online (they are answered by email); a
    live chat from the same visitor later is a chat of its own, routed to an agent."""
    from agents.actions import do_set_agent_status
    from routing.actions import do_drain_queue, do_route_conversation
    from routing.models import QueueEntry

    AgentProfile.objects.update(status="offline")
    r = widget_post("offline", {"visitor_token": visitor["visitor_token"], "name": "Olga",
                                "email": "olga@example.com", "body": "Do you ship to Norway?"})
    ticket = Conversation.objects.get(pk=r.json()["conversation_id"])
    assert do_route_conversation(conversation_id=ticket.id).outcome == "ticket"
    assert not QueueEntry.objects.exists()
    assert ticket.routing_decisions.get().summary == "Offline message: kept as a ticket for follow-up by email"
    do_set_agent_status(agent=world.alice.agent, status="online")
    do_drain_queue()
    ticket.refresh_from_db()
    assert ticket.assignee is None
    session = VisitorSession.objects.get(visitor_id=actions.read_visitor_token(chat, visitor["visitor_token"]))
    live = actions.do_visitor_message(session=session, body="Are you there now?", client_id="live-1")
    assert live.conversation_id != ticket.id
    assert do_route_conversation(conversation_id=live.conversation_id).outcome == "assigned"
    assert Conversation.objects.get(pk=live.conversation_id).assignee == world.alice


def test_offline_ticket_reply_is_emailed(widget_post, visitor, world):
    from conversations.actions import do_send_agent_reply
    from conversations.tasks import deliver_outbound_message

    r = widget_post("offline", {"visitor_token": visitor["visitor_token"], "name": "Olga",
                                "email": "olga@example.com", "body": "Do you ship to Norway?"})
    conv = Conversation.objects.get(pk=r.json()["conversation_id"])
    reply = do_send_agent_reply(actor=world.alice, conversation=conv, body="Yes, in 3 days.")
    assert deliver_outbound_message(reply.id) == "sent"
    assert mail.outbox[-1].to == ["olga@example.com"] and "3 days" in mail.outbox[-1].body


def test_business_hours(chat):
    from datetime import datetime
    from zoneinfo import ZoneInfo

    config = actions.get_config(chat)
    config.business_hours = {"tz": "Europe/Paris", "days": {"mon": [["09:00", "12:00"], ["13:00", "18:00"]]}}
    paris = ZoneInfo("Europe/Paris")
    assert actions.within_business_hours(config, datetime(2026, 11, 23, 10, 0, tzinfo=paris))  # Monday
    assert not actions.within_business_hours(config, datetime(2026, 11, 23, 12, 30, tzinfo=paris))
    assert not actions.within_business_hours(config, datetime(2026, 11, 24, 10, 0, tzinfo=paris))  # Tuesday


def test_survey_after_end_and_transcript(widget_post, visitor, world):
    session = VisitorSession.objects.get()
    msg = actions.do_visitor_message(session=session, body="Hello", client_id="c-1")
    conv = msg.conversation
    r = widget_post("survey", {"visitor_token": visitor["visitor_token"], "conversation_id": conv.id, "rating": 5})
    assert r.status_code == 400 and "not ended" in r.json()["error"]
    actions.do_end_chat(conversation=conv, by="visitor")
    conv.refresh_from_db()
    assert conv.status == "closed"
    assert conv.messages.filter(sender_type="system", body="Chat ended by the visitor").exists()
    for bad in (0, 6, "x"):
        assert widget_post("survey", {"visitor_token": visitor["visitor_token"], "conversation_id": conv.id,
                                      "rating": bad}).status_code == 400
    r = widget_post("survey", {"visitor_token": visitor["visitor_token"], "conversation_id": conv.id,
                               "rating": 4, "comment": "Quick!"})
    assert r.status_code == 200
    assert ChatSurvey.objects.get(conversation=conv).rating == 4
    from conversations.actions import do_add_note

    do_add_note(actor=world.alice, conversation=conv, body="secret internal note")
    r = widget_post("transcript", {"visitor_token": visitor["visitor_token"], "conversation_id": conv.id,
                                   "email": "v@example.com"})
    assert r.status_code == 200
    from campaigns.tasks import send_transcript

    send_transcript(conv.id, "v@example.com")
    body = mail.outbox[-1].body
    assert "Hello" in body and "secret internal note" not in body
    # Each request mails the chat to any address: a few an hour, then a clear 429.
    codes = [widget_post("transcript", {"visitor_token": visitor["visitor_token"], "conversation_id": conv.id,
                                        "email": f"x{i}@example.com"}).status_code for i in range(4)]
    assert codes == [200, 200, 429, 429]
    # A chat whose inbox asks no survey refuses one.
    WidgetConfig.objects.filter(inbox=conv.inbox).update(postchat_survey_enabled=False)
    r = widget_post("survey", {"visitor_token": visitor["visitor_token"], "conversation_id": conv.id, "rating": 5})
    assert r.status_code == 400 and "no survey" in r.json()["error"]


def test_rate_limit(visitor, chat):
    session = VisitorSession.objects.get()
    WidgetConfig.objects.filter(inbox=chat).update(messages_per_minute=3)
    first = actions.do_visitor_message(session=session, body="m0", client_id="c0")
    assert actions.do_visitor_message(session=session, body="m0", client_id="c0") == first  # a resend: not counted
    for i in (1, 2):
        actions.do_visitor_message(session=session, body=f"m{i}", client_id=f"c{i}")
    from omnichannel.errors import ActionError

    with pytest.raises(ActionError, match="too quickly"):
        actions.do_visitor_message(session=session, body="m4", client_id="c4")
    # Over the limit, a resend of a stored message (the widget's offline outbox) is still answered.
    assert actions.do_visitor_message(session=session, body="m0", client_id="c0") == first
    assert Message.objects.filter(direction="in").count() == 3
    # The offline form counts against the same limit.
    with pytest.raises(ActionError, match="too quickly"):
        actions.do_submit_offline_message(session=session, name="V", email="v@example.com", body="offline")


def test_wrap_up_and_follow_up(visitor, world):
    session = VisitorSession.objects.get()
    conv = actions.do_visitor_message(session=session, body="Hi", client_id="c-1").conversation
    conv = actions.do_convert_to_ticket(actor=world.alice, conversation=conv)
    assert conv.status == "pending" and conv.meta["follow_up"] is True
    from omnichannel.errors import ActionError

    with pytest.raises(ActionError):
        actions.do_wrap_up(actor=world.alice, conversation=conv, disposition="Nope")
    wrap = actions.do_wrap_up(actor=world.alice, conversation=conv, disposition="Resolved", note="Refunded")
    assert wrap.disposition == "Resolved"


def test_widget_strings_are_translated():
    from campaigns.strings import widget_strings

    assert widget_strings("es")["send"] == "Enviar"
    assert widget_strings("fr")["send"] == "Envoyer"


def test_default_texts_follow_the_visitors_language_and_admin_texts_stay(widget_post, chat):
    es = widget_post("session", {"language": "es-ES"}).json()
    assert es["language"] == "es"
    config = es["config"]
    assert config["title"] == "Estamos aquí para ayudarte" and config["button_text"] == "Chatea con nosotros"
    assert config["offline_message"].startswith("Ahora no estamos conectados")
    assert [f["label"] for f in config["prechat_fields"]] == ["Nombre", "Correo electrónico", "Departamento"]
    assert config["prechat_fields"][2]["options"] == ["Sales", "Support", "Billing"]  # rules match these
    fr = widget_post("session", {"language": "fr"}).json()["config"]
    assert fr["title"] == "Nous sommes là pour vous aider" and fr["postchat_question"].startswith("Comment")
    WidgetConfig.objects.filter(inbox=chat).update(title="Acme support")
    assert widget_post("session", {"language": "es"}).json()["config"]["title"] == "Acme support"
    assert widget_post("session", {"language": "en"}).json()["config"]["greeting"].startswith("Hi! Ask us")


def test_chat_concurrency_limit(chat, world, make_agent):
    from conversations.actions import do_assign_conversation, do_send_agent_reply
    from conversations.actions import do_receive_inbound_message as receive
    from omnichannel.errors import ActionError

    AgentProfile.objects.filter(user=world.alice).update(max_concurrent=2)
    convs = [receive(inbox=chat, source_id=f"v{i}", body="hi").message.conversation for i in range(3)]
    do_send_agent_reply(actor=world.alice, conversation=convs[0], body="hello")
    do_assign_conversation(actor=world.alice, conversation=convs[1], assignee=world.alice)
    with pytest.raises(ActionError, match="limit 2"):
        do_send_agent_reply(actor=world.alice, conversation=convs[2], body="hello")
    with pytest.raises(ActionError, match="limit 2"):
        do_assign_conversation(actor=world.alice, conversation=convs[2], assignee=world.alice)
    # A supervisor may go beyond the limit on purpose.
    do_assign_conversation(actor=world.bob, conversation=convs[2], assignee=world.alice)
    assert Conversation.objects.filter(assignee=world.alice).count() == 3


def test_approximate_location_from_ip_with_a_geoip_database(chat, settings):
    from pathlib import Path

    settings.GEOIP_PATH = str(Path(__file__).parent.parent / "fixtures" / "GeoLite2-City-Test.mmdb")
    session, _ = actions.do_start_visitor_session(inbox=chat, visitor_token=None,
                                                  info=actions.SessionInfo(ip="81.2.69.142"))
    assert (session.country, session.city) == ("GB", "London")
    session, _ = actions.do_start_visitor_session(inbox=chat, visitor_token=None,
                                                  info=actions.SessionInfo(ip="10.0.0.1"))
    assert (session.country, session.city) == ("", "")
    # State, postal code and time zone too: routing's region conditions match a visitor known only by IP.
    session, _ = actions.do_start_visitor_session(inbox=chat, visitor_token=None,
                                                  info=actions.SessionInfo(ip="216.160.83.56"))
    assert (session.country, session.region, session.postal_code, session.time_zone) == (
        "US", "WA", "98354", "America/Los_Angeles")
    conversation = actions.do_visitor_message(session=session, body="Hi there", client_id="geo-1").conversation
    from conversations.conditions import gather_facts

    facts = gather_facts(conversation, first_message="Hi there")
    assert (facts.get("country"), facts.get("state"), facts.get("zip"), facts.get("timezone")) == (
        "US", "WA", "98354", "America/Los_Angeles")


def test_client_address_behind_a_proxy_is_the_one_the_proxy_saw(rf, settings):
    from campaigns.views import _client_ip

    settings.SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    request = rf.get("/", HTTP_X_FORWARDED_FOR="6.6.6.6, 81.2.69.142", REMOTE_ADDR="10.0.0.2")
    assert _client_ip(request) == "81.2.69.142"  # the first entry is whatever the client sent
    settings.SECURE_PROXY_SSL_HEADER = None
    assert _client_ip(request) == "10.0.0.2"
