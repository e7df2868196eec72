"""The API channel's inbound path: stored as a delivery first (once per provider id), then processed."""

from __future__ import annotations

import threading

import pytest
from django.core.files.storage import default_storage
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connection

from conversations import actions
from conversations.models import Attachment, InboundDelivery, Message
from conversations.tasks import process_inbound_delivery
from omnichannel.integrations.api import inbound

pytestmark = pytest.mark.django_db


@pytest.fixture
def alice_api(world, api_client_for):
    return api_client_for(world.alice)


def _post(client, inbox, **payload):
    body = {"source_id": "cust-1", "body": "Hello from the shop", **payload}
    return client.post(f"/api/v1/inboxes/{inbox.id}/incoming/", body, format="json")


def test_a_posted_message_is_stored_as_a_delivery_then_processed(world, alice_api):
    r = _post(alice_api, world.inbox_api, provider_message_id="ext-9")
    assert r.status_code == 201, r.content
    delivery = InboundDelivery.objects.get()
    assert (delivery.inbox_id, delivery.provider_message_id, delivery.sender) == (world.inbox_api.id, "ext-9", "cust-1")
    assert delivery.processed_at is not None and delivery.message_id == r.json()["message"]["id"]
    assert Message.objects.get().provider_message_id == "ext-9"


def test_without_a_provider_id_each_post_is_a_new_message(world, alice_api):
    for _ in range(2):
        assert _post(alice_api, world.inbox_api).status_code == 201
    assert Message.objects.count() == 2
    assert all(d.provider_message_id.startswith("~") for d in InboundDelivery.objects.all())
    assert set(Message.objects.values_list("provider_message_id", flat=True)) == {None}


def test_bad_input_is_refused_before_anything_is_stored(world, alice_api):
    assert _post(alice_api, world.inbox_api, body="   ").status_code == 400
    assert _post(alice_api, world.inbox_api, source_id="\x00").status_code == 400
    r = alice_api.post(f"/api/v1/inboxes/{world.inbox_api.id}/incoming/",
                       '{"source_id": "c", "body": "hi", "meta": {"cart": 1e999}}', content_type="application/json")
    assert r.status_code == 400 and "meta" in r.content.decode()
    assert not InboundDelivery.objects.exists() and not Message.objects.exists()


def test_nul_characters_in_meta_are_dropped_and_refused_in_named_fields(world, alice_api):
    r = _post(alice_api, world.inbox_api, meta={"pl\x00an": "go\x00ld", "items": ["a\x00"]})
    assert r.status_code == 201, r.content
    assert Message.objects.select_related("conversation").get().conversation.meta == {"plan": "gold",
                                                                                      "items": ["a"]}
    r = _post(alice_api, world.inbox_api, contact={"name": "Zo\x00e"})
    assert r.status_code == 400 and "Null characters" in r.content.decode()


def test_a_failure_after_the_store_answers_202_and_the_task_stores_the_message(world, alice_api, monkeypatch):
    real = actions.do_receive_inbound_message

    def broken(**kwargs):
        raise RuntimeError("database went away")

    monkeypatch.setattr(actions, "do_receive_inbound_message", broken)
    monkeypatch.setattr(process_inbound_delivery, "delay", lambda *a, **k: None)  # the broker is not running here
    r = _post(alice_api, world.inbox_api, provider_message_id="ext-7")
    assert r.status_code == 202, r.content
    assert r.json()["pending"] is True
    delivery = InboundDelivery.objects.get()
    assert delivery.processed_at is None and delivery.attempts == 1
    assert not Message.objects.exists()

    monkeypatch.setattr(actions, "do_receive_inbound_message", real)
    assert actions.do_process_inbound_delivery(delivery_id=delivery.id) == 1  # what the task (or re-drive) runs
    assert Message.objects.get().provider_message_id == "ext-7"
    again = _post(alice_api, world.inbox_api, provider_message_id="ext-7")
    assert again.status_code == 200 and again.json()["duplicate"] is True
    assert Message.objects.count() == 1


def test_files_are_stored_with_the_delivery_and_attached(world, alice_api, settings):
    upload = SimpleUploadedFile("invoice.pdf", b"%PDF-1.4 test", content_type="application/pdf")
    r = alice_api.post(f"/api/v1/inboxes/{world.inbox_api.id}/incoming/",
                       {"source_id": "cust-1", "body": "", "files": [upload]}, format="multipart")
    assert r.status_code == 201, r.content
    att = Attachment.objects.get()
    assert (att.filename, att.content_type, att.size) == ("invoice.pdf", "application/pdf", 13)
    assert att.file.read() == b"%PDF-1.4 test"
    path = InboundDelivery.objects.get().payload["files"][0]["path"]
    assert path.startswith(inbound.UPLOAD_DIR)


def test_a_file_over_the_channels_limit_is_refused(world, alice_api, monkeypatch):
    monkeypatch.setattr(actions, "MAX_ATTACHMENT_BYTES", 10)
    upload = SimpleUploadedFile("big.bin", b"x" * 11, content_type="application/octet-stream")
    r = alice_api.post(f"/api/v1/inboxes/{world.inbox_api.id}/incoming/",
                       {"source_id": "cust-1", "body": "", "files": [upload]}, format="multipart")
    assert r.status_code == 400 and "big.bin" in r.content.decode()
    assert not InboundDelivery.objects.exists()


def test_the_saved_files_go_once_the_message_is_committed(world, django_capture_on_commit_callbacks):
    upload = SimpleUploadedFile("a.txt", b"abc", content_type="text/plain")
    with django_capture_on_commit_callbacks(execute=True):
        result = inbound.receive(inbox=world.inbox_api, source_id="c-2", files=[upload])
    assert result.message.attachments.get().file.read() == b"abc"
    path = InboundDelivery.objects.get().payload["files"][0]["path"]
    assert not default_storage.exists(path)


@pytest.mark.django_db(transaction=True)
def test_the_same_id_posted_twice_at_once_is_stored_once(world):
    results, errors = [], []

    def post():
        try:
            results.append(inbound.receive(inbox=world.inbox_api, source_id="c-3", body="hi",
                                           provider_message_id="same-1"))
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=post) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert Message.objects.filter(provider_message_id="same-1").count() == 1
    assert sorted(r.duplicate for r in results) == [False, True, True, True]
    assert len({r.message.id for r in results}) == 1
