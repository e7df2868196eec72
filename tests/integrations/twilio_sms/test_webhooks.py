"""SMS through Twilio: requests signed exactly as Twilio signs them, a fake Twilio REST API on loopback."""

from __future__ import annotations

from unittest import mock

import pytest
from twilio.request_validator import RequestValidator

from conversations import actions
from conversations.models import ChannelKind, Conversation, Inbox, Message, SmsConsent
from conversations.tasks import deliver_outbound_message, process_inbound_delivery
from omnichannel.integrations.twilio_sms.tasks import download_twilio_media

from .fake import FakeTwilio

pytestmark = pytest.mark.django_db
TOKEN = "twilio-auth-token-1234"  # noqa: S105


@pytest.fixture
def fake(settings):
    f = FakeTwilio()
    settings.TWILIO_API_BASE_URL = f.url
    yield f
    f.close()


@pytest.fixture
def sms(world, settings):
    settings.PUBLIC_BASE_URL = "https://support.example.com"
    inbox = Inbox.objects.create(name="SMS", kind=ChannelKind.SMS, secret=TOKEN,
                                 settings={"account_sid": "AC" + "1" * 32, "from_number": "+15550100000",
                                           "help_reply": "Acme support. Reply STOP to opt out."})
    world.support.inboxes.add(inbox)
    return inbox


def post(client, inbox, params, *, kind="sms", sign=True, token=TOKEN, process=True):
    """Post a webhook signed as Twilio signs it; then run the inbound task it enqueued, as a worker would
    (process=False: leave the stored delivery unprocessed)."""
    path = f"/webhooks/twilio/{inbox.public_token}/{kind}/"
    url = "https://support.example.com" + path
    headers = {}
    if sign:
        headers["HTTP_X_TWILIO_SIGNATURE"] = RequestValidator(token).compute_signature(url, params)
    with mock.patch("routing.tasks.route_conversation.delay_on_commit"), \
            mock.patch.object(process_inbound_delivery, "delay_on_commit") as enqueued:
        response = client.post(path, params, **headers)
        if process:
            for call in enqueued.call_args_list:
                process_inbound_delivery(*call.args)
    return response


def inbound(sid="SM" + "a" * 32, body="Hi, where is my order?", **extra):
    return {"MessageSid": sid, "SmsSid": sid, "AccountSid": "AC" + "1" * 32, "From": "+1 (415) 555-0199",
            "To": "+15550100000", "Body": body, "NumMedia": "0", **extra}


def test_inbound_is_verified_stored_once_and_answered_with_empty_twiml(client, sms):
    r = post(client, sms, inbound())
    assert r.status_code == 200 and r["Content-Type"].startswith("text/xml")
    assert b"<Response />" in r.content or b"<Response/>" in r.content
    msg = Message.objects.get()
    assert msg.provider_message_id == "SM" + "a" * 32
    contact = msg.conversation.contact
    assert contact.phone == "+14155550199" and contact.country == "US"
    # Twilio retries the same delivery: acknowledged, stored once.
    assert post(client, sms, inbound()).status_code == 200
    assert Message.objects.count() == 1


def test_what_twilio_says_of_a_message_is_kept_on_the_message(client, sms):
    post(client, sms, inbound(NumSegments="2"))
    assert Message.objects.get().meta == {"sms": {"to": "+15550100000", "segments": "2"}}


def test_a_delivery_whose_task_was_lost_is_processed_by_the_generic_redrive(client, sms):
    """Any channel's unprocessed delivery is re-driven by one job (conversations.tasks), not one per provider."""
    from datetime import timedelta

    from django.utils import timezone

    from conversations.models import InboundDelivery
    from conversations.tasks import redrive_inbound_deliveries

    post(client, sms, inbound(), process=False)
    InboundDelivery.objects.update(received_at=timezone.now() - timedelta(minutes=5))
    with mock.patch.object(process_inbound_delivery, "delay") as enqueued, \
            mock.patch("routing.tasks.route_conversation.delay_on_commit"):
        assert redrive_inbound_deliveries() == 1
        process_inbound_delivery(*enqueued.call_args.args)
    assert Message.objects.get().body == "Hi, where is my order?"


def test_a_delivery_its_inbox_can_no_longer_receive_is_kept_with_the_reason_not_retried(client, sms):
    """An SMS inbox switched to another kind while a delivery waited: processed once, with a readable error."""
    from conversations.models import InboundDelivery

    post(client, sms, inbound(), process=False)
    Inbox.objects.filter(pk=sms.pk).update(kind=ChannelKind.EMAIL)
    delivery = InboundDelivery.objects.get()
    assert process_inbound_delivery(delivery.id) == 1
    delivery.refresh_from_db()
    assert delivery.processed_at is not None and delivery.message_id is None
    assert "Email inboxes cannot receive this delivery" in delivery.error
    assert Message.objects.count() == 0


def test_a_status_callback_with_an_odd_error_code_is_a_failure_not_a_500(client, sms, world):
    """"²" is a digit to str.isdigit() but not to int(): the callback still answers 200 and records the failure."""
    post(client, sms, inbound())
    conv = Conversation.objects.get()
    with mock.patch("conversations.tasks.deliver_outbound_message.delay_on_commit"):
        reply = actions.do_send_agent_reply(actor=world.alice, conversation=conv, body="Hello")
    Message.objects.filter(pk=reply.pk).update(provider_message_id="SM" + "e" * 32, delivery_status="sent")
    params = {"MessageSid": "SM" + "e" * 32, "MessageStatus": "failed", "ErrorCode": "²"}
    path = f"/webhooks/twilio/{sms.public_token}/status/"
    signature = RequestValidator(TOKEN).compute_signature("https://support.example.com" + path, params)
    assert client.post(path, params, HTTP_X_TWILIO_SIGNATURE=signature).status_code == 200
    reply.refresh_from_db()
    assert reply.delivery_status == "failed" and "error ²" in reply.failure_reason


def test_bad_or_missing_signature_is_403(client, sms):
    assert post(client, sms, inbound(), sign=False).status_code == 403
    assert post(client, sms, inbound(), token="wrong-token").status_code == 403
    params = inbound()
    path = f"/webhooks/twilio/{sms.public_token}/sms/"
    sig = RequestValidator(TOKEN).compute_signature("https://support.example.com" + path, params)
    tampered = {**params, "Body": "tampered"}
    assert client.post(path, tampered, HTTP_X_TWILIO_SIGNATURE=sig).status_code == 403
    assert Message.objects.count() == 0


def test_reply_is_sent_through_the_sdk_once_and_status_moves_forward(client, sms, fake, world):
    post(client, sms, inbound())
    conv = Conversation.objects.get()
    with mock.patch("conversations.tasks.deliver_outbound_message.delay_on_commit"):
        reply = actions.do_send_agent_reply(actor=world.alice, conversation=conv, body="It ships today 📦")
    assert deliver_outbound_message(reply.id) == "sent"
    assert deliver_outbound_message(reply.id) == "skipped"  # a redelivered task never sends twice
    assert len(fake.sends) == 1
    send = fake.sends[0]
    assert send["path"] == f"/2010-04-01/Accounts/AC{'1' * 32}/Messages.json"
    assert send["form"]["To"] == "+14155550199" and send["form"]["From"] == "+15550100000"
    assert send["form"]["StatusCallback"] == f"https://support.example.com/webhooks/twilio/{sms.public_token}/status/"
    reply.refresh_from_db()
    sid = reply.provider_message_id
    assert reply.delivery_status == "sent" and sid.startswith("SM")
    for status in ("delivered", "sent", "bogus"):  # out of order and unknown: 200, never backwards
        assert post(client, sms, {"MessageSid": sid, "MessageStatus": status}, kind="status").status_code == 200
    reply.refresh_from_db()
    assert reply.delivery_status == "delivered"
    assert post(client, sms, {"MessageSid": "SMunknown", "MessageStatus": "sent"}, kind="status").status_code == 200


def test_permanent_and_temporary_failures(client, sms, fake, world):
    from celery.exceptions import Retry

    post(client, sms, inbound())
    conv = Conversation.objects.get()
    with mock.patch("conversations.tasks.deliver_outbound_message.delay_on_commit"):
        first = actions.do_send_agent_reply(actor=world.alice, conversation=conv, body="one")
        second = actions.do_send_agent_reply(actor=world.alice, conversation=conv, body="two")
    fake.fail_with = [(503, {"code": 20500, "message": "Internal error", "status": 503})]
    with pytest.raises(Retry):
        deliver_outbound_message.apply(args=[first.id], throw=True)
    assert deliver_outbound_message(first.id) == "sent"
    fake.fail_with = [(400, {"code": 21211, "message": "Invalid 'To'", "status": 400})]
    assert deliver_outbound_message(second.id) == "failed"
    second.refresh_from_db()
    assert second.failure_reason == "Invalid phone number"


def test_stop_start_help_and_consent(client, sms, fake, world):
    post(client, sms, inbound())
    conv = Conversation.objects.get()
    r = post(client, sms, inbound(sid="SM" + "b" * 32, body=" stop "))
    consent = SmsConsent.objects.get()
    assert consent.state == "opted_out" and consent.source == "keyword"
    with pytest.raises(actions.ActionError, match="opted out"):
        actions.do_send_agent_reply(actor=world.alice, conversation=conv, body="hello?")
    r = post(client, sms, inbound(sid="SM" + "c" * 32, body="HELP"))
    assert b"Acme support. Reply STOP to opt out." in r.content
    post(client, sms, inbound(sid="SM" + "d" * 32, body="Stop please"))  # not a whole-message keyword
    consent.refresh_from_db()
    assert consent.state == "opted_out"
    post(client, sms, inbound(sid="SM" + "e" * 32, body="hello", OptOutType="START"))
    consent.refresh_from_db()
    assert consent.state == "opted_in"
    assert list(consent.events.values_list("state", "source")) == [("opted_out", "keyword"), ("opted_in", "keyword")]
    with mock.patch("conversations.tasks.deliver_outbound_message.delay_on_commit"):
        actions.do_send_agent_reply(actor=world.alice, conversation=conv, body="Welcome back")


def test_mms_media_is_downloaded_from_twilio_hosts_only(client, sms, fake):
    with mock.patch("omnichannel.integrations.twilio_sms.tasks.download_twilio_media.delay_on_commit") as later:
        post(client, sms, inbound(NumMedia="2", MediaUrl0=f"{fake.url}/2010-04-01/Media/ME1",
                                  MediaContentType0="image/png", MediaUrl1="http://169.254.169.254/latest/meta-data",
                                  MediaContentType1="image/png", Body=""))
    message_id, media = later.call_args.args
    assert download_twilio_media(message_id, media) == 1
    message = Message.objects.get(pk=message_id)
    att = message.attachments.get()
    assert att.content_type == "image/png" and att.size > 0
    assert download_twilio_media(message_id, media) == 0  # idempotent
    # The refused one leaves a sign in the conversation, once.
    lines = Message.objects.filter(conversation=message.conversation, sender_type="system")
    assert lines.count() == 1 and "file 2: refusing media from 169.254.169.254" in lines.get().body
    assert message.__class__.objects.get(pk=message_id).meta["sms"]["media_refused"]


def test_unknown_inbox_and_missing_fields(client, sms):
    assert client.post("/webhooks/twilio/nope/sms/", inbound()).status_code == 404
    assert post(client, sms, {"Body": "x"}).status_code == 400


def test_proactive_sms_needs_opt_in_and_sends_once_per_key(client, sms, fake, world, api_client_for):
    from conversations.models import MessageTemplate

    MessageTemplate.objects.create(name="appointment-reminder",
                                   body="Hi {{contact.first_name}}, see you on {{date}} at {{time}}.")
    api = api_client_for(world.bob)
    url = f"/api/v1/inboxes/{sms.id}/sms/messages/"
    payload = {"to": "+14155550123", "template": "appointment-reminder",
               "variables": {"date": "Dec 3", "time": "10:00"}, "idempotency_key": "appt-881"}
    r = api.post(url, payload, format="json")
    assert r.status_code == 400 and "not opted in" in r.json()["error"]
    assert api.post(f"/api/v1/inboxes/{sms.id}/sms/consent/", {"phone": "+1 415 555 0123", "opted_in": True,
                                                               "source": "checkout"}, format="json").status_code == 204
    assert api.post(url, {**payload, "variables": {"date": "Dec 3"}}, format="json").status_code == 400
    assert api.post(url, {**{k: v for k, v in payload.items() if k != "idempotency_key"}},
                    format="json").status_code == 400
    with mock.patch("conversations.tasks.deliver_outbound_message.delay_on_commit") as later:
        first = api.post(url, payload, format="json")
        again = api.post(url, payload, format="json")
    assert first.status_code == 201 and again.status_code == 200 and again.json()["duplicate"] is True
    assert first.json()["message"]["body"] == "Hi , see you on Dec 3 at 10:00."
    assert later.call_count == 1
    deliver_outbound_message(first.json()["message"]["id"])
    assert len(fake.sends) == 1 and fake.sends[0]["form"]["To"] == "+14155550123"
    # The customer's reply lands in the same conversation.
    post(client, sms, inbound(sid="SM" + "f" * 32, body="Can we make it 11?", From="+14155550123"))
    conv = Conversation.objects.get(pk=first.json()["message"]["conversation_id"])
    assert conv.messages.count() == 2


def test_admin_shows_the_webhook_urls(client, sms, make_agent):
    boss = make_agent("boss", role="admin")
    boss.is_superuser = True
    boss.save()
    client.force_login(boss)
    r = client.get(f"/admin/conversations/inbox/{sms.pk}/change/")
    assert f"https://support.example.com/webhooks/twilio/{sms.public_token}/sms/".encode() in r.content
    assert TOKEN.encode() not in r.content  # the auth token is never shown back
    # Stored inbound deliveries are listed, processed or not (read-only).
    post(client, sms, inbound(), process=False)
    r = client.get("/admin/conversations/inbounddelivery/?processed_at__isempty=1")
    assert r.status_code == 200 and ("SM" + "a" * 32).encode() in r.content


def test_inbound_is_stored_before_the_200_and_processed_exactly_once(client, sms):
    from conversations.models import InboundDelivery

    with mock.patch.object(process_inbound_delivery, "delay_on_commit") as enqueued:
        assert post(client, sms, inbound(), process=False).status_code == 200
    # Committed before the answer; nothing else yet (a worker does the rest).
    delivery = InboundDelivery.objects.get()
    assert delivery.provider_message_id == "SM" + "a" * 32 and delivery.payload["Body"] == "Hi, where is my order?"
    assert delivery.processed_at is None and Message.objects.count() == 0
    # Twilio retries while it is still waiting for a worker: acknowledged, not stored or enqueued again.
    with mock.patch.object(process_inbound_delivery, "delay_on_commit") as enqueued:
        assert post(client, sms, inbound(), process=False).status_code == 200
    assert InboundDelivery.objects.count() == 1 and not enqueued.called
    with mock.patch("routing.tasks.route_conversation.delay_on_commit") as routed:
        assert process_inbound_delivery(delivery.id) == 1
        assert process_inbound_delivery(delivery.id) == 0  # a redelivered task (acks_late) stores nothing twice
    assert routed.call_count == 1
    delivery.refresh_from_db()
    message = Message.objects.get()
    assert delivery.processed_at is not None and delivery.message == message and delivery.error == ""
    assert message.provider_message_id == "SM" + "a" * 32 and message.body == "Hi, where is my order?"
    # A week later the raw delivery is pruned; a very late retry of the same SID is still stored once.
    from datetime import timedelta

    from django.utils import timezone

    from conversations.tasks import prune_inbound_deliveries

    assert prune_inbound_deliveries() == 0
    InboundDelivery.objects.update(processed_at=timezone.now() - timedelta(days=8))
    assert prune_inbound_deliveries() == 1
    assert post(client, sms, inbound()).status_code == 200
    assert Message.objects.count() == 1 and InboundDelivery.objects.get().message == message


def test_a_worker_failing_mid_processing_loses_nothing_and_the_redrive_finishes_it(client, sms):
    from datetime import timedelta

    from django.db import OperationalError
    from django.utils import timezone

    from conversations.models import Contact, InboundDelivery
    from conversations.tasks import redrive_inbound_deliveries

    post(client, sms, inbound(), process=False)
    delivery = InboundDelivery.objects.get()
    real = actions.do_receive_inbound_message

    def dies_after_storing(**kwargs):
        real(**kwargs)  # the message is written, then the worker's connection breaks before commit
        raise OperationalError("server closed the connection unexpectedly")

    with mock.patch("routing.tasks.route_conversation.delay_on_commit"), \
            mock.patch.object(actions, "do_receive_inbound_message", side_effect=dies_after_storing), \
            pytest.raises(OperationalError):
        process_inbound_delivery(delivery.id)
    delivery.refresh_from_db()
    assert delivery.processed_at is None and delivery.attempts == 1 and "OperationalError" in delivery.error
    assert Message.objects.count() == 0 and Contact.objects.count() == 0  # rolled back as a whole
    # Too recent for the re-drive (its task may still be queued or retrying); later it is re-enqueued.
    with mock.patch.object(process_inbound_delivery, "delay") as enqueued:
        assert redrive_inbound_deliveries() == 0
        InboundDelivery.objects.filter(pk=delivery.pk).update(received_at=timezone.now() - timedelta(minutes=2))
        assert redrive_inbound_deliveries() == 1
    assert enqueued.call_args.args == (delivery.id,)
    with mock.patch("routing.tasks.route_conversation.delay_on_commit"):
        assert process_inbound_delivery(delivery.id) == 1
    assert Message.objects.count() == 1
    with mock.patch.object(process_inbound_delivery, "delay") as enqueued:
        assert redrive_inbound_deliveries() == 0  # processed: never re-driven again


def test_one_senders_messages_are_processed_in_arrival_order(client, sms):
    from conversations.models import InboundDelivery

    post(client, sms, inbound(sid="SM" + "1" * 32, body="first"), process=False)
    post(client, sms, inbound(sid="SM" + "2" * 32, body="second"), process=False)
    first, second = InboundDelivery.objects.order_by("id")
    with mock.patch("routing.tasks.route_conversation.delay_on_commit"):
        assert process_inbound_delivery(second.id) == 2  # the later task ran first: it stores the earlier one first
        assert process_inbound_delivery(first.id) == 0
    assert list(Message.objects.order_by("id").values_list("body", flat=True)) == ["first", "second"]


def test_bad_input_is_refused_before_storing_or_kept_with_its_reason(client, sms):
    from conversations.models import InboundDelivery

    assert post(client, sms, inbound(body="  ")).status_code == 400  # empty body, no media: as before, a 400
    assert post(client, sms, inbound(body="x" * 20000)).status_code == 400
    # A NUL (PostgreSQL text and JSON cannot hold one) is dropped, never a 500 that Twilio would retry forever.
    assert post(client, sms, inbound(sid="SM" + "0" * 32, body="nul\x00byte", From="+1415555\x000199"),
                process=False).status_code == 200
    assert InboundDelivery.objects.get().payload["Body"] == "nulbyte"
    InboundDelivery.objects.all().delete()
    assert not InboundDelivery.objects.exists()
    post(client, sms, inbound(), process=False)
    Inbox.objects.filter(pk=sms.pk).update(is_active=False)  # disabled after Twilio was answered
    delivery = InboundDelivery.objects.get()
    assert process_inbound_delivery(delivery.id) == 1
    delivery.refresh_from_db()
    assert delivery.processed_at is not None and delivery.error == "This inbox is disabled"
    assert not Message.objects.exists()


def test_a_worker_killed_mid_send_neither_sends_twice_nor_loses_the_reply(client, sms, fake, world):
    """Killed after Twilio accepted the message but before its SID was stored, and killed before the request
    reached Twilio: the redelivered task skips (the message is claimed), the re-drive puts the message back
    once the send's lease has expired (a live send is never re-driven), and the retry asks Twilio for what it
    already has before sending."""
    from datetime import timedelta

    from django.utils import timezone

    from conversations.tasks import redrive_outbound_messages

    post(client, sms, inbound())
    conv = Conversation.objects.get()
    with mock.patch("conversations.tasks.deliver_outbound_message.delay_on_commit"):
        earlier = actions.do_send_agent_reply(actor=world.alice, conversation=conv, body="On its way")
        accepted = actions.do_send_agent_reply(actor=world.alice, conversation=conv, body="On its way")
        not_reached = actions.do_send_agent_reply(actor=world.alice, conversation=conv, body="Tracking: 1Z999")
    assert deliver_outbound_message(earlier.id) == "sent"  # an identical earlier reply, delivered normally

    class Killed(BaseException):  # the process dies: nothing after this point runs
        pass

    with mock.patch("conversations.actions.do_update_delivery_status", side_effect=Killed), pytest.raises(Killed):
        deliver_outbound_message(accepted.id)  # Twilio accepted it; the SID was never stored
    with mock.patch("omnichannel.integrations.twilio_sms.transport.twilio_client", side_effect=Killed), \
            pytest.raises(Killed):
        deliver_outbound_message(not_reached.id)  # died before the request left
    assert len(fake.sends) == 2
    for message in (accepted, not_reached):
        message.refresh_from_db()
        assert message.delivery_status == "sending"
        assert deliver_outbound_message(message.id) == "skipped"  # the broker redelivers (acks_late): no send
    # However old the messages, the re-drive leaves them while their sends' leases run; once expired (the workers
    # are dead: killed at the latest by the task's time limit), it enqueues both again.
    Message.objects.filter(pk__in=[accepted.pk, not_reached.pk]).update(created_at=timezone.now() - timedelta(minutes=12))
    with mock.patch("conversations.tasks.deliver_outbound_message.delay") as enqueued:
        assert redrive_outbound_messages() == 0
        Message.objects.filter(pk__in=[accepted.pk, not_reached.pk]).update(
            delivery_lease_until=timezone.now() - timedelta(seconds=1))
        assert redrive_outbound_messages() == 2
    assert sorted(call.args[0] for call in enqueued.call_args_list) == sorted([accepted.id, not_reached.id])
    assert deliver_outbound_message(accepted.id) == "already sent"  # Twilio had it: not sent again
    assert deliver_outbound_message(not_reached.id) == "sent"  # Twilio never had it: sent now
    assert [s["form"]["Body"] for s in fake.sends] == ["On its way", "On its way", "Tracking: 1Z999"]
    for message in (earlier, accepted, not_reached):
        message.refresh_from_db()
    assert accepted.delivery_status == "sent" and accepted.provider_message_id == fake.sends[1]["resource"]["sid"]
    assert earlier.provider_message_id == fake.sends[0]["resource"]["sid"]  # never confused with the earlier reply
    assert not_reached.provider_message_id == fake.sends[2]["resource"]["sid"]


def test_an_earlier_message_that_keeps_failing_does_not_hold_back_its_senders_next_ones(client, sms):
    from conversations.models import InboundDelivery

    post(client, sms, inbound(sid="SM" + "1" * 32, body="poison"), process=False)
    post(client, sms, inbound(sid="SM" + "2" * 32, body="next"), process=False)
    first, second = InboundDelivery.objects.order_by("id")
    real = actions.do_receive_inbound_message

    def fails_on_poison(**kwargs):
        if kwargs["body"] == "poison":
            raise RuntimeError("a bug")
        return real(**kwargs)

    with mock.patch("routing.tasks.route_conversation.delay_on_commit"), \
            mock.patch.object(actions, "do_receive_inbound_message", side_effect=fails_on_poison):
        assert process_inbound_delivery(second.id) == 1
    first.refresh_from_db()
    second.refresh_from_db()
    assert second.processed_at is not None and second.message.body == "next"
    assert first.processed_at is None and first.attempts == 1 and "a bug" in first.error
    with mock.patch("routing.tasks.route_conversation.delay_on_commit"):
        assert process_inbound_delivery(first.id) == 1  # fixed: its own task (or the re-drive) stores it
    assert Message.objects.count() == 2


@pytest.mark.parametrize("phone", ["12", "+12", "abc", "+1 415", "\x00+14155550123x"])
def test_consent_and_proactive_sms_refuse_what_is_not_a_phone_number(sms, world, api_client_for, phone):
    from conversations.models import SmsConsent

    api = api_client_for(world.bob)
    r = api.post(f"/api/v1/inboxes/{sms.id}/sms/consent/", {"phone": phone, "opted_in": True}, format="json")
    assert r.status_code == 400, r.content
    r = api.post(f"/api/v1/inboxes/{sms.id}/sms/messages/", {"to": phone, "body": "hi"}, format="json")
    assert r.status_code == 400, r.content
    assert not SmsConsent.objects.exists()


def test_a_short_code_sender_keeps_its_number():
    from omnichannel.integrations.twilio_sms.phones import normalize_phone, parse_phone

    assert normalize_phone("12345") == ("12345", "")
    assert normalize_phone("+1 (415) 555-0123") == ("+14155550123", "US")
    assert parse_phone("12") is None and parse_phone("415 555 0123") == "+14155550123"


def _fixture(name: str) -> dict:
    import json
    from pathlib import Path

    data = json.loads((Path(__file__).parent / "fixtures" / name).read_text())
    data.pop("_source")
    return data


def test_recorded_payloads_an_mms_then_its_reply_undelivered(client, sms, world):
    """The parameters exactly as Twilio's documentation lists them (fixtures/), signed as Twilio signs them."""
    params = _fixture("inbound_mms.json")
    with mock.patch("omnichannel.integrations.twilio_sms.tasks.download_twilio_media.delay_on_commit") as media:
        assert post(client, sms, params).status_code == 200
    message = Message.objects.get(provider_message_id=params["MessageSid"])
    assert message.body == "Here is the damaged box 📦"
    assert message.conversation.contact.phone == "+14155550123"
    assert message.meta["sms"]["segments"] == "1"
    assert media.call_args.args[1] == [{"url": params["MediaUrl0"], "content_type": "image/jpeg"}]
    assert post(client, sms, params).status_code == 200  # Twilio retries: stored once
    assert Message.objects.filter(provider_message_id=params["MessageSid"]).count() == 1

    status = _fixture("status_undelivered.json")
    with mock.patch("conversations.tasks.deliver_outbound_message.delay_on_commit"):
        reply = actions.do_send_agent_reply(actor=world.alice, conversation=message.conversation,
                                            body="Sorry! A new one is on its way.")
    Message.objects.filter(pk=reply.pk).update(provider_message_id=status["MessageSid"], delivery_status="sent")
    assert post(client, sms, status, kind="status").status_code == 200
    reply.refresh_from_db()
    assert reply.delivery_status == "failed" and "30003" in reply.failure_reason
