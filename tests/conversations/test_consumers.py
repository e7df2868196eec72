"""The console websocket over the real Redis channel layer: auth, audience, replay, order, gaps."""

from __future__ import annotations

import json
from unittest import mock

import pytest
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.test import Client

from omnichannel.asgi import application

pytestmark = [pytest.mark.django_db(transaction=True)]


def _cookie(user) -> bytes:
    client = Client()
    client.force_login(user)
    return f"sessionid={client.cookies['sessionid'].value}".encode()


async def _connect(user=None, *, cursors=None, origin=b"http://testserver"):
    headers = [(b"origin", origin), (b"host", b"testserver")]  # a browser's handshake always has both
    if user is not None:
        headers.append((b"cookie", await database_sync_to_async(_cookie)(user)))
    path = "/ws/console/"
    if cursors is not None:
        path += "?cursors=" + json.dumps(cursors)
    comm = WebsocketCommunicator(application, path, headers=headers)
    connected, code = await comm.connect(timeout=5)
    return comm, connected, code


async def _hello(comm) -> dict:
    frame = await comm.receive_json_from(timeout=5)
    assert frame["type"] == "hello"
    return frame["streams"]


def _post(world, n=1, inbox=None, prefix="msg"):
    from conversations.actions import do_receive_inbound_message

    out = []
    for i in range(n):
        out.append(do_receive_inbound_message(inbox=inbox or world.inbox_a, source_id="ann@example.com",
                                              body=f"{prefix} {i}"))
    return out


post = database_sync_to_async(_post)


async def test_anonymous_and_foreign_origin_are_refused(world):
    comm, connected, code = await _connect(None)
    assert connected  # accepted only to be told to sign in, then closed
    assert await comm.receive_output(timeout=5) == {"type": "websocket.close", "code": 4401}
    comm, connected, _ = await _connect(world.alice, origin=b"http://evil.example")
    assert not connected


async def test_agent_outside_the_team_receives_nothing(world):
    alice, ok, _ = await _connect(world.alice)
    charlie, ok2, _ = await _connect(world.charlie)
    bob, ok3, _ = await _connect(world.bob)
    assert ok and ok2 and ok3
    alice_streams = await _hello(alice)
    assert set(alice_streams) == {f"inbox.{world.inbox_a.id}", f"inbox.{world.inbox_api.id}"}
    assert set(await _hello(charlie)) == {f"inbox.{world.inbox_b.id}"}
    assert len(await _hello(bob)) == 3  # supervisors see every inbox
    await post(world)
    frame = await alice.receive_json_from(timeout=5)
    assert (frame["type"], frame["stream"], frame["seq"]) == ("message", f"inbox.{world.inbox_a.id}", 1)
    assert (await bob.receive_json_from(timeout=5))["message_id"] == frame["message_id"]
    assert await charlie.receive_nothing(timeout=0.5)
    for c in (alice, bob, charlie):
        await c.disconnect()


async def test_reconnect_replays_missed_events_in_order_without_duplicates(world):
    stream = f"inbox.{world.inbox_a.id}"
    comm, ok, _ = await _connect(world.alice)
    assert ok
    await _hello(comm)
    await post(world, 1, prefix="before")
    seen = (await comm.receive_json_from(timeout=5))["seq"]
    await comm.disconnect()

    await post(world, 5, prefix="while away")

    comm, ok, _ = await _connect(world.alice, cursors={stream: seen})
    assert ok
    hello = await _hello(comm)
    assert hello[stream] == seen + 5
    replayed = [await comm.receive_json_from(timeout=5) for _ in range(5)]
    assert [f["seq"] for f in replayed] == list(range(seen + 1, seen + 6))
    assert all(f["type"] == "message" for f in replayed)
    # Live events continue right after the replayed ones; nothing is sent twice.
    await post(world, 1, prefix="live")
    assert (await comm.receive_json_from(timeout=5))["seq"] == seen + 6
    assert await comm.receive_nothing(timeout=0.5)
    await comm.disconnect()


async def test_live_events_arrive_in_sequence_order(world):
    comm, ok, _ = await _connect(world.alice)
    await _hello(comm)
    await post(world, 20)
    seqs = [(await comm.receive_json_from(timeout=5))["seq"] for _ in range(20)]
    assert seqs == list(range(1, 21))
    await comm.disconnect()


async def test_dropped_layer_message_is_filled_from_the_log(world):
    """The channel layer delivers at most once; a gap in seq makes the server replay the missing event."""
    from omnichannel import realtime

    comm, ok, _ = await _connect(world.alice)
    await _hello(comm)
    real_send = realtime._send
    calls = {"n": 0}

    def lossy(group, frame):
        calls["n"] += 1
        if calls["n"] == 2:
            return  # lost in the layer
        real_send(group, frame)

    with mock.patch("omnichannel.realtime._send", lossy):
        await post(world, 3)
    seqs = [(await comm.receive_json_from(timeout=5))["seq"] for _ in range(3)]
    assert seqs == [1, 2, 3]
    await comm.disconnect()


async def test_cursor_older_than_the_log_asks_for_resync(world):
    from omnichannel.models import RealtimeEvent

    await post(world, 3)
    await database_sync_to_async(lambda: RealtimeEvent.objects.filter(seq=1).delete())()
    comm, ok, _ = await _connect(world.alice, cursors={f"inbox.{world.inbox_a.id}": 0})
    await _hello(comm)
    frame = await comm.receive_json_from(timeout=5)
    assert frame["type"] == "resync"
    await comm.disconnect()


async def test_bad_frames_get_error_frames(world):
    comm, ok, _ = await _connect(world.alice)
    await _hello(comm)
    await comm.send_to(text_data="not json")
    assert (await comm.receive_json_from())["type"] == "error"
    await comm.send_json_to({"type": "launch"})
    assert "Unknown frame" in (await comm.receive_json_from())["message"]
    await comm.send_json_to({"type": "status", "status": "sleeping"})
    assert (await comm.receive_json_from())["type"] == "error"
    await comm.send_json_to({"type": "typing", "conversation_id": 999999, "typing": True})
    assert (await comm.receive_json_from())["message"] == "Conversation not found"
    await comm.disconnect()


async def test_heartbeat_and_status(world):
    from agents.models import AgentProfile

    comm, ok, _ = await _connect(world.alice)
    await _hello(comm)
    await comm.send_json_to({"type": "status", "status": "away"})
    frame = await comm.receive_json_from(timeout=5)
    assert frame == {"type": "presence", "agent_id": world.alice.id, "status": "away", "reason": "console"}
    await comm.send_json_to({"type": "heartbeat"})
    assert (await comm.receive_json_from())["type"] == "heartbeat_ack"
    agent = await database_sync_to_async(AgentProfile.objects.get)(user=world.alice)
    assert agent.status == "away" and agent.last_seen_at is not None
    await comm.disconnect()


async def test_customer_typing_reaches_the_inbox_audience(world):
    from conversations.actions import do_notify_typing

    result = (await post(world))[0]
    comm, ok, _ = await _connect(world.alice)
    await _hello(comm)
    conv = await database_sync_to_async(lambda: result.message.conversation)()
    await database_sync_to_async(do_notify_typing)(conversation=conv, who="contact", typing=True)
    frame = await comm.receive_json_from(timeout=5)
    assert frame["type"] == "typing" and frame["who"] == "contact" and "seq" not in frame
    await comm.disconnect()
