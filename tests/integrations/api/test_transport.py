"""API channel delivery: a real HTTP receiver on loopback, signatures, retries, idempotency."""

from __future__ import annotations

import json
import threading
import time
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from unittest import mock

import pytest
from celery.exceptions import Retry
from django.utils import timezone

from conversations import actions
from conversations.models import Message
from conversations.tasks import deliver_outbound_message, redrive_outbound_messages
from omnichannel.outbound_webhooks import verify

pytestmark = pytest.mark.django_db


class FakeIntegration:
    """An API channel integration on loopback: records each delivery (once answered, after `delay` seconds;
    `arrived` is set as soon as one reaches it) and answers the next of `statuses` (200 when none is left)."""

    def __init__(self, delay: float = 0):
        self.requests: list[dict] = []
        self.statuses: list[int] = []
        self.arrived = threading.Event()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                outer.arrived.set()
                time.sleep(delay)
                outer.requests.append({"headers": dict(self.headers), "body": body})
                code = outer.statuses.pop(0) if outer.statuses else 200
                self.send_response(code)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def fake():
    f = FakeIntegration()
    yield f
    f.close()


@pytest.fixture
def reply(world, inbound, fake):
    world.inbox_api.settings = {"webhook_url": fake.url}
    world.inbox_api.save()
    conv = inbound(inbox=world.inbox_api, source_id="shop-7").message.conversation
    with mock.patch("conversations.tasks.deliver_outbound_message.delay_on_commit"):
        return actions.do_send_agent_reply(actor=world.alice, conversation=conv, body="Your parcel ships today")


def test_reply_is_posted_signed_and_marked_sent(world, fake, reply):
    assert deliver_outbound_message(reply.id) == "sent"
    assert len(fake.requests) == 1
    req = fake.requests[0]
    h = req["headers"]
    assert verify(world.inbox_api.secret, h["X-Omnichannel-Timestamp"], req["body"], h["X-Omnichannel-Signature"])
    assert not verify("wrong-secret", h["X-Omnichannel-Timestamp"], req["body"], h["X-Omnichannel-Signature"])
    assert h["X-Omnichannel-Delivery"] == str(reply.uuid)
    payload = json.loads(req["body"])
    assert payload["message"]["body"] == "Your parcel ships today"
    assert payload["conversation"]["source_id"] == "shop-7"
    reply.refresh_from_db()
    assert reply.delivery_status == "sent"


def test_redelivered_task_sends_once(fake, reply):
    assert deliver_outbound_message(reply.id) == "sent"
    assert deliver_outbound_message(reply.id) == "skipped"
    assert len(fake.requests) == 1


def test_temporary_failure_retries_with_backoff_then_succeeds(fake, reply):
    fake.statuses = [503]
    with pytest.raises(Retry):
        deliver_outbound_message.apply(args=[reply.id], throw=True)
    reply.refresh_from_db()
    assert (reply.delivery_status, reply.delivery_attempts) == ("queued", 1)
    assert "503" in reply.failure_reason
    assert deliver_outbound_message(reply.id) == "sent"
    reply.refresh_from_db()
    assert (reply.delivery_status, reply.failure_reason, reply.delivery_attempts) == ("sent", "", 2)


def test_permanent_failure_is_shown_with_reason(fake, reply):
    fake.statuses = [410]
    assert deliver_outbound_message(reply.id) == "failed"
    reply.refresh_from_db()
    assert reply.delivery_status == "failed" and "410" in reply.failure_reason
    assert reply.conversation.events.filter(kind="delivery_failed").exists()


def test_gives_up_after_max_attempts(fake, reply, settings):
    settings.OUTBOUND_WEBHOOK_MAX_ATTEMPTS = 2
    fake.statuses = [500, 500]
    with pytest.raises(Retry):
        deliver_outbound_message.apply(args=[reply.id], throw=True)
    assert deliver_outbound_message(reply.id) == "failed"


def test_missing_url_and_private_address_fail_clearly(world, reply, settings):
    world.inbox_api.settings = {}
    world.inbox_api.save()
    assert deliver_outbound_message(reply.id) == "failed"
    reply.refresh_from_db()
    assert "no webhook_url" in reply.failure_reason

    settings.OUTBOUND_WEBHOOK_ALLOWED_PRIVATE_HOSTS = []
    world.inbox_api.settings = {"webhook_url": "http://127.0.0.1:1/hook"}
    world.inbox_api.save()
    Message.objects.filter(pk=reply.pk).update(delivery_status="queued", failure_reason="")
    assert deliver_outbound_message(reply.id) == "failed"
    reply.refresh_from_db()
    assert "private address" in reply.failure_reason


def test_redrive_picks_up_lost_tasks(reply):
    Message.objects.filter(pk=reply.pk).update(created_at=timezone.now() - timedelta(minutes=2))
    with mock.patch("conversations.tasks.deliver_outbound_message.delay") as delay:
        assert redrive_outbound_messages() == 1
    delay.assert_called_once_with(reply.id)


def test_stuck_sending_goes_back_to_queued(reply):
    """A send whose lease expired (its worker died); see test_delivery.py for one still in flight."""
    Message.objects.filter(pk=reply.pk).update(delivery_status="sending",
                                               created_at=timezone.now() - timedelta(minutes=12),
                                               delivery_lease_until=timezone.now() - timedelta(seconds=1))
    with mock.patch("conversations.tasks.deliver_outbound_message.delay") as delay:
        redrive_outbound_messages()
    reply.refresh_from_db()
    assert reply.delivery_status == "queued"
    delay.assert_called_once_with(reply.id)
