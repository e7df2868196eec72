"""The channel registry (conversations/channels.py): one spec per kind, read by the core instead of kind tests."""

from __future__ import annotations

import pytest

from conversations import channels
from conversations.models import ChannelKind, ContactIdentity, Inbox


def test_every_kind_of_inbox_has_one_registered_channel():
    assert sorted(c.kind for c in channels.all_channels()) == sorted(ChannelKind.values)
    for kind, label in ChannelKind.choices:
        spec = channels.channel(kind)
        assert spec.label == label
        assert spec.identity in ContactIdentity.Kind.values
        assert spec.short


def test_live_chat_is_the_web_chat_and_the_rest_is_asynchronous():
    assert channels.live_kinds() == ("webchat",)
    assert channels.kinds_with(channels.WIDGET) == ("webchat",)
    assert channels.kinds_with(channels.PROACTIVE) == ("sms",)
    assert channels.kinds_with(channels.API_INBOUND) == ("api",)


def test_identities_scoped_to_an_inbox_are_those_that_mean_nothing_elsewhere():
    scoped = sorted(c.kind for c in channels.all_channels() if c.identity_per_inbox)
    assert scoped == ["api", "instagram", "messenger", "webchat"]


def test_a_kind_nobody_registered_is_an_error_and_a_kind_cannot_be_registered_twice():
    with pytest.raises(LookupError):
        channels.channel("carrier-pigeon")
    sms = channels.channel("sms")
    assert channels.register(sms) is sms  # the same spec again: start-up ran twice, harmless
    with pytest.raises(ValueError):
        channels.register(channels.Channel(kind="sms", label="SMS", short="SMS", identity="phone",
                                           identity_per_inbox=False, live=False))


@pytest.mark.django_db
def test_channels_that_cannot_send_yet_say_so_when_asked_to():
    from omnichannel.errors import TransportError

    inbox = Inbox.objects.create(name="Support mail", kind=ChannelKind.EMAIL)
    transport = channels.for_inbox(inbox).transport(inbox)
    with pytest.raises(TransportError) as refused:
        transport.send(None)
    assert refused.value.permanent and "not available yet" in refused.value.message


@pytest.mark.django_db
def test_the_admin_shows_each_channels_endpoints(admin_client):
    sms = Inbox.objects.create(name="SMS", kind=ChannelKind.SMS)
    page = admin_client.get(f"/admin/conversations/inbox/{sms.pk}/change/").content.decode()
    assert f"/webhooks/twilio/{sms.public_token}/sms/" in page and "account_sid" in page
    chat = Inbox.objects.create(name="Chat", kind=ChannelKind.WEBCHAT)
    page = admin_client.get(f"/admin/conversations/inbox/{chat.pk}/change/").content.decode()
    assert "data-omnichannel-token=&quot;" + chat.public_token in page


@pytest.mark.django_db
def test_a_reply_carries_only_files_its_channel_accepts(world, inbound):
    from django.core.files.uploadedfile import SimpleUploadedFile

    from conversations import actions
    from omnichannel.errors import ActionError

    mail = inbound(body="Hi by mail").message.conversation  # an email inbox: cannot carry files (yet)
    with pytest.raises(ActionError, match="Replies on Email inboxes cannot carry files"):
        actions.do_send_agent_reply(actor=world.alice, conversation=mail, body="See attached",
                                    attachments=[SimpleUploadedFile("a.txt", b"hello", "text/plain")])
    api = inbound(inbox=world.inbox_api, source_id="shop-1", body="Hi by API").message.conversation
    big = SimpleUploadedFile("big.bin", b"x" * (channels.channel("api").max_attachment_bytes + 1))
    with pytest.raises(ActionError, match="larger than 10 MB, the most API accepts"):
        actions.do_send_agent_reply(actor=world.alice, conversation=api, body="", attachments=[big])
    reply = actions.do_send_agent_reply(actor=world.alice, conversation=api, body="Here",
                                        attachments=[SimpleUploadedFile("a.txt", b"hello", "text/plain")])
    assert reply.attachments.count() == 1
    # An internal note is not sent anywhere: any inbox takes its files.
    note = actions.do_add_note(actor=world.alice, conversation=mail, body="log",
                               attachments=[SimpleUploadedFile("n.txt", b"note", "text/plain")])
    assert note.attachments.count() == 1
